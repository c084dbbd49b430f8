"""The simulator's weather in library mode (no broker): physical consistency over a year."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from firmware_sim import climate
from firmware_sim.readings import Simulator, encode_readings

from sensors import solar
from sensors.models import parse_ts_ns
from sensors.qc import dew_point_c
from sensors.registry import load_registry
from sensors.topics import StationId
from sensors.validation import Limits, judge_readings_message

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(list(load_registry()), seed=7)


@pytest.fixture(scope="module")
def year(simulator: Simulator):
    """Hourly readings of elefsina-01 over 2025, as the station would report them."""
    readings = simulator.readings("elefsina-01", YEAR_START, YEAR_START + 365 * 86400, HOUR)
    ts = np.array([parse_ts_ns(r["ts"]) / 1e9 for r in readings])
    columns = {p: np.array([r["values"][p] for r in readings]) for p in readings[0]["values"]}
    return ts, columns


def test_monthly_mean_temperature_within_2c_of_hnms_normals(year):
    ts, values = year
    month = climate.month_index(climate.day_of_year(ts))
    means = [values["air_temperature"][month == k].mean() for k in range(12)]
    assert len(ts) == 8760
    assert np.abs(np.array(means) - np.array(climate.ELEFSINA_MEAN_C)).max() < 2.0
    # the seasonal cycle itself: a hot July, a mild January
    assert means[6] - means[0] > 15


def test_relative_humidity_at_most_100_and_falls_as_temperature_rises(year):
    ts, values = year
    rh, t = values["relative_humidity"], values["air_temperature"]
    assert rh.max() <= 100.0
    assert rh.min() > 5.0
    days = (ts - YEAR_START) // 86400
    correlations = [np.corrcoef(t[days == d], rh[days == d])[0, 1] for d in range(365)]
    negative = np.mean(np.array(correlations) < 0)
    assert negative > 0.95, f"RH anti-correlated with T on only {negative:.0%} of days"
    assert np.median(correlations) < -0.8


def test_radiation_zero_at_night_and_never_above_clear_sky(year):
    ts, values = year
    station = load_registry().get("elefsina-01")
    assert station is not None
    clear = solar.clear_sky_ghi(station.lat, station.lon, ts)
    elevation = solar.solar_elevation_deg(station.lat, station.lon, ts)
    radiation = values["solar_radiation"]
    assert np.all(radiation[elevation <= 0] == 0.0)
    assert np.all(radiation <= clear)
    assert radiation.max() > 800  # clear summer noons exist
    uv = values["uv_index"]
    assert np.all(uv[elevation <= 0] == 0.0)
    assert 7 <= uv.max() <= 12


def test_dew_point_never_above_temperature(year):
    _, values = year
    t, rh = values["air_temperature"], values["relative_humidity"]
    dew = np.array([dew_point_c(a, b) for a, b in zip(t, rh, strict=True)])
    assert np.all(dew <= t + 1e-6)


def test_other_parameters_are_physical(year):
    _, v = year
    assert v["air_pressure"].min() > 990
    assert v["air_pressure"].max() < 1035
    assert np.all(v["wind_gust"] >= v["wind_speed"])
    assert np.all((v["wind_direction"] >= 0) & (v["wind_direction"] <= 360))
    assert np.all(v["pm1"] <= v["pm2_5"])
    assert np.all(v["pm2_5"] <= v["pm10"])
    assert 200 < v["precipitation"].sum() < 700  # Elefsina normal: 373 mm a year
    assert np.all(np.round(v["precipitation"] / 0.2, 6) % 1 == 0)  # 0.2 mm tips


def test_same_seed_same_readings_other_seed_other_weather():
    stations = list(load_registry())
    a = Simulator(stations, seed=3).readings("fyli-01", YEAR_START, YEAR_START + 3600, 10)
    b = Simulator(stations, seed=3).readings("fyli-01", YEAR_START, YEAR_START + 3600, 10)
    c = Simulator(stations, seed=4).readings("fyli-01", YEAR_START, YEAR_START + 3600, 10)
    assert a == b
    assert a != c


def test_neighbouring_stations_are_correlated_and_higher_is_cooler(simulator):
    days = 120
    means = {}
    for station_id in ("elefsina-01", "elefsina-02", "fyli-01"):
        readings = simulator.readings(station_id, YEAR_START, YEAR_START + days * 86400, HOUR)
        t = np.array([r["values"]["air_temperature"] for r in readings])
        means[station_id] = t.reshape(days, 24).mean(axis=1)
    anomaly = {k: v - np.convolve(v, np.ones(15) / 15, "same") for k, v in means.items()}
    assert np.corrcoef(anomaly["elefsina-01"], anomaly["elefsina-02"])[0, 1] > 0.8
    # Fyli (355 m) is cooler than the coast (12 m) by about the lapse rate
    difference = means["elefsina-01"].mean() - means["fyli-01"].mean()
    assert 1.0 < difference < 4.0


def test_solar_geometry_for_elefsina():
    lat, lon = 38.0413, 23.5426
    equinox_noon = datetime(2025, 3, 20, 10, 26, tzinfo=UTC).timestamp()  # ~solar noon
    elevation = float(solar.solar_elevation_deg(lat, lon, equinox_noon))
    assert abs(elevation - (90 - lat)) < 1.0
    sunrise, sunset = solar.sunrise_sunset(lat, lon, equinox_noon)
    assert abs((float(sunset) - float(sunrise)) / 3600 - 12.1) < 0.2
    june = datetime(2025, 6, 21, 10, 25, tzinfo=UTC).timestamp()
    assert 950 < float(solar.clear_sky_ghi(lat, lon, june)) < 1060
    assert float(solar.clear_sky_ghi(lat, lon, june + 12 * 3600)) == 0.0


def test_readings_of_every_station_pass_validation(simulator):
    registry = load_registry()
    end = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    for station in registry:
        readings = simulator.readings(station.id, end - 86400, end, 300)
        assert {p for r in readings for p in r["values"]} == set(station.parameters)
        for start in range(0, len(readings), 500):
            payload = encode_readings(readings[start : start + 500])
            verdict = judge_readings_message(
                StationId(station.id), payload, registry, int(end * 1e9), Limits()
            )
            assert verdict.refusals == [], (station.id, verdict.refusals[:3])
            assert len(verdict.readings) == len(readings[start : start + 500])
        one = encode_readings(readings[:1])
        assert isinstance(json.loads(one), dict)
