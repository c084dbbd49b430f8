"""Every route but ``/series`` against a real InfluxDB and Mosquitto: health, metrics, the
catalogue, stations, latest, CORS, and ``meltemi api`` as a process stopped by signal."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ingest.lineproto import format_point
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from sensors import schema
from sensors.catalog import PARAMETERS
from sensors.derived import DERIVED, compute_derived, derivable
from sensors.models import format_ts
from sensors.settings import Settings
from tests.api_fixtures import (
    GHOST,
    LIVE,
    LIVE_PARAMS,
    NS,
    QUIET,
    THIN,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    serve,
    write_status,
)
from tests.helpers import prometheus_value, settings_env, write_lines

NOW_S = int(time.time()) // 60 * 60


@pytest.fixture(scope="module")
def live_data() -> StationData:
    """Two hours of minute readings of the LIVE station, ending a minute ago, no gaps."""
    return generate(LIVE_PARAMS, NOW_S - 7200, NOW_S, 60, seed=11, gaps=False)


@pytest.fixture(scope="module")
def settings_api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Settings:
    """Settings of this module: its own database and the API tests' registry."""
    tmp = tmp_path_factory.mktemp("api-routes")
    return api_settings(base_settings(influx, broker.port, tmp), tmp)


@pytest.fixture(scope="module")
def api(influx: InfluxDB, settings_api: Settings, live_data: StationData) -> Iterator[ApiThread]:
    """The API over the LIVE station's data, a late replayed batch, statuses and a ghost."""
    db = settings_api.influx_db
    lines = live_data.lines(LIVE)
    newest, older = lines[-1:], lines[:-1]
    write_lines(influx.url, db, newest)  # the newest reading arrives first ...
    write_lines(influx.url, db, older)  # ... then a replayed offline buffer with older ts
    ghost = format_point(
        schema.READINGS, {schema.STATION_TAG: GHOST}, {"air_temperature": 1.0}, NOW_S * NS
    )
    write_lines(influx.url, db, [ghost])
    # THIN last reported three days ago: found by the whole-history fallback, not the last hour.
    thin = [
        format_point(
            schema.READINGS,
            {schema.STATION_TAG: THIN},
            {"air_temperature": value, "air_temperature_qc": "good"},
            (NOW_S - 3 * 86400 + offset) * NS,
        )
        for offset, value in ((0, 11.5), (60, 12.5))
    ]
    write_lines(influx.url, db, thin)
    write_status(influx.url, db, LIVE, "online", (NOW_S - 3600) * NS)
    write_status(influx.url, db, LIVE, "offline", (NOW_S - 60) * NS)
    write_status(influx.url, db, THIN, "online", (NOW_S - 60) * NS)
    with serve(settings_api) as server:
        yield server


def test_parameters_catalogue_lists_stored_and_derived(api):
    body = api.get("/v1/parameters").json()
    by_id = {p["id"]: p for p in body["parameters"]}
    assert set(by_id) == {spec.id for spec in PARAMETERS} | set(DERIVED)
    assert by_id["air_temperature"] == {
        "id": "air_temperature",
        "name": "Air temperature",
        "unit": "°C",
        "min": -50,
        "max": 60,
        "agg": "mean",
        "derived": False,
        "inputs": None,
        "source": None,
        "bands": None,
        "band_edge": None,
        "min_interval": None,
        "note": None,
    }
    assert by_id["precipitation"]["agg"] == "sum"
    assert by_id["dew_point"]["derived"] is True
    assert by_id["dew_point"]["inputs"] == ["air_temperature", "relative_humidity"]


def test_stations_have_last_seen_and_status(api, live_data):
    body = api.get("/v1/stations").json()
    by_id = {s["id"]: s for s in body["stations"]}
    assert list(by_id) == ["apitest-full", LIVE, QUIET, THIN]  # registry order, no ghost
    live = by_id[LIVE]
    assert live["last_seen"] == format_ts(int(live_data.ts_ns[-1]))
    assert live["status"] == "offline"  # the newest status point
    assert live["parameters"] == LIVE_PARAMS
    assert (live["lat"], live["lon"], live["elevation_m"], live["municipality"]) == (
        38.04,
        23.54,
        12,
        "Elefsina",
    )
    assert by_id[QUIET]["last_seen"] is None
    assert by_id[QUIET]["status"] == "unknown"
    assert by_id[THIN]["status"] == "online"
    assert by_id[THIN]["last_seen"] == format_ts((NOW_S - 3 * 86400 + 60) * NS)
    one = api.get(f"/v1/stations/{LIVE}")
    assert one.status_code == 200
    assert one.json() == live
    missing = api.get("/v1/stations/nowhere-1")
    assert missing.status_code == 404
    assert "unknown station" in missing.json()["detail"]


