"""The climate the simulator is fitted to: monthly normals of the Thriasio plain.

Temperature and precipitation: Hellenic National Meteorological Service (HNMS), station
Elefsina (Eleusis, WMO 16718), normals 1958-1997, monthly mean daily maximum and minimum and
monthly precipitation, as tabulated from HNMS in the "Eleusis - Climate" article
(Wikipedia/LiquiSearch). The monthly mean temperature is (max + min) / 2 and the mean daily
range is max - min.

Relative humidity: HNMS monthly means for Athens (National Meteorological Service table
reproduced by the Greek National Tourism Organisation); January-September as published,
October-December interpolated towards the January value (approximate).
Cloud cover, sea-level pressure and rain-event counts are approximate values for Attica chosen to
be consistent with the above (dry, sunny summers; wet, cloudier winters); they are not cited
normals and no test holds them to a figure.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# HNMS Elefsina 1958-1997, Jan..Dec (°C, mm).
ELEFSINA_MEAN_MAX_C: Final = (
    13.0,
    13.6,
    15.8,
    20.1,
    25.7,
    30.6,
    32.9,
    32.7,
    28.9,
    23.2,
    18.5,
    14.7,
)
ELEFSINA_MEAN_MIN_C: Final = (5.4, 5.6, 7.1, 10.1, 14.9, 19.5, 22.3, 22.2, 18.8, 14.6, 10.4, 7.2)
ELEFSINA_PRECIPITATION_MM: Final = (
    48.4, 40.1, 39.3, 26.7, 19.5, 8.4, 5.5, 5.4, 11.3, 41.6, 58.8, 67.9,
)  # fmt: skip
ELEFSINA_MEAN_C: Final = tuple(
    round((hi + lo) / 2, 2) for hi, lo in zip(ELEFSINA_MEAN_MAX_C, ELEFSINA_MEAN_MIN_C, strict=True)
)
ELEFSINA_RANGE_C: Final = tuple(
    round(hi - lo, 2) for hi, lo in zip(ELEFSINA_MEAN_MAX_C, ELEFSINA_MEAN_MIN_C, strict=True)
)
# The HNMS station's elevation above sea level; the lapse rate is applied relative to it.
REFERENCE_ELEVATION_M: Final = 31.0
# HNMS Athens, Jan..Sep as published; Oct..Dec interpolated (see the module docstring).
ATHENS_RELATIVE_HUMIDITY: Final = (
    68.9, 68.3, 68.3, 62.8, 59.5, 53.4, 47.6, 47.3, 53.7, 61.0, 66.0, 68.5,
)  # fmt: skip
# Approximate (see the module docstring): mean cloud fraction, sea-level pressure, rain events.
CLOUD_FRACTION: Final = (0.55, 0.52, 0.47, 0.40, 0.30, 0.15, 0.07, 0.07, 0.15, 0.33, 0.47, 0.55)
SEA_LEVEL_PRESSURE_HPA: Final = (
    1017.5, 1016.0, 1014.5, 1013.0, 1013.0, 1011.5, 1009.0, 1009.5, 1012.5, 1015.5, 1016.5, 1017.5,
)  # fmt: skip
RAIN_EVENTS_PER_MONTH: Final = (8.0, 7.0, 7.0, 5.0, 3.5, 1.5, 1.0, 1.0, 2.0, 5.0, 8.0, 9.0)
DAYS_IN_MONTH: Final = (31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_YEAR_DAYS: Final = 365.25
_MID_MONTH: Final = np.cumsum(DAYS_IN_MONTH) - np.asarray(DAYS_IN_MONTH) / 2.0


def day_of_year(ts_s: FloatArray) -> FloatArray:
    """Return the fractional day of the year (0 at 1 January 00:00 UTC)."""
    seconds = np.floor(ts_s).astype("int64").astype("datetime64[s]")
    year_start = seconds.astype("datetime64[Y]").astype("datetime64[s]")
    return np.asarray((seconds - year_start).astype(np.float64) / 86_400.0, dtype=np.float64)


_KNOTS: dict[tuple[float, ...], FloatArray] = {}


def _knots(table: tuple[float, ...]) -> FloatArray:
    """Return mid-month knots whose linear interpolation has exactly the table's monthly means.

    Plain interpolation through the monthly values would bias each month by about an eighth of
    the second difference (+0.3 °C in January, -0.3 °C in July); a few fixed-point corrections
    remove that.
    """
    knots = _KNOTS.get(table)
    if knots is None:
        target = np.asarray(table, dtype=np.float64)
        days = np.arange(0.0, _YEAR_DAYS, 0.25)
        months = month_index(days)
        knots = target.copy()
        for _ in range(8):
            curve = np.interp(days, _MID_MONTH, knots, period=_YEAR_DAYS)
            means = np.bincount(months, curve, 12) / np.bincount(months, minlength=12)
            knots = knots + (target - means)
        _KNOTS[table] = knots
    return knots


def monthly(table: tuple[float, ...], doy: FloatArray) -> FloatArray:
    """Return a monthly table interpolated to each day of the year (periodic, mid-month knots);
    each month's mean of the result equals its tabulated value."""
    return np.asarray(
        np.interp(doy, _MID_MONTH, _knots(table), period=_YEAR_DAYS), dtype=np.float64
    )


def month_index(doy: FloatArray) -> npt.NDArray[np.int64]:
    """Return the month (0 = January) of each day of the year."""
    edges = np.cumsum(DAYS_IN_MONTH)
    return np.minimum(np.searchsorted(edges, doy, side="right"), 11).astype(np.int64)
