"""The alert engine's machines: hold, hysteresis, quiet, silence, stuck values, restarts."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.engine import AlertEngine, EngineState, Observation
from alerts.rules import parse_rules
from sensors.alerting import AlertMessage
from sensors.registry import Station
from sensors.topics import StationId

T0 = dt.datetime(2026, 7, 20, 6, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)

RULES = """\
[[rule]]
id = "t"
parameter = "air_temperature"
hold = "30m"
quiet = "1h"
hysteresis = 2.0
category = "Met"
event = { el = "Ζέστη", en = "Heat" }
[[rule.level]]
above = 35.0
severity = "Moderate"
name = "hot"
headline = { el = "ζέστη {value}", en = "hot {value} at {area}" }
description = { el = "δ", en = "d" }
[[rule.level]]
above = 40.0
severity = "Severe"
name = "very_hot"
headline = { el = "πολύ", en = "very hot {value}" }
description = { el = "δ", en = "d" }

[[rule]]
id = "silent"
kind = "silent"
after = "30m"
category = "Infra"
event = { el = "σιωπή", en = "silent" }
[[rule.level]]
above = 0.0
severity = "Minor"
name = "silent"
headline = { el = "σ", en = "s" }
description = { el = "σ", en = "s" }

[[rule]]
id = "stuck"
kind = "stuck"
parameter = "relative_humidity"
after = "2h"
category = "Infra"
event = { el = "κολλημένο", en = "stuck" }
[[rule.level]]
above = 0.0
severity = "Minor"
name = "stuck"
headline = { el = "κ", en = "k" }
description = { el = "κ", en = "k" }
"""


def _station(station_id: str, municipality: str = "Elefsina") -> Station:
    return Station(
        id=StationId(station_id),
        name=station_id.title(),
        municipality=municipality,
        lat=38.04,
        lon=23.54,
        elevation_m=10.0,
        parameters=("air_temperature", "relative_humidity"),
    )


def _engine(rules: str = RULES) -> AlertEngine:
    return AlertEngine(parse_rules(rules, "test"), [_station("st-a")])


def _temps(
    values: list[float], start: dt.datetime = T0, step: dt.timedelta = 10 * MIN
) -> list[Observation]:
    return [
        Observation(start + k * step, "st-a", {"air_temperature": v, "relative_humidity": 20.0 + k})
        for k, v in enumerate(values)
    ]


def _summary(messages: list[AlertMessage], rule: str = "t") -> list[tuple[str, str, int, str]]:
    return [
        (m.sent.strftime("%H:%M"), m.msg_type, m.level, "AllClear" if m.all_clear else "")
        for m in messages
        if m.rule == rule
    ]


def test_hold_then_fire_escalate_and_clear_with_hysteresis() -> None:
    # 10-minute readings: 34 (below), 36 x4 (30 min held at the 4th), 41 x4, then 34 (within the
    # 2 degree hysteresis of 35: not yet quiet), then 30 for good.
    values = [34.0, 36, 36, 36, 36, 41, 41, 41, 41, 38, 34, 30, 30, 30, 30, 30, 30, 30, 30, 30]
    engine = _engine()
    messages = engine.process(_temps(values), T0 + 4 * dt.timedelta(hours=1))
    assert _summary(messages) == [
        ("06:40", "Alert", 1, ""),  # 36 since 06:10, held 30 min at 06:40
        ("07:20", "Update", 2, ""),  # 41 since 06:50, held 30 min at 07:20
        ("08:30", "Update", 1, ""),  # last >= 38 (40 - 2) at 07:30 (38), + 1 h quiet
        ("08:40", "Update", 0, "AllClear"),  # last >= 33 (35 - 2) at 07:40 (34), + 1 h
    ]
    alert, escalate, _down, clear = [m for m in messages if m.rule == "t"]
    assert alert.identifier.endswith(".0")
    assert clear.identifier.endswith(".3")
    assert escalate.references == (alert.identifier,)
    assert len(clear.references) == 3
    assert not clear.active
    assert alert.headline.en == "hot 36.0 at St-A (Elefsina)"
    assert alert.value == 36.0
    assert alert.threshold == 35.0


def test_a_dip_restarts_the_hold() -> None:
    values = [36.0, 36, 36, 34, 36, 36, 36, 36]  # a dip below 35 at 06:30
    messages = _engine().process(_temps(values), T0 + 2 * dt.timedelta(hours=1))
    assert _summary(messages) == [("07:10", "Alert", 1, "")]  # 06:40 + 30 min


def test_quiet_is_reached_on_the_timer_without_new_readings() -> None:
    engine = _engine()
    first = engine.process(_temps([36.0, 36, 36, 36]), T0 + 40 * MIN)
    assert _summary(first) == [("06:30", "Alert", 1, "")]
    # No reading after 06:30 (the station went quiet, which the silent rule reports); the alert
    # clears at 06:30 + 1 h, when the timer passes it.
    assert _summary(engine.process([], T0 + 89 * MIN)) == []
    assert _summary(engine.process([], T0 + 95 * MIN)) == [("07:30", "Update", 0, "AllClear")]


def test_silent_station_fires_on_the_timer_and_ends_with_a_reading() -> None:
    engine = _engine()
    obs = _temps([20.0, 20.5])  # 06:00, 06:10
    assert _summary(engine.process(obs, T0 + 39 * MIN), "silent") == []
    assert _summary(engine.process([], T0 + 41 * MIN), "silent") == [("06:40", "Alert", 1, "")]
    later = _temps([21.0], start=T0 + 70 * MIN)
    assert _summary(engine.process(later, T0 + 71 * MIN), "silent") == [
        ("07:10", "Update", 0, "AllClear")
    ]


def test_stuck_value() -> None:
    engine = _engine()
    obs = [
        Observation(
            T0 + k * 30 * MIN, "st-a", {"air_temperature": 20.0 + k, "relative_humidity": 55.0}
        )
        for k in range(6)
    ] + [Observation(T0 + 180 * MIN, "st-a", {"air_temperature": 30.0, "relative_humidity": 56.0})]
    assert _summary(engine.process(obs, T0 + 200 * MIN), "stuck") == [
        ("08:00", "Alert", 1, ""),  # 55 since 06:00, 2 h at 08:00
        ("09:00", "Update", 0, "AllClear"),
    ]


@pytest.mark.parametrize("cut", [3, 5, 9, 12, 15])
def test_restart_from_persisted_state_changes_nothing(cut: int) -> None:
    values = [34.0, 36, 36, 36, 36, 41, 41, 41, 41, 38, 34, 30, 30, 30, 30, 30, 30, 30, 30, 30]
    obs = _temps(values)
    end = T0 + 4 * dt.timedelta(hours=1)
    straight = _engine().process(obs, end)
    # Run up to the cut, persist, forget everything, reload, run on: the same messages.
    first = _engine()
    before = first.process(obs, obs[cut].ts)
    saved = first.state.model_dump_json()
    second = _engine()
    second.state = EngineState.model_validate_json(saved)
    after = second.process(obs, end)
    assert before + after == straight
    # A crash after publishing but before saving replays the window: the same messages again,
    # with the same identifiers and times (stored points are overwritten, not added).
    third = _engine()
    third.state = EngineState.model_validate_json(saved)
    assert third.process(obs, end) == after


def test_withdrawn_rule_is_cancelled() -> None:
    engine = _engine()
    engine.process(_temps([36.0, 36, 36, 36]), T0 + 40 * MIN)
    saved = engine.state.model_dump_json()
    only_silent = RULES[RULES.index('[[rule]]\nid = "silent"') :]
    restarted = _engine(only_silent)
    restarted.state = EngineState.model_validate_json(saved)
    (cancel,) = restarted.cancel_withdrawn(T0 + 50 * MIN)
    assert cancel.msg_type == "Cancel"
    assert cancel.rule == "t"
    assert cancel.references == (f"meltemi.t.st-a.{int((T0 + 30 * MIN).timestamp())}.0",)


def test_municipality_area_takes_the_worst_station() -> None:
    rules = RULES.replace("hysteresis = 2.0", 'hysteresis = 2.0\narea = "municipality"')
    engine = AlertEngine(
        parse_rules(rules, "test"), [_station("st-a"), _station("st-b"), _station("st-c", "Fyli")]
    )
    obs = []
    for k in range(8):
        ts = T0 + k * 10 * MIN
        obs.append(Observation(ts, "st-a", {"air_temperature": 36.0, "relative_humidity": 20.0}))
        obs.append(
            Observation(
                ts, "st-b", {"air_temperature": 41.0 if k >= 3 else 30.0, "relative_humidity": 20.0}
            )
        )
    messages = [m for m in engine.process(obs, T0 + 75 * MIN) if m.rule == "t"]
    assert [(m.station, m.sent.strftime("%H:%M"), m.msg_type, m.level) for m in messages] == [
        ("m-elefsina", "06:30", "Alert", 1),
        ("m-elefsina", "07:00", "Update", 2),
    ]
    assert messages[0].area.description.en == "Municipality of Elefsina"
    assert len(messages[0].area.circles) == 2