def test_latest_is_the_newest_observation_with_derived_values(api, live_data):
    body = api.get("/v1/latest").json()
    # Registry order; no ghost (unregistered), no quiet (never reported).
    assert [entry["station"] for entry in body["stations"]] == [LIVE, THIN]
    assert body["stations"][1] == {
        "station": THIN,
        "ts": format_ts((NOW_S - 3 * 86400 + 60) * NS),
        "values": {"air_temperature": 12.5},
        "qc": {"air_temperature": "good"},
        "checks": {},
    }
    assert api.get(f"/v1/stations/{THIN}/latest").json() == body["stations"][1]
    entry = body["stations"][0]
    k = len(live_data.ts_ns) - 1
    assert entry["ts"] == format_ts(int(live_data.ts_ns[k]))
    assert entry["seq"] == k
    for p in LIVE_PARAMS:
        assert entry["values"][p] == live_data.values[p][k]
        assert entry["qc"][p] == ("good" if live_data.good[p][k] else "suspect")
        if not live_data.good[p][k]:
            assert entry["checks"][p] == "step"
    derived = compute_derived({p: np.array([live_data.values[p][k]]) for p in LIVE_PARAMS})
    assert set(derived) == set(derivable(tuple(LIVE_PARAMS)))
    for name, array in derived.items():
        if np.isnan(array[0]):  # e.g. UTCI outside its validity (calm wind): no value
            assert name not in entry["values"]
            continue
        assert entry["values"][name] == pytest.approx(array[0], abs=0.005)
        inputs_good = all(live_data.good[i][k] for i in DERIVED[name].inputs)
        assert entry["qc"][name] == ("good" if inputs_good else "suspect")
    one = api.get(f"/v1/stations/{LIVE}/latest")
    assert one.status_code == 200
    assert one.json() == entry
    assert api.get(f"/v1/stations/{QUIET}/latest").status_code == 404
    assert "not reported" in api.get(f"/v1/stations/{QUIET}/latest").json()["detail"]
    assert api.get("/v1/stations/nowhere-1/latest").status_code == 404


def test_default_series_is_the_last_24_hours_raw(api, live_data):
    body = api.get(f"/v1/stations/{LIVE}/series").json()
    assert body["interval"] == "raw"
    assert len(body["points"]) == len(live_data.ts_ns)
    last = body["points"][-1]
    assert last["time"] == format_ts(int(live_data.ts_ns[-1]))
    k = len(live_data.ts_ns) - 1
    good = {p for p in LIVE_PARAMS if live_data.good[p][k]}  # suspect values are left out
    derivable = {d for d, spec in DERIVED.items() if set(spec.inputs) <= good}
    assert set(last["values"]) == good | derivable
    assert set(last["qc"].values()) <= {"good"}


def test_health_ok_then_degraded(api, settings_api, tmp_path):
    ok = api.get("/health")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "mqtt": True, "influxdb": True, "broker_dropped": None}
    no_broker = settings_api.model_copy(update={"mqtt_port": free_port()})
    with serve(no_broker) as other:
        response = other.get("/health")
        assert response.status_code == 503
        assert response.json() == {
            "status": "degraded",
            "mqtt": False,
            "influxdb": True,
            "broker_dropped": None,
        }
    no_influx = settings_api.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    with serve(no_influx) as other:
        response = other.get("/health")
        assert response.status_code == 503
        assert response.json() == {
            "status": "degraded",
            "mqtt": True,
            "influxdb": False,
            "broker_dropped": None,
        }
        down = other.get("/v1/latest")  # storage away: 503 with a JSON detail, Retry-After
        assert down.status_code == 503
        assert "storage" in down.json()["detail"]
        assert down.headers["retry-after"] == "5"


