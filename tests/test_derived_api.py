"""Discomfort index, UTCI in the shade and EAQI levels through the platform (issue 10 parts 2-3).

Readings are written to a real InfluxDB in the stored schema; every expected figure is computed
here from the same raw values with the pure functions (sensors.heat, sensors.airquality) and
numpy, independently of the API's code path (api.latest, api.series_table, api.live). Band-edge
tests of the pure layer are in tests/test_heat.py and tests/test_airquality.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from meltemi.services import InfluxDB, Mosquitto
from sensors import airquality, heat
from sensors.models import format_ts
from sensors.settings import Settings
from sensors.topics import accepted_topic
from tests.api_fixtures import (
    FULL,
    FULL_PARAMS,
    NS,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    open_stream,
    serve,
    serve_api,
)
from tests.helpers import mosquitto_pub, write_lines

START_S = int(datetime(2026, 7, 20, tzinfo=UTC).timestamp())
END_S = START_S + 86400
STEP_S = 120
START, END = format_ts(START_S * NS), format_ts(END_S * NS)


@pytest.fixture(scope="module")
def data() -> StationData:
    """A summer day of 2-minute readings; wind mostly inside UTCI's validity (0.5-17 m/s)."""
    seeded = generate(FULL_PARAMS, START_S, END_S, STEP_S, seed=10)
    rng = np.random.default_rng(11)
    n = len(seeded.ts_ns)
    wind = np.round(rng.uniform(0.0, 19.0, n), 1)
    wind[np.isnan(seeded.values["wind_speed"])] = np.nan
    seeded.values["wind_speed"] = wind
    seeded.values["air_temperature"] = np.where(
        np.isnan(seeded.values["air_temperature"]), np.nan, np.round(rng.uniform(22, 42, n), 2)
    )
    # PM over all EAQI bands (random 0..100 from generate covers PM2.5 up to "very poor").
    return seeded


@pytest.fixture(scope="module")
def api(
    influx: InfluxDB, broker: Mosquitto, data: StationData, tmp_path_factory
) -> Iterator[ApiThread]:
    """The API over a database holding ``data`` for the FULL station."""
    tmp = tmp_path_factory.mktemp("derived-api")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp)
    write_lines(influx.url, settings.influx_db, data.lines(FULL))
    with serve(settings) as server:
        yield server


def _good(data: StationData, parameter: str) -> np.ndarray:
    return np.where(data.good[parameter], data.values[parameter], np.nan)


