"""Issue 8 at the ingester: a bounded cost for every message, write-once history, takeovers.

Each test first states the attack as the finding measured it, then asserts the fixed outcome
against real Mosquitto, InfluxDB and ``meltemi ingest`` subprocesses, with exact counts.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from api.metrics import ApiMetrics, IngestSnapshots
from ingest.ratelimit import RateLimiter
from sensors.registry import load_registry
from sensors.settings import Settings
from sensors.validation import MAX_REFUSALS_PER_MESSAGE
from tests.helpers import (
    influx_count,
    influx_rows,
    mosquitto_pub,
    prometheus_value,
    publish_all,
    reading_messages,
    wait_for,
    write_lines,
)

STATIONS = load_registry().ids
Q = "quarantine.quarantine"


def records(settings: Settings, where: str = "") -> list[dict[str, Any]]:
    return influx_rows(settings.influx_url, settings.influx_db, f"SELECT * FROM {Q} {where}")


def record_count(settings: Settings, where: str = "") -> int:
    return influx_count(
        settings.influx_url, settings.influx_db, f'SELECT count("detail") FROM {Q} {where}'
    )


def stored(settings: Settings, station: str) -> int:
    return influx_count(
        settings.influx_url,
        settings.influx_db,
        f"SELECT count(\"air_temperature\") FROM readings WHERE station = '{station}'",
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_huge_refused_message_costs_a_bounded_number_of_records(
    settings, broker, ingester_factory
):
    """Finding: 500 readings x 64 unknown names became 32,000 records of 4 KiB each (RSS
    121 MB -> 1 GB, 25 s stall). Now: cap + 1 records, the raw payload once, RSS bounded, and
    another station's readings published right after are stored."""
    ingester = ingester_factory(settings)
    attacker, other = STATIONS[0], STATIONS[1]
    now = int(time.time())
    readings = [
        {
            "ts": now - 600 + k,
            "values": {f"{chr(97 + j // 26)}{chr(97 + j % 26)}": 1 for j in range(64)},
        }
        for k in range(500)
    ]
    payload = json.dumps(readings, separators=(",", ":")).encode()
    assert 200_000 < len(payload) <= 256 * 1024
    rss_before = rss_kib(ingester.process.pid)
    mosquitto_pub(broker.port, f"stations/{attacker}/readings", payload)
    assert publish_all(broker.port, reading_messages([other], 50, now)) == 50
    wait_for(lambda: stored(settings, other) == 50, timeout_s=60, message="other station")
    wait_for(
        lambda: (
            record_count(settings, f"WHERE station = '{attacker}'") == MAX_REFUSALS_PER_MESSAGE + 1
        ),
        timeout_s=60,
        message="the attacker's records",
    )
    rows = records(settings, f"WHERE station = '{attacker}'")
    assert len(rows) == MAX_REFUSALS_PER_MESSAGE + 1
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    assert by_reason == {"unknown_parameter": MAX_REFUSALS_PER_MESSAGE, "too_many_refusals": 1}
    [summary] = [r for r in rows if r["reason"] == "too_many_refusals"]
    assert summary["count"] == 500 * 64 - MAX_REFUSALS_PER_MESSAGE
    with_raw = [r for r in rows if r["raw"] is not None]
    assert len(with_raw) == 1  # the raw payload is stored once ...
    assert with_raw[0]["raw"].encode() == payload[:4096]
    assert {r["msg"] for r in rows} == {with_raw[0]["msg"]}  # ... and referenced by the rest
    grown_kib = rss_kib(ingester.process.pid) - rss_before
    assert grown_kib < 80 * 1024, f"ingester RSS grew {grown_kib} KiB"
    metrics = ingester.metrics()
    assert prometheus_value(metrics, "meltemi_ingest_refusals_over_cap_total") == 31_900
    assert prometheus_value(metrics, "meltemi_ingest_handler_errors_total") == 0


