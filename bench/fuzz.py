"""S6 at scale: N hostile messages (default 100k) through broker, ``meltemi ingest`` and InfluxDB.

The messages come from ``tests.helpers.hostile_messages`` (random JSON, deep nesting, 1e400,
NaN/±Infinity, duplicate keys, lone surrogates, NUL, CR/LF, quoting characters, non-UTF-8
bytes, huge numbers). The pure judge predicts what must be stored and quarantined; the bench
waits until InfluxDB holds exactly that and reports any difference, the ingester's handler
errors and whether it restarted. Baseline in the same run: as many valid single readings
through a fresh ingester. Usage: python bench/fuzz.py [N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure, services, write_registry
from bench._common import ingester as bench_ingester
from bench.ingest import publish_in_process
from ingest.delivery import judge_delivery
from meltemi.services import InfluxDB, free_port
from sensors.registry import load_registry
from sensors.validation import MAX_REFUSALS_PER_MESSAGE, Limits
from tests.helpers import hostile_messages, prometheus_value, reading_messages

STATIONS = 100
STALL_S = 20.0


def count(influx: InfluxDB, db: str, q: str) -> int:
    """Return the number of a count query (0 when empty)."""
    response = httpx.get(f"{influx.url}/query", params={"db": db, "q": q}, timeout=60)
    series = response.json()["results"][0].get("series")
    return int(sum(row[1] for serie in series for row in serie["values"])) if series else 0


def expected(messages: list[tuple[str, bytes]], registry: Path, now_ns: int) -> tuple[int, ...]:
    """Return (readings, statuses, quarantine records) the pure judge predicts."""
    stations = load_registry(registry)
    readings = statuses = records = 0
    for topic, payload in messages:
        delivery = judge_delivery(1, 1, topic, payload, now_ns, stations, Limits())
        if delivery.status is not None:
            statuses += 1
        elif delivery.verdict is not None:
            readings += len(delivery.verdict.readings)
            total = delivery.verdict.refusals_total
            records += min(total, MAX_REFUSALS_PER_MESSAGE) + int(total > MAX_REFUSALS_PER_MESSAGE)
    return readings, statuses, records


def run(
    broker_port: int,
    influx: InfluxDB,
    base: Path,
    registry: Path,
    name: str,
    messages: list[tuple[str, bytes]],
    want: tuple[int, ...],
) -> tuple[float, tuple[int, ...], float, float]:
    """Publish, wait for the expected counts; return (messages/s, counts, errors, connects)."""
    influx.create_database(name)
    metrics_port = free_port()
    ingester = bench_ingester(
        name,
        base,
        mqtt_port=broker_port,
        influx_url=influx.url,
        db=name,
        registry=registry,
        data_dir=base / f"var-{name}",
        client_id=f"bench-{name}",
        MELTEMI_INGEST_METRICS_PORT=str(metrics_port),
    )
    ingester.start()
    ingester.wait_until(lambda: "subscribed to " in ingester.log_text())
    queries = (
        'SELECT count("air_temperature") FROM readings',
        'SELECT count("state") FROM station_status',
        'SELECT count("detail") FROM quarantine.quarantine',
    )
    # From another process, with fewer than 65,535 unacknowledged (paho's 16-bit message ids;
    # tests.helpers.publish_all has no such cap and loses the wrapped ones past that).
    publisher, started_at = publish_in_process(broker_port, messages)
    got: tuple[int, ...] = ()
    progressed = finished = time.time()
    while time.time() - progressed < STALL_S:
        now = tuple(count(influx, name, q) for q in queries)
        if now != got:
            got, progressed = now, time.time()
            finished = progressed
        if got == want:
            break
        time.sleep(0.5)
    publisher.join(120)
    started = started_at.value
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    errors = prometheus_value(text, "meltemi_ingest_handler_errors_total")
    connects = prometheus_value(text, "meltemi_ingest_mqtt_connects_total")
    ingester.stop()
    return len(messages) / (finished - started), got, errors, connects


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with services() as (broker, influx, base):
        registry = base / "stations.toml"
        ids = write_registry(registry, STATIONS, prefix="fuzz")
        now = int(time.time())
        hostile = hostile_messages(seed=1, n=n, station_ids=ids, base_ts=now - 3600)
        want = expected(hostile, registry, now * 1_000_000_000)
        # reading_messages gives station k a temperature of 15 + k °C: 20 stations stay valid.
        valid = reading_messages(ids[:20], max(1, n // 20), now - 7200 - n // 20)
        valid_want = (len(valid), 0, 0)
        valid_rate, valid_got, _, _ = run(
            broker.port, influx, base, registry, "valid", valid, valid_want
        )
        rate, got, errors, connects = run(
            broker.port, influx, base, registry, "fuzz", hostile, want
        )
        print(f"expected {want}, stored/quarantined {got}", file=sys.stderr)
        figure("fuzz_messages", len(hostile), "messages")
        figure("fuzz_handled_per_s", rate, "messages/s")
        figure("baseline_valid_per_s", valid_rate, "messages/s")
        figure("fuzz_to_baseline_ratio", rate / valid_rate, "ratio")
        figure("fuzz_mismatch", sum(abs(a - b) for a, b in zip(want, got, strict=False)), "records")
        figure("baseline_mismatch", abs(valid_got[0] - valid_want[0]), "readings")
        figure("handler_errors", errors, "errors")
        figure("ingester_reconnects", connects - 1, "reconnects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
