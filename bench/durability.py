"""Durability at 100k readings (issue 4): R1 (crash loop) and R3 (InfluxDB hang), QC cost.

Prints, last: readings lost and duplicates for R1 and R3, the median recovery time after an
ingester SIGKILL (5 kills), the time to drain a spool of N readings after a hang, and ingest
throughput with QC on and off in the same run (the cost of QC as a ratio).
Usage: python bench/durability.py [N]
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure, median, services, write_registry
from bench._common import ingester as bench_ingester
from bench.ingest import count, make_readings, publish_in_process, run_ingester
from meltemi.services import InfluxDB, ManagedProcess, free_port
from sensors.topics import readings_topic


def start_ingester(
    broker_port: int, influx: InfluxDB, db: str, registry: Path, base: Path, **extra: str
) -> tuple[ManagedProcess, int]:
    metrics_port = free_port()
    process = bench_ingester(
        "ingester",
        base,
        mqtt_port=broker_port,
        influx_url=influx.url,
        db=db,
        registry=registry,
        data_dir=base / f"var-{db}",
        client_id=f"dur-{db}",
        MELTEMI_INGEST_METRICS_PORT=str(metrics_port),
        **extra,
    )
    return process, metrics_port


def wait_subscribed(process: ManagedProcess, before: int) -> None:
    process.wait_until(lambda: process.log_text().count("subscribed to ") > before, 60)


def distinct_check(influx: InfluxDB, db: str) -> tuple[int, int]:
    """Return (points, distinct (station, seq)) over all stations."""
    q = 'SELECT count("seq") AS n, count(distinct("seq")) AS d FROM readings GROUP BY "station"'
    response = httpx.post(f"{influx.url}/query", params={"db": db}, data={"q": q}, timeout=120)
    points = distinct = 0
    for serie in response.json()["results"][0].get("series", []):
        points += serie["values"][0][1]
        distinct += serie["values"][0][2]
    return points, distinct


def gauge(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def r1_crash_loop(
    broker_port: int,
    influx: InfluxDB,
    registry: Path,
    base: Path,
    messages: list[tuple[str, bytes]],
) -> tuple[int, int, list[float]]:
    db = "r1"
    influx.create_database(db)
    ingester, _ = start_ingester(broker_port, influx, db, registry, base)
    ingester.start()
    wait_subscribed(ingester, 0)
    n = len(messages)
    publisher, _ = publish_in_process(broker_port, messages, rate=3000)
    recoveries = []
    for k in range(5):
        target = (k + 1) * n // 7
        while count(influx, db) < target:
            time.sleep(0.05)
        before = ingester.log_text().count("subscribed to ")
        killed_at_stored = count(influx, db)
        ingester.signal(signal.SIGKILL)
        ingester.wait(10)
        killed = time.time()
        ingester.start()
        wait_subscribed(ingester, before)
        # recovered: storing again past what was stored at the kill
        while count(influx, db) <= killed_at_stored and killed_at_stored < n:
            time.sleep(0.02)
        recoveries.append(time.time() - killed)
    publisher.join(600)
    deadline = time.time() + 600
    while count(influx, db) < n and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    points, distinct = distinct_check(influx, db)
    ingester.stop()
    return n - distinct, points - distinct, recoveries


def r3_hang(
    broker_port: int,
    influx: InfluxDB,
    registry: Path,
    base: Path,
    messages: list[tuple[str, bytes]],
) -> tuple[int, int, float]:
    db = "r3"
    influx.create_database(db)
    ingester, metrics_port = start_ingester(
        broker_port, influx, db, registry, base, MELTEMI_INFLUX_TIMEOUT_S="2"
    )
    ingester.start()
    wait_subscribed(ingester, 0)
    n = len(messages)
    influx.signal(signal.SIGSTOP)
    publisher, _ = publish_in_process(broker_port, messages)
    publisher.join(600)
    deadline = time.time() + 600
    while gauge(metrics_port, "meltemi_ingest_acked_total") < n and time.time() < deadline:
        time.sleep(0.2)
    spooled = gauge(metrics_port, "meltemi_ingest_spool_depth")
    influx.signal(signal.SIGCONT)
    resumed = time.time()
    while gauge(metrics_port, "meltemi_ingest_spool_depth") > 0 and time.time() < deadline:
        time.sleep(0.05)
    drain_s = time.time() - resumed
    print(
        f"R3: {spooled:.0f} lines spooled during the hang, drained in {drain_s:.1f} s",
        file=sys.stderr,
    )
    time.sleep(1)
    points, distinct = distinct_check(influx, db)
    ingester.stop()
    return n - distinct, points - distinct, drain_s


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with services() as (broker, influx, base):
        registry = base / "stations.toml"
        ids = write_registry(registry, 100)
        readings = make_readings(ids, n, int(time.time()) - 120)
        messages = [
            (readings_topic(s), json.dumps({"ts": ts, "seq": seq, "values": v}).encode())
            for s, ts, seq, v in readings
        ]
        r1_lost, r1_dup, recoveries = r1_crash_loop(broker.port, influx, registry, base, messages)
        r3_lost, r3_dup, drain_s = r3_hang(broker.port, influx, registry, base, messages)
        qc_on, qc_off = [], []
        for run in range(3):
            qc_on.append(
                run_ingester(broker.port, influx, registry, base, 100 + run, messages, qc=True)[0]
            )
            qc_off.append(
                run_ingester(broker.port, influx, registry, base, 200 + run, messages, qc=False)[0]
            )
        figure("readings", len(messages), "readings")
        figure("r1_readings_lost", r1_lost, "readings")
        figure("r1_duplicates", r1_dup, "readings")
        figure("r1_recovery_after_kill_median", median(recoveries), "s")
        figure("r3_readings_lost", r3_lost, "readings")
        figure("r3_duplicates", r3_dup, "readings")
        figure("r3_spool_drain_time", drain_s, "s")
        figure("ingest_qc_on_median", median(qc_on), "readings/s")
        figure("ingest_qc_off_median", median(qc_off), "readings/s")
        figure("qc_cost", 1 - median(qc_on) / median(qc_off), "ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
