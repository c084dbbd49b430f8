"""Particulate matter: European Air Quality Index bands, WHO 2021 guidelines, humidity flag.

- European Air Quality Index (EEA), 2024 revision, on *hourly* mean concentrations (µg/m³):

      level           PM2.5      PM10
      good            0-5        0-15
      fair            5-15       15-45
      moderate        15-50      45-120
      poor            50-90      120-195
      very poor       90-140     195-270
      extremely poor  > 140      > 270

  The top band is "> 140" (resp. "> 270"), so every band includes its upper edge: 5.0 µg/m³ of
  PM2.5 is good, anything above it fair. The overall level is the worst pollutant's. The older
  tables on 24-hour means (PM2.5 10/20/25/50/75) are still copied widely; they are not these.
- WHO global air quality guidelines (2021), on *daily* means: PM2.5 15 µg/m³ and PM10 45 µg/m³
  (24-hour, the 99th percentile of a year's daily means); annual 5 and 15 µg/m³. A daily mean
  exceeds the guideline when it is above it.
- Low-cost optical PM sensors over-read in humid air (particles take up water), from about 70 %
  RH, and in fog. No standard correction exists for SDS011-class sensors in Greece, so a value
  taken above 70 % RH or in fog is flagged, never corrected: ``pm_humidity_flag``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

Pollutant = Literal["pm2_5", "pm10"]  # the catalogue's parameter ids
POLLUTANTS: Final[tuple[Pollutant, ...]] = ("pm2_5", "pm10")

EaqiLevel = Literal["good", "fair", "moderate", "poor", "very_poor", "extremely_poor"]
EAQI_LEVELS: Final[tuple[EaqiLevel, ...]] = (
    "good",
    "fair",
    "moderate",
    "poor",
    "very_poor",
    "extremely_poor",
)
EAQI_LABELS: Final[dict[EaqiLevel, str]] = {
    "good": "Good",
    "fair": "Fair",
    "moderate": "Moderate",
    "poor": "Poor",
    "very_poor": "Very poor",
    "extremely_poor": "Extremely poor",
}
# EEA European Air Quality Index (2024 revision), hourly means, µg/m³: the upper edge (included)
# of good, fair, moderate, poor and very poor; above the last one is extremely poor.
EAQI_UPPER_EDGES_UG_M3: Final[dict[Pollutant, tuple[float, float, float, float, float]]] = {
    "pm2_5": (5.0, 15.0, 50.0, 90.0, 140.0),
    "pm10": (15.0, 45.0, 120.0, 195.0, 270.0),
}
EAQI_SOURCE: Final = "European Air Quality Index (EEA, 2024 revision), hourly mean concentrations"

# WHO global air quality guidelines (2021), µg/m³.
WHO_2021_24H_UG_M3: Final[dict[Pollutant, float]] = {"pm2_5": 15.0, "pm10": 45.0}
WHO_2021_ANNUAL_UG_M3: Final[dict[Pollutant, float]] = {"pm2_5": 5.0, "pm10": 15.0}
WHO_SOURCE: Final = "WHO global air quality guidelines (2021), 24-hour guideline on daily means"

# Directive 2008/50/EC validity criteria for aggregation: a 24-hour value needs 75 % of the
# hourly averages, i.e. at least 18 of 24.
DAILY_MEAN_MIN_HOURS: Final = 18

# Optical PM sensors over-read above about 70 % RH (hygroscopic growth; REFERENCES.md "Air
# quality"); values taken above this are flagged, not corrected.
PM_HUMIDITY_FLAG_ABOVE_RH: Final = 70.0

PmHumidityFlag = Literal["fog", "humid", "humidity_unknown"]
PM_HUMIDITY_FLAG_LABELS: Final[dict[PmHumidityFlag, str]] = {
    "fog": "taken in fog: optical sensors over-read, value not corrected",
    "humid": "taken above 70 % relative humidity: optical sensors over-read, value not corrected",
    "humidity_unknown": "no humidity for this value: the over-reading check could not be made",
}


def _check_concentration(value: float) -> None:
    if value < 0.0:
        raise ValueError(f"a concentration cannot be negative: {value}")


def eaqi_level(pollutant: Pollutant, hourly_mean_ug_m3: float) -> EaqiLevel | None:
    """Return the EAQI level of an hourly mean (upper band edge included); None if NaN."""
    if math.isnan(hourly_mean_ug_m3):
        return None
    _check_concentration(hourly_mean_ug_m3)
    for level, upper in zip(EAQI_LEVELS, EAQI_UPPER_EDGES_UG_M3[pollutant], strict=False):
        if hourly_mean_ug_m3 <= upper:
            return level
    return "extremely_poor"


def eaqi_level_indices(
    pollutant: Pollutant, hourly_means_ug_m3: FloatArray
) -> npt.NDArray[np.int64]:
    """Return the EAQI level index (0 good .. 5 extremely poor) of each hourly mean; -1 for NaN.

    The same bands as ``eaqi_level``, for arrays: ``EAQI_LEVELS[i]`` names index ``i``.
    """
    values = np.asarray(hourly_means_ug_m3, dtype=np.float64)
    if np.any(values < 0.0):
        raise ValueError("a concentration cannot be negative")
    edges = np.asarray(EAQI_UPPER_EDGES_UG_M3[pollutant])
    # side="left": the index of the first edge >= value, so a value on an edge stays below it.
    indices = np.searchsorted(edges, values, side="left").astype(np.int64)
    indices[np.isnan(values)] = -1
    return indices


@dataclass(frozen=True, slots=True)
class EaqiOverall:
    """The overall EAQI level: the worst pollutant's, which one it was, and which were missing."""

    level: EaqiLevel | None
    worst: Pollutant | None
    missing: tuple[Pollutant, ...]


