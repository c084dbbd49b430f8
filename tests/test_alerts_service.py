"""The alert service against real InfluxDB: daily FWI alerts, persisted FWI state, restarts.

cffdrs' 48 days of noon weather are stored as readings at 10:00 UTC of a station at 40° N; the
service (on a frozen clock, stepping through the days) computes each day's FWI once 10:30 has
passed and runs the shipped ``fire-fwi`` rule (EFFIS high and above, per municipality). Its
messages must be those of the pure engine fed cffdrs' own FWI column; a restart in the middle
(a new service on the same state file: the FWI chain's state is persisted too) changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from alerts.engine import AlertEngine, Observation
from alerts.rules import load_rules
from alerts.service import AlertService, Clock
from ingest.lineproto import format_point
from sensors import schema
from sensors.alerting import AlertMessage
from sensors.registry import open_registry
from sensors.settings import Settings
from tests.helpers import influx_rows, write_lines

DATA = Path(__file__).parent / "data"
STATION = "fwi-service"
REGISTRY = f"""\
[[station]]
id = "{STATION}"
name = "FWI service test"
municipality = "Test Town"
lat = 40.0
lon = -100.0
elevation_m = 0
parameters = ["air_temperature", "relative_humidity", "wind_speed", "precipitation"]
"""


def _rows() -> list[dict[str, str]]:
    lines = (DATA / "cffdrs_fwi_01.csv").read_text().splitlines()[1:]
    return list(csv.DictReader(lines))


def _noon(row: dict[str, str]) -> dt.datetime:
    day = dt.date(int(row["YR"]) + 41, int(row["MON"]), int(row["DAY"]))
    return dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC)


def _step_until(service: AlertService, until: dt.datetime) -> list[AlertMessage]:
    out: list[AlertMessage] = []
    while service.engine.state.cursor is None or service.engine.state.cursor < until:
        out += service.step()
    return out


def test_daily_fwi_alerts_and_restart(settings: Settings, tmp_path: Path) -> None:
    rows = _rows()
    lines = []
    for row in rows:
        fields: dict[str, float | str] = {
            "air_temperature": float(row["TEMP"]),
            "relative_humidity": float(row["RH"]),
            "wind_speed": float(row["WS"]) / 3.6,
            "precipitation": float(row["PREC"]),
        }
        fields.update({schema.qc_field(p): "good" for p in list(fields)})
        ts_ns = int(_noon(row).timestamp()) * 1_000_000_000
        lines.append(format_point(schema.READINGS, {schema.STATION_TAG: STATION}, fields, ts_ns))
    write_lines(settings.influx_url, settings.influx_db, lines)
    registry = tmp_path / "stations.toml"
    registry.write_text(REGISTRY)
    first_day = _noon(rows[0]) - dt.timedelta(hours=1)
    last_day = _noon(rows[-1]) + dt.timedelta(hours=2)
    base = settings.model_copy(
        update={
            "stations_file": registry,
            "alerts_state_file": tmp_path / "state.json",
            "alerts_lag_s": 0.0,
            "alerts_lookback_h": 0.5,
        }
    )
    middle = _noon(rows[24])
    frozen_first = Clock(first_day, 0.0, 0.0)  # speed 0: now is always `first_day`
    service = AlertService(base, frozen_first)
    assert service.step() == []  # the first step only places the cursor
    service.clock = Clock(middle, 0.0, 0.0)
    got = _step_until(service, middle)
    service.store.close()
    restarted = AlertService(base, Clock(last_day, 0.0, 0.0))
    assert restarted.fwi[STATION].day == _noon(rows[23]).date()  # the chain's state persisted
    got += _step_until(restarted, last_day)
    restarted.store.close()
    fire = [m for m in got if m.rule == "fire-fwi"]

    # The reference: the pure engine fed cffdrs' FWI at 10:30 of each day.
    rules = [r for r in load_rules(None) if r.id == "fire-fwi"]
    reference = AlertEngine(rules, open_registry(base))
    observations = [
        Observation(_noon(row) + dt.timedelta(minutes=30), STATION, {"fwi": float(row["FWI"])})
        for row in rows
    ]
    expected = reference.process(observations, last_day)
    assert [(m.sent, m.msg_type, m.level, m.all_clear) for m in fire] == [
        (m.sent, m.msg_type, m.level, m.all_clear) for m in expected
    ]
    assert fire[0].msg_type == "Alert"
    assert fire[0].station == "m-test-town"  # the shipped rule's area is the municipality
    assert fire[0].area.description.en == "Municipality of Test Town"
    assert max(m.level for m in fire) >= 2  # cffdrs' May days reach EFFIS very high
    for message, reference_message in zip(fire, expected, strict=True):
        if reference_message.value is None:  # a clear on the quiet deadline carries no value
            assert message.value is None
            continue
        assert message.value is not None
        assert abs(message.value - reference_message.value) <= 0.01
    stored = influx_rows(
        base.influx_url, base.influx_db, "SELECT doc FROM alert_messages WHERE rule = 'fire-fwi'"
    )
    assert len(stored) == len(fire)
