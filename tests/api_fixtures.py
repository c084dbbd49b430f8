"""Helpers of the API tests: a seeded dataset in the stored schema, and the API in a thread.

The dataset is generated here in Python and written straight to InfluxDB (line protocol from
ingest.lineproto), so that the tests can compute every expected figure with numpy from the
same values, independently of the API.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

from api.app import create_app
from api.live import LiveFeed
from ingest.lineproto import format_point
from meltemi.services import InfluxDB, free_port
from sensors import schema
from sensors.catalog import CATALOG, PARAMETERS
from sensors.settings import Settings
from tests.helpers import wait_for, write_lines

NS = 1_000_000_000
ALL = [spec.id for spec in PARAMETERS]
# Stations of the API tests' registry (ids no other test uses).
FULL = "apitest-full"  # every parameter, 4 days of 2-minute data around the Athens DST change
LIVE = "apitest-live"  # recent data: latest, default series, status
QUIET = "apitest-quiet"  # registered, never reported
THIN = "apitest-thin"  # air temperature only
GHOST = "apitest-ghost"  # has data in InfluxDB, not in the registry
FULL_PARAMS = ALL
LIVE_PARAMS = ["air_temperature", "relative_humidity", "wind_speed", "wind_direction"]
# 2026-10-25 01:00 UTC: Europe/Athens goes back from +03:00 to +02:00 (a 25-hour local day).
FULL_START_S = int(datetime(2026, 10, 23, tzinfo=UTC).timestamp())
FULL_END_S = int(datetime(2026, 10, 27, tzinfo=UTC).timestamp())
FULL_STEP_S = 120


def registry_text() -> str:
    """Return the TOML registry of the API tests."""
    tables = []
    for k, (station_id, params) in enumerate(
        [
            (FULL, FULL_PARAMS),
            (LIVE, LIVE_PARAMS),
            (QUIET, ["air_temperature"]),
            (THIN, ["air_temperature"]),
        ]
    ):
        listed = ", ".join(f'"{p}"' for p in params)
        tables.append(
            f'[[station]]\nid = "{station_id}"\nname = "API test {k}"\n'
            f'municipality = "Elefsina"\nlat = 38.04\nlon = 23.54\nelevation_m = 12\n'
            f"parameters = [{listed}]\n"
        )
    return "\n".join(tables)


@dataclass
class StationData:
    """The seeded readings of one station: timestamps, values (NaN = absent) and flags."""

    ts_ns: np.ndarray[Any, np.dtype[np.int64]]
    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = field(default_factory=dict)
    good: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = field(default_factory=dict)

    def lines(self, station_id: str) -> list[str]:
        """Return the readings as line protocol in the stored schema."""
        out = []
        for k, ts in enumerate(self.ts_ns.tolist()):
            fields: dict[str, float | int | str] = {schema.SEQ_FIELD: k}
            for p, column in self.values.items():
                if np.isnan(column[k]):
                    continue
                fields[p] = float(column[k])
                fields[schema.qc_field(p)] = "good" if self.good[p][k] else "suspect"
                fields[schema.check_field(p)] = "" if self.good[p][k] else "step"
            out.append(format_point(schema.READINGS, {schema.STATION_TAG: station_id}, fields, ts))
        return out


def generate(
    params: list[str], start_s: int, end_s: int, step_s: int, seed: int, gaps: bool = True
) -> StationData:
    """Return plausible random readings; some values absent and ~10 % suspect."""
    rng = np.random.default_rng(seed)
    ts = np.arange(start_s, end_s, step_s, dtype=np.int64) * NS
    n = len(ts)
    data = StationData(ts)
    for p in params:
        spec = CATALOG[p]
        if p == "wind_direction":
            column = np.round(rng.normal(0.0, 40.0, n) % 360.0, 1)  # around north: 350 and 10
        elif p == "precipitation":
            column = np.where(rng.random(n) < 0.1, np.round(rng.random(n) * 2, 2), 0.0)
        elif p == "relative_humidity":
            column = np.round(rng.uniform(30, 95, n), 1)
        elif p == "air_temperature":
            column = np.round(rng.uniform(8, 30, n), 2)
        else:
            span = min(spec.max - spec.min, 100.0)
            column = np.round(spec.min + rng.random(n) * span, 2)
        if gaps:
            column[rng.random(n) < 0.08] = np.nan
        data.values[p] = column.astype(np.float64)
        data.good[p] = rng.random(n) >= 0.1
    return data


def write_status(url: str, db: str, station_id: str, state: str, ts_ns: int) -> None:
    """Write a station_status point as the ingester does."""
    line = format_point(
        schema.STATUS, {schema.STATION_TAG: station_id}, {"state": state, "firmware": "t"}, ts_ns
    )
    write_lines(url, db, [line])


def api_settings(base: Settings, tmp: Path, **overrides: Any) -> Settings:
    """Return settings for the API tests' registry, based on the session's services."""
    registry = tmp / "stations.toml"
    registry.write_text(registry_text())
    values = base.model_dump()
    # The API tests send many requests from one address; the rate limits (api.limits) have
    # tests of their own (tests/test_api_cost.py), which turn them back on.
    values.update(stations_file=registry, api_rate_per_s=0.0, **overrides)
    return Settings(**values)


def base_settings(influx: InfluxDB, broker_port: int, tmp: Path) -> Settings:
    """Return settings with a database of this module's own on the session's InfluxDB."""
    db = "tapi_" + uuid.uuid4().hex[:10]
    influx.create_database(db)
    return Settings(
        mqtt_port=broker_port, influx_url=influx.url, influx_db=db, data_dir=tmp / "var"
    )


class ApiThread:
    """The API (create_app) under uvicorn in a thread, on a free port."""

    def __init__(
        self, settings: Settings, configure: Callable[[LiveFeed], None] | None = None
    ) -> None:
        self.app = create_app(settings)
        self.feed: LiveFeed = self.app.state.live_feed
        if configure is not None:  # e.g. a short heartbeat for the stream tests
            configure(self.feed)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            proxy_headers=False,  # as api.server: only api.client_address reads X-Forwarded-For
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-api-test", daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET a path of the API."""
        return self.client.get(path, params=params or None)

    def start(self, wait_feed: bool = False) -> ApiThread:
        """Start serving; return once uvicorn has started (and the live feed has subscribed)."""
        self.thread.start()
        wait_for(lambda: self.server.started, 20, message="uvicorn started")
        if wait_feed:
            wait_for(lambda: self.feed.connected, 20, message="live feed subscribed")
        return self

    def close(self) -> None:
        """Stop uvicorn and wait for its thread."""
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@contextmanager
def serve(
    settings: Settings,
    configure: Callable[[LiveFeed], None] | None = None,
    wait_feed: bool = False,
) -> Iterator[ApiThread]:
    """Run the API for the duration of a ``with`` block."""
    server = ApiThread(settings, configure)
    try:
        yield server.start(wait_feed)
    finally:
        server.close()


