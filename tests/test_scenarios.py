"""Simulator scenarios: the documented envelopes and what each does to the weather."""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt
import pytest
from firmware_sim.readings import Simulator
from firmware_sim.scenarios import DAY_S, SCENARIOS, ScenarioOverlay
from firmware_sim.weather import Weather, dew_point_c

from sensors.registry import load_registry

START = dt.datetime(2026, 7, 10, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("name", "days", "plateau"),
    [("heatwave", 4.0, (1.0, 3.0)), ("fire-weather", 3.0, (0.5, 2.5)), ("dust", 2.0, (0.5, 1.5))],
)
def test_envelopes(name: str, days: float, plateau: tuple[float, float]) -> None:
    scenario = SCENARIOS[name]
    assert scenario.days == days
    at = np.array(
        [-0.1, 0.0, plateau[0] / 2, plateau[0], sum(plateau) / 2, plateau[1], days, days + 0.1]
    )
    e = scenario.envelope(at * DAY_S)
    assert e.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0])


def _pair(name: str) -> tuple[Weather, Weather, npt.NDArray[np.float64]]:
    stations = [s for s in load_registry() if s.id == "elefsina-01"]
    ts = START + np.arange(0.0, 5 * DAY_S, 1800.0)
    plain = Simulator(stations).weather("elefsina-01", ts, ts - 1800.0)
    with_episode = Simulator(stations)
    with_episode.model.overlay = ScenarioOverlay(SCENARIOS[name], START).apply
    return plain, with_episode.weather("elefsina-01", ts, ts - 1800.0), ts


def test_heatwave_adds_nine_degrees_keeping_the_dew_point() -> None:
    plain, hot, ts = _pair("heatwave")
    plateau = (ts >= START + DAY_S) & (ts <= START + 3 * DAY_S)
    assert np.allclose(hot.air_temperature[plateau] - plain.air_temperature[plateau], 9.0)
    assert np.allclose(hot.dew_point[plateau], plain.dew_point[plateau], atol=1e-6)
    assert np.all(hot.relative_humidity[plateau] < plain.relative_humidity[plateau])
    assert np.allclose(
        dew_point_c(hot.air_temperature, hot.relative_humidity), hot.dew_point, atol=1e-6
    )
    after = ts > START + 4 * DAY_S
    assert np.array_equal(hot.air_temperature[after], plain.air_temperature[after])
    assert hot.air_temperature[plateau].max() > 40.0  # a July heat wave on the plain


def test_fire_weather_and_dust() -> None:
    plain, fire, ts = _pair("fire-weather")
    plateau = (ts >= START + 0.5 * DAY_S) & (ts <= START + 2.5 * DAY_S)
    assert np.allclose(fire.wind_speed[plateau], np.clip(plain.wind_speed[plateau] * 2.5, 0, 75))
    assert np.all(fire.precipitation[plateau] == 0.0)
    plain, dust, ts = _pair("dust")
    plateau = (ts >= START + 0.5 * DAY_S) & (ts <= START + 1.5 * DAY_S)
    assert np.allclose(dust.pm10[plateau] - plain.pm10[plateau], 250.0)
    assert np.all(dust.pm1 <= dust.pm2_5)
    assert np.all(dust.pm2_5 <= dust.pm10)
