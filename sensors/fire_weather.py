"""Daily fire weather of a station from its stored readings: inputs, completeness, FWI chain.

What the FWI System needs each day (sensors/fwi.py) and how Meltemi takes it from readings:
- temperature, relative humidity and wind at noon local standard time, 10:00 UTC in Greece:
  the mean of the station's readings from 09:30 to 10:30 UTC (``noon_readings`` counts them);
  wind is converted from m/s (CONTRACT §4) to km/h;
- the rain of the previous 24 h: the sum of ``precipitation`` (mm since the previous reading)
  over the readings after 10:00 UTC yesterday up to 10:00 UTC today (``rain_readings``).
A day is computed only when all four inputs exist; otherwise it is *missing*, with the reason,
and the next computed day restarts from the start-up values 85/6/15 (``after_gap``,
sensors/fwi.py's missing-day rule), which the answer shows.

The chain always starts on the same day, ``SEASON_START`` (1 March) of the first requested
day's year, so a day's codes do not depend on the range a client asks for.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sensors.fwi import EffisClass, FwiDay, FwiState, FwiWeather, effis_class, fwi_step

NOON_UTC: Final = dt.time(10, 0)  # noon EET (UTC+2), standard time all year (REFERENCES.md)
NOON_HALF_WINDOW: Final = dt.timedelta(minutes=30)
SEASON_START: Final = (3, 1)  # month, day: the chain starts here every year
MS_TO_KMH: Final = 3.6


@dataclass(frozen=True, slots=True)
class NoonInputs:
    """What the readings give for one day (None: no reading in the window)."""

    day: dt.date
    temperature_c: float | None
    relative_humidity: float | None
    wind_speed_ms: float | None
    noon_readings: int
    rain_24h_mm: float | None
    rain_readings: int

    def missing(self) -> str | None:
        """Return why the day cannot be computed, or None when every input is present."""
        absent = [
            name
            for name, value in (
                ("air_temperature", self.temperature_c),
                ("relative_humidity", self.relative_humidity),
                ("wind_speed", self.wind_speed_ms),
            )
            if value is None
        ]
        if absent:
            return "no reading between 09:30 and 10:30 UTC of " + ", ".join(absent)
        if self.rain_24h_mm is None:
            return "no precipitation reading in the 24 h before 10:00 UTC"
        return None


@dataclass(frozen=True, slots=True)
class FireWeatherDay:
    """One day: its inputs, the FWI System (None when missing) and the EFFIS class."""

    inputs: NoonInputs
    fwi: FwiDay | None
    missing: str | None
    effis: EffisClass | None


def noon(day: dt.date) -> dt.datetime:
    """Return 10:00 UTC of ``day``."""
    return dt.datetime.combine(day, NOON_UTC, tzinfo=dt.UTC)


def season_start(day: dt.date) -> dt.date:
    """Return the day the chain of ``day``'s year starts on."""
    return (
        dt.date(day.year, *SEASON_START)
        if day >= dt.date(day.year, *SEASON_START)
        else (dt.date(day.year - 1, *SEASON_START))
    )


def _value(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def noon_inputs(
    day: dt.date,
    noon_means: Mapping[str, float | None],
    noon_count: int,
    rain_sum: float | None,
    rain_count: int,
) -> NoonInputs:
    """Return a day's inputs from the noon-window means and the 24-h rain sum."""
    return NoonInputs(
        day=day,
        temperature_c=_value(noon_means.get("air_temperature")),
        relative_humidity=_value(noon_means.get("relative_humidity")),
        wind_speed_ms=_value(noon_means.get("wind_speed")),
        noon_readings=noon_count,
        rain_24h_mm=_value(rain_sum) if rain_count > 0 else None,
        rain_readings=rain_count,
    )


def fire_weather_days(
    inputs: Sequence[NoonInputs], latitude: float, previous: FwiState | None = None
) -> list[FireWeatherDay]:
    """Return the FWI System for each day of ``inputs`` (in order), carrying the state.

    A missing day gives no codes; the next computed day restarts (``after_gap``).
    """
    out: list[FireWeatherDay] = []
    state = previous
    for day_inputs in inputs:
        reason = day_inputs.missing()
        if reason is not None:
            out.append(FireWeatherDay(day_inputs, None, reason, None))
            continue
        assert day_inputs.temperature_c is not None
        assert day_inputs.relative_humidity is not None
        assert day_inputs.wind_speed_ms is not None
        assert day_inputs.rain_24h_mm is not None
        weather = FwiWeather(
            temperature_c=day_inputs.temperature_c,
            relative_humidity=day_inputs.relative_humidity,
            wind_speed_kmh=day_inputs.wind_speed_ms * MS_TO_KMH,
            rain_24h_mm=day_inputs.rain_24h_mm,
        )
        result = fwi_step(state, day_inputs.day, weather, latitude)
        state = result.state
        out.append(FireWeatherDay(day_inputs, result, None, effis_class(result.fwi)))
    return out
