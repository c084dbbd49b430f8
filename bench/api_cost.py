"""/health latency while heavy series requests run, next to an idle baseline (issue 8 part 6).

Loads, straight into InfluxDB, one station with a reading every second (air temperature and
wind direction) for ``DAYS`` days. Runs ``meltemi api`` as a subprocess (rate limit and answer
cache off, 4 heavy slots per client, so that the load really reaches the work), then:

1. idle: ``REQUESTS`` sequential ``GET /health``, one every 10 ms: p50 and p99;
2. loaded: the same while ``HEAVY`` threads each loop over heavy requests, alternating a
   20-hour raw series (72,000 points merged, tabled and rendered by the API) and a one-minute
   vector-mean series over the whole span (InfluxDB's subquery over every reading);
   probed the same way (at least ``REQUESTS`` times, and until 6 heavy requests completed):
   p50 and p99 again, and the ratio loaded / idle.

The issue's target: /health p99 under that load < 100 ms (it was up to 2 s when chunk merging
ran on the event loop). /health itself re-probes the broker and InfluxDB every 3 s (api.health),
so its p99 includes InfluxDB's own ping latency under that load; /v1/parameters, probed in turn,
does no I/O and shows the event loop alone. Prints ``name: value unit`` lines.
Usage: python bench/api_cost.py [REQUESTS] [DAYS]
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import figure, median, services, start_api
from meltemi.services import free_port

STATION = "bench-dense"
DB = "bench_api_cost"
HEAVY = 3
PROBE_EVERY_S = 0.01


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _load(url: str, start_s: int, seconds: int) -> None:
    with httpx.Client(timeout=120) as client:
        for begin in range(0, seconds, 100_000):
            lines = [
                f"readings,station={STATION} air_temperature={15 + (k % 600) / 100},"
                f'air_temperature_qc="good",wind_direction={(k * 7) % 360},'
                f'wind_direction_qc="good" {(start_s + k) * 10**9}'
                for k in range(begin, min(begin + 100_000, seconds))
            ]
            response = client.post(
                f"{url}/write", params={"db": DB}, content="\n".join(lines).encode()
            )
            assert response.status_code == 204, response.text


def _probe_times(
    client: httpx.Client, requests: int, until: threading.Event | None = None
) -> dict[str, list[float]]:
    """Probe /health and /v1/parameters (no I/O at all: the event loop alone) in turn, every
    ``PROBE_EVERY_S``: ``requests`` times each, and on until ``until`` is set."""
    times: dict[str, list[float]] = {"health": [], "parameters": []}
    while len(times["health"]) < requests or (until is not None and not until.is_set()):
        for name, path in (("health", "/health"), ("parameters", "/v1/parameters")):
            started = time.perf_counter()
            response = client.get(path)
            times[name].append(time.perf_counter() - started)
            assert response.status_code in (200, 503), response.text[:200]
            time.sleep(PROBE_EVERY_S)
    return times


def main(argv: list[str]) -> int:
    """Run the benchmark; return the exit code."""
    requests = int(argv[0]) if argv else 300
    days = float(argv[1]) if len(argv) > 1 else 4.0
    seconds = int(days * 86400)
    with services() as (broker, influx, root):
        influx.create_database(DB)
        start_s = (int(time.time()) - seconds - 3600) // 3600 * 3600
        began = time.perf_counter()
        _load(influx.url, start_s, seconds)
        print(f"loaded {seconds:,} readings in {time.perf_counter() - began:.1f} s", flush=True)
        registry = root / "stations.toml"
        registry.write_text(
            f'[[station]]\nid = "{STATION}"\nname = "Dense"\nmunicipality = "Elefsina"\n'
            "lat = 38.04\nlon = 23.54\nelevation_m = 10\n"
            'parameters = ["air_temperature", "wind_direction"]\n'
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
        env.update(
            MELTEMI_INFLUX_URL=influx.url,
            MELTEMI_INFLUX_DB=DB,
            MELTEMI_INFLUX_TIMEOUT_S="120",
            MELTEMI_STATIONS_FILE=str(registry),
            MELTEMI_API_PORT=str(port),
            MELTEMI_MQTT_PORT=str(broker.port),
            MELTEMI_DATA_DIR=str(root / "var"),
            MELTEMI_API_RATE_PER_S="0",
            MELTEMI_API_CACHE_TTL_S="0",
            MELTEMI_API_MAX_HEAVY_PER_CLIENT="4",
        )
        api = start_api(root, env, port, timeout_s=60)
        try:
            base = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=base, timeout=60)
            idle = _probe_times(client, requests)

            stop = threading.Event()
            enough = threading.Event()  # every heavy thread finished 2 requests
            heavy_times: list[float] = []
            heavy_codes: list[int] = []
            fmt = "%Y-%m-%dT%H:%M:%SZ"

            def heavy(k: int) -> None:
                with httpx.Client(base_url=base, timeout=120) as own:
                    n = 0
                    while not stop.is_set():
                        if n % 2 == 0:
                            begin = start_s + 3600 * (1 + (k * 7 + n) % int(days * 24 - 21))
                            params = {
                                "interval": "raw",
                                "parameters": "air_temperature,wind_direction",
                                "start": time.strftime(fmt, time.gmtime(begin)),
                                "end": time.strftime(fmt, time.gmtime(begin + 20 * 3600)),
                            }
                        else:
                            params = {
                                "interval": "1m",
                                "parameters": "wind_direction",
                                "start": time.strftime(fmt, time.gmtime(start_s)),
                                "end": time.strftime(fmt, time.gmtime(start_s + seconds)),
                            }
                        began = time.perf_counter()
                        response = own.get(f"/v1/stations/{STATION}/series", params=params)
                        heavy_times.append(time.perf_counter() - began)
                        heavy_codes.append(response.status_code)
                        n += 1
                        if len(heavy_times) >= 2 * HEAVY:
                            enough.set()

            threads = [threading.Thread(target=heavy, args=(k,)) for k in range(HEAVY)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)  # let every heavy request get going before measuring
            loaded = _probe_times(client, requests, until=enough)
            stop.set()
            for thread in threads:
                thread.join(180)
            client.close()
        finally:
            api.stop()
    assert heavy_codes
    assert set(heavy_codes) == {200}, sorted(set(heavy_codes))
    for name in ("health", "parameters"):
        idle_p99 = _percentile(idle[name], 0.99)
        loaded_p99 = _percentile(loaded[name], 0.99)
        figure(f"{name}_idle_p50", median(idle[name]) * 1000, "ms")
        figure(f"{name}_idle_p99", idle_p99 * 1000, "ms")
        figure(f"{name}_loaded_p50", median(loaded[name]) * 1000, "ms")
        figure(f"{name}_loaded_p99", loaded_p99 * 1000, "ms")
        figure(f"{name}_p99_loaded_over_idle_ratio", loaded_p99 / idle_p99, "x")
    figure("heavy_requests_completed", len(heavy_times), "requests")
    figure("heavy_request_median", median(heavy_times), "s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
