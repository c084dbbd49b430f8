"""Simulator scale (issue 3): 1,000 stations at a 10 s interval in one process, in real time.

- simulator: ``python -m firmware_sim`` as a subprocess with N stations (one MQTT connection per
  station, as real stations hold), run for WARMUP + PERIOD seconds of wall time; its CPU time
  during PERIOD (from /proc/PID/stat, user + system) per wall second, and the readings/s the
  broker acknowledged (a subscriber counts the readings it receives over PERIOD).
- baseline: the same number of single-reading messages, with payloads the same size, published
  by a bare paho loop (one client, QoS 1, loop_start) at the same rate for PERIOD; its CPU per
  wall second. The ratio says what the firmware behaviour (N connections, weather, keep-alive)
  costs over the bare minimum of publishing.
Each is run RUNS times; medians are printed last.
Usage: python bench/simulate.py [N] [PERIOD] [RUNS]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_sim.cli import select_stations
from firmware_sim.readings import Simulator
from firmware_sim.sites import write_registry

from bench._common import figure, median
from meltemi.services import ManagedProcess, Mosquitto, free_port
from sensors.settings import Settings

INTERVAL_S = 10.0
WARMUP_S = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """Return user + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Counter:
    """Counts readings arriving on stations/+/readings."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("stations/+/readings", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self.lock:
            self.count += len(body) if isinstance(body, list) else 1

    def value(self) -> int:
        with self.lock:
            return self.count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_simulator(port: int, root: Path, stations: int, period_s: float) -> tuple[float, float]:
    """Return (CPU s per wall s, readings/s) of the simulator over ``period_s``."""
    registry = root / "registry.toml"
    settings = Settings(mqtt_port=port, data_dir=root / "var")
    write_registry(registry, select_stations(settings, stations, 0))
    env = {
        **os.environ,
        "MELTEMI_MQTT_PORT": str(port),
        "MELTEMI_DATA_DIR": str(root / "var"),
        "MELTEMI_STATIONS_FILE": str(registry),
    }
    counter = Counter(port)
    process = ManagedProcess(
        "simulator",
        [sys.executable, "-m", "firmware_sim", "--interval", str(INTERVAL_S)],
        root / "sim.log",
        env=env,
    )
    process.start()
    try:
        time.sleep(WARMUP_S)  # connections made, first samples taken
        cpu0, wall0, n0 = process_cpu_s(process.pid), time.monotonic(), counter.value()
        time.sleep(period_s)
        cpu1, wall1, n1 = process_cpu_s(process.pid), time.monotonic(), counter.value()
    finally:
        process.stop()
        counter.close()
    return (cpu1 - cpu0) / (wall1 - wall0), (n1 - n0) / (wall1 - wall0)


def run_baseline(port: int, stations: int, period_s: float) -> float:
    """Return CPU s per wall s of a bare paho loop publishing the same messages at the same rate."""
    sample = Simulator(select_stations(Settings(), 13, 0), 0).readings(
        "elefsina-01", time.time() - 10, time.time(), 10.0
    )[0]
    payload = json.dumps(sample, separators=(",", ":")).encode()
    rate = stations / INTERVAL_S
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - wall0) < period_s:
        due = int(elapsed * rate)
        while sent < due:
            client.publish(f"stations/bench-{sent % stations:04d}/readings", payload, qos=1)
            sent += 1
        time.sleep(0.01)
    usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    client.disconnect()
    client.loop_stop()
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return cpu / (wall1 - wall0)


def main() -> None:
    stations = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    period_s = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    cpu, rate, base = [], [], []
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-sim-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto", free_port())
        broker.start_and_wait()
        try:
            for run in range(runs):
                run_root = root / f"run{run}"
                run_root.mkdir()
                c, r = run_simulator(broker.port, run_root, stations, period_s)
                b = run_baseline(broker.port, stations, period_s)
                print(
                    f"run {run + 1}: simulator {c:.3f} core, {r:.1f} readings/s; baseline {b:.3f}"
                )
                cpu.append(c)
                rate.append(r)
                base.append(b)
        finally:
            broker.stop()
    print(f"\n{stations} stations, interval {INTERVAL_S:g} s, {period_s:g} s measured, {runs} runs")
    figure("simulator_cpu", median(cpu), "core (CPU s per wall s; must be < 1.0)")
    figure("simulator_readings", median(rate), "readings/s")
    figure("baseline_bare_paho_cpu", median(base), "core")
    figure("simulator_over_baseline", median(cpu) / max(median(base), 1e-9), "x")


if __name__ == "__main__":
    main()
