"""Ingest throughput end to end, next to two ceilings measured in the same run (issue 2).

- ingester: N readings (10 values each, one per message) published at QoS 1 from a separate
  process as fast as the broker takes them; time from the first publish until InfluxDB holds
  all N (a count query), through ``meltemi ingest`` with QC and manual acknowledgement on.
- ceiling "influx": the same readings as line protocol written straight to /write in batches.
- ceiling "broker": the same messages through the broker to a bare paho subscriber that does
  nothing (QoS 1, automatic acknowledgement).
Each is run RUNS times; medians are printed, with the ratio of the ingester to the lower
ceiling. Usage: python bench/ingest.py [N] [RUNS]
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ALL_PARAMETERS, figure, median, services, write_registry
from bench._common import ingester as bench_ingester
from ingest.points import reading_line
from meltemi.services import InfluxDB
from sensors.qc import GOOD
from sensors.topics import StationId, readings_topic
from sensors.validation import AcceptedReading

# Ten values per reading: every parameter but UV and PM1.
PARAMS = [p for p in ALL_PARAMETERS if p not in ("uv_index", "pm1")]
STATIONS = 100
UNACKED_MAX = 10_000
STALL_S = 15.0  # no new point for this long: the rest was lost (reported, not waited for)


def make_readings(
    ids: list[str], n: int, end_s: int
) -> list[tuple[str, int, int, dict[str, float]]]:
    """Return n readings (station, ts, seq, values), interleaved across stations."""
    out = []
    per_station = n // len(ids)
    for k in range(per_station):
        for index, station in enumerate(ids):
            values = {p: round(10.0 + (index + k * 0.01 + j) % 40, 2) for j, p in enumerate(PARAMS)}
            values["relative_humidity"] = 40.0 + k % 50
            values["air_pressure"] = 1000.0 + (k % 20) / 10
            values["wind_gust"] = values["wind_speed"] + 1.0
            values["precipitation"] = 0.0
            out.append((station, end_s - per_station + k, k, values))
    return out


def _publisher(port: int, messages: list[tuple[str, bytes]], started: Any, rate: float) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started.value = time.time()
    infos = []
    for index, (topic, payload) in enumerate(messages):
        infos.append(client.publish(topic, payload, qos=1))
        if index >= UNACKED_MAX:  # paho's 16-bit message ids: keep fewer than 65,535 pending
            infos[index - UNACKED_MAX].wait_for_publish(120)

        if rate:
            ahead = started.value + (index + 1) / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def publish_in_process(
    port: int, messages: list[tuple[str, bytes]], rate: float = 0.0
) -> tuple[mp.Process, Any]:
    """Publish from a separate process (as fast as the broker takes them, or at ``rate``/s)."""
    started = mp.Value("d", 0.0)
    process = mp.Process(target=_publisher, args=(port, messages, started, rate))
    process.start()
    return process, started


def count(influx: InfluxDB, db: str) -> int:
    response = httpx.post(
        f"{influx.url}/query",
        params={"db": db},
        data={"q": 'SELECT count("air_temperature") FROM readings'},
        timeout=30,
    )
    series = response.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def run_ingester(
    broker_port: int,
    influx: InfluxDB,
    registry: Path,
    base: Path,
    run: int,
    messages: list[tuple[str, bytes]],
    qc: bool = True,
) -> tuple[float, int]:
    db = f"ingest_{run}_{int(qc)}"
    influx.create_database(db)
    ingester = bench_ingester(
        "ingester",
        base,
        mqtt_port=broker_port,
        influx_url=influx.url,
        db=db,
        registry=registry,
        data_dir=base / f"var{run}",
        client_id=f"bench-{db}",
        MELTEMI_INGEST_QC=str(qc).lower(),
    )
    ingester.start()
    ingester.wait_until(lambda: "subscribed to " in ingester.log_text())
    publisher, started = publish_in_process(broker_port, messages)
    deadline = time.time() + 600
    n = len(messages)
    stored = 0
    finished = progressed = time.time()
    while time.time() < deadline and time.time() - progressed < STALL_S:
        now_stored = count(influx, db)
        if now_stored > stored:
            stored, finished = now_stored, time.time()
            progressed = finished
        if stored >= n:
            break
        time.sleep(0.2)

    publisher.join(60)
    ingester.stop()
    return n / (finished - started.value), stored


def run_bare_subscriber(broker_port: int, messages: list[tuple[str, bytes]], run: int) -> float:
    received = 0
    first = last = 0.0
    done = threading.Event()
    n = len(messages)

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        received += 1
        if received == 1:
            first = time.time()
        if received == n:
            last = time.time()
            done.set()

    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{run}", protocol=mqtt.MQTTv5
    )
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker_port)
    sub.subscribe("stations/+/readings", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    publisher, started = publish_in_process(broker_port, messages)
    done.wait(600)
    publisher.join(60)
    sub.disconnect()
    sub.loop_stop()
    return n / (last - started.value) if last else 0.0


def run_direct_write(influx: InfluxDB, lines: list[str], run: int, batch: int = 5000) -> float:
    db = f"direct_{run}"
    influx.create_database(db)
    with httpx.Client(timeout=120) as client:
        started = time.time()
        for k in range(0, len(lines), batch):
            response = client.post(
                f"{influx.url}/write",
                params={"db": db, "precision": "ns"},
                content="\n".join(lines[k : k + batch]).encode(),
            )
            assert response.status_code == 204, response.text
        elapsed = time.time() - started
    assert count(influx, db) == len(lines)
    return len(lines) / elapsed


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with services() as (broker, influx, base):
        registry = base / "stations.toml"
        ids = write_registry(registry, STATIONS)
        readings = make_readings(ids, n, int(time.time()) - 60)
        messages = [
            (readings_topic(s), json.dumps({"ts": ts, "seq": seq, "values": v}).encode())
            for s, ts, seq, v in readings
        ]
        lines = [
            reading_line(AcceptedReading(StationId(s), ts * 10**9, seq, v), dict.fromkeys(v, GOOD))
            for s, ts, seq, v in readings
        ]
        ingest, bare, direct, lost = [], [], [], []
        for run in range(runs):
            direct.append(run_direct_write(influx, lines, run))
            bare.append(run_bare_subscriber(broker.port, messages, run))
            rate, stored = run_ingester(broker.port, influx, registry, base, run, messages)
            ingest.append(rate)
            lost.append(len(messages) - stored)
            print(
                f"run {run + 1}/{runs}: ingester {rate:.0f}/s (stored {stored}/{len(messages)}),"
                f" bare subscriber {bare[-1]:.0f}/s, direct /write {direct[-1]:.0f}/s",
                file=sys.stderr,
                flush=True,
            )
        lower = min(median(bare), median(direct))
        figure("readings", len(messages), "readings")
        figure("ingest_stored_per_s_median", median(ingest), "readings/s")
        figure("ceiling_influx_write_per_s_median", median(direct), "readings/s")
        figure("ceiling_bare_subscriber_per_s_median", median(bare), "readings/s")
        figure("ingest_to_lower_ceiling_ratio", median(ingest) / lower, "ratio")
        figure("readings_lost_max", max(lost), "readings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
