"""API latency next to the bare InfluxQL it issues, measured in the same run (issue 2).

Loads, straight into InfluxDB, 100 stations of 60 s readings (every parameter, with QC fields)
for ``LATEST_DAYS`` days, one of them with 30 days and one with a year of 10-minute readings;
builds the rollups (``meltemi rollup rebuild``). Runs a broker and ``meltemi api`` as
subprocesses, then times, REPEATS times each after a warm-up:

- ``/v1/latest`` (100 stations, from memory: api.latest_memory) next to the statement the
  API used to send for it, straight to ``/query``;
- a 30-day hourly series of the 30-day station, default parameters (12 stored, 4 derived), and
  a one-year daily series of the year station (from rollups: api.rollups), each next to the
  raw-aggregation statements an API without rollups sends, straight to ``/query`` (the stored
  aggregates in one request and the derived inputs' readings in another, concurrently);
- the 30-day series for ``air_temperature`` alone;
- a 30-day raw CSV export of every parameter next to one raw SELECT of the same rows.

The bare queries are built by the API's own builders (api.series.plan_statements), so
the text is identical. Prints median and p95 of each and the ratio API / bare, then the
``name: value unit`` lines. Usage: python bench/api.py [REPEATS] [LATEST_DAYS]
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.influx import query_params
from api.influxql import InfluxQL, join_statements
from api.queries import latest_readings, raw_readings
from api.series import SeriesQuery, parse_rfc3339_ns, plan_series, plan_statements
from bench._common import ALL_PARAMETERS, figure, median, p95, start_api, write_registry
from ingest.lineproto import format_point
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from sensors import schema
from sensors.registry import load_registry

STATIONS = 100
STEP_S = 60
SERIES_DAYS = 30
YEAR_DAYS = 365  # the second station: a year of 10-minute readings (daily series)
YEAR_STEP_S = 600
DB = "bench_api"


def _lines(station_id: str, start_s: int, end_s: int, seed: int, step_s: int = STEP_S) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for k, ts in enumerate(range(start_s, end_s, step_s)):
        fields: dict[str, float | int | str] = {schema.SEQ_FIELD: k}
        for p in ALL_PARAMETERS:
            fields[p] = round(float(rng.uniform(0, 40 if p != "air_pressure" else 1)), 2) + (
                1000.0 if p == "air_pressure" else 0.0
            )
            fields[schema.qc_field(p)] = "good"
            fields[schema.check_field(p)] = ""
        lines.append(
            format_point(schema.READINGS, {schema.STATION_TAG: station_id}, fields, ts * 10**9)
        )
    return lines


def load(influx: InfluxDB, ids: list[str], now_s: int, latest_days: float) -> int:
    """Write the readings straight to /write; return how many points."""
    total = 0
    with httpx.Client(timeout=120) as client:
        for index, station_id in enumerate(ids):
            days = SERIES_DAYS if index == 0 else YEAR_DAYS if index == 1 else latest_days
            step = YEAR_STEP_S if index == 1 else STEP_S
            lines = _lines(station_id, now_s - int(days * 86400), now_s, index, step)
            for k in range(0, len(lines), 10_000):
                response = client.post(
                    f"{influx.url}/write",
                    params={"db": DB, "precision": "ns"},
                    content="\n".join(lines[k : k + 10_000]).encode(),
                )
                assert response.status_code == 204, response.text
            total += len(lines)
    return total


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    """Return the wall time of each call, after 3 warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