def _series(api: ApiThread, **params: str) -> dict[str, Any]:
    response = api.get(f"/v1/stations/{FULL}/series", start=START, end=END, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_catalogue_serves_inputs_classes_and_labels(api):
    by_id = {p["id"]: p for p in api.get("/v1/parameters").json()["parameters"]}
    di = by_id["discomfort_index"]
    assert di["derived"] is True
    assert di["inputs"] == ["air_temperature", "relative_humidity"]
    assert di["band_edge"] == "lower"
    assert [(b["id"], b["min"], b["max"]) for b in di["bands"]] == [
        ("no_discomfort", None, 21.0),
        ("under_half_discomfort", 21.0, 24.0),
        ("over_half_discomfort", 24.0, 27.0),
        ("most_discomfort", 27.0, 29.0),
        ("severe_stress", 29.0, 32.0),
        ("medical_emergency", 32.0, None),
    ]
    utci = by_id["utci_shade"]
    assert utci["name"] == "UTCI in the shade (Tmrt = Ta)"
    assert utci["inputs"] == ["air_temperature", "relative_humidity", "wind_speed"]
    assert utci["band_edge"] == "upper"
    assert len(utci["bands"]) == 10
    assert utci["bands"][-1] == {
        "id": "extreme_heat",
        "label": "extreme heat stress",
        "min": 46.0,
        "max": None,
    }
    for pollutant in ("pm2_5", "pm10"):
        level = by_id[f"{pollutant}_eaqi"]
        assert level["inputs"] == [pollutant]
        assert level["agg"] == "max"
        assert level["min_interval"] == "1h"
        assert [b["id"] for b in level["bands"]] == list(airquality.EAQI_LEVELS)
        assert "hourly" in level["note"]
    assert by_id["pm2_5_eaqi"]["bands"][1]["label"] == "Fair (5-15 µg/m³ hourly mean)"


def test_latest_carries_di_utci_and_an_indicative_eaqi_level(api, data):
    entry = api.get(f"/v1/stations/{FULL}/latest").json()
    k = len(data.ts_ns) - 1
    assert entry["ts"] == format_ts(int(data.ts_ns[k]))
    t, rh, ws = (
        float(data.values[p][k]) for p in ("air_temperature", "relative_humidity", "wind_speed")
    )
    pm25 = float(data.values["pm2_5"][k])
    values, qc, checks = entry["values"], entry["qc"], entry["checks"]
    good = {p: bool(data.good[p][k]) for p in FULL_PARAMS}
    assert not np.isnan([t, rh, ws, pm25]).any(), "the seed's last reading must be complete"
    assert values["discomfort_index"] == round(float(heat.discomfort_index(t, rh)), 2)
    assert qc["discomfort_index"] == (
        "good" if good["air_temperature"] and good["relative_humidity"] else "suspect"
    )
    expected_utci = heat.utci_in_shade_value(t, rh, ws)
    if expected_utci is None:
        assert "utci_shade" not in values
    else:
        assert values["utci_shade"] == pytest.approx(expected_utci, abs=0.005)
    level = airquality.eaqi_level("pm2_5", pm25)
    assert values["pm2_5_eaqi"] == airquality.EAQI_LEVELS.index(level)
    humid = airquality.pm_humidity_flag(rh) is not None
    assert qc["pm2_5_eaqi"] == ("good" if good["pm2_5"] and not humid else "suspect")
    assert checks.get("pm2_5_eaqi") == ("pm_humid" if humid else None)


def test_raw_series_di_and_utci_equal_the_pure_functions(api, data):
    body = _series(api, parameters="discomfort_index,utci_shade", interval="raw")
    t, rh, ws = (_good(data, p) for p in ("air_temperature", "relative_humidity", "wind_speed"))
    di = np.round(heat.discomfort_index(t, rh), 2)
    utci = np.round(heat.utci_in_shade(t, rh, ws), 2)
    by_time = {p["time"]: p for p in body["points"]}
    expected_points = 0
    outside = 0
    for k, ts in enumerate(data.ts_ns.tolist()):
        point = by_time.get(format_ts(int(ts)))
        if np.isnan(di[k]) and np.isnan(utci[k]):
            assert point is None
            continue
        expected_points += 1
        assert point is not None
        if np.isnan(di[k]):
            assert "discomfort_index" not in point["values"]
        else:
            assert point["values"]["discomfort_index"] == di[k]
            assert point["qc"]["discomfort_index"] == "good"
        if np.isnan(utci[k]):
            outside += not np.isnan(t[k] + rh[k] + ws[k])
            assert "utci_shade" not in point["values"]  # no value outside the validity
        else:
            assert point["values"]["utci_shade"] == utci[k]
    assert len(body["points"]) == expected_points
    assert outside > 10  # the seed puts some readings outside 0.5..17 m/s


def test_aggregated_di_and_utci_come_from_per_reading_values(api, data):
    body = _series(
        api, parameters="discomfort_index,utci_shade", interval="1h", agg="mean,max,count"
    )
    t, rh, ws = (_good(data, p) for p in ("air_temperature", "relative_humidity", "wind_speed"))
    hours = (data.ts_ns // (3600 * NS)) * 3600 * NS
    for name, per_reading in (
        ("discomfort_index", heat.discomfort_index(t, rh)),
        ("utci_shade", heat.utci_in_shade(t, rh, ws)),
    ):
        served = {p["time"]: p["values"][name] for p in body["points"] if name in p["values"]}
        keep = np.isfinite(per_reading)
        assert len(served) == len(np.unique(hours[keep]))
        for hour in np.unique(hours[keep]):
            chosen = per_reading[keep & (hours == hour)]
            window = served[format_ts(int(hour))]
            assert window["count"] == len(chosen)
            assert window["mean"] == pytest.approx(float(np.mean(chosen)), rel=1e-9)
            assert window["max"] == pytest.approx(float(np.max(chosen)), rel=1e-9)


def _hourly_levels(data: StationData, pollutant: airquality.Pollutant) -> dict[int, int]:
    pm = _good(data, pollutant)
    hours = (data.ts_ns // (3600 * NS)) * 3600 * NS
    out = {}
    for hour in np.unique(hours[np.isfinite(pm)]):
        mean = float(np.mean(pm[(hours == hour) & np.isfinite(pm)]))
        out[int(hour)] = airquality.EAQI_LEVELS.index(airquality.eaqi_level(pollutant, mean))
    return out


def test_eaqi_levels_are_those_of_hourly_means(api, data):
    body = _series(api, parameters="pm2_5_eaqi,pm10_eaqi", interval="1h")
    for pollutant in airquality.POLLUTANTS:
        expected = {
            format_ts(h): float(level) for h, level in _hourly_levels(data, pollutant).items()
        }
        name = f"{pollutant}_eaqi"
        served = {
            p["time"]: p["values"][name]["max"] for p in body["points"] if name in p["values"]
        }
        assert served == expected
        assert len(set(served.values())) >= 2  # the data spans more than one band
    # Per-reading levels averaged would differ: the level is never a mean of levels.
    day = _series(api, parameters="pm2_5_eaqi", interval="1d", agg="max,min,count")
    levels = list(_hourly_levels(data, "pm2_5").values())
    assert day["points"] == [
        {
            "time": START,
            "values": {
                "pm2_5_eaqi": {"max": float(max(levels)), "min": float(min(levels)), "count": 24}
            },
        }
    ]


@pytest.mark.parametrize("interval", ["raw", "10m"])
def test_eaqi_below_an_hour_is_refused(api, interval):
    response = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="pm2_5_eaqi",
        start=START,
        end=END,
        interval=interval,
    )
    assert response.status_code == 400
    assert "hourly means" in response.json()["detail"]


def _hourly_means(data: StationData, pollutant: str, start_ns: int) -> list[float]:
    pm = _good(data, pollutant)
    hours = (data.ts_ns // (3600 * NS)) * 3600 * NS
    keep = np.isfinite(pm) & (data.ts_ns >= start_ns)
    return [float(np.mean(pm[keep & (hours == h)])) for h in np.unique(hours[keep])]


def test_who_2021_compares_daily_means_of_hourly_means(api, data):
    body = _series(api, parameters="pm2_5_who2021,pm10_who2021", interval="1d", agg="max")
    assert [p["time"] for p in body["points"]] == [START]
    for pollutant, guideline in (("pm2_5", 15.0), ("pm10", 45.0)):
        means = _hourly_means(data, pollutant, START_S * NS)
        assert len(means) == 24
        served = body["points"][0]["values"][f"{pollutant}_who2021"]["max"]
        assert served == pytest.approx(float(np.mean(means)) / guideline, rel=1e-9)
        comparison = airquality.who_2021_daily(pollutant, float(np.mean(means)))  # type: ignore[arg-type]
        assert comparison is not None
        assert (served > 1.0) is comparison.exceeds
    # From 07:00 the day holds 17 hourly means, fewer than the 18 a daily mean needs.
    late = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="pm2_5_who2021",
        start=format_ts((START_S + 7 * 3600) * NS),
        end=END,
        interval="1d",
    )
    assert late.status_code == 200, late.text
    assert late.json()["points"] == []
    six = _series(api, parameters="pm2_5_who2021", interval="1d")  # from 00:00 again
    from_six = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="pm2_5_who2021",
        start=format_ts((START_S + 6 * 3600) * NS),
        end=END,
        interval="1d",
    ).json()
    means = _hourly_means(data, "pm2_5", (START_S + 6 * 3600) * NS)
    assert len(means) == 18  # exactly enough
    assert from_six["points"][0]["values"]["pm2_5_who2021"]["max"] == pytest.approx(
        float(np.mean(means)) / 15.0, rel=1e-9
    )
    assert (
        six["points"][0]["values"]["pm2_5_who2021"]["max"]
        != from_six["points"][0]["values"]["pm2_5_who2021"]["max"]
    )
    refused = api.get(
        f"/v1/stations/{FULL}/series",
        parameters="pm2_5_who2021",
        start=START,
        end=END,
        interval="1h",
    )
    assert refused.status_code == 400
    assert "daily means" in refused.json()["detail"]


def test_default_series_leaves_hourly_levels_out(api):
    body = _series(api, interval="1h")
    names = {name for point in body["points"] for name in point["values"]}
    assert {"discomfort_index", "utci_shade"} <= names
    assert not names & {"pm2_5_eaqi", "pm10_eaqi", "pm2_5_who2021", "pm10_who2021"}


def test_stream_carries_di_utci_and_flags_humid_pm(settings: Settings, broker: Mosquitto):
    hour_s = (int(time.time()) // 3600 - 1) * 3600
    ts = format_ts(hour_s * NS)
    values = {
        "air_temperature": 36.0,
        "relative_humidity": 85.0,
        "wind_speed": 2.0,
        "pm2_5": 52.0,
        "pm10": 40.0,
    }
    payload = json.dumps(
        {"station": "elefsina-01", "ts": ts, "values": values, "qc": dict.fromkeys(values, "good")}
    )
    with serve_api(settings) as server, open_stream(f"{server.url}/v1/stream") as stream:
        mosquitto_pub(broker.port, accepted_topic("elefsina-01"), payload, 0)
        event = stream.next_event("reading")["data"]
    assert event["values"]["discomfort_index"] == round(float(heat.discomfort_index(36.0, 85.0)), 2)
    assert event["values"]["utci_shade"] == pytest.approx(
        heat.utci_in_shade_value(36.0, 85.0, 2.0), abs=0.005
    )
    assert event["qc"]["discomfort_index"] == "good"
    assert event["values"]["pm2_5_eaqi"] == 3.0  # 52 µg/m³: poor (50-90)
    assert event["values"]["pm10_eaqi"] == 1.0  # 40 µg/m³: fair (15-45)
    assert event["qc"]["pm2_5_eaqi"] == "suspect"  # 85 % RH: flagged, never corrected
    assert event["checks"]["pm2_5_eaqi"] == "pm_humid"
    assert event["values"]["pm2_5"] == 52.0
    assert "pm2_5_who2021" not in event["values"]  # a daily mean is no single reading's
