"""``GET /v1/export`` against a real InfluxDB: every reading exactly once and exactly as stored,
aggregated slices equal to the series route, JSON pages that resume, gzip, the cost refusal,
and the memory of an API process streaming a year of 1-minute data."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import api.export as export_module
import api.influx as influx_module
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from sensors.models import format_ts
from tests.api_fixtures import (
    FULL,
    FULL_START_S,
    NS,
    THIN,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    serve,
)
from tests.helpers import settings_env, write_lines

DAY_S = 86400
FULL_PARAMS = ["air_temperature", "relative_humidity", "wind_direction"]
START = format_ts(FULL_START_S * NS)
END = format_ts((FULL_START_S + 3 * DAY_S) * NS)


@pytest.fixture(scope="module")
def seeded() -> dict[str, StationData]:
    """Three days: FULL every 2 min (three parameters, so dew point is derivable), THIN every
    5 min."""
    end_s = FULL_START_S + 3 * DAY_S
    return {
        FULL: generate(FULL_PARAMS, FULL_START_S, end_s, 120, seed=21),
        THIN: generate(["air_temperature"], FULL_START_S, end_s, 300, seed=22),
    }


@pytest.fixture(scope="module")
def settings_export(influx: InfluxDB, broker: Mosquitto, seeded, tmp_path_factory):
    """Settings over a database holding ``seeded``."""
    tmp = tmp_path_factory.mktemp("api-export")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp, api_cache_ttl_s=0.0)
    for station_id, data in seeded.items():
        write_lines(influx.url, settings.influx_db, data.lines(station_id))
    return settings


@pytest.fixture(scope="module")
def api(settings_export) -> Iterator[ApiThread]:
    """The API in a thread."""
    with serve(settings_export) as server:
        yield server


def _expected_raw(data: StationData, parameters: list[str]) -> list[list[str]]:
    """Return the CSV rows a raw export (good values only) must hold, from the seeded data."""
    rows = []
    for k, ts in enumerate(data.ts_ns.tolist()):
        cells = []
        for p in parameters:
            value = data.values[p][k]
            cells.append(repr(float(value)) if np.isfinite(value) and data.good[p][k] else "")
        if any(cells):
            rows.append([format_ts(int(ts)), *cells])
    return rows


def test_raw_csv_of_two_stations_holds_every_good_value_once(api, seeded):
    response = api.get(
        "/v1/export",
        stations=f"{FULL},{THIN}",
        parameters="air_temperature",
        start=START,
        end=END,
        interval="raw",
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "station", "air_temperature"]
    expected = [
        [t, station_id, *cells]
        for station_id in (FULL, THIN)
        for t, *cells in _expected_raw(seeded[station_id], ["air_temperature"])
    ]
    assert len(expected) > 2500  # 72 h: more than the old raw cap (~27.8 h) allowed
    assert rows[1:] == expected


def test_raw_export_spans_many_influx_chunks(api, seeded, monkeypatch):
    # Small chunks and batches: the stream is rendered batch by batch, and still whole.
    monkeypatch.setattr(influx_module, "STREAM_CHUNK_ROWS", 97)
    monkeypatch.setattr(influx_module, "STREAM_BATCH_BYTES", 3000)
    monkeypatch.setattr(influx_module.InfluxReader.stream, "__kwdefaults__", {"chunk_rows": 97})
    response = api.get(
        "/v1/export",
        stations=FULL,
        parameters=",".join(FULL_PARAMS),
        start=START,
        end=END,
        interval="raw",
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "station", *FULL_PARAMS]
    assert [[r[0], *r[2:]] for r in rows[1:]] == _expected_raw(seeded[FULL], FULL_PARAMS)


def test_ndjson_equals_json_pages_walked_by_cursor(api):
    window = {
        "stations": f"{THIN},{FULL}",
        "parameters": "air_temperature",
        "start": START,
        "end": END,
        "interval": "raw",
        "include_suspect": "true",
    }
    stream = api.get("/v1/export", format="ndjson", **window)
    assert stream.status_code == 200, stream.text
    assert stream.headers["content-type"].startswith("application/x-ndjson")
    streamed = [json.loads(line) for line in stream.text.splitlines()]
    paged: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        extra: dict[str, str] = {"cursor": cursor} if cursor else {}
        page = api.get("/v1/export", format="json", page_size=700, **window, **extra)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["rows"]) <= 700
        paged += body["rows"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert paged == streamed
    assert len(streamed) > 2500
    assert pages >= len(streamed) // 700
    assert {row["station"] for row in streamed[:10]} == {THIN}
    assert any(row["qc"]["air_temperature"] == "suspect" for row in streamed)


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "1h", "agg": "mean,min,max,sum,count", "parameters": "air_temperature"},
        {"interval": "1d", "tz": "Europe/Athens"},
        {"interval": "3h", "parameters": "dew_point,wind_direction"},
    ],
)
def test_aggregated_export_in_slices_equals_the_series_route(api, monkeypatch, params):
    monkeypatch.setattr(export_module, "SLICE_WINDOWS", 2)  # many slices, windows whole
    window = {"start": START, "end": END, "parameters": ",".join(FULL_PARAMS), **params}
    single = api.get(f"/v1/stations/{FULL}/series", **window)
    assert single.status_code == 200, single.text
    exported = api.get("/v1/export", stations=FULL, format="ndjson", **window)
    assert exported.status_code == 200, exported.text
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert [{"station": FULL, **point} for point in single.json()["points"]] == rows
    assert len(rows) >= 3


def test_aggregated_json_pages_resume_at_the_next_window(api, monkeypatch):
    window = {"stations": f"{FULL},{THIN}", "start": START, "end": END, "interval": "1h"}
    window["parameters"] = "air_temperature"
    whole = [
        json.loads(line)
        for line in api.get("/v1/export", format="ndjson", **window).text.splitlines()
    ]
    assert len(whole) == 2 * 72
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra: dict[str, str] = {"cursor": cursor} if cursor else {}
        body = api.get("/v1/export", format="json", page_size=50, **window, **extra).json()
        paged += body["rows"]
        cursor = body["next"]
        if cursor is None:
            break
    assert paged == whole


def test_gzip_on_request(api):
    window = {"stations": FULL, "start": START, "end": END, "interval": "raw"}
    plain = api.get("/v1/export", **window)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        with client.stream(
            "GET", "/v1/export", params=window, headers={"Accept-Encoding": "gzip"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip"
            body = b"".join(response.iter_raw())
        identity = client.get("/v1/export", params=window, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in identity.headers
    assert gzip.decompress(body).decode() == plain.text == identity.text
    assert len(body) < len(plain.content) // 2


def test_cursor_of_another_request_is_refused(api):
    window = {"stations": FULL, "start": START, "end": END, "interval": "raw"}
    body = api.get("/v1/export", format="json", page_size=10, **window).json()
    assert body["next"] is not None
    other = api.get(
        "/v1/export", format="json", cursor=body["next"], **{**window, "stations": THIN}
    )
    assert other.status_code == 400
    assert "different request" in other.json()["detail"]
    junk = api.get("/v1/export", format="json", cursor="not-a-cursor", **window)
    assert junk.status_code == 400


def test_cost_refused_before_streaming(settings_export, seeded):
    # Work = readings counted in the range (one count() of the first parameter) x parameters.
    readings = int(np.isfinite(seeded[FULL].values["air_temperature"]).sum())
    window = {"stations": FULL, "start": START, "end": END, "interval": "raw"}
    three = ",".join(FULL_PARAMS)
    exact = settings_export.model_copy(update={"api_max_scan_values": 3 * readings})
    with serve(exact) as server:
        at_budget = server.get("/v1/export", parameters=three, **window)
    assert at_budget.status_code == 200, at_budget.text
    tight = settings_export.model_copy(update={"api_max_scan_values": 3 * readings - 1})
    with serve(tight) as server:
        two = server.get("/v1/export", parameters="air_temperature,wind_direction", **window)
        refused = server.get("/v1/export", parameters=three, **window)
    assert two.status_code == 200, two.text
    assert refused.status_code == 400, refused.text
    assert f"about {3 * readings:,} stored values" in refused.json()["detail"]


def _rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_a_year_of_minute_data_streams_in_constant_memory(
    influx: InfluxDB, broker: Mosquitto, tmp_path: Path
):
    settings = api_settings(base_settings(influx, broker.port, tmp_path), tmp_path)
    start_s = 1_735_689_600  # 2025-01-01
    minutes = 365 * 1440
    rng = np.random.default_rng(5)
    values = np.round(rng.uniform(-5, 40, minutes), 2).tolist()
    lines = [
        f'readings,station={THIN} seq={k}i,air_temperature={v!r},air_temperature_qc="good",'
        f'air_temperature_check="" {(start_s + 60 * k) * NS}'
        for k, v in enumerate(values)
    ]
    for at in range(0, minutes, 100_000):
        write_lines(influx.url, settings.influx_db, lines[at : at + 100_000])
    del lines
    port = free_port()
    env = settings_env(settings, MELTEMI_API_PORT=str(port))
    process = ManagedProcess(
        "api", [sys.executable, "-m", "meltemi.cli", "api"], tmp_path / "api.log", env=env
    )
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/v1/parameters").status_code == 200
            except httpx.HTTPError:
                return False

        process.wait_until(answers)
        # Warm up (imports, first query), then measure the growth of the peak.
        httpx.get(f"{url}/v1/export", params={"stations": THIN, "interval": "raw"}, timeout=30)
        before = _rss_kib(process.pid, "VmRSS")
        params = {
            "stations": THIN,
            "start": format_ts(start_s * NS),
            "end": format_ts((start_s + 60 * minutes) * NS),
            "interval": "raw",
        }
        rows = 0
        last = b""
        with httpx.stream("GET", f"{url}/v1/export", params=params, timeout=120) as response:
            assert response.status_code == 200, response.read()
            for piece in response.iter_bytes():
                rows += piece.count(b"\n")
                last = (last + piece)[-200:]
        peak = _rss_kib(process.pid, "VmHWM")
    finally:
        process.stop()
    assert rows == minutes + 1  # the header and every reading
    assert last.endswith(f"{values[-1]!r}\n".encode())
    growth_mib = (peak - before) / 1024
    assert growth_mib < 50, f"peak RSS grew {growth_mib:.1f} MiB"


def test_fast_csv_path_equals_the_ndjson_points(api):
    # CSV is rendered column by column; NDJSON from the series route's points: same cells.
    parameters = [*FULL_PARAMS, "dew_point"]
    window = {
        "stations": FULL,
        "parameters": ",".join(parameters),
        "start": START,
        "end": END,
        "interval": "raw",
        "include_suspect": "true",
    }
    rows = list(csv.reader(io.StringIO(api.get("/v1/export", **window).text)))
    points = [
        json.loads(line)
        for line in api.get("/v1/export", format="ndjson", **window).text.splitlines()
    ]
    assert rows[0] == [
        "time",
        "station",
        *parameters,
        *(f"{p}_qc" for p in parameters),
        *(f"{p}_check" for p in parameters),
    ]
    expected = [
        [
            point["time"],
            point["station"],
            *(repr(point["values"][p]) if p in point["values"] else "" for p in parameters),
            *(point["qc"].get(p, "") for p in parameters),
            *(point.get("checks", {}).get(p, "") for p in parameters),
        ]
        for point in points
    ]
    assert rows[1:] == expected
    assert any(row[len(parameters) + 2] == "suspect" for row in rows[1:])
    assert any(row[2 * len(parameters) + 2] == "step" for row in rows[1:])
    assert all(row[5] != "" for row in rows[1:] if row[2] and row[3])  # dew point computed
