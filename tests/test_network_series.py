"""``GET /v1/series`` (many stations) against a real InfluxDB: numpy over the seeded data, and
each station's part equal to the single-station route's answer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np
import pytest

from meltemi.services import InfluxDB, Mosquitto
from sensors.models import format_ts
from tests.api_fixtures import (
    FULL,
    FULL_START_S,
    LIVE,
    NS,
    QUIET,
    THIN,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    serve,
)
from tests.helpers import write_lines

DAY_S = 86400
START = format_ts(FULL_START_S * NS)
END = format_ts((FULL_START_S + 2 * DAY_S) * NS)


@pytest.fixture(scope="module")
def seeded() -> dict[str, StationData]:
    """Two days of readings: FULL every 2 min (three parameters), THIN every 3 min."""
    end_s = FULL_START_S + 2 * DAY_S
    return {
        FULL: generate(
            ["air_temperature", "wind_direction", "pm2_5"], FULL_START_S, end_s, 120, seed=11
        ),
        THIN: generate(["air_temperature"], FULL_START_S, end_s, 180, seed=12),
    }


@pytest.fixture(scope="module")
def api(
    influx: InfluxDB, broker: Mosquitto, seeded: dict[str, StationData], tmp_path_factory
) -> Iterator[ApiThread]:
    """The API over a database holding ``seeded``."""
    tmp = tmp_path_factory.mktemp("api-network")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp, api_cache_ttl_s=0.0)
    for station_id, data in seeded.items():
        write_lines(influx.url, settings.influx_db, data.lines(station_id))
    with serve(settings) as server:
        yield server


def _numpy_hourly(data: StationData, parameter: str, agg: str) -> dict[str, float]:
    values = np.where(data.good[parameter], data.values[parameter], np.nan)
    windows = (data.ts_ns // (3600 * NS)) * 3600 * NS
    keep = np.isfinite(values)
    out = {}
    for window in np.unique(windows[keep]):
        chosen = values[keep & (windows == window)]
        figures = {
            "mean": float(np.mean(chosen)),
            "min": float(np.min(chosen)),
            "max": float(np.max(chosen)),
            "sum": float(np.sum(chosen)),
            "count": float(len(chosen)),
        }
        figure = figures[agg]
        out[format_ts(int(window))] = figure
    return out


def test_long_json_matches_numpy_per_station(api, seeded):
    response = api.get(
        "/v1/series",
        stations=f"{FULL},{THIN}",
        parameters="air_temperature",
        start=START,
        end=END,
        interval="1h",
        agg="mean,min,max,sum,count",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["layout"] == "long"
    assert body["stations"] == [FULL, THIN]
    assert body["skipped"] == []
    assert len(body["points"]) == 2 * 48
    for station_id in (FULL, THIN):
        points = [p for p in body["points"] if p["station"] == station_id]
        for agg in ("mean", "min", "max", "sum", "count"):
            expected = _numpy_hourly(seeded[station_id], "air_temperature", agg)
            served = {p["time"]: p["values"]["air_temperature"][agg] for p in points}
            assert served.keys() == expected.keys()
            for label, value in expected.items():
                assert served[label] == pytest.approx(value, rel=1e-9, abs=1e-9), label


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "1d", "tz": "Europe/Athens", "agg": "mean,min,max,count"},
        {"interval": "6h"},
        {
            "interval": "raw",
            "include_suspect": "true",
            "end": format_ts((FULL_START_S + 43200) * NS),
        },
    ],
)
def test_each_station_equals_the_single_station_route(api, params):
    window = {"start": START, "end": END, "parameters": "air_temperature", **params}
    network = api.get("/v1/series", stations=f"{FULL},{THIN}", **window)
    assert network.status_code == 200, network.text
    points = network.json()["points"]
    for station_id in (FULL, THIN):
        single = api.get(f"/v1/stations/{station_id}/series", **window)
        assert single.status_code == 200, single.text
        mine = [
            {k: v for k, v in p.items() if k != "station"}
            for p in points
            if p["station"] == station_id
        ]
        assert mine == single.json()["points"]
        assert len(mine) > 0


def test_vector_mean_of_wind_direction_as_the_single_route(api):
    window = {"start": START, "end": END, "parameters": "wind_direction", "interval": "3h"}
    network = api.get("/v1/series", stations=FULL, **window).json()
    single = api.get(f"/v1/stations/{FULL}/series", **window).json()
    assert [{k: v for k, v in p.items() if k != "station"} for p in network["points"]] == (
        single["points"]
    )
    assert len(single["points"]) == 16


def test_wide_csv_holds_the_long_json_values(api):
    window = {"start": START, "end": END, "parameters": "air_temperature", "interval": "1h"}
    long = api.get("/v1/series", stations=f"{FULL},{THIN}", agg="max,count", **window).json()
    wide = api.get(
        "/v1/series",
        stations=f"{FULL},{THIN}",
        agg="max,count",
        layout="wide",
        format="csv",
        **window,
    )
    assert wide.status_code == 200, wide.text
    assert wide.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(wide.text)))
    assert list(rows[0].keys()) == [
        "time",
        f"{FULL}.air_temperature_max",
        f"{FULL}.air_temperature_count",
        f"{THIN}.air_temperature_max",
        f"{THIN}.air_temperature_count",
    ]
    assert len(rows) == 48
    by_time = {row["time"]: row for row in rows}
    for point in long["points"]:
        row = by_time[point["time"]]
        values = point["values"]["air_temperature"]
        assert float(row[f"{point['station']}.air_temperature_max"]) == values["max"]
        assert int(row[f"{point['station']}.air_temperature_count"]) == values["count"]
    wide_json = api.get(
        "/v1/series", stations=f"{FULL},{THIN}", agg="max,count", layout="wide", **window
    ).json()
    assert len(wide_json["points"]) == 48
    first = wide_json["points"][0]
    assert set(first["values"]) == {FULL, THIN}


def test_long_csv_has_a_station_column(api, seeded):
    response = api.get(
        "/v1/series",
        stations=f"{THIN},{FULL}",
        parameters="air_temperature",
        start=START,
        end=END,
        interval="1d",
        agg="count",
        format="csv",
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "station", "air_temperature_count"]
    good = {
        s: int(np.sum(d.good["air_temperature"] & np.isfinite(d.values["air_temperature"])))
        for s, d in seeded.items()
    }
    counted = {THIN: 0, FULL: 0}
    for _, station_id, count in rows[1:]:
        counted[station_id] += int(count)
    assert counted == good
    assert [r[1] for r in rows[1:]] == [THIN, THIN, FULL, FULL]


def test_municipality_selects_and_skips(api):
    window = {"start": START, "end": END, "interval": "1d", "agg": "count"}
    every = api.get("/v1/series", municipality="elefsina", parameters="air_temperature", **window)
    assert every.status_code == 200, every.text
    assert every.json()["stations"] == [FULL, LIVE, QUIET, THIN]
    only = api.get("/v1/series", municipality="Elefsina", parameters="pm2_5", **window)
    assert only.status_code == 200, only.text
    assert only.json()["stations"] == [FULL]
    assert only.json()["skipped"] == [LIVE, QUIET, THIN]
    assert {p["station"] for p in only.json()["points"]} == {FULL}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"stations": FULL, "municipality": "Elefsina"}, "either stations"),
        ({}, "either stations"),
        ({"stations": f"{FULL},nope-station"}, "unknown station 'nope-station'"),
        ({"stations": f"{FULL},{THIN}", "parameters": "pm2_5"}, "does not measure pm2_5"),
        ({"municipality": "Atlantis"}, "no station in 'Atlantis'"),
        ({"stations": FULL, "layout": "diagonal"}, "layout"),
        (
            {
                "stations": f"{FULL},{THIN}",
                "interval": "1m",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-02-20T00:00:00Z",
            },
            "more than 100,000",
        ),
    ],
)
def test_refusals(api, params, message):
    response = api.get("/v1/series", **params)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def test_windows_carry_their_completeness(api, seeded, tmp_path):
    # THIN reports every 3 minutes; registered with interval_s = 180 its hours expect 20.
    text = (api.app.state.settings.stations_file).read_text()
    registry = tmp_path / "stations.toml"
    registry.write_text(text.replace(f'id = "{THIN}"\n', f'id = "{THIN}"\ninterval_s = 180\n'))
    settings = api.app.state.settings.model_copy(update={"stations_file": registry})
    window = {"start": START, "end": END, "parameters": "air_temperature", "interval": "1h"}
    with serve(settings) as other:
        body = other.get("/v1/series", stations=f"{FULL},{THIN}", **window).json()
        half = other.get(
            f"/v1/stations/{THIN}/series",
            **{**window, "start": format_ts((FULL_START_S + 1800) * NS)},
        ).json()
    data = seeded[THIN]
    good = data.good["air_temperature"] & np.isfinite(data.values["air_temperature"])
    hours = data.ts_ns // (3600 * NS) * 3600 * NS
    for point in body["points"]:
        window_ns = int(np.datetime64(point["time"].rstrip("Z"), "ns").astype(np.int64))
        expected = 20 if point["station"] == THIN else 360  # FULL: the default 10 s
        assert point["completeness"]["expected"] == expected
        if point["station"] == THIN:
            present = int(np.sum(good & (hours == window_ns)))
            assert point["completeness"]["present"] == {"air_temperature": present}
    # A window cut by the range expects only its part inside it.
    assert half["points"][0]["completeness"]["expected"] == 10
    assert half["points"][1]["completeness"]["expected"] == 20