def test_distinct_deliveries_never_overwrite_and_counters_equal_records(
    settings, broker, ingester_factory
):
    """Finding: quarantine records of different messages overwrote each other (counters !=
    records). Ten messages refused at the same ts and slot, and ten byte-different invalid
    messages, give twenty records and counters of twenty."""
    settings = settings.model_copy(update={"ingest_quarantine_count_interval_s": 0.5})
    ingester = ingester_factory(settings)
    station = STATIONS[2]
    ts = int(time.time()) - 60
    for k in range(10):
        body = json.dumps({"ts": ts, "seq": k, "values": {"air_temperature": 100.0 + k}})
        mosquitto_pub(broker.port, f"stations/{station}/readings", body)
        mosquitto_pub(broker.port, f"stations/{station}/readings", f"not json {k}")
    wait_for(lambda: record_count(settings) == 20, message="twenty records")
    rows = records(settings)
    assert sorted(r["reason"] for r in rows) == ["invalid_json"] * 10 + ["out_of_range"] * 10
    assert len({r["msg"] for r in rows}) == 20
    assert all(r["raw"] is not None for r in rows)  # one record per message: each has its raw
    assert ingester.metric("meltemi_ingest_quarantined_total", 'reason="out_of_range"') == 10
    assert ingester.metric("meltemi_ingest_quarantined_total", 'reason="invalid_json"') == 10
    # Its own retention policy, with the documented default duration.
    [policy] = [
        row
        for row in influx_rows(
            settings.influx_url,
            settings.influx_db,
            f"SHOW RETENTION POLICIES ON {settings.influx_db}",
        )
        if row["name"] == "quarantine"
    ]
    assert policy["duration"] == "2160h0m0s"
    # The size figure: a periodic count, in the ingester's metrics.
    wait_for(
        lambda: ingester.metric("meltemi_ingest_quarantine_records") == 20,
        message="quarantine size figure",
    )


def test_rate_limit_defaults_let_replays_and_the_benchmark_through():
    """The default bucket (Settings) passes a day of 10-s readings replayed in arrays of 500
    and the benchmark's 2,000 single messages at full speed, and stops thousands per second."""
    defaults = Settings()
    limiter = RateLimiter(defaults.ingest_rate_burst, defaults.ingest_rate_per_s)
    day = 8_640
    assert all(limiter.allow("replay", min(500, day - k), 0.0) for k in range(0, day, 500))
    assert all(limiter.allow("bench", 1, 0.0) for _ in range(2_000))
    # A station sending 5,000 readings a second for 10 s, after a full bucket.
    passed = sum(limiter.allow("flood", 1, k / 5_000) for k in range(50_000))
    # The burst, then 5/s for 10 s (the last refill is a float sum of 50,000 small steps).
    assert defaults.ingest_rate_burst + 49 <= passed <= defaults.ingest_rate_burst + 50


def test_rate_exceeded_is_one_record_per_interval_with_the_count(
    settings, broker, ingester_factory
):
    """Finding: one station had 3,271 readings/s stored. With a small bucket, the excess is
    acknowledged, counted in ONE rate_exceeded record, and stored + counted = sent."""
    limited = settings.model_copy(update={"ingest_rate_burst": 100, "ingest_rate_per_s": 1.0})
    ingester = ingester_factory(limited)
    station, other = STATIONS[3], STATIONS[4]
    sent = 400
    messages = reading_messages([station], sent, int(time.time()))
    assert publish_all(broker.port, messages) == sent  # every one acknowledged
    assert publish_all(broker.port, reading_messages([other], 5, int(time.time()))) == 5

    def settled() -> bool:
        rows = records(limited, "WHERE reason = 'rate_exceeded'")
        return len(rows) == 1 and stored(limited, station) + rows[0]["count"] == sent

    wait_for(settled, timeout_s=30, message="stored + rate_exceeded count = sent")
    [row] = records(limited, "WHERE reason = 'rate_exceeded'")
    assert row["station"] == station
    assert 100 <= stored(limited, station) < sent
    assert stored(limited, other) == 5  # another station is not limited by this one
    assert ingester.metric("meltemi_ingest_readings_rate_limited_total") == row["count"]
    assert ingester.metric("meltemi_ingest_quarantined_total", 'reason="rate_exceeded"') == 1


