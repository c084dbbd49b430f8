"""The heat wave through the whole platform, and a SIGKILL of the alert engine in the middle.

``meltemi simulate --scenario heatwave`` publishes a 4-day heat wave (as a back-fill, so that
the test takes seconds) through real Mosquitto and the ingester into InfluxDB; ``meltemi
alerts`` runs on a replay clock (5 simulated days in ~15 s) and is SIGKILLed while an episode
is active, then restarted. The stored messages must be exactly those of an uninterrupted run of
the same engine over the same stored readings (times, levels, CAP msgTypes, identifiers); the
API serves them as /v1/alerts, valid CAP 1.2 and an Atom feed that feedparser reads.

The platform's clock says December, so the rule's thresholds are set from the data: the
discomfort index before the episode, +1.5 and +3 (a July heat wave would cross the shipped
27/29/32; the shipped rules are tested in test_alert_rules.py).
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import feedparser
import xmlschema

from alerts.engine import AlertEngine
from alerts.rules import parse_rules
from alerts.store import AlertStore
from meltemi.services import ManagedProcess, Mosquitto
from sensors.alerting import AlertMessage
from sensors.cap import CAP_NS
from sensors.heat import discomfort_index
from sensors.registry import open_registry
from sensors.settings import Settings
from tests.api_fixtures import serve
from tests.conftest import IngesterProcess
from tests.helpers import influx_count, influx_rows, mosquitto_pub, settings_env, wait_for

DATA = Path(__file__).parent / "data"
STATIONS = ("hw-elefsina", "hw-fyli")
REGISTRY = """\
[[station]]
id = "{id}"
name = "Heat wave {id}"
municipality = "{municipality}"
lat = {lat}
lon = 23.54
elevation_m = 20
parameters = ["air_temperature", "relative_humidity", "wind_speed", "precipitation"]
"""
RULES = """\
[[rule]]
id = "heat-test"
parameter = "discomfort_index"
hold = "30m"
quiet = "1h"
hysteresis = 0.5
category = "Health"
awareness_type = "5; high-temperature"
event = {{ el = "Θερμική δυσφορία", en = "Heat discomfort" }}
[[rule.level]]
above = {low}
severity = "Moderate"
name = "warm"
headline = {{ el = "Δυσφορία {{value}}", en = "Discomfort {{value}} at {{area}}" }}
description = {{ el = "Δείκτης {{value}}", en = "Index {{value}}" }}
[[rule.level]]
above = {high}
severity = "Severe"
name = "hot"
headline = {{ el = "Έντονη δυσφορία", en = "Severe discomfort at {{area}}" }}
description = {{ el = "Δείκτης {{value}}", en = "Index {{value}}" }}
"""
DAY = 86_400
BACKFILL_S = 5 * DAY
SPEED = 5 * DAY / 15.0  # five simulated days in fifteen seconds


def _summary(messages: list[AlertMessage]) -> list[tuple[str, str, str, int, bool]]:
    return [(m.identifier, m.sent.isoformat(), m.msg_type, m.level, m.all_clear) for m in messages]


def _stored(settings: Settings) -> list[AlertMessage]:
    rows = influx_rows(settings.influx_url, settings.influx_db, "SELECT doc FROM alert_messages")
    messages = [AlertMessage.model_validate_json(row["doc"]) for row in rows]
    return sorted(messages, key=lambda m: (m.sent, m.station, m.sequence))


def test_heatwave_sigkill_changes_nothing(
    settings: Settings,
    fresh_broker: Mosquitto,
    tmp_path: Path,
    ingester_factory: Callable[..., IngesterProcess],
) -> None:
    registry = tmp_path / "stations.toml"
    registry.write_text(
        REGISTRY.format(id=STATIONS[0], municipality="Elefsina", lat=38.04)
        + "\n"
        + REGISTRY.format(id=STATIONS[1], municipality="Fyli", lat=38.10)
    )
    # A broker of its own: the simulated stations leave retained statuses behind, which every
    # later subscriber on a shared broker would receive.
    base = settings.model_copy(update={"stations_file": registry, "mqtt_port": fresh_broker.port})
    ingester = ingester_factory(base)
    now_s = int(time.time())
    backfill_start = now_s - BACKFILL_S
    scenario_start = backfill_start + DAY // 2  # the episode: day 0.5 to 4.5 of the back-fill
    simulate = subprocess.run(
        [
            sys.executable,
            "-m",
            "meltemi.cli",
            "simulate",
            "--scenario",
            "heatwave",
            "--scenario-start",
            str(scenario_start),
            "--backfill",
            f"{BACKFILL_S}s",
            "--backfill-interval",
            "10m",
            "--duration",
            "8s",
            "--no-progress",
        ],
        env=settings_env(base),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert simulate.returncode == 0, simulate.stderr.decode()[-2000:]
    ingester.wait_idle()
    count_q = 'SELECT count("air_temperature") FROM readings WHERE time < now() - 1m'
    stored = influx_count(base.influx_url, base.influx_db, count_q)
    assert stored >= 2 * (BACKFILL_S // 600) - 4  # every back-filled reading arrived

    # Thresholds from the data: the index before the episode, +1.5 and +3.
    store = AlertStore(base)
    start = dt.datetime.fromtimestamp(backfill_start - 60, dt.UTC)
    before = dt.datetime.fromtimestamp(scenario_start, dt.UTC)
    end = dt.datetime.fromtimestamp(now_s - 300, dt.UTC)
    early = store.observations(("air_temperature", "relative_humidity"), start, before)
    baseline = max(
        float(discomfort_index(o.values["air_temperature"], o.values["relative_humidity"]))
        for o in early
    )
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES.format(low=round(baseline + 1.5, 1), high=round(baseline + 3, 1)))

    # The engine on a replay clock from the back-fill's start; killed mid-episode.
    anchor = time.time() + 1.0
    clock = f"{start.isoformat()}@{anchor:.3f}*{SPEED:.3f}"
    env = settings_env(
        base,
        MELTEMI_ALERTS_RULES_FILE=str(rules_file),
        MELTEMI_ALERTS_CLOCK=clock,
        MELTEMI_ALERTS_INTERVAL_S="0.3",
        MELTEMI_ALERTS_LAG_S="0",
        MELTEMI_ALERTS_LOOKBACK_H="0.001",
        MELTEMI_ALERTS_STATE_FILE=str(tmp_path / "alerts-state.json"),
    )
    argv = [sys.executable, "-m", "meltemi.cli", "alerts"]
    engine = ManagedProcess("alerts", argv, tmp_path / "alerts.log", env=env)
    # A witness subscriber we did not write: every message the engine publishes.
    witness_out = tmp_path / "mosquitto_sub.txt"
    with witness_out.open("wb") as sink:
        witness = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(base.mqtt_port), "-q", "1", "-v",
             "-t", "meltemi/alerts/+"],
            stdout=sink,
        )  # fmt: skip
    try:
        wait_for(
            lambda: (
                mosquitto_pub(base.mqtt_port, "meltemi/alerts/probe", "ready", 0) is not None
                and b"meltemi/alerts/probe ready" in witness_out.read_bytes()
            ),
            timeout_s=15,
            message="mosquitto_sub subscribed",
        )
        engine.start()
        wait_for(
            lambda: (stored := _stored(base)) and stored[-1].active,
            timeout_s=30,
            message="an active alert",
        )
        engine.signal(signal.SIGKILL)  # in the middle of the heat wave, an episode open
        engine.wait(10)
        at_kill = len(_stored(base))
        engine.start()
        finish = anchor + (now_s - start.timestamp()) / SPEED + 2.0
        wait_for(lambda: time.time() > finish, timeout_s=40, message="the replay clock at now")
        assert engine.running()
        time.sleep(1.0)  # two more ticks at the end of the replay
    finally:
        engine.stop()
        witness.terminate()  # our own mosquitto_sub, by its PID
        witness.wait(10)
    assert len(_stored(base)) > at_kill  # the restarted engine carried the episode on
    log = engine.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "alert step failed" not in log, log[-3000:]

    # The reference: one uninterrupted run of the same engine over the same stored readings.
    reference = AlertEngine(parse_rules(rules_file.read_text(), "rules"), open_registry(base))
    observations = store.observations(("air_temperature", "relative_humidity"), start, end)
    expected = reference.process(observations, end)
    store.close()
    published = [
        AlertMessage.model_validate_json(line.split(" ", 1)[1])
        for line in witness_out.read_text().splitlines()
        if not line.startswith("meltemi/alerts/probe")
    ]
    # At least once: every stored message was published (a replay after the kill may repeat).
    everything = _stored(base)
    assert {m.identifier for m in published} == {m.identifier for m in everything}
    assert all(m in everything for m in published)
    got = [m for m in everything if m.sent <= end]
    assert _summary(got) == _summary(
        sorted(expected, key=lambda m: (m.sent, m.station, m.sequence))
    )
    assert got == sorted(expected, key=lambda m: (m.sent, m.station, m.sequence))
    episodes: dict[str, list[AlertMessage]] = {}
    for m in got:
        episodes.setdefault(m.episode, []).append(m)
    assert {m.station for m in got} == set(STATIONS)
    for chain in episodes.values():  # Alert, Update..., Update(AllClear): one per afternoon
        assert [m.sequence for m in chain] == list(range(len(chain)))
        assert chain[0].msg_type == "Alert"
        assert {m.msg_type for m in chain[1:]} == {"Update"}
        assert chain[-1].all_clear
        assert chain[-1].level == 0
        assert [m.references for m in chain] == [
            tuple(x.identifier for x in chain[:k]) for k in range(len(chain))
        ]
    assert max(m.level for m in got) == 2  # the plateau reaches the upper level
    assert scenario_start < min(m.sent.timestamp() for m in got) < scenario_start + 4 * DAY
    assert max(m.sent.timestamp() for m in got) < scenario_start + 5 * DAY

    # The API: episodes, CAP documents valid against the OASIS XSD, and the Atom feed.
    schema = xmlschema.XMLSchema(str(DATA / "CAP-v1.2.xsd"))
    with serve(base) as api:
        listed = api.get("/v1/alerts").json()["alerts"]
        assert sum(len(a["messages"]) for a in listed) == len(got)
        assert {a["active"] for a in listed} == {False}
        assert api.get("/v1/alerts", status="active").json()["alerts"] == []
        one = api.get("/v1/alerts", station=STATIONS[0]).json()["alerts"]
        assert {a["station"] for a in one} == {STATIONS[0]}
        for message in got:
            answer = api.get(f"/v1/alerts/{message.identifier}.cap")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("application/cap+xml")
            schema.validate(answer.text)
            root = ET.fromstring(answer.content)
            assert root.findtext(f"{{{CAP_NS}}}msgType") == message.msg_type
            assert root.findtext(f"{{{CAP_NS}}}identifier") == message.identifier
        assert api.get("/v1/alerts/meltemi.nope.x.1.0.cap").status_code == 404
        assert api.get("/v1/alerts/not-an-id.cap").status_code == 404
        assert api.get("/v1/alerts", rule="Bad Rule").status_code == 400
        feed_answer = api.get("/v1/alerts.atom")
        assert feed_answer.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(feed_answer.content)
        assert not feed.bozo, feed.bozo_exception
        assert len(feed.entries) == len(got)
        links = {link.href for entry in feed.entries for link in entry.links}
        assert links == {f"{api.url}/v1/alerts/{m.identifier}.cap" for m in got}
        assert all(entry.updated for entry in feed.entries)
