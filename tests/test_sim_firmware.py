"""The simulator's firmware against a real Mosquitto: buffering, last will, faults, restarts."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from firmware_sim.cli import main as simulate_main
from firmware_sim.faults import load_plan, read_fault_log
from firmware_sim.runner import RunOptions, StationNetwork
from paho.mqtt.enums import CallbackAPIVersion

from meltemi.services import ManagedProcess, Mosquitto
from sensors.models import loads_strict, parse_ts_ns
from sensors.registry import load_registry
from sensors.schema import QuarantineReason
from sensors.settings import Settings
from sensors.topics import StationId
from sensors.validation import Limits, judge_readings_message
from tests.helpers import settings_env, wait_for, write_registry


class Collector:
    """A paho subscriber with a persistent session: it misses nothing across broker restarts."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="collector-" + uuid.uuid4().hex[:8],
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 1)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, _c, _u, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.retain))

    def readings(self, station_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self.lock:
            payloads = [p for t, p, _ in self.messages if t == f"stations/{station_id}/readings"]
        for payload in payloads:
            try:
                body = json.loads(payload)
            except ValueError:
                continue
            out += body if isinstance(body, list) else [body]
        return out

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_network(network: StationNetwork) -> threading.Thread:
    thread = threading.Thread(target=network.run, name="sim", daemon=True)
    thread.start()
    return thread


def test_outage_of_60s_loses_nothing_and_keeps_order(fresh_broker: Mosquitto, tmp_path: Path):
    registry = write_registry(tmp_path / "reg.toml", ["simtest-outage"])
    settings = Settings(
        mqtt_port=fresh_broker.port, data_dir=tmp_path / "var", stations_file=registry
    )
    collector = Collector(fresh_broker.port, "stations/+/readings")
    options = RunOptions(interval_s=1.0, seed=1, keepalive_s=5, max_backoff_s=2.0, progress=False)
    network = StationNetwork(list(load_registry(registry)), settings, options)
    thread = start_network(network)
    try:
        wait_for(lambda: len(collector.readings("simtest-outage")) >= 3, 20, message="readings")
        fresh_broker.stop()
        outage_start = time.time()
        time.sleep(60)  # the outage itself
        outage_end = time.time()
        restarted = Mosquitto(fresh_broker.data_dir, fresh_broker.port)
        restarted.start_and_wait()
        try:

            def caught_up() -> bool:
                got = collector.readings("simtest-outage")
                return bool(got) and parse_ts_ns(got[-1]["ts"]) / 1e9 > outage_end + 3

            wait_for(caught_up, 30, message="the buffered readings")
            network.stop()
            thread.join(30)
        finally:
            restarted.stop()
    finally:
        network.stop()
        collector.close()
    readings = collector.readings("simtest-outage")
    seqs = [r["seq"] for r in readings]
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(first_seen[0], first_seen[0] + len(first_seen)))
    ts = [parse_ts_ns(r["ts"]) for r in readings]
    assert ts == sorted(ts)
    during = [t for t in dict.fromkeys(ts) if outage_start + 1 < t / 1e9 < outage_end - 1]
    assert len(during) >= 56  # one a second for the ~58 s strictly inside the outage
    replayed = [
        p for p in collector.payloads("stations/simtest-outage/readings") if p.startswith(b"[")
    ]
    assert replayed
    assert all(len(json.loads(p)) <= 500 for p in replayed)


