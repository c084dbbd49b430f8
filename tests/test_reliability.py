"""RELIABILITY.md scenarios R1–R8, R10 and R11 (issue 4), against real processes.

Faults are injected by PID: SIGKILL for a crash, SIGSTOP/SIGCONT for a hang. Each test asserts
exact counts. Sizes follow RELIABILITY (c): 20k readings; hang durations are shortened (with the
InfluxDB timeout shortened to match) so the suite stays within its time budget; bench/durability.py
runs R1 and R3 at 100k.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from ingest.spool import Spool
from meltemi.services import InfluxDB, Mosquitto
from sensors.registry import load_registry
from sensors.settings import Settings
from tests.conftest import IngesterProcess
from tests.helpers import (
    influx_count,
    influx_query,
    influx_rows,
    publish_all,
    reading_messages,
    wait_for,
)

STATIONS = load_registry().ids[:12]
N = 20_004  # 12 stations x 1,667 readings: "20k" split evenly


def make_settings(broker: Mosquitto, influx: InfluxDB, tmp_path: Path, **extra) -> Settings:
    db = "r_" + uuid.uuid4().hex[:10]
    influx.create_database(db)
    return Settings(
        mqtt_port=broker.port,
        influx_url=influx.url,
        influx_db=db,
        data_dir=tmp_path / "var",
        mqtt_client_id="ingest-" + uuid.uuid4().hex[:6],
        mqtt_session_expiry_s=600,
        **extra,
    )


def stored(settings: Settings) -> int:
    return influx_count(
        settings.influx_url, settings.influx_db, 'SELECT count("air_temperature") FROM readings'
    )


def assert_each_reading_once(settings: Settings, per_station: int, stations=STATIONS) -> None:
    """Per station: as many points as readings sent, and as many distinct seq values."""
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT count("seq") AS n, count(distinct("seq")) AS d FROM readings GROUP BY "station"',
    )
    assert sorted((r["station"], r["n"], r["d"]) for r in rows) == [
        (s, per_station, per_station) for s in sorted(stations)
    ]


def quarantined(settings: Settings) -> dict[str, int]:
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        'SELECT count("detail") FROM "quarantine"."quarantine" GROUP BY "reason"',
    )
    return {row["reason"]: row["count"] for row in rows}


def broker_dropped(broker: Mosquitto) -> int:
    out = subprocess.run(
        [
            "mosquitto_sub",
            "-p",
            str(broker.port),
            "-t",
            "$SYS/broker/publish/messages/dropped",
            "-C",
            "1",
            "-W",
            "20",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    return int(out)


class Stream:
    """N readings from 12 stations (one per message, unique ts and seq), published at QoS 1
    in a background thread while a test injects its fault."""

    def __init__(self, port: int, **publish_kwargs: Any) -> None:
        self.messages = reading_messages(STATIONS, per_station=N // 12, end_s=int(time.time()))
        self.acked: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.acked.append(publish_all(port, self.messages, **publish_kwargs))
        )
        self.thread.start()

    def finish(
        self, settings: Settings, *ingesters: IngesterProcess, timeout_s: float = 120
    ) -> None:
        """Wait for the publisher and the ingesters; assert every reading is stored once."""
        self.thread.join(timeout_s)
        assert self.acked == [N]
        wait_for(lambda: stored(settings) >= N, timeout_s=timeout_s)
        for ingester in ingesters:  # anything still in flight would show up as an extra point
            ingester.wait_idle()
        assert stored(settings) == N
        assert_each_reading_once(settings, N // 12)


@pytest.fixture
def rbroker(fresh_broker):
    return fresh_broker


@pytest.mark.timeout(300)
def test_r1_ingester_crash_loop(rbroker, influx, tmp_path, ingester_factory):
    settings = make_settings(rbroker, influx, tmp_path)
    ingester = ingester_factory(settings)
    stream = Stream(rbroker.port, rate_per_s=3000)
    rng = random.Random(1)
    for fraction in sorted(rng.uniform(0.05, 0.9) for _ in range(5)):
        target = fraction * N
        wait_for(lambda: stored(settings) >= target, timeout_s=90)  # noqa: B023
        time.sleep(rng.uniform(0, 0.3))
        ingester.kill()
        ingester.start()
    stream.finish(settings, ingester, timeout_s=90)
    assert quarantined(settings) == {}
    assert broker_dropped(rbroker) == 0
    assert ingester.sessions_present() == [False] + [True] * 5


@pytest.mark.timeout(180)
def test_r2_readings_arrive_while_the_ingester_is_down(rbroker, influx, tmp_path, ingester_factory):
    settings = make_settings(rbroker, influx, tmp_path)
    ingester = ingester_factory(settings)
    assert ingester.stop() == 0
    messages = reading_messages(STATIONS[:10], per_station=500, end_s=int(time.time()))
    assert publish_all(rbroker.port, messages) == 5000
    ingester.start()
    wait_for(lambda: stored(settings) >= 5000, timeout_s=60)
    ingester.wait_idle()
    assert stored(settings) == 5000
    assert_each_reading_once(settings, 500, STATIONS[:10])
    assert broker_dropped(rbroker) == 0
    assert ingester.sessions_present() == [False, True]


@pytest.mark.timeout(240)
def test_r3_influxdb_hangs(broker, fresh_influx, tmp_path, ingester_factory):
    settings = make_settings(broker, fresh_influx, tmp_path, influx_timeout_s=2.0)
    ingester = ingester_factory(settings)
    stream = Stream(broker.port, rate_per_s=2000)
    wait_for(lambda: stored(settings) >= 0.2 * N, timeout_s=60)
    fresh_influx.signal(signal.SIGSTOP)
    try:
        depth = wait_for(
            lambda: ingester.metric("meltemi_ingest_spool_depth") > 1000,
            timeout_s=30,
            message="readings spooled during the hang",
        )
        assert depth
        time.sleep(4)
    finally:
        fresh_influx.signal(signal.SIGCONT)
    stream.finish(settings, ingester, timeout_s=90)
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") == 0, timeout_s=30)
    assert ingester.metric("meltemi_ingest_spooled_lines_total") > 1000
    assert ingester.metric("meltemi_ingest_mqtt_disconnects_total") == 0


@pytest.mark.timeout(240)
def test_r4_influxdb_down_and_ingester_killed_with_a_full_spool(
    broker, fresh_influx, tmp_path, ingester_factory
):
    settings = make_settings(broker, fresh_influx, tmp_path, influx_timeout_s=2.0)
    ingester = ingester_factory(settings)
    stream = Stream(broker.port, rate_per_s=2500)
    wait_for(lambda: stored(settings) >= 0.15 * N, timeout_s=60)
    fresh_influx.signal(signal.SIGKILL)
    fresh_influx.wait(10)
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") > 2000, timeout_s=30)
    ingester.kill()  # with a non-empty spool
    ingester.start()
    time.sleep(3)  # still down: the restarted ingester keeps spooling
    fresh_influx.start_and_wait()
    stream.finish(settings, ingester, timeout_s=120)
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") == 0, timeout_s=30)


@pytest.mark.timeout(120)
def test_r4_torn_spool_record_is_skipped_and_earlier_ones_kept(
    broker, fresh_influx, tmp_path, ingester_factory
):
    settings = make_settings(broker, fresh_influx, tmp_path, influx_timeout_s=1.0)
    fresh_influx.signal(signal.SIGKILL)
    fresh_influx.wait(10)
    ingester = ingester_factory(settings)
    now = int(time.time())
    for part in range(3):  # three separate batches, three spool records
        readings = [
            {
                "ts": now - 300 + part * 10 + k,
                "seq": part * 10 + k,
                "values": {"air_temperature": 20.0},
            }
            for k in range(10)
        ]
        publish_all(broker.port, [("stations/elefsina-01/readings", json.dumps(readings).encode())])
        wait_for(lambda: ingester.metric("meltemi_ingest_acked_total") == part + 1)  # noqa: B023
    ingester.kill()
    spool_dir = settings.data_dir / "spool" / settings.mqtt_client_id
    with Spool(spool_dir) as spool:
        assert spool.depth_records >= 3
        records = spool.depth_records
    [segment] = spool_dir.glob("seg-*.log")
    segment.write_bytes(segment.read_bytes()[:-7])  # the last record torn mid-write
    fresh_influx.start_and_wait()
    fresh_influx.create_database(settings.influx_db)
    ingester.start()
    wait_for(lambda: stored(settings) >= 20, timeout_s=30)
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") == 0, timeout_s=30)
    assert stored(settings) == 20  # the two intact batches; the torn one (10 readings) skipped
    assert ingester.metric("meltemi_ingest_spool_torn_records_total") == 1
    assert records - 1 >= 2


@pytest.mark.timeout(180)
def test_r5a_broker_restarted_gracefully_loses_nothing(rbroker, influx, tmp_path, ingester_factory):
    settings = make_settings(rbroker, influx, tmp_path)
    ingester = ingester_factory(settings)
    stream = Stream(
        rbroker.port,
        rate_per_s=2500,
        durable=True,
        client_id="r5a-station",
        timeout_s=120,
    )
    wait_for(lambda: stored(settings) >= 0.4 * N, timeout_s=60)
    rbroker.stop()
    rbroker.start_and_wait()
    stream.finish(settings, ingester, timeout_s=90)
    assert ingester.sessions_present()[-1] is True


@pytest.mark.timeout(180)
def test_r5b_broker_sigkill_losses_are_bounded_and_counted_as_seq_gaps(
    rbroker, influx, tmp_path, ingester_factory
):
    settings = make_settings(rbroker, influx, tmp_path)
    ingester = ingester_factory(settings)
    rate = 2000
    stream = Stream(
        rbroker.port,
        rate_per_s=rate,
        durable=True,
        client_id="r5b-station",
        timeout_s=120,
    )
    wait_for(lambda: stored(settings) >= 0.4 * N, timeout_s=60)
    rbroker.signal(signal.SIGKILL)
    rbroker.wait(10)
    rbroker.start_and_wait()
    stream.thread.join(150)
    wait_for(
        lambda: ingester.metric("meltemi_ingest_messages_received_total") > 0.9 * N, timeout_s=90
    )
    time.sleep(3)
    lost = N - stored(settings)
    # autosave_interval 1: at most the readings acknowledged in the last second (+1 s) are lost
    assert 0 <= lost <= 2 * rate
    # and every one of them is visible as a seq gap (counted, never silent)
    assert ingester.metric("meltemi_ingest_seq_missing") == lost


@pytest.mark.timeout(240)
def test_r6_replays_are_idempotent_values_and_qc_flags_identical(
    broker, influx, tmp_path, ingester_factory
):
    settings = make_settings(broker, influx, tmp_path)
    ingester = ingester_factory(settings)
    now = int(time.time())
    messages = []
    for k in range(834):
        for index, station in enumerate(STATIONS):
            temperature = 15 + index + (6.0 if k % 97 == 0 else 0.01 * k)  # spikes: step checks
            if 300 <= k < 800 and index % 3 == 0:
                temperature = 21.0  # a flat line long enough for the persistence check
            body = {
                "ts": now - (834 - k) * 10,
                "seq": k,
                "values": {"air_temperature": temperature, "relative_humidity": 55.0 + k % 5},
            }
            messages.append((f"stations/{station}/readings", json.dumps(body).encode()))
    assert publish_all(broker.port, messages) == len(messages)
    wait_for(lambda: stored(settings) >= len(messages), timeout_s=90)
    query = 'SELECT * FROM readings GROUP BY "station"'
    first = influx_rows(settings.influx_url, settings.influx_db, query)
    series_before = influx_query(
        settings.influx_url, settings.influx_db, "SHOW SERIES FROM readings"
    )

    suspects = sum(1 for r in first if r["air_temperature_qc"] == "suspect")
    assert suspects > 100
    assert ingester.stop() == 0  # the restart forgets the in-memory QC state
    ingester.start()
    assert publish_all(broker.port, messages) == len(messages)
    wait_for(lambda: ingester.metric("meltemi_ingest_acked_total") >= len(messages), timeout_s=90)
    replay = influx_rows(settings.influx_url, settings.influx_db, query)
    assert len(replay) == len(messages) == 10_008
    assert replay == first
    series_after = influx_query(
        settings.influx_url, settings.influx_db, "SHOW SERIES FROM readings"
    )
    assert series_after == series_before
    assert len(series_after[0]["values"]) == 12  # QC is a field: no series per flag


def _bad_messages(now: int) -> tuple[list[tuple[str, bytes]], dict[str, int], int]:
    good = {"air_temperature": 20.0}
    kinds: list[tuple[str, str, object]] = [
        ("invalid_json", "elefsina-01", lambda k: b'{"ts": 1, "values": ' + str(k).encode()),
        ("invalid_shape", "elefsina-01", lambda k: json.dumps({"ts": now, "value": k}).encode()),
        ("too_large", "elefsina-01", lambda k: b" " * (256 * 1024 + 1 + k)),
        (
            "non_finite",
            "elefsina-01",
            lambda k: f'{{"ts": {now - 3000 - k}, "values": {{"air_temperature": NaN}}}}'.encode(),
        ),
        (
            "unknown_station",
            "nowhere-01",
            lambda k: json.dumps({"ts": now - k, "values": good}).encode(),
        ),
        (
            "unknown_parameter",
            "elefsina-01",
            lambda k: json.dumps({"ts": now - 4000 - k, "values": {"ozone": 1.0}}).encode(),
        ),
        (
            "out_of_range",
            "elefsina-01",
            lambda k: json.dumps(
                {"ts": now - 5000 - k, "values": {"air_temperature": 99}}
            ).encode(),
        ),
        (
            "ts_in_future",
            "elefsina-01",
            lambda k: json.dumps({"ts": now + 3600 + k, "values": good}).encode(),
        ),
        (
            "ts_too_old",
            "elefsina-01",
            lambda k: json.dumps({"ts": now - 40 * 86400 - k, "values": good}).encode(),
        ),
        (
            "too_many_readings",
            "elefsina-01",
            lambda k: json.dumps([{"ts": now - k, "values": good}] * 501).encode(),
        ),
    ]
    messages = []
    expected: dict[str, int] = {}
    for reason, station, make in kinds:
        count = 20 if reason not in ("too_large", "too_many_readings") else 10
        for k in range(count):
            messages.append((f"stations/{station}/readings", make(k)))  # type: ignore[operator]
        expected[reason] = count
    for k in range(20):  # one bad value among good ones: the good ones are stored
        body = {"ts": now - 6000 - k, "values": {"air_temperature": 19.0, "relative_humidity": 101}}
        messages.append(("stations/elefsina-01/readings", json.dumps(body).encode()))
    expected["out_of_range"] += 20
    return messages, expected, 20


@pytest.mark.timeout(240)
def test_r7_poison_messages_do_not_stall(broker, influx, tmp_path, ingester_factory):
    settings = make_settings(broker, influx, tmp_path)
    ingester = ingester_factory(settings)
    now = int(time.time())
    valid = reading_messages(STATIONS, per_station=N // 12, end_s=now - 60)
    bad, expected, mixed_stored = _bad_messages(now)
    assert len(bad) == 200
    rng = random.Random(7)
    messages = valid + bad
    rng.shuffle(messages)
    assert publish_all(broker.port, messages) == len(messages)
    wait_for(lambda: ingester.metric("meltemi_ingest_acked_total") >= len(messages), timeout_s=120)
    assert stored(settings) == N + mixed_stored
    assert quarantined(settings) == expected
    for reason, count in expected.items():
        assert ingester.metric("meltemi_ingest_quarantined_total", f'reason="{reason}"') == count
    assert ingester.metric("meltemi_ingest_in_flight") == 0
    assert ingester.metric("meltemi_ingest_handler_errors_total") == 0


@pytest.mark.timeout(120)
def test_r8_partial_write_rejection_quarantines_exactly_the_refused_line(
    rbroker, influx, tmp_path, ingester_factory
):
    settings = make_settings(rbroker, influx, tmp_path, ingest_linger_s=1.0)
    now = int(time.time())
    # uv_index already exists as a string field in the shard of reading 637 (same instant, so
    # the same 7-day shard whatever the date): the float in that reading is refused.
    response = influx_query(settings.influx_url, settings.influx_db, "SHOW MEASUREMENTS")
    assert response == []
    import httpx

    httpx.post(
        f"{settings.influx_url}/write",
        params={"db": settings.influx_db, "precision": "s"},
        content=f'readings,station=mandra-01 uv_index="sensor text" {now - 1000 + 637}',
    )
    ingester = ingester_factory(settings)
    ingester.stop()
    readings: list[dict[str, Any]] = [
        {"ts": now - 1000 + k, "seq": k, "values": {"air_temperature": 20.0 + k % 3}}
        for k in range(1000)
    ]
    readings[637]["values"]["uv_index"] = 3.0
    messages = [
        ("stations/elefsina-01/readings", json.dumps(readings[:500]).encode()),
        ("stations/elefsina-01/readings", json.dumps(readings[500:]).encode()),
    ]
    assert publish_all(rbroker.port, messages) == 2
    ingester.start()
    wait_for(lambda: quarantined(settings).get("write_rejected") == 1, timeout_s=30)
    assert (
        influx_count(
            settings.influx_url,
            settings.influx_db,
            'SELECT count("air_temperature") FROM readings WHERE "station" = \'elefsina-01\'',
        )
        == 999
    )
    [record] = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT * FROM quarantine.quarantine WHERE reason = 'write_rejected'",
    )
    assert "field type conflict" in record["detail"]
    assert "uv_index=3.0" in record["raw"]
    assert record["station"] == "elefsina-01"
    log = ingester.process.log_text()
    [line] = [x for x in log.splitlines() if "InfluxDB refused" in x]
    attempts = int(line.split("(")[1].split()[0])
    assert "refused 1 of 1000 lines" in line
    assert attempts <= 1 + 10  # 1 + ceil(log2 1000)


@pytest.mark.timeout(240)
def test_r10_broker_partition_and_kill(rbroker, influx, tmp_path, ingester_factory):
    settings = make_settings(rbroker, influx, tmp_path)
    ingester = ingester_factory(settings)
    stream = Stream(
        rbroker.port,
        rate_per_s=2000,
        durable=True,
        client_id="r10-station",
        timeout_s=180,
    )
    wait_for(lambda: stored(settings) >= 0.3 * N, timeout_s=60)
    rbroker.signal(signal.SIGSTOP)  # a partition with the TCP connections still open
    time.sleep(15)
    rbroker.signal(signal.SIGCONT)
    wait_for(lambda: stored(settings) >= 0.6 * N, timeout_s=60)
    rbroker.stop()  # and a restart (graceful: the snapshot is complete)
    rbroker.start_and_wait()
    stream.finish(settings, ingester, timeout_s=120)
    assert ingester.metric("meltemi_ingest_seq_missing") == 0
    assert all(ingester.sessions_present()[1:])


@pytest.mark.timeout(240)
def test_r11_shared_subscription_scale_out(rbroker, influx, tmp_path, ingester_factory):
    base = make_settings(rbroker, influx, tmp_path, ingest_shared_group="meltemi")
    first = ingester_factory(base.model_copy(update={"mqtt_client_id": "ingest-a"}), "ingest-a")
    second = ingester_factory(
        base.model_copy(update={"mqtt_client_id": "ingest-b", "data_dir": tmp_path / "var-b"}),
        "ingest-b",
    )
    stream = Stream(rbroker.port, rate_per_s=2500)
    wait_for(lambda: stored(base) >= 0.3 * N, timeout_s=60)
    second.kill()
    time.sleep(8)
    second.start()
    stream.finish(base, first, second, timeout_s=120)
    assert first.stop() == 0  # a clean stop writes each ingester's last ingest_stats
    assert second.stop() == 0
    per_ingester = influx_rows(
        base.influx_url,
        base.influx_db,
        'SELECT max("messages_received") FROM ingest_stats GROUP BY "ingester"',
    )
    processed = {row["ingester"]: row["max"] for row in per_ingester}
    assert set(processed) == {"ingest-a", "ingest-b"}
    assert all(count > 0 for count in processed.values())
    assert first.sessions_present() == [False]


@pytest.mark.timeout(180)
def test_r3_hang_from_the_start_waits_on_influxdb_at_most_once(
    broker, fresh_influx, tmp_path, ingester_factory
):
    """With InfluxDB hung before any data, 30 stations never seen before: the first request
    times out, and from then on the ingester spools without asking InfluxDB again (a prober
    thread watches /ping), instead of waiting out a timeout per station's QC recovery."""
    from tests.helpers import write_registry

    ids = [f"hang-{k:02d}" for k in range(30)]
    registry = write_registry(tmp_path / "stations.toml", ids)
    settings = make_settings(broker, fresh_influx, tmp_path, influx_timeout_s=1.0)
    settings = settings.model_copy(update={"stations_file": registry})
    ingester = ingester_factory(settings)
    fresh_influx.signal(signal.SIGSTOP)
    try:
        messages = reading_messages(ids, per_station=20, end_s=int(time.time()))
        assert publish_all(broker.port, messages) == 600
        wait_for(lambda: ingester.metric("meltemi_ingest_acked_total") == 600, timeout_s=60)
        log = ingester.process.log_text()
        assert (
            log.count("not recovered") + ingester.metric("meltemi_ingest_write_attempts_total") <= 2
        )
        assert log.count("spooling until /ping answers") == 1
        assert ingester.metric("meltemi_ingest_spool_depth") >= 600
    finally:
        fresh_influx.signal(signal.SIGCONT)
    wait_for(lambda: stored(settings) == 600, timeout_s=60)
    wait_for(lambda: ingester.metric("meltemi_ingest_spool_depth") == 0, timeout_s=30)
    assert_each_reading_once(settings, 20, ids)