def overall_level(levels: Mapping[Pollutant, EaqiLevel | None]) -> EaqiOverall:
    """Return the overall EAQI level: the worst of the pollutants that have a level (EEA)."""
    worst: Pollutant | None = None
    rank = -1
    for pollutant, level in levels.items():
        if level is not None and EAQI_LEVELS.index(level) > rank:
            worst, rank = pollutant, EAQI_LEVELS.index(level)
    missing = tuple(p for p, level in levels.items() if level is None)
    return EaqiOverall(EAQI_LEVELS[rank] if rank >= 0 else None, worst, missing)


def daily_mean(hourly_means_ug_m3: FloatArray) -> float:
    """Return the mean of a day's hourly means, NaN if fewer than 18 of them are present."""
    values = np.asarray(hourly_means_ug_m3, dtype=np.float64)
    if values.shape != (24,):
        raise ValueError(f"a day has 24 hourly means, got shape {values.shape}")
    present = values[~np.isnan(values)]
    if present.size < DAILY_MEAN_MIN_HOURS:
        return math.nan
    return float(present.mean())


@dataclass(frozen=True, slots=True)
class WhoComparison:
    """A daily mean against the WHO 2021 24-hour guideline for its pollutant."""

    pollutant: Pollutant
    daily_mean_ug_m3: float
    guideline_ug_m3: float
    ratio: float  # daily mean / guideline
    exceeds: bool  # strictly above the guideline


def who_2021_daily(pollutant: Pollutant, daily_mean_ug_m3: float) -> WhoComparison | None:
    """Return the daily mean compared with the WHO 2021 24-hour guideline; None if NaN."""
    if math.isnan(daily_mean_ug_m3):
        return None
    _check_concentration(daily_mean_ug_m3)
    guideline = WHO_2021_24H_UG_M3[pollutant]
    return WhoComparison(
        pollutant=pollutant,
        daily_mean_ug_m3=daily_mean_ug_m3,
        guideline_ug_m3=guideline,
        ratio=daily_mean_ug_m3 / guideline,
        exceeds=daily_mean_ug_m3 > guideline,
    )


def pm_humidity_flag(relative_humidity: float, fog: bool = False) -> PmHumidityFlag | None:
    """Return why a PM value may over-read (fog, RH above 70 %, RH unknown), or None.

    A flag, never a correction: the value itself is reported as measured. ``fog`` comes from
    the caller (an observation or a visibility sensor); 70 % RH exactly is not flagged.
    """
    if fog:
        return "fog"
    if math.isnan(relative_humidity):
        return "humidity_unknown"
    if relative_humidity > PM_HUMIDITY_FLAG_ABOVE_RH:
        return "humid"
    return None


def pm_humidity_flagged(
    relative_humidity: FloatArray, fog: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.bool_]:
    """Return, per value, whether ``pm_humidity_flag`` would flag it (RH > 70 %, NaN RH, fog)."""
    rh = np.asarray(relative_humidity, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        flagged: npt.NDArray[np.bool_] = np.isnan(rh) | (rh > PM_HUMIDITY_FLAG_ABOVE_RH)
    if fog is not None:
        flagged = flagged | np.asarray(fog, dtype=np.bool_)
    return flagged


@dataclass(frozen=True, slots=True)
class PmAssessment:
    """An hourly PM mean as measured, its EAQI level, and its humidity flag (if any)."""

    pollutant: Pollutant
    hourly_mean_ug_m3: float
    level: EaqiLevel | None
    humidity_flag: PmHumidityFlag | None


def assess_pm(
    pollutant: Pollutant, hourly_mean_ug_m3: float, relative_humidity: float, fog: bool = False
) -> PmAssessment:
    """Return the EAQI level of an uncorrected hourly mean, with its humidity flag beside it."""
    return PmAssessment(
        pollutant=pollutant,
        hourly_mean_ug_m3=hourly_mean_ug_m3,
        level=eaqi_level(pollutant, hourly_mean_ug_m3),
        humidity_flag=pm_humidity_flag(relative_humidity, fog),
    )