def test_last_will_fires_when_the_process_is_killed(fresh_broker: Mosquitto, tmp_path: Path):
    broker = fresh_broker  # retained statuses stay off the shared broker
    registry = write_registry(tmp_path / "reg.toml", ["simtest-will"])
    settings = Settings(mqtt_port=broker.port, data_dir=tmp_path / "var", stations_file=registry)
    collector = Collector(broker.port, "stations/simtest-will/status")
    process = ManagedProcess(
        "sim",
        [sys.executable, "-m", "firmware_sim", "--interval", "1"],
        tmp_path / "sim.log",
        env=settings_env(settings),
    )
    process.start()
    try:
        topic = "stations/simtest-will/status"
        wait_for(lambda: b'"online"' in b"".join(collector.payloads(topic)), 20, message="online")
        process.signal(signal.SIGKILL)
        process.wait(10)
        wait_for(lambda: b'"offline"' in collector.payloads(topic)[-1], 20, message="will")
        status = json.loads(collector.payloads(topic)[-1])
        assert status["state"] == "offline"
        assert status["firmware"].startswith("meltemi-sim/")
    finally:
        process.stop()
        collector.close()


def test_clean_stop_says_offline_and_seq_and_backfill_continue(fresh_broker: Mosquitto, tmp_path):
    broker = fresh_broker  # retained statuses stay off the shared broker
    registry = write_registry(tmp_path / "reg.toml", ["simtest-restart"])
    settings = Settings(mqtt_port=broker.port, data_dir=tmp_path / "var", stations_file=registry)
    collector = Collector(broker.port, "stations/simtest-restart/#")
    argv = ["--interval", "1", "--backfill", "30m", "--duration", "3", "--no-progress"]
    try:
        assert simulate_main(argv, settings) == 0
        first = collector.readings("simtest-restart")
        wait_for(lambda: len(collector.readings("simtest-restart")) == len(first), 5)
        assert len(first) >= 30 + 2  # 30 back-filled minutes and the live seconds
        assert collector.payloads("stations/simtest-restart/status")[-1].find(b"offline") > 0
        assert simulate_main(argv, settings) == 0
        wait_for(lambda: b"offline" in collector.payloads("stations/simtest-restart/status")[-1])
        both = collector.readings("simtest-restart")
        second = both[len(first) :]
    finally:
        collector.close()
    assert [r["seq"] for r in both] == list(range(len(both)))  # no gap, no repeat
    assert second[0]["seq"] == first[-1]["seq"] + 1
    # the re-run back-fills only the gap since the last reading, not 30 minutes again
    assert len(second) < 10
    assert parse_ts_ns(second[0]["ts"]) > parse_ts_ns(first[-1]["ts"])


FAULTS = """
[[fault]]
station = "simtest-spike"
kind = "spike"
parameter = "air_temperature"
start_s = 2
magnitude = 15

[[fault]]
station = "simtest-stick"
kind = "stick"
parameter = "relative_humidity"
start_s = 1
duration_s = 5

[[fault]]
station = "simtest-drift"
kind = "drift"
parameter = "air_pressure"
start_s = 1
duration_s = 5
magnitude = 3600

[[fault]]
station = "simtest-dropout"
kind = "dropout"
start_s = 2
duration_s = 3

[[fault]]
station = "simtest-range"
kind = "out_of_range"
parameter = "wind_speed"
start_s = 2

[[fault]]
station = "simtest-nan"
kind = "non_finite"
parameter = "pm10"
start_s = 2

[[fault]]
station = "simtest-json"
kind = "malformed_json"
start_s = 2
duration_s = 2

[[fault]]
station = "simtest-clock"
kind = "clock_offset"
start_s = 2
duration_s = 2
magnitude = 3

[[fault]]
station = "simtest-silent"
kind = "silent"
start_s = 3
duration_s = 6
"""


