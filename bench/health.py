"""Station health and SensorThings cost, next to ``/v1/latest`` in the same run (issue 11).

Loads bench/api.py's dataset (100 stations of 60 s readings with every parameter for
``DAYS`` days, the first station 30 days), runs ``meltemi api`` as a subprocess, and times:

- ``/v1/stations/{first}/health?days=31``: the first answer (cold: 31 days from InfluxDB) and
  the next ones (finished days from the day cache, today from InfluxDB);
- ``/v1/health/stations`` for 1 and 7 days (warm);
- ``/sta/v1.1/Datastreams({first temperature})/Observations?$top=1000`` and
  ``/sta/v1.1/Observations?$top=1000&$skip=50000`` (a skip over many Datastreams);
- ``/v1/latest`` (100 stations), the baseline: every figure's ratio is to its median.

Prints ``name: value unit`` lines. Usage: python bench/health.py [REPEATS] [DAYS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure, median, p95, start_api, write_registry
from bench.api import DB, STATIONS, STEP_S, load, timed
from meltemi.services import InfluxDB, ManagedProcess, free_port
from sensors.catalog import PARAMETERS

TEMPERATURE_K = 1 + [spec.id for spec in PARAMETERS].index("air_temperature")


def main(argv: list[str]) -> int:
    """Run the benchmark; return the exit code."""
    repeats = int(argv[0]) if argv else 20
    days = float(argv[1]) if len(argv) > 1 else 1.0
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-health-") as tmp:
        root = Path(tmp)
        influx = InfluxDB(root / "influxdb", free_port())
        influx.start_and_wait()
        api: ManagedProcess | None = None
        try:
            influx.create_database(DB)
            registry_path = root / "stations.toml"
            ids = write_registry(registry_path, STATIONS)
            now_s = int(time.time()) // STEP_S * STEP_S
            started = time.perf_counter()
            points = load(influx, ids, now_s, days)
            print(f"loaded {points:,} points in {time.perf_counter() - started:.1f} s", flush=True)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
            env.update(
                MELTEMI_INFLUX_URL=influx.url,
                MELTEMI_INFLUX_DB=DB,
                MELTEMI_STATIONS_FILE=str(registry_path),
                MELTEMI_API_PORT=str(port),
                MELTEMI_MQTT_PORT=str(free_port()),
                MELTEMI_DATA_DIR=str(root / "var"),
                MELTEMI_API_RATE_PER_S="0",
                MELTEMI_API_CACHE_TTL_S="0",
            )
            api = start_api(root, env, port, timeout_s=60)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)

            def get(path: str) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(path)
                    assert response.status_code == 200, response.text[:300]
                    return response

                return call

            station = f"/v1/stations/{ids[0]}/health?days=31"
            started = time.perf_counter()
            get(station)()
            cold_ms = (time.perf_counter() - started) * 1000
            cases = {
                "latest": "/v1/latest",
                "station_health_31d_warm": station,
                "network_health_1d": "/v1/health/stations?days=1",
                "network_health_7d": "/v1/health/stations?days=7",
                "sta_datastream_1000": f"/sta/v1.1/Datastreams({100 + TEMPERATURE_K})"
                "/Observations?$top=1000",
                "sta_observations_skip_50000": "/sta/v1.1/Observations?$top=1000&$skip=50000",
            }
            times = {name: timed(get(path), repeats) for name, path in cases.items()}
            base = median(times["latest"])
            figure("station_health_31d_cold", cold_ms, "ms")
            print(f"station_health_31d_cold_ratio: {cold_ms / 1000 / base:.2f} x", flush=True)
            for name, values in times.items():
                figure(f"{name}_median", median(values) * 1000, "ms")
                figure(f"{name}_p95", p95(values) * 1000, "ms")
                print(f"{name}_ratio: {median(values) / base:.2f} x", flush=True)
        finally:
            if api is not None:
                api.stop()
            influx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
