"""Ingest side by side (issue 9): Meltemi next to a bare subscriber, a naive ingester and Node-RED.

Every consumer gets the same burst in the same run: N single-reading messages (10 values, 100
stations) from one publisher that sends as fast as the broker acknowledges (bench.fastpub: paho
without a network thread, QoS 1), through Mosquitto with the repo's mosquitto.conf. Consumers:

- ``bare``: a paho MQTT v5 subscriber that only counts (QoS 1, automatic acknowledgement): the
  ceiling of the MQTT path in Python; ``bare-v311`` the same on MQTT 3.1.1 (on request: what v5
  costs paho per message);
- ``fast``: the same bare v5 subscriber on ingest.mqtt_fast.FastClient (the ingester's MQTT
  client: buffered reads, many packets per wake-up, PUBLISH decoded straight to a sink), on
  request: what the ingester's receive path costs next to ``bare``;
- ``naive``: paho v5 + pydantic + batched /write (1,000 lines or 1 s), acknowledgement on
  receipt, no QC, no spool: what a hurried team writes;
- ``node-red``: the peer flow of ../shared/peers/node-red (bench/nodered.py);
- ``meltemi-1``: ``meltemi ingest`` (validation, QC, write-once, in-order manual acknowledgement
  after the write, spool, re-publish on meltemi/accepted: everything on);
- ``meltemi-N``: ``meltemi ingest --workers N`` (N processes on the shared subscription);
- ``meltemi-arrays``: ``meltemi ingest`` with the same readings in arrays of 50 (a replay).

For each: readings/s stored (N / time from the first publish until InfluxDB holds them all, or
until nothing new arrived for STALL_S), readings lost, the broker's own dropped count (its $SYS
counter, before and after), the consumer's CPU per stored reading (utime + stime of all its
processes from /proc/PID/stat) and its RSS at the start and the peak. Medians of RUNS are printed
last as ``name: value unit``, with the ratios the issue names. Usage:
python bench/ingest.py [N] [RUNS] [WORKERS] [consumer,consumer,...]; BENCH_RATE=R paces the
publisher at R messages/s.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fastpub
from bench._common import ALL_PARAMETERS, figure, median, services, write_registry
from bench._common import ingester as bench_ingester
from bench.nodered import install as nodered_install
from bench.nodered import nodered_process
from ingest.mqtt import end_session
from meltemi.services import InfluxDB
from sensors.settings import Settings
from sensors.topics import readings_topic

# Ten values per reading: every parameter but UV and PM1.
PARAMS = [p for p in ALL_PARAMETERS if p not in ("uv_index", "pm1")]
STATIONS = 100
UNACKED_MAX = 10_000
# BENCH_RATE=R: publish at R messages/s instead of as fast as the broker acknowledges (a
# consumer's CPU per reading depends on its load: fewer packets per wake-up, smaller writes).
PACED_RATE = float(os.environ.get("BENCH_RATE", "0"))
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


# -- issue 9: the side-by-side run ---------------------------------------------------------------
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KIB: Final = os.sysconf("SC_PAGE_SIZE") // 1024
POLL_S: Final = 0.25
ARRAY_SIZE: Final = 50
NAIVE_BATCH: Final = 1000
SYS_DROPPED: Final = "$SYS/broker/publish/messages/dropped"
# The repo's mosquitto.conf plus only this: $SYS every second instead of every 10 s, so that
# the dropped count read after a run is current (it changes nothing a client sees).
SYS_INTERVAL_S: Final = 1


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """Return ``root`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_s(pids: list[int]) -> float:
    """Return the CPU seconds (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_mib(pids: list[int]) -> float:
    """Return the processes' resident set size, summed, in MiB."""
    total = 0
    for pid in pids:
        try:
            total += int(_stat(pid)[21])
        except OSError:
            continue
    return total * PAGE_KIB / 1024


class BrokerDropped:
    """Mosquitto's $SYS dropped-messages counter, followed by one subscriber for the whole
    bench: the retained value on subscribing, then each change (the broker publishes it every
    sys_interval when it changed). A subscriber per reading missed the retained value more and
    more often over a long bench."""

    def __init__(self, port: int) -> None:
        self.value = -1  # not published yet
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-sys", protocol=mqtt.MQTTv311
        )
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe(SYS_DROPPED, 0)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.value = int(message.payload)

    def read(self) -> int:
        """Return the counter as last published (after the broker's next publication)."""
        time.sleep(2 * SYS_INTERVAL_S)
        return self.value

    def stop(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class Result:
    """One consumer's run."""

    stored: int
    per_s: float
    cpu_us: float
    rss_start_mib: float
    rss_peak_mib: float
    dropped: int
    broker_cpu_us: float  # the broker's and InfluxDB's CPU per stored reading meanwhile
    influx_cpu_us: float
    machine_busy: float  # share of all cores busy meanwhile (publisher, broker, DB, consumer)


def _bare(port: int, received: Any, ready: Any, v5: bool) -> None:
    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        received.value += 1

    def on_subscribe(*_args: object) -> None:
        ready.set()

    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=protocol)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.subscribe("stations/+/readings", qos=1)
    client.loop_forever()


def _fast(port: int, received: Any, ready: Any) -> None:
    """The bare subscriber on the ingester's FastClient: counts at the sink, automatic PUBACK."""
    from ingest.mqtt_fast import FastClient

    def on_publish(_mid: int, _qos: int, _dup: bool, _topic: str, _payload: bytes) -> None:
        received.value += 1

    def on_subscribe(*_args: object) -> None:
        ready.set()

    client = FastClient(
        CallbackAPIVersion.VERSION2,
        client_id="bench-fast",
        protocol=mqtt.MQTTv5,
        publish_sink=on_publish,
    )
    assert client.fast, "paho lacks what ingest.mqtt_fast needs"
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.subscribe("stations/+/readings", qos=1)
    client.loop_forever()


def _naive(port: int, influx_url: str, db: str, ready: Any) -> None:
    """A naive ingester: paho v5, pydantic per message, batched /write, ack on receipt."""
    from sensors.models import ReadingIn

    lines: list[str] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        station = message.topic.split("/")[1]
        try:
            reading = ReadingIn.model_validate_json(message.payload)
        except ValueError:
            return
        fields = ",".join(f"{k}={float(v)}" for k, v in reading.values.items())  # type: ignore[arg-type]
        with lock:
            lines.append(f"readings,station={station} {fields} {int(reading.ts)}")

    def on_subscribe(*_args: object) -> None:
        ready.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.subscribe("stations/+/readings", qos=1)
    client.loop_start()
    with httpx.Client(timeout=60) as http:
        flushed = time.monotonic()
        while True:
            time.sleep(0.01)
            if len(lines) < NAIVE_BATCH and time.monotonic() - flushed < 1.0:
                continue
            with lock:
                batch, lines[:] = lines[:], []
            flushed = time.monotonic()
            if batch:
                http.post(
                    f"{influx_url}/write",
                    params={"db": db, "precision": "s"},
                    content="\n".join(batch).encode(),
                )


class Consumer:
    """A consumer under test: started, then asked for its PIDs and its stored count."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_fns: list[Any] = []

    def pids(self) -> list[int]:
        raise NotImplementedError

    def stored(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        for fn in reversed(self.stop_fns):
            fn()


def _own(consumer: Consumer, process: BaseProcess) -> None:
    """Make ``process`` the consumer's: its PID measured, terminated at the end."""
    pid = process.pid
    assert pid is not None  # started
    consumer.pids = lambda: [pid]  # type: ignore[method-assign]

    def stop() -> None:
        process.terminate()
        process.join(10)

    consumer.stop_fns.append(stop)


def start_consumer(
    kind: str,
    broker_port: int,
    influx: InfluxDB,
    base: Path,
    registry: Path,
    run: int,
    nodered_cache: Path | None,
) -> Consumer:
    """Start one consumer and wait until it is subscribed."""
    spawn = mp.get_context("spawn")  # a fresh interpreter: RSS and CPU are the consumer's own
    consumer = Consumer(kind)
    db = f"{kind.replace('-', '_')}_{run}"
    influx.create_database(db)
    if kind in ("bare", "bare-v311", "fast"):
        received = spawn.Value("q", 0, lock=False)
        ready = spawn.Event()
        if kind == "fast":
            process = spawn.Process(target=_fast, args=(broker_port, received, ready), daemon=True)
        else:
            process = spawn.Process(
                target=_bare, args=(broker_port, received, ready, kind == "bare"), daemon=True
            )
        process.start()
        ready.wait(30)
        _own(consumer, process)
        consumer.stored = lambda: int(received.value)  # type: ignore[method-assign]
        return consumer
    consumer.stored = lambda: count(influx, db)  # type: ignore[method-assign]
    if kind == "naive":
        ready = spawn.Event()
        process = spawn.Process(
            target=_naive, args=(broker_port, influx.url, db, ready), daemon=True
        )
        process.start()
        ready.wait(30)
        _own(consumer, process)
        return consumer
    if kind == "node-red":
        assert nodered_cache is not None
        port = int(influx.url.rsplit(":", 1)[1])
        red = nodered_process(nodered_cache, base / f"nodered-{run}", broker_port, port, db)
        red.start()
        red.wait_until(lambda: "Connected to broker" in red.log_text(), 60)
        time.sleep(1.0)  # the subscription follows the connection
        consumer.pids = lambda: process_tree(red.pid)  # type: ignore[method-assign]
        consumer.stop_fns.append(red.stop)
        return consumer
    extra = {"MELTEMI_INGEST_RATE_BURST": "0"} if kind == "meltemi-arrays" else {}
    ingester = bench_ingester(
        kind,
        base,
        mqtt_port=broker_port,
        influx_url=influx.url,
        db=db,
        registry=registry,
        data_dir=base / f"var-{db}",
        client_id=f"bench-{db}",
        **extra,
    )
    if kind.startswith("meltemi-") and kind[8:].isdigit() and int(kind[8:]) > 1:
        ingester.argv += ["--workers", kind[8:], "--shared", f"bench{run}"]
    ingester.start()
    want = int(kind[8:]) if kind[8:].isdigit() else 1
    ingester.wait_until(lambda: ingester.log_text().count("subscribed to ") >= want, 60)
    consumer.pids = lambda: process_tree(ingester.pid)  # type: ignore[method-assign]
    spy = os.environ.get("BENCH_PYSPY")  # "py-spy:out": profile the ingester into out-DB.txt
    if spy:
        consumer.stop_fns.append(_profile(spy, process_tree(ingester.pid)[-1], db))
    client_ids = [f"bench-{db}-{i}" for i in range(1, want + 1)] if want > 1 else [f"bench-{db}"]

    def end_sessions() -> None:
        # A durable session outlives its ingester: left behind, it would queue (and the broker
        # drop) every later run's messages, at the cost of the broker's CPU.
        for client_id in client_ids:
            end_session(Settings(mqtt_port=broker_port, mqtt_client_id=client_id))

    consumer.stop_fns.append(end_sessions)
    consumer.stop_fns.append(ingester.stop)
    return consumer


def machine_ticks() -> tuple[int, int]:
    """Return (busy, total) jiffies of all cores so far (/proc/stat): a ceiling measured on a
    saturated machine is the machine's, not the consumer's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _profile(spy: str, pid: int, db: str) -> Any:
    """Start py-spy on one process (collapsed stacks, GIL holders and idle threads apart); return
    the function that ends it and makes it write its file."""
    program, out = spy.split(":", 1)
    command = [program, "record", "--format", "raw", "--rate", "200", "--pid", str(pid)]
    if os.environ.get("BENCH_PYSPY_GIL"):
        command.append("--gil")
    recorder = subprocess.Popen([*command, "-o", f"{out}-{db}.txt"])

    def stop() -> None:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)

    return stop


def run_consumer(
    kind: str,
    broker_port: int,
    broker_pid: int,
    dropped_counter: BrokerDropped,
    influx: InfluxDB,
    base: Path,
    registry: Path,
    run: int,
    messages: list[tuple[str, bytes]],
    readings: int,
    nodered_cache: Path | None,
) -> Result:
    """Run one consumer through one burst; return what it stored, how fast and at what cost."""
    dropped_before = dropped_counter.read()
    consumer = start_consumer(kind, broker_port, influx, base, registry, run, nodered_cache)
    try:
        pids = consumer.pids()
        servers_before = cpu_s([broker_pid]), cpu_s([influx.pid])
        machine_before = machine_ticks()
        cpu_before = cpu_s(pids)
        rss_start = rss_peak = rss_mib(pids)
        if PACED_RATE:  # the consumer's cost at a given load, not at saturation
            publisher, started = publish_in_process(broker_port, messages, PACED_RATE)
        else:
            publisher, started, _elapsed = fastpub.publish_in_process(broker_port, messages)
        stored = 0
        finished = progressed = time.time()
        while time.time() - progressed < STALL_S:
            now = consumer.stored()
            rss_peak = max(rss_peak, rss_mib(consumer.pids()))
            if now > stored:
                stored, finished = now, time.time()
                progressed = finished
            if stored >= readings:
                break
            time.sleep(POLL_S)
        cpu = cpu_s(consumer.pids()) - cpu_before
        servers = cpu_s([broker_pid]) - servers_before[0], cpu_s([influx.pid]) - servers_before[1]
        busy, total = (b - a for a, b in zip(machine_before, machine_ticks(), strict=True))
        publisher.join(120)
    finally:
        consumer.stop()
    dropped_after = dropped_counter.read()
    # -1: the broker did not publish its counter in time (unknown, never reported as a count)
    dropped = -1 if min(dropped_before, dropped_after) < 0 else dropped_after - dropped_before
    return Result(
        stored=stored,
        per_s=stored / max(finished - started.value, 1e-9),
        cpu_us=1e6 * cpu / max(stored, 1),
        rss_start_mib=rss_start,
        rss_peak_mib=rss_peak,
        dropped=dropped,
        broker_cpu_us=1e6 * servers[0] / max(stored, 1),
        influx_cpu_us=1e6 * servers[1] / max(stored, 1),
        machine_busy=100.0 * busy / max(total, 1),
    )


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    kinds = (
        sys.argv[4].split(",")
        if len(sys.argv) > 4
        else ["bare", "naive", "node-red", "meltemi-1", f"meltemi-{workers}", "meltemi-arrays"]
    )
    cache = nodered_install() if "node-red" in kinds else None
    results: dict[str, list[Result]] = {kind: [] for kind in kinds}
    with services(broker_conf=f"\nsys_interval {SYS_INTERVAL_S}\n") as (broker, influx, base):
        registry = base / "stations.toml"
        ids = write_registry(registry, STATIONS)
        readings = make_readings(ids, n, int(time.time()) - 60)
        time.sleep(2 * SYS_INTERVAL_S)  # the broker's first $SYS publication
        dropped_counter = BrokerDropped(broker.port)
        singles = [
            (readings_topic(s), json.dumps({"ts": ts, "seq": seq, "values": v}).encode())
            for s, ts, seq, v in readings
        ]
        by_station: dict[str, list[dict[str, Any]]] = {}
        for s, ts, seq, v in readings:
            by_station.setdefault(s, []).append({"ts": ts, "seq": seq, "values": v})
        arrays = [
            (readings_topic(s), json.dumps(rows[k : k + ARRAY_SIZE]).encode())
            for s, rows in by_station.items()
            for k in range(0, len(rows), ARRAY_SIZE)
        ]
        for run in range(runs):
            for kind in kinds:
                messages = arrays if kind == "meltemi-arrays" else singles
                result = run_consumer(
                    kind,
                    broker.port,
                    broker.pid,
                    dropped_counter,
                    influx,
                    base,
                    registry,
                    run,
                    messages,
                    n,
                    cache,
                )
                results[kind].append(result)
                dropped = result.dropped if result.dropped >= 0 else "unknown"
                print(
                    f"run {run + 1}/{runs} {kind}: {result.per_s:.0f} readings/s, stored "
                    f"{result.stored}/{n}, broker dropped {dropped}, "
                    f"{result.cpu_us:.0f} µs CPU/reading, RSS {result.rss_start_mib:.0f} -> "
                    f"{result.rss_peak_mib:.0f} MiB; broker {result.broker_cpu_us:.0f} µs, "
                    f"InfluxDB {result.influx_cpu_us:.0f} µs CPU/reading; machine "
                    f"{result.machine_busy:.0f} % busy",
                    file=sys.stderr,
                    flush=True,
                )
        dropped_counter.stop()
    figure("readings", n, "readings")
    figure("machine_cores", os.cpu_count() or 0, "cores")
    for kind, rows in results.items():
        name = kind.replace("-", "_")
        figure(f"{name}_stored_per_s_median", median([r.per_s for r in rows]), "readings/s")
        figure(f"{name}_lost_max", max(n - r.stored for r in rows), "readings")
        known = [r.dropped for r in rows if r.dropped >= 0]
        figure(f"{name}_broker_dropped_max", max(known) if known else -1, "messages")
        if len(known) < len(rows):
            figure(f"{name}_broker_dropped_unknown", len(rows) - len(known), "runs")
        figure(f"{name}_cpu_per_reading_median", median([r.cpu_us for r in rows]), "µs")
        figure(f"{name}_rss_start_median", median([r.rss_start_mib for r in rows]), "MiB")
        figure(f"{name}_rss_peak_median", median([r.rss_peak_mib for r in rows]), "MiB")
        figure(
            f"{name}_broker_cpu_per_reading_median", median([r.broker_cpu_us for r in rows]), "µs"
        )
        figure(
            f"{name}_influxdb_cpu_per_reading_median", median([r.influx_cpu_us for r in rows]), "µs"
        )

    def ratio(name: str, a: str, b: str, attr: str) -> None:
        if a in results and b in results:
            top = median([getattr(r, attr) for r in results[a]])
            bottom = median([getattr(r, attr) for r in results[b]])
            figure(name, top / bottom if bottom else 0.0, "ratio")

    ratio("fast_to_bare_cpu_per_reading_ratio", "fast", "bare", "cpu_us")
    ratio("fast_to_bare_stored_per_s_ratio", "fast", "bare", "per_s")
    ratio("meltemi_1_to_bare_cpu_per_reading_ratio", "meltemi-1", "bare", "cpu_us")
    ratio("meltemi_1_to_bare_stored_per_s_ratio", "meltemi-1", "bare", "per_s")
    ratio("meltemi_1_to_node_red_cpu_per_reading_ratio", "meltemi-1", "node-red", "cpu_us")
    ratio("meltemi_1_to_node_red_stored_per_s_ratio", "meltemi-1", "node-red", "per_s")
    ratio("meltemi_1_to_naive_cpu_per_reading_ratio", "meltemi-1", "naive", "cpu_us")
    many = f"meltemi-{workers}"
    ratio(f"meltemi_{workers}_to_1_cpu_per_reading_ratio", many, "meltemi-1", "cpu_us")
    ratio(f"meltemi_{workers}_to_1_stored_per_s_ratio", many, "meltemi-1", "per_s")
    ratio("meltemi_arrays_to_1_stored_per_s_ratio", "meltemi-arrays", "meltemi-1", "per_s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