def test_each_fault_kind_does_what_it_promises(fresh_broker: Mosquitto, tmp_path: Path):
    broker = fresh_broker  # retained statuses stay off the shared broker
    kinds = ["spike", "stick", "drift", "dropout", "range", "nan", "json", "clock", "silent"]
    ids = [f"simtest-{k}" for k in kinds] + ["simtest-healthy"]
    registry_path = write_registry(tmp_path / "reg.toml", ids)
    registry = load_registry(registry_path)
    (tmp_path / "faults.toml").write_text(FAULTS)
    settings = Settings(
        mqtt_port=broker.port, data_dir=tmp_path / "var", stations_file=registry_path
    )
    collector = Collector(broker.port, "stations/#")
    plan = load_plan(tmp_path / "faults.toml", [], {s.id: s.parameters for s in registry})
    options = RunOptions(interval_s=1.0, seed=2, keepalive_s=2, duration_s=12, progress=False)
    network = StationNetwork(list(registry), settings, options, plan)
    try:
        network.run()
        wait_for(lambda: len(collector.readings("simtest-healthy")) >= 9, 10)
    finally:
        collector.close()
    log = read_fault_log(tmp_path / "var" / "sim" / "faults.jsonl")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_kind.setdefault(str(entry["kind"]), []).append(entry)
    received_ns = time.time_ns()

    def judge(station_id: str) -> list[Any]:
        refusals = []
        for payload in collector.payloads(f"stations/{station_id}/readings"):
            verdict = judge_readings_message(
                StationId(station_id), payload, registry, received_ns, Limits()
            )
            refusals += verdict.refusals
        return refusals

    def value_at(station_id: str, seq: object, parameter: str) -> float:
        (reading,) = [r for r in collector.readings(station_id) if r["seq"] == seq]
        return float(reading["values"][parameter])

    assert judge("simtest-healthy") == []
    # spike: one reading, 15 °C off its neighbours
    (spike,) = by_kind["spike"]
    before, after = (float(x) for x in str(spike["detail"]).split(" -> "))
    assert after - before == pytest.approx(15.0)
    assert value_at("simtest-spike", spike["seq"], "air_temperature") == after
    assert judge("simtest-spike") == []
    # stick: the same value for every reading of the window
    stuck = [value_at("simtest-stick", e["seq"], "relative_humidity") for e in by_kind["stick"]]
    assert len(stuck) >= 4
    assert len(set(stuck)) == 1
    # drift: 1 hPa per second of the window
    offsets = [
        float(str(e["detail"]).split(" -> ")[1]) - float(str(e["detail"]).split(" -> ")[0])
        for e in by_kind["drift"]
    ]
    assert len(offsets) >= 4
    assert offsets == sorted(offsets)
    assert offsets[-1] > 3
    # dropout: exactly the logged seqs are missing
    dropped = {e["seq"] for e in by_kind["dropout"]}
    got = {r["seq"] for r in collector.readings("simtest-dropout")}
    assert len(dropped) >= 2
    assert not dropped & got
    assert got | dropped == set(range(min(got), max(got) + 1))
    # out of range, non-finite, malformed JSON, clock: refused exactly as many times as logged
    reasons = {
        "simtest-range": (QuarantineReason.OUT_OF_RANGE, "out_of_range"),
        "simtest-nan": (QuarantineReason.NON_FINITE, "non_finite"),
        "simtest-json": (QuarantineReason.INVALID_JSON, "malformed_json"),
        "simtest-clock": (QuarantineReason.TS_IN_FUTURE, "clock_offset"),
    }
    for station_id, (reason, kind) in reasons.items():
        refusals = judge(station_id)
        assert [r.reason for r in refusals] == [reason] * len(by_kind[kind]), station_id
        assert by_kind[kind]
    nan_payloads = collector.payloads("stations/simtest-nan/readings")
    # A message is one reading, or an array when the station replays its buffer (under load).
    decoded = [loads_strict(p) for p in nan_payloads]
    readings: list[Any] = [r for d in decoded for r in (d if isinstance(d, list) else [d])]
    assert any(math.isnan(float(r["values"]["pm10"])) for r in readings)
    clock = by_kind["clock_offset"][0]
    assert parse_ts_ns(str(clock["ts"])) / 1e9 > time.time() + 2.5 * 3600
    # silent: the broker fired the will while the process ran, then the station came back
    states = [json.loads(p)["state"] for p in collector.payloads("stations/simtest-silent/status")]
    assert states[:3] == ["online", "offline", "online"]
    assert [e["detail"] for e in by_kind["silent"]] == ["hang begins", "reboot"]