def test_metrics_api_requests_and_each_ingesters_last_snapshot(api, influx, settings_api):
    db = settings_api.influx_db
    now_ns = time.time_ns()

    def snapshot(ingester: str, stored: int, ts_ns: int) -> str:
        fields: dict[str, float | int | str] = {
            "messages_received": stored + 5,
            "readings_received": stored + 3,
            "readings_stored": stored,
            "values_stored": stored * 4,
            "write_batches": 7,
            "write_latency_sum_s": 0.5,
            "write_latency_count": 10,
            "spool_depth": 2,
            "seq_gaps": 1,
            "duplicates_seen": 0,
            "started_ns": now_ns - 60 * NS,
        }
        for reason in schema.QuarantineReason:
            fields[f"quarantined_{reason.value}"] = 3 if reason == "out_of_range" else 0
        return format_point(schema.INGEST_STATS, {"ingester": ingester}, fields, ts_ns)

    write_lines(
        influx.url,
        db,
        [
            snapshot("ing-a", 100, now_ns - 10 * NS),
            snapshot("ing-a", 150, now_ns - 5 * NS),  # the newest of ing-a
            snapshot("ing-b", 40, now_ns - 5 * NS),
        ],
    )
    api.get("/v1/parameters")
    api.get("/v1/stations/nowhere-1")
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert prometheus_value(text, "meltemi_ingest_readings_stored_total", 'ingester="ing-a"') == 150
    assert prometheus_value(text, "meltemi_ingest_readings_stored_total", 'ingester="ing-b"') == 40
    assert (
        prometheus_value(
            text, "meltemi_ingest_quarantined_total", 'ingester="ing-a",reason="out_of_range"'
        )
        == 3
    )
    assert prometheus_value(text, "meltemi_ingest_spool_depth", 'ingester="ing-a"') == 2
    assert (
        prometheus_value(text, "meltemi_ingest_write_latency_seconds_sum", 'ingester="ing-a"')
        == 0.5
    )
    assert (
        prometheus_value(text, "meltemi_ingest_write_latency_seconds_count", 'ingester="ing-a"')
        == 10
    )
    assert prometheus_value(text, "meltemi_ingest_stats_up") == 1
    assert (
        prometheus_value(
            text,
            "meltemi_api_requests_total",
            'method="GET",route="/v1/parameters",status="200"',
        )
        >= 1
    )
    assert (
        prometheus_value(
            text,
            "meltemi_api_requests_total",
            'method="GET",route="/v1/stations/{station_id}",status="404"',
        )
        >= 1
    )
    assert "meltemi_api_request_duration_seconds_bucket" in text


def test_cors_allows_the_dashboard_origin_for_get_only(settings_api):
    origin = "https://dashboard.example"
    with serve(settings_api.model_copy(update={"api_cors_origins": [origin]})) as api:
        preflight = api.client.options(
            "/v1/latest",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "POST" not in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in preflight.headers
        post = api.client.options(
            "/v1/latest",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert post.status_code == 400
        evil = api.client.get("/v1/parameters", headers={"Origin": "https://evil.example"})
        assert evil.status_code == 200
        assert "access-control-allow-origin" not in evil.headers
        simple = api.client.get("/v1/parameters", headers={"Origin": origin})
        assert simple.headers["access-control-allow-origin"] == origin


def test_openapi_documents_the_routes(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/health",
        "/metrics",
        "/v1/parameters",
        "/v1/stations",
        "/v1/stations/{station_id}",
        "/v1/latest",
        "/v1/stations/{station_id}/latest",
        "/v1/stations/{station_id}/series",
    ):
        assert path in paths
    names = {p["name"] for p in paths["/v1/stations/{station_id}/series"]["get"]["parameters"]}
    assert {"parameters", "start", "end", "interval", "agg", "tz", "include_suspect", "format"} <= (
        names
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_meltemi_api_serves_and_stops_cleanly_on_signal(settings_api, tmp_path: Path, signum):
    port = free_port()
    env = settings_env(settings_api, MELTEMI_API_PORT=str(port))
    process = ManagedProcess(
        "api", [sys.executable, "-m", "meltemi.cli", "api"], tmp_path / "api.log", env=env
    )
    process.start()
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/parameters").status_code == 200
            except httpx.HTTPError:
                return False

        process.wait_until(answers)
        process.signal(signum)
        assert process.wait(15) == 0, process.log_text()[-2000:]
        assert "API stopped" in process.log_text()
    finally:
        process.stop()
