"""Episodes laid over the simulated weather: ``meltemi simulate --scenario NAME``.

A scenario is an envelope e(t) in [0, 1] of the time since its start (a linear ramp up, a
plateau, a linear ramp down) and what it does to the weather at full strength. The model's own
weather (diurnal cycle, synoptic noise, local deviations) stays underneath, so the episode looks
like weather, not like a square wave. Shapes (days since the start):

- ``heatwave`` (4 days: ramp 0-1, plateau 1-3, ramp down 3-4): air temperature +9 °C with the
  dew point kept, so relative humidity falls as air warms (RH recomputed by Magnus); a July
  afternoon in the plain reaches ~42 °C, Thom's discomfort index ~29-31 (severe stress), nights
  stay above 30 °C;
- ``fire-weather`` (3 days: ramp 0-0.5, plateau 0.5-2.5, ramp down 2.5-3): +6 °C, relative
  humidity × 0.4, wind (and gusts) × 2.5 (an Etesian gale), no rain: the FWI climbs into
  EFFIS "high" to "extreme";
- ``dust`` (2 days: ramp 0-0.5, plateau 0.5-1.5, ramp down 1.5-2): Saharan dust, PM10 +250,
  PM2.5 +60, PM1 +15 µg/m³, +2 °C: EAQI "extremely poor" for PM10 at the peak.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_sim.weather import Weather

FloatArray = npt.NDArray[np.float64]
DAY_S: Final = 86_400.0
MAGNUS_B: Final = 17.625  # Alduchov & Eskridge (1996), as firmware_sim.weather
MAGNUS_C: Final = 243.04


@dataclass(frozen=True, slots=True)
class Scenario:
    """An episode: its name, envelope (days) and strength."""

    name: str
    ramp_up_days: float
    plateau_days: float
    ramp_down_days: float
    temperature_c: float = 0.0
    rh_factor: float = 1.0  # relative humidity multiplied by 1 - e (1 - factor)
    wind_factor: float = 1.0
    no_rain: bool = False
    keep_dew_point: bool = False
    pm10: float = 0.0
    pm2_5: float = 0.0
    pm1: float = 0.0

    @property
    def days(self) -> float:
        """Return the episode's length in days."""
        return self.ramp_up_days + self.plateau_days + self.ramp_down_days

    def envelope(self, since_s: FloatArray) -> FloatArray:
        """Return e(t) in [0, 1] for seconds since the start (0 outside the episode)."""
        d = np.asarray(since_s, dtype=np.float64) / DAY_S
        up = np.clip(d / self.ramp_up_days, 0.0, 1.0)
        down_start = self.ramp_up_days + self.plateau_days
        down = np.clip(1.0 - (d - down_start) / self.ramp_down_days, 0.0, 1.0)
        inside = (d >= 0.0) & (d <= self.days)
        result: FloatArray = np.where(inside, np.minimum(up, down), 0.0)
        return result


SCENARIOS: Final[dict[str, Scenario]] = {
    "heatwave": Scenario("heatwave", 1.0, 2.0, 1.0, temperature_c=9.0, keep_dew_point=True),
    "fire-weather": Scenario(
        "fire-weather",
        0.5,
        2.0,
        0.5,
        temperature_c=6.0,
        rh_factor=0.4,
        wind_factor=2.5,
        no_rain=True,
    ),
    "dust": Scenario("dust", 0.5, 1.0, 0.5, temperature_c=2.0, pm10=250.0, pm2_5=60.0, pm1=15.0),
}


def _es(t_c: FloatArray) -> FloatArray:
    result: FloatArray = 6.112 * np.exp(MAGNUS_B * t_c / (MAGNUS_C + t_c))
    return result


class ScenarioOverlay:
    """A scenario placed in time: ``apply`` changes a Weather sample (firmware_sim.weather)."""

    def __init__(self, scenario: Scenario, start_s: float) -> None:
        self.scenario = scenario
        self.start_s = start_s

    def apply(self, weather: Weather, ts_s: FloatArray) -> Weather:
        """Return ``weather`` with the episode laid over it (unchanged outside the episode)."""
        s = self.scenario
        e = s.envelope(np.asarray(ts_s, dtype=np.float64) - self.start_s)
        if not np.any(e > 0.0):
            return weather
        w = weather
        t1 = w.air_temperature + s.temperature_c * e
        rh = w.relative_humidity
        if s.keep_dew_point:
            rh = np.clip(100.0 * _es(w.dew_point) / _es(t1), 1.0, 100.0)
        rh = np.clip(rh * (1.0 - e * (1.0 - s.rh_factor)), 1.0, 100.0)
        gamma = np.log(rh / 100.0) + MAGNUS_B * t1 / (MAGNUS_C + t1)
        wind = 1.0 + e * (s.wind_factor - 1.0)
        return dataclasses.replace(
            w,
            air_temperature=t1,
            relative_humidity=rh,
            dew_point=MAGNUS_C * gamma / (MAGNUS_B - gamma),
            wind_speed=np.clip(w.wind_speed * wind, 0.0, 75.0),
            wind_gust=np.clip(w.wind_gust * wind, 0.0, 100.0),
            precipitation=np.where(e > 0.0, 0.0, w.precipitation) if s.no_rain else w.precipitation,
            pm10=np.clip(w.pm10 + s.pm10 * e, 0.0, 2000.0),
            pm2_5=np.clip(w.pm2_5 + s.pm2_5 * e, 0.0, 2000.0),
            pm1=np.clip(w.pm1 + s.pm1 * e, 0.0, 2000.0),
        )