def test_history_is_write_once_and_backdated_readings_are_judged_against_stored_ones(
    settings, broker, ingester_factory
):
    """Finding: re-sending a 2-day-old ts with 45.0 °C replaced the stored 11.2 °C, flagged
    good. Now the stored value stays, one ``conflict`` record; an identical redelivery is
    idempotent; a back-dated 45 °C between stored 11 °C neighbours is suspect (step)."""
    ingester = ingester_factory(settings)
    station = STATIONS[5]
    topic = f"stations/{station}/readings"
    now = int(time.time())
    old = now - 2 * 86_400
    mosquitto_pub(
        broker.port, topic, json.dumps({"ts": now - 5, "values": {"air_temperature": 15.0}})
    )
    wait_for(lambda: stored(settings, station) == 1, message="a live reading")
    first = {"ts": old, "values": {"air_temperature": 11.2, "relative_humidity": 60.0}}
    mosquitto_pub(broker.port, topic, json.dumps(first))
    wait_for(lambda: stored(settings, station) == 2, message="the 2-day-old reading")
    mosquitto_pub(broker.port, topic, json.dumps(first))  # identical: idempotent
    rewrite = {"ts": old, "values": {"air_temperature": 45.0, "relative_humidity": 60.0}}
    mosquitto_pub(broker.port, topic, json.dumps(rewrite))
    wait_for(lambda: record_count(settings) == 1, message="the conflict record")
    # Stored neighbours the ingester never saw in this process (written long ago).
    neighbours = old - 3_600
    write_lines(
        settings.influx_url,
        settings.influx_db,
        [
            f'readings,station={station} air_temperature=11.0,air_temperature_qc="good" '
            f"{(neighbours + dt) * 1_000_000_000}"
            for dt in (-60, 60)
        ],
    )
    mosquitto_pub(
        broker.port, topic, json.dumps({"ts": neighbours, "values": {"air_temperature": 45.0}})
    )
    wait_for(lambda: stored(settings, station) == 5, message="the back-dated reading")
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT air_temperature, air_temperature_qc, air_temperature_check, relative_humidity "
        f"FROM readings WHERE station = '{station}' AND time <= {old}s",
    )
    by_ts = {row["time"] // 1_000_000_000: row for row in rows}
    assert by_ts[old]["air_temperature"] == 11.2  # the first value is kept
    assert by_ts[old]["air_temperature_qc"] == "good"
    assert by_ts[old]["relative_humidity"] == 60.0
    assert by_ts[neighbours]["air_temperature"] == 45.0
    assert by_ts[neighbours]["air_temperature_qc"] == "suspect"
    assert by_ts[neighbours]["air_temperature_check"] == "step"
    [conflict] = records(settings)
    assert (conflict["reason"], conflict["parameter"], conflict["ts"]) == (
        "conflict",
        "air_temperature",
        old * 1_000_000_000,
    )
    assert ingester.metric("meltemi_ingest_quarantined_total", 'reason="conflict"') == 1


def test_session_takeover_is_counted_and_reaches_the_api_metrics(
    settings, broker, ingester_factory
):
    """A second client using the ingester's client id takes its session over (MQTT v5
    DISCONNECT 0x8E): counted as meltemi_ingest_session_takeovers_total, through ingest_stats
    into the API's /metrics."""
    ingester = ingester_factory(settings)
    thief = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=settings.mqtt_client_id, protocol=mqtt.MQTTv5
    )
    thief.connect("127.0.0.1", broker.port)
    thief.loop_start()
    try:
        wait_for(
            lambda: ingester.metric("meltemi_ingest_session_takeovers_total") >= 1,
            message="the takeover counted",
        )
    finally:
        thief.disconnect()
        thief.loop_stop()
    # The ingester reconnects by itself and takes its session back.
    wait_for(lambda: ingester.metric("meltemi_ingest_mqtt_connects_total") >= 2)
    takeovers = ingester.metric("meltemi_ingest_session_takeovers_total")

    def snapshot() -> dict[str, Any] | None:
        rows = influx_rows(
            settings.influx_url,
            settings.influx_db,
            "SELECT * FROM ingest_stats ORDER BY time DESC LIMIT 1",
        )
        return rows[0] if rows and rows[0]["session_takeovers"] == takeovers else None

    row = wait_for(snapshot, timeout_s=30, message="an ingest_stats snapshot")
    assert row is not None
    ingester_id = row.pop("ingester")
    text = ApiMetrics().render(IngestSnapshots({ingester_id: row}, up=True)).decode()
    assert (
        prometheus_value(
            text, "meltemi_ingest_session_takeovers_total", f'ingester="{ingester_id}"'
        )
        == takeovers
    )


