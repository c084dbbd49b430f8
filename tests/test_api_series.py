"""``/v1/stations/{id}/series`` against a real InfluxDB, checked against numpy over the same data.

Seeded: 4 days of 2-minute readings of every parameter for one station, around the night
Europe/Athens leaves summer time (2026-10-25), with absent values and ~10 % suspect flags.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from meltemi.services import InfluxDB, Mosquitto
from sensors.derived import compute_derived
from sensors.models import format_ts
from tests.api_fixtures import (
    FULL,
    FULL_END_S,
    FULL_PARAMS,
    FULL_START_S,
    FULL_STEP_S,
    NS,
    THIN,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    query_log_count,
    serve,
)
from tests.helpers import wait_for, write_lines

START = "2026-10-23T00:00:00Z"
END = "2026-10-27T00:00:00Z"


@pytest.fixture(scope="module")
def data() -> StationData:
    """The seeded readings of the FULL station."""
    return generate(FULL_PARAMS, FULL_START_S, FULL_END_S, FULL_STEP_S, seed=7)


@pytest.fixture(scope="module")
def api(
    influx: InfluxDB, broker: Mosquitto, data: StationData, tmp_path_factory
) -> Iterator[ApiThread]:
    """The API over a database holding ``data``."""
    tmp = tmp_path_factory.mktemp("api-series")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp)
    write_lines(influx.url, settings.influx_db, data.lines(FULL))
    with serve(settings) as server:
        yield server


def _windows_fixed(ts_ns: np.ndarray, step_s: int) -> np.ndarray:
    return (ts_ns // (step_s * NS)) * step_s * NS


def _windows_local_day(ts_ns: np.ndarray, zone: str) -> np.ndarray:
    """Local midnight (as epoch ns) of each timestamp: an independent witness with zoneinfo."""
    tz = ZoneInfo(zone)
    out = []
    for ts in ts_ns.tolist():
        local = datetime.fromtimestamp(ts // NS, UTC).astimezone(tz)
        midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
        out.append(int(midnight.timestamp()) * NS)
    return np.asarray(out, dtype=np.int64)


def _expected(
    ts: np.ndarray, values: np.ndarray, windows: np.ndarray, agg: str
) -> dict[str, float]:
    """Return {time label: aggregate} over the finite values, by numpy."""
    keep = np.isfinite(values)
    out: dict[str, float] = {}
    for window in np.unique(windows[keep]):
        chosen = values[keep & (windows == window)]
        if agg == "count":
            result = float(len(chosen))
        elif agg == "mean":
            result = float(np.mean(chosen))
        elif agg == "min":
            result = float(np.min(chosen))
        elif agg == "max":
            result = float(np.max(chosen))
        else:
            result = float(np.sum(chosen))
        out[format_ts(int(window))] = result
    return out


def _served(body: dict[str, Any], parameter: str, agg: str) -> dict[str, float]:
    return {
        point["time"]: point["values"][parameter][agg]
        for point in body["points"]
        if parameter in point["values"]
    }


def _good(data: StationData, parameter: str, include_suspect: bool = False) -> np.ndarray:
    values = data.values[parameter]
    return values if include_suspect else np.where(data.good[parameter], values, np.nan)


@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "count"])
@pytest.mark.parametrize("interval", ["1h", "6h"])
def test_stored_aggregates_match_numpy(api, data, agg, interval):
    response = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,pm2_5",
        start=START,
        end=END,
        interval=interval,
        agg=agg,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["interval"] == interval
    step = {"1h": 3600, "6h": 6 * 3600}[interval]
    windows = _windows_fixed(data.ts_ns, step)
    for parameter in ("air_temperature", "pm2_5"):
        expected = _expected(data.ts_ns, _good(data, parameter), windows, agg)
        served = _served(body, parameter, agg)
        assert served.keys() == expected.keys()
        for label, value in expected.items():
            assert served[label] == pytest.approx(value, rel=1e-9, abs=1e-9), label
    times = [point["time"] for point in body["points"]]
    assert times == sorted(times)


def test_daily_windows_follow_athens_midnight_across_the_dst_change(api, data):
    response = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,dew_point",
        start="2026-10-23T00:00:00+03:00",
        end="2026-10-27T00:00:00+02:00",
        interval="1d",
        agg="mean,count",
        tz="Europe/Athens",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    times = [point["time"] for point in body["points"]]
    # Local midnights: +03:00 until 2026-10-25 04:00 local, +02:00 after.
    assert times == [
        "2026-10-22T21:00:00Z",
        "2026-10-23T21:00:00Z",
        "2026-10-24T21:00:00Z",
        "2026-10-25T22:00:00Z",
    ]
    windows = _windows_local_day(data.ts_ns, "Europe/Athens")
    lo = int(datetime.fromisoformat("2026-10-23T00:00:00+03:00").timestamp()) * NS
    hi = int(datetime.fromisoformat("2026-10-27T00:00:00+02:00").timestamp()) * NS
    inside = (data.ts_ns >= lo) & (data.ts_ns < hi)
    temperature = np.where(inside, _good(data, "air_temperature"), np.nan)
    for agg in ("mean", "count"):
        expected = _expected(data.ts_ns, temperature, windows, agg)
        assert _served(body, "air_temperature", agg) == pytest.approx(expected, rel=1e-9)
    # The 25-hour day (Oct 25 local) holds 25 hours of 2-minute readings before gaps.
    day = next(p for p in body["points"] if p["time"] == "2026-10-24T21:00:00Z")
    assert day["values"]["air_temperature"]["count"] == int(
        np.sum(np.isfinite(temperature[windows == lo + 2 * 86400 * NS]))
    )
    # Derived: per-reading dew point from good inputs, then averaged per local day.
    good_t, good_rh = _good(data, "air_temperature"), _good(data, "relative_humidity")
    dew = compute_derived(
        {"air_temperature": np.where(inside, good_t, np.nan), "relative_humidity": good_rh}
    )["dew_point"]
    for agg in ("mean", "count"):
        expected = _expected(data.ts_ns, dew, windows, agg)
        assert _served(body, "dew_point", agg) == pytest.approx(expected, rel=1e-9)


def _circular_mean_deg(angles: np.ndarray) -> float:
    radians = np.radians(angles)
    return float(np.degrees(np.arctan2(np.mean(np.sin(radians)), np.mean(np.cos(radians)))) % 360)


def test_wind_direction_mean_is_the_vector_mean(api, data):
    response = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="wind_direction",
        start=START,
        end=END,
        interval="3h",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    windows = _windows_fixed(data.ts_ns, 3 * 3600)
    direction = _good(data, "wind_direction")
    served = _served(body, "wind_direction", "mean")
    labels = {format_ts(int(w)) for w in np.unique(windows[np.isfinite(direction)])}
    assert set(served) == labels
    arithmetic_differs = 0
    for window in np.unique(windows):
        chosen = direction[(windows == window) & np.isfinite(direction)]
        expected = _circular_mean_deg(chosen)
        value = served[format_ts(int(window))]
        assert abs((value - expected + 180) % 360 - 180) < 1e-6
        arithmetic_differs += abs(float(np.mean(chosen)) - expected) > 30
    # The winds blow around north (350° and 10°): a plain mean would say south-ish.
    assert arithmetic_differs > len(served) // 2
    refused = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="wind_direction",
        start=START,
        end=END,
        interval="1h",
        agg="sum",
    )
    assert refused.status_code == 400
    assert "direction" in refused.json()["detail"]


def test_default_aggregations_per_parameter(api, data):
    response = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="precipitation,wind_gust,air_pressure,heat_index",
        start=START,
        end="2026-10-24T06:00:00Z",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["interval"] == "1h"  # more than 24 h: hourly by default
    first = body["points"][0]["values"]
    assert set(first["precipitation"]) == {"sum"}
    assert set(first["wind_gust"]) == {"max"}
    assert set(first["air_pressure"]) == {"mean"}
    assert set(first["heat_index"]) == {"mean"}
    windows = _windows_fixed(data.ts_ns, 3600)
    inside = data.ts_ns < int(datetime(2026, 10, 24, 6, tzinfo=UTC).timestamp()) * NS
    rain = np.where(inside, _good(data, "precipitation"), np.nan)
    assert _served(body, "precipitation", "sum") == pytest.approx(
        _expected(data.ts_ns, rain, windows, "sum"), rel=1e-9, abs=1e-12
    )


def test_include_suspect_counts_every_value(api, data):
    params = {
        "parameters": "relative_humidity",
        "start": START,
        "end": END,
        "interval": "1d",
        "agg": "count,mean",
    }
    good = api.get(f"/v1/stations/{FULL}/series", **params).json()
    everything = api.get(f"/v1/stations/{FULL}/series", **params, include_suspect="true").json()
    windows = _windows_fixed(data.ts_ns, 86400)
    for include, body in ((False, good), (True, everything)):
        values = _good(data, "relative_humidity", include)
        for agg in ("count", "mean"):
            expected = _expected(data.ts_ns, values, windows, agg)
            assert _served(body, "relative_humidity", agg) == pytest.approx(expected, rel=1e-9)
    total_good = sum(p["values"]["relative_humidity"]["count"] for p in good["points"])
    total_all = sum(p["values"]["relative_humidity"]["count"] for p in everything["points"])
    suspect = int(
        np.sum(np.isfinite(data.values["relative_humidity"]) & ~data.good["relative_humidity"])
    )
    assert total_all - total_good == suspect > 0


def test_raw_points_carry_values_qc_and_derived(api, data):
    start, end = "2026-10-24T10:00:00Z", "2026-10-24T12:00:00Z"
    params = {
        "parameters": "air_temperature,relative_humidity,dew_point",
        "start": start,
        "end": end,
    }
    good_only = api.get(f"/v1/stations/{FULL}/series", **params).json()
    everything = api.get(f"/v1/stations/{FULL}/series", **params, include_suspect="true").json()
    assert good_only["interval"] == everything["interval"] == "raw"
    lo = int(datetime.fromisoformat(start).timestamp()) * NS
    hi = int(datetime.fromisoformat(end).timestamp()) * NS
    rows = np.flatnonzero((data.ts_ns >= lo) & (data.ts_ns < hi))
    by_time = {p["time"]: p for p in everything["points"]}
    by_time_good = {p["time"]: p for p in good_only["points"]}
    for k in rows.tolist():
        label = format_ts(int(data.ts_ns[k]))
        t, rh = data.values["air_temperature"][k], data.values["relative_humidity"][k]
        if np.isnan(t) and np.isnan(rh):
            assert label not in by_time
            continue
        point = by_time[label]
        for name, value in (("air_temperature", t), ("relative_humidity", rh)):
            if np.isnan(value):
                assert name not in point["values"]
                continue
            assert point["values"][name] == value
            assert point["qc"][name] == ("good" if data.good[name][k] else "suspect")
            good_point = by_time_good.get(label, {"values": {}})
            assert (name in good_point["values"]) == bool(data.good[name][k])
        if not (np.isnan(t) or np.isnan(rh)):
            dew = compute_derived(
                {"air_temperature": np.array([t]), "relative_humidity": np.array([rh])}
            )["dew_point"][0]
            assert point["values"]["dew_point"] == pytest.approx(dew, abs=0.005)
            both_good = data.good["air_temperature"][k] and data.good["relative_humidity"][k]
            assert point["qc"]["dew_point"] == ("good" if both_good else "suspect")


def test_csv_matches_json(api):
    params = {
        "parameters": "air_temperature,wind_direction,dew_point",
        "start": START,
        "end": "2026-10-24T00:00:00Z",
        "interval": "1h",
        "agg": "mean,max",
    }
    body = api.get(f"/v1/stations/{FULL}/series", **params).json()
    response = api.get(f"/v1/stations/{FULL}/series", **params, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "time",
        "air_temperature_mean",
        "air_temperature_max",
        "wind_direction_mean",
        "wind_direction_max",
        "dew_point_mean",
        "dew_point_max",
    ]
    assert len(rows) - 1 == len(body["points"]) == 24
    for row, point in zip(rows[1:], body["points"], strict=True):
        assert row[0] == point["time"]
        for column, cell in zip(rows[0][1:], row[1:], strict=True):
            parameter, _, agg = column.rpartition("_")
            value = point["values"].get(parameter, {}).get(agg)
            assert (cell == "") == (value is None)
            if value is not None:
                assert float(cell) == value
    raw = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,pm10",
        start="2026-10-24T00:00:00Z",
        end="2026-10-24T01:00:00Z",
        format="csv",
    )
    raw_rows = list(csv.reader(io.StringIO(raw.text)))
    assert raw_rows[0] == ["time", "air_temperature", "pm10"]
    assert 20 <= len(raw_rows) - 1 <= 30
    flagged = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,pm10",
        start="2026-10-24T00:00:00Z",
        end="2026-10-24T01:00:00Z",
        format="csv",
        include_suspect="true",
    )
    flagged_rows = list(csv.reader(io.StringIO(flagged.text)))
    assert flagged_rows[0] == [
        "time",
        "air_temperature",
        "pm10",
        "air_temperature_qc",
        "pm10_qc",
        "air_temperature_check",
        "pm10_check",
    ]
    assert len(flagged_rows) == 31  # every reading of the hour (2-minute step)
    assert {row[3] for row in flagged_rows[1:]} <= {"good", "suspect", ""}
    assert "suspect" in {cell for row in flagged_rows[1:] for cell in row[3:5]}
    for row in flagged_rows[1:]:  # the failed check stands beside each suspect flag only
        for flag, check in ((row[3], row[5]), (row[4], row[6])):
            assert check == ("step" if flag == "suspect" else "")
    raw_json = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,pm10",
        start="2026-10-24T00:00:00Z",
        end="2026-10-24T01:00:00Z",
        include_suspect="true",
    ).json()
    for point in raw_json["points"]:
        suspects = {p for p, flag in point["qc"].items() if flag == "suspect"}
        assert point.get("checks", {}) == dict.fromkeys(suspects, "step")


def test_empty_windows_are_omitted(api):
    body = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature",
        start="2026-10-26T20:00:00Z",
        end="2026-10-27T04:00:00Z",
        interval="1h",
    ).json()
    assert [p["time"] for p in body["points"]] == [
        f"2026-10-26T{h}:00:00Z" for h in ("20", "21", "22", "23")
    ]


def test_defaults_last_24_hours_raw(api):
    body = api.get(f"/v1/stations/{THIN}/series").json()
    assert body["interval"] == "raw"
    assert body["points"] == []
    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"])
    assert end - start == (end - start).__class__(hours=24)


def test_too_many_points_refused_before_any_query(api, influx):
    before = query_log_count(influx, FULL)
    cases = [
        {"interval": "1m", "start": "2026-01-01T00:00:00Z", "end": "2026-03-15T00:00:00Z"},
        {"interval": "raw", "start": "2026-10-23T00:00:00Z", "end": "2026-10-25T00:00:00Z"},
        {"start": "2026-10-23T00:00:00Z", "end": "2026-10-24T04:00:00Z", "interval": "raw"},
        {"interval": "1h", "start": "1900-01-01T00:00:00Z", "end": "2200-01-01T00:00:00Z"},
    ]
    for params in cases:
        response = api.get(f"/v1/stations/{FULL}/series", **params)
        assert response.status_code == 400, params
        detail = response.json()["detail"]
        assert "100,000" in detail
        assert "narrow" in detail
    # Just under the bound is served, and that query is logged (the witness works).
    ok = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature",
        interval="raw",
        start="2026-10-23T00:00:00Z",
        end="2026-10-24T03:00:00Z",
    )
    assert ok.status_code == 200
    wait_for(lambda: query_log_count(influx, FULL) == before + 1, 5, message="the logged query")
    assert query_log_count(influx, FULL) == before + 1


def test_math_of_vector_mean_of_opposite_winds_is_null():
    from api.aggregate import vector_mean_deg

    assert vector_mean_deg(0.0, 0.0) is None
    assert vector_mean_deg(math.sin(math.radians(10)), math.cos(math.radians(10))) == (
        pytest.approx(10.0)
    )
