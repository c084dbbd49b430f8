"""The ingester end to end: real Mosquitto, real InfluxDB, the ingester as a subprocess."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from sensors.registry import load_registry
from sensors.schema import QuarantineReason as R
from tests.helpers import (
    influx_count,
    influx_rows,
    mosquitto_pub,
    publish_all,
    reading_messages,
    wait_for,
)

STATIONS = load_registry().ids


def stored(settings, where: str = "") -> int:
    return influx_count(
        settings.influx_url,
        settings.influx_db,
        f'SELECT count("air_temperature") FROM readings {where}',
    )


def quarantine_by_reason(settings) -> dict[str, int]:
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT count("detail") FROM "quarantine"."quarantine" GROUP BY "reason"',
    )
    return {row["reason"]: row["count"] for row in rows}


def test_round_trip_single_and_array_with_mosquitto_pub(settings, broker, ingester_factory):
    ingester = ingester_factory(settings)
    now = int(time.time())
    single = {
        "ts": now - 30,
        "seq": 1,
        "values": {"air_temperature": 18.4, "wind_direction": 270},
        "diag": {"battery_v": 3.91, "rssi_dbm": -71},
    }
    mosquitto_pub(broker.port, "stations/elefsina-01/readings", json.dumps(single))
    batch = [
        {
            "ts": f"2026-11-22T16:3{k}:00Z" if False else now - 20 + k,
            "seq": 2 + k,
            "values": {"air_temperature": 18.5 + k, "relative_humidity": 60.0 + k},
        }
        for k in range(3)
    ]
    mosquitto_pub(broker.port, "stations/elefsina-01/readings", json.dumps(batch))
    wait_for(lambda: stored(settings) == 4, message="4 readings stored")
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT * FROM readings WHERE \"station\" = 'elefsina-01'",
    )
    assert [(r["time"] // 10**9, r["air_temperature"], r["seq"]) for r in rows] == [
        (now - 30, 18.4, 1),
        (now - 20, 18.5, 2),
        (now - 19, 19.5, 3),
        (now - 18, 20.5, 4),
    ]
    assert rows[0]["wind_direction"] == 270.0
    assert rows[0]["wind_direction_qc"] == "good"
    assert [r["relative_humidity"] for r in rows[1:]] == [60.0, 61.0, 62.0]
    assert all(r["air_temperature_qc"] == "good" for r in rows)
    diag = influx_rows(settings.influx_url, settings.influx_db, "SELECT * FROM station_diag")
    assert [(d["battery_v"], d["rssi_dbm"]) for d in diag] == [(3.91, -71.0)]
    wait_for(lambda: ingester.metric("meltemi_ingest_readings_stored_total") == 4)
    assert ingester.metric("meltemi_ingest_values_stored_total") == 8
    assert ingester.metric("meltemi_ingest_acked_total") == 2


def test_every_validation_rule_is_quarantined_with_its_reason(settings, broker, ingester_factory):
    ingester = ingester_factory(settings)
    now = int(time.time())
    ok = {"air_temperature": 20.0}
    cases: list[tuple[str, str | bytes]] = [
        ("stations/elefsina-01/readings", "{not json"),
        ("stations/elefsina-01/readings", b"\xc3\x28"),
        ("stations/elefsina-01/readings", '{"values": {"air_temperature": 1}}'),
        ("stations/elefsina-01/readings", "x" * (256 * 1024 + 1)),
        ("stations/elefsina-01/readings", json.dumps([{"ts": now, "values": ok}] * 501)),
        ("stations/nobody-01/readings", json.dumps({"ts": now, "values": ok})),
        ("stations/elefsina-01/readings", json.dumps({"ts": now + 400, "values": ok})),
        ("stations/elefsina-01/readings", json.dumps({"ts": now - 31 * 86400, "values": ok})),
        (
            "stations/elefsina-01/readings",
            f'{{"ts": {now - 5}, "values": {{"air_temperature": NaN, "relative_humidity": 55,'
            f' "pm10": Infinity, "air_pressure": 1e400, "uv_index": 99, "radon": 1,'
            f' "wind_speed": "3"}}}}',
        ),
        ("stations/elefsina-01/status", '{"state": "sleeping"}'),
    ]
    for topic, payload in cases:
        mosquitto_pub(broker.port, topic, payload)
    expected = {
        R.INVALID_JSON: 2,
        R.INVALID_SHAPE: 1,
        R.TOO_LARGE: 1,
        R.TOO_MANY_READINGS: 1,
        R.UNKNOWN_STATION: 1,
        R.TS_IN_FUTURE: 1,
        R.TS_TOO_OLD: 1,
        R.NON_FINITE: 4,
        R.OUT_OF_RANGE: 1,
        R.UNKNOWN_PARAMETER: 1,
        R.INVALID_STATUS: 1,
    }
    wait_for(
        lambda: sum(quarantine_by_reason(settings).values()) == sum(expected.values()),
        message="all quarantine records",
    )
    assert quarantine_by_reason(settings) == {k.value: v for k, v in expected.items()}
    # the good value of the mixed reading is stored, nothing else is
    rows = influx_rows(settings.influx_url, settings.influx_db, "SELECT * FROM readings")
    assert [(r["relative_humidity"], r.get("air_temperature")) for r in rows] == [(55.0, None)]
    wait_for(lambda: ingester.metric("meltemi_ingest_acked_total") == len(cases))
    for reason, count in expected.items():
        assert ingester.metric("meltemi_ingest_quarantined_total", f'reason="{reason}"') == count
    assert ingester.metric("meltemi_ingest_in_flight") == 0
    # the oversized payload is kept truncated to 4 KiB, with its real size
    [big] = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT raw, size FROM quarantine.quarantine WHERE reason = 'too_large'",
    )
    assert (len(big["raw"]), big["size"]) == (4096, 256 * 1024 + 1)


def test_same_reading_delivered_twice_is_stored_once(settings, broker, ingester_factory):
    ingester_factory(settings)
    messages = reading_messages(STATIONS[:3], per_station=50, end_s=int(time.time()))
    assert publish_all(broker.port, messages) == 150
    assert publish_all(broker.port, messages[:100]) == 100  # a station retrying
    wait_for(lambda: ingester_is_idle(settings, 250))
    assert stored(settings) == 150
    per_station = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT count("air_temperature") FROM readings GROUP BY "station"',
    )
    assert sorted((r["station"], r["count"]) for r in per_station) == [
        (s, 50) for s in sorted(STATIONS[:3])
    ]


def ingester_is_idle(settings, received: int) -> bool:
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT last("messages_received") FROM ingest_stats',
    )
    return bool(rows) and rows[0]["last"] >= received


# -d prints the client's packets, line-buffered by stdbuf since stdout is a pipe.
MOSQUITTO_SUB_DEBUG = ("stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1")


def test_status_and_accepted_republish(settings, broker, ingester_factory):
    ingester_factory(settings)
    sub = subprocess.Popen(
        [
            *MOSQUITTO_SUB_DEBUG,
            "-p",
            str(broker.port),
            "-t",
            "meltemi/accepted/+",
            "-C",
            "1",
            "-W",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sub.stdout is not None
    # Publish only once the broker has granted the subscription.
    for line in sub.stdout:
        if line.startswith("Subscribed (mid"):
            break
    mosquitto_pub(
        broker.port,
        "stations/mandra-01/status",
        '{"state": "online", "firmware": "1.2.3"}',
        1,
        "-r",
    )
    now = int(time.time())
    mosquitto_pub(
        broker.port,
        "stations/mandra-01/readings",
        json.dumps({"ts": now, "seq": 9, "values": {"air_temperature": 12.5}}),
    )
    out, _ = sub.communicate(timeout=25)
    [payload] = [line for line in out.splitlines() if line.startswith("[")]
    [entry] = json.loads(payload)  # one station's accepted readings of one write, as an array

    assert entry["station"] == "mandra-01"
    assert entry["values"] == {"air_temperature": 12.5}
    assert entry["qc"] == {"air_temperature": "good"}
    assert entry["seq"] == 9
    rows = wait_for(
        lambda: influx_rows(settings.influx_url, settings.influx_db, "SELECT * FROM station_status")
    )
    assert [(r["station"], r["state"], r["firmware"]) for r in rows] == [
        ("mandra-01", "online", "1.2.3")
    ]
    subprocess.run(  # clear the retained status for the tests that share this broker
        ["mosquitto_pub", "-p", str(broker.port), "-t", "stations/mandra-01/status", "-r", "-n"],
        check=True,
        timeout=10,
    )


@pytest.mark.timeout(240)
def test_sigkill_while_readings_keep_arriving_loses_and_doubles_nothing(
    settings, broker, ingester_factory
):
    """Issue 2: kill -9 the ingester twice while QoS 1 readings keep arriving; every reading
    the broker accepted is stored exactly once, and every reconnect resumes the session."""
    ingester = ingester_factory(settings)
    messages = reading_messages(STATIONS[:12], per_station=250, end_s=int(time.time()))
    acked: list[int] = []
    publisher = threading.Thread(
        target=lambda: acked.append(publish_all(broker.port, messages, rate_per_s=1500)),
    )
    publisher.start()
    for fraction in (0.25, 0.6):
        target = fraction * len(messages)
        wait_for(lambda: stored(settings) >= target, timeout_s=60)  # noqa: B023
        ingester.kill()
        time.sleep(0.5)  # readings keep arriving while it is down
        ingester.start()
    publisher.join(timeout=120)
    assert acked == [len(messages)]
    wait_for(lambda: stored(settings) >= len(messages), timeout_s=60)
    ingester.wait_idle()  # anything still in flight would show up as an extra point now
    assert stored(settings) == 3000
    series = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT count("seq") FROM readings GROUP BY "station"',
    )
    assert sorted(r["count"] for r in series) == [250] * 12
    assert ingester.sessions_present() == [False, True, True]