def query_log_count(influx: InfluxDB, marker: str) -> int:
    """Return how many queries InfluxDB logged (query-log-enabled) that mention ``marker``."""
    return sum(
        1
        for line in influx.log_text().splitlines()
        if 'msg="Executing query"' in line and marker in line
    )


# Tests of the live feed wait until the API's live feed has subscribed before publishing.
ApiServer = ApiThread


@contextmanager
def serve_api(
    settings: Settings, configure: Callable[[LiveFeed], None] | None = None
) -> Iterator[ApiThread]:
    """Run the API for the duration of a ``with`` block, its live feed subscribed."""
    with serve(settings, configure, wait_feed=True) as server:
        yield server


# --- Server-Sent Events client of the stream tests (test_stream, test_live_trust) ---------


class SseStream:
    """A minimal Server-Sent Events reader over httpx (an independent client, not our code)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(10.0))
        self._context = self.client.stream("GET", url, headers=headers or {})
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()

    def next_block(self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0):
        """Return the next event block (fields; comments under "comments") that ``match``es."""
        deadline = time.monotonic() + timeout_s
        block: dict[str, Any] = {}
        for line in self._lines:
            if time.monotonic() > deadline:
                break
            if line == "":
                if block and match(block):
                    return block
                block = {}
                continue
            if line.startswith(":"):
                block.setdefault("comments", []).append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            block[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError(f"no matching event within {timeout_s} s")

    def next_event(self, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """Return the next event of this kind, its data decoded."""
        block = self.next_block(lambda b: b.get("event") == kind, timeout_s)
        return {"id": block.get("id"), "data": json.loads(block["data"])}

    def close(self) -> None:
        """Close the connection."""
        self._context.__exit__(None, None, None)
        self.client.close()


@contextmanager
def open_stream(url: str, headers: dict[str, str] | None = None) -> Iterator[SseStream]:
    """Open an SSE stream and wait for its opening ``retry:`` block."""
    stream = SseStream(url, headers)
    try:
        assert stream.response.status_code == 200, stream.response.read()
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        stream.next_block(lambda b: "retry" in b)
        yield stream
    finally:
        stream.close()