class Bare:
    """Sends statements straight to /query over one kept-alive client, as the API does."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.client = self.runner.run(self._open(url))

    @staticmethod
    async def _open(url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, timeout=120)

    async def _send(self, requests: list[list[InfluxQL]]) -> None:
        responses = await asyncio.gather(
            *(
                self.client.get("/query", params=query_params(DB, join_statements(statements)))
                for statements in requests
            )
        )
        for response in responses:
            assert response.status_code == 200
            assert '"error"' not in response.text[:200]

    def call(self, requests: list[list[InfluxQL]]) -> Callable[[], object]:
        """Return a call sending these requests concurrently (and reading the bodies)."""
        return lambda: self.runner.run(self._send(requests))

    def close(self) -> None:
        """Close the client and the loop."""
        self.runner.run(self.client.aclose())
        self.runner.close()


def report(name: str, api_times: list[float], bare_times: list[float]) -> dict[str, float]:
    """Print one comparison and return its figures."""
    figures = {
        f"{name}_api_median": median(api_times) * 1000,
        f"{name}_api_p95": p95(api_times) * 1000,
        f"{name}_influxql_median": median(bare_times) * 1000,
        f"{name}_influxql_p95": p95(bare_times) * 1000,
    }
    figures[f"{name}_ratio"] = median(api_times) / median(bare_times)
    print(
        f"{name}: API median {figures[f'{name}_api_median']:.1f} ms "
        f"(p95 {figures[f'{name}_api_p95']:.1f}), bare InfluxQL median "
        f"{figures[f'{name}_influxql_median']:.1f} ms (p95 {figures[f'{name}_influxql_p95']:.1f})"
        f", ratio {figures[f'{name}_ratio']:.2f}",
        flush=True,
    )
    return figures


def export_figures(
    client: httpx.Client, bare: Bare, station_id: str, window: dict[str, str], repeats: int
) -> dict[str, float]:
    """Time a 30-day raw CSV export (every parameter) next to one raw SELECT of its rows."""
    params = {
        "stations": station_id,
        "parameters": ",".join(ALL_PARAMETERS),
        "start": window["start"],
        "end": window["end"],
        "interval": "raw",
    }
    rows = client.get("/v1/export", params=params).text.count("\n") - 1
    statement = raw_readings(
        station_id,
        ALL_PARAMETERS,
        start_ns=parse_rfc3339_ns("start", window["start"]),
        end_ns=parse_rfc3339_ns("end", window["end"]),
        limit=None,
    )

    def export() -> None:
        with client.stream("GET", "/v1/export", params=params) as response:
            assert response.status_code == 200
            for _ in response.iter_raw():
                pass

    runs = max(3, repeats // 10)
    figures = report(
        "export_30d_raw_csv", timed(export, runs), timed(bare.call([[statement]]), runs)
    )
    figures["export_30d_raw_rows"] = float(rows)
    figures["export_30d_raw_api_rows_per_s"] = rows / (
        figures["export_30d_raw_csv_api_median"] / 1000
    )
    figures["export_30d_raw_influxql_rows_per_s"] = rows / (
        figures["export_30d_raw_csv_influxql_median"] / 1000
    )
    figures["export_30d_raw_rows_per_s_ratio"] = (
        figures["export_30d_raw_api_rows_per_s"] / figures["export_30d_raw_influxql_rows_per_s"]
    )
    return figures


def main(argv: list[str]) -> int:
    """Run the benchmark; return the exit code."""
    repeats = int(argv[0]) if argv else 50
    latest_days = float(argv[1]) if len(argv) > 1 else 1.0
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-api-") as tmp:
        root = Path(tmp)
        influx = InfluxDB(root / "influxdb", free_port())
        influx.start_and_wait()
        broker = Mosquitto(root / "mosquitto", free_port())  # the live feed of /v1/latest
        broker.start_and_wait()
        api: ManagedProcess | None = None
        try:
            influx.create_database(DB)
            registry_path = root / "stations.toml"
            ids = write_registry(registry_path, STATIONS)
            now_s = int(time.time()) // STEP_S * STEP_S
            started = time.perf_counter()
            points = load(influx, ids, now_s, latest_days)
            print(f"loaded {points:,} points in {time.perf_counter() - started:.1f} s", flush=True)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
            env.update(
                MELTEMI_INFLUX_URL=influx.url,
                MELTEMI_INFLUX_DB=DB,
                MELTEMI_STATIONS_FILE=str(registry_path),
                MELTEMI_API_PORT=str(port),
                MELTEMI_MQTT_PORT=str(broker.port),
                MELTEMI_DATA_DIR=str(root / "var"),
                MELTEMI_API_ROLLUP_STALE_S="86400",  # rollups built once, before timing
                # Latency of the work itself: no per-client rate limit, no shared answers.
                MELTEMI_API_RATE_PER_S="0",
                MELTEMI_API_CACHE_TTL_S="0",
            )
            api = start_api(root, env, port, timeout_s=60)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            # /v1/latest is served from memory once the live feed has subscribed and seeded.
            api.wait_until(lambda: client.get("/health").json().get("mqtt") is True)
            # Rollups are read only after a deep pass that started once the feed subscribed.
            started = time.perf_counter()
            command = [sys.executable, "-m", "meltemi.cli", "--log-level", "WARNING", "rollup"]
            subprocess.run([*command, "rebuild", "--days", str(YEAR_DAYS + 1)], env=env, check=True)
            print(f"rollups rebuilt in {time.perf_counter() - started:.1f} s", flush=True)

            def get(path: str, **params: str) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(path, params=params or None)
                    assert response.status_code == 200, response.text[:300]
                    return response

                return call

            bare = Bare(influx.url)
            latest = client.get("/v1/latest").json()
            assert len(latest["stations"]) == STATIONS
            figures = report(
                "latest_100_stations",
                timed(get("/v1/latest"), max(repeats, 200)),
                timed(bare.call([[latest_readings(recent=True)]]), repeats),
            )
            station = load_registry(registry_path).get(ids[0])
            assert station is not None
            window = {
                "start": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s - SERIES_DAYS * 86400)
                ),
                "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
                "interval": "1h",
            }
            for name, parameters in (
                ("series_30d_1h_all", None),
                ("series_30d_1h_air_temperature", "air_temperature"),
            ):
                params = dict(window, **({"parameters": parameters} if parameters else {}))
                body = client.get(f"/v1/stations/{ids[0]}/series", params=params).json()
                assert "points" in body, body
                assert SERIES_DAYS * 24 <= len(body["points"]) <= SERIES_DAYS * 24 + 1
                plan = plan_series(station, SeriesQuery(**params), now_ns=now_s * 10**9)
                stored, readings = plan_statements(plan)
                requests = [r for r in (stored, [readings] if readings else []) if r]
                figures |= report(
                    name,
                    timed(get(f"/v1/stations/{ids[0]}/series", **params), repeats),
                    timed(bare.call(requests), repeats),
                )
            year = load_registry(registry_path).get(ids[1])
            assert year is not None
            params = {
                "start": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s // 86400 * 86400 - YEAR_DAYS * 86400)
                ),
                "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s // 86400 * 86400)),
                "interval": "1d",
            }
            body = client.get(f"/v1/stations/{ids[1]}/series", params=params).json()
            assert len(body["points"]) == YEAR_DAYS, body
            plan = plan_series(year, SeriesQuery(**params), now_ns=now_s * 10**9)
            stored, readings = plan_statements(plan)
            figures |= report(
                "series_1y_1d_all",
                timed(get(f"/v1/stations/{ids[1]}/series", **params), repeats),
                timed(bare.call([stored, [readings] if readings else []]), max(3, repeats // 10)),
            )
            figures |= export_figures(client, bare, ids[0], window, repeats)
            client.close()
            bare.close()
        finally:
            if api is not None:
                api.stop()
            broker.stop()
            influx.stop()
    for name, value in figures.items():
        unit = "x" if name.endswith("_ratio") else "ms"
        unit = "rows/s" if name.endswith("_per_s") else "rows" if name.endswith("_rows") else unit
        figure(name, value, unit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