def _raw_publish(port: int, topic: bytes, payload: bytes) -> bytes:
    """Send CONNECT and a QoS 0 PUBLISH as raw MQTT 3.1.1 bytes; return what the broker says."""

    def remaining(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n % 128, n // 128
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", 8) + b"rawtopic"
    connect = b"\x10" + remaining(len(variable)) + variable
    body = struct.pack(">H", len(topic)) + topic + payload
    publish = b"\x30" + remaining(len(body)) + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(connect)
        connack = sock.recv(4)
        sock.sendall(publish)
        sock.settimeout(2)
        try:
            rest = sock.recv(16)
        except TimeoutError:
            rest = b"<open>"
    return connack + b"|" + rest


def test_hostile_inputs_are_quarantined_with_a_reason_never_internal_error(
    settings, broker, ingester_factory
):
    """Finding: a 4,000-digit ts gave internal_error with a traceback per message. Hostile
    numbers and topics are quarantined with a reason; nothing is stored under a bad topic."""
    ingester = ingester_factory(settings)
    station = STATIONS[6]
    topic = f"stations/{station}/readings"
    hostile = {
        "4000-digit ts": (
            '{"ts": ' + "9" * 4000 + ', "values": {"air_temperature": 1}}',
            "ts_in_future",
        ),
        "negative 4000-digit ts": (
            '{"ts": -' + "9" * 4000 + ', "values": {"air_temperature": 1}}',
            "ts_too_old",
        ),
        "1e400 ts": ('{"ts": 1e400, "values": {"air_temperature": 1}}', "invalid_shape"),
        "huge int value": (
            json.dumps({"ts": int(time.time()), "values": {"air_temperature": 10**400}}),
            "non_finite",
        ),
        "deep nesting": (
            '{"ts": 1, "values": ' + "[" * 10_000 + "]" * 10_000 + "}",
            "invalid_json",
        ),
    }
    for body, _ in hostile.values():
        mosquitto_pub(broker.port, topic, body)
    for bad_topic in ("stations/a/b/readings", "stations/A!/readings"):
        mosquitto_pub(broker.port, bad_topic, json.dumps({"ts": 1, "values": {"x": 1}}))
    # A non-UTF-8 topic: the broker refuses it (MQTT-1.5.3-1) and closes the connection.
    answer = _raw_publish(broker.port, b"stations/\xff\xfe/readings", b"{}")
    assert answer.startswith(b"\x20\x02\x00\x00|"), answer
    assert answer.endswith(b"|"), answer  # closed by the broker, nothing published
    # stations/a/b/readings matches no subscription; stations/A!/readings does, and is refused.
    expected = sorted([reason for _, reason in hostile.values()] + ["invalid_topic"])
    wait_for(lambda: record_count(settings) == len(expected), message="hostile records")
    rows = records(settings)
    assert sorted(r["reason"] for r in rows) == expected
    assert {r["station"] for r in rows if r["reason"] == "invalid_topic"} == {"_unknown"}
    assert {r["station"] for r in rows if r["reason"] != "invalid_topic"} == {station}
    assert ingester.metric("meltemi_ingest_handler_errors_total") == 0
    assert ingester.metric("meltemi_ingest_quarantined_total", 'reason="internal_error"') == 0
    assert stored(settings, station) == 0
    assert "Traceback" not in ingester.process.log_text()


def test_a_redelivery_is_idempotent_in_the_quarantine(settings, tmp_path):
    """The broker redelivers (DUP) a message whose acknowledgement was lost: its quarantine
    records are not written twice. The same bytes delivered anew (no DUP) are a distinct
    delivery and get records of their own."""
    from ingest.delivery import Delivery, Handoff, judge_delivery
    from ingest.influx import InfluxWriter
    from ingest.metrics import IngestStats
    from ingest.spool import Spool
    from ingest.writer import Writer
    from sensors.validation import Limits

    registry = load_registry()
    influx = InfluxWriter(settings)
    influx.ensure_quarantine_rp(settings.quarantine_retention_days)
    deliveries = Handoff()
    acked: list[int] = []
    stats = IngestStats()
    spool = Spool(tmp_path / "spool")
    writer = Writer(
        deliveries=deliveries,
        influx=influx,
        spool=spool,
        registry=registry,
        stats=stats,
        ack=lambda acks: acked.extend(mid for mid, _qos in acks),
        publish=None,
        ingester_id="redelivery-test",
    )
    writer.start()
    try:
        topic = f"stations/{STATIONS[7]}/readings"
        payload = json.dumps(
            {"ts": int(time.time()), "values": {"air_temperature": 99.0, "pm10": -1.0}}
        ).encode()

        def deliver(mid: int, dup: bool) -> None:
            judged = judge_delivery(mid, 1, topic, payload, time.time_ns(), registry, Limits())
            deliveries.put(
                Delivery(
                    judged.mid,
                    judged.qos,
                    judged.topic,
                    judged.payload,
                    judged.received_ns,
                    judged.station_id,
                    judged.verdict,
                    dup=dup,
                )
            )
            wait_for(lambda: mid in acked, message=f"mid {mid} acknowledged")

        deliver(1, dup=False)
        assert record_count(settings) == 2  # two values refused
        deliver(1, dup=True)  # the redelivery
        assert record_count(settings) == 2
        assert stats.redeliveries_quarantined_before == 1
        deliver(2, dup=False)  # the same bytes sent again: a distinct delivery
        assert record_count(settings) == 4
        assert stats.quarantined["out_of_range"] == 4
    finally:
        writer.stop()
        writer.join(10)
        spool.close()
        influx.close()


def test_quarantine_policy_is_set_up_when_influxdb_comes_back(
    broker, fresh_influx, tmp_path, ingester_factory
):
    """InfluxDB down when the ingester starts: a refused message is spooled, and once InfluxDB
    answers the retention policy is created before the spool drains into it."""
    fresh_influx.stop()
    settings = Settings(
        mqtt_port=broker.port,
        influx_url=fresh_influx.url,
        influx_db="late",
        influx_timeout_s=2.0,
        data_dir=tmp_path / "var",
        mqtt_client_id="ingest-late-" + str(time.time_ns())[-6:],
        mqtt_session_expiry_s=600,
    )
    ingester = ingester_factory(settings)
    mosquitto_pub(broker.port, f"stations/{STATIONS[8]}/readings", "not json at all")
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") >= 1, message="spooled")
    fresh_influx.start_and_wait()

    def recorded() -> bool:
        try:
            return record_count(settings) == 1
        except AssertionError:  # the database or the policy does not exist yet
            return False

    wait_for(recorded, timeout_s=30, message="the record in its retention policy")
    assert "created quarantine retention policy" in ingester.process.log_text()
