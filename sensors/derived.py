"""Derived parameters of CONTRACT §4: computed with numpy from stored values, never stored.

Each function takes arrays of equal length (NaN where a value is missing) and returns an array
of the same length, NaN wherever an input is NaN or the quantity is undefined. Sources:

- dew point: Magnus formula over water with the Alduchov & Eskridge (1996) coefficients
  (J. Appl. Meteor. 35, 601-609), the same as the QC consistency check in sensors.qc;
- heat index: US NWS, "The Heat Index Equation" (WPC, L. P. Rothfusz, SR 90-23, 1990): Steadman's
  simple formula, the Rothfusz regression when their mean reaches 80 °F, and the two adjustments
  for dry and for humid air; CONTRACT §4 makes it equal to the air temperature below 26.7 °C;
- humidex: Environment Canada (Masterton & Richardson 1979, AES CLI 1-79), from the temperature
  and the dew point: H = T + 5/9 (e - 10), e = 6.11 exp(5417.7530 (1/273.16 - 1/(273.15 + Td)));
- apparent temperature: Steadman (1994, Aust. Met. Mag. 43, 1-16) as published by the Australian
  Bureau of Meteorology ("Thermal comfort observations"): AT = Ta + 0.33 e - 0.70 ws - 4.00, with
  e = rh/100 * 6.105 exp(17.27 Ta / (237.7 + Ta)) hPa and ws the 10 m wind speed in m/s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Magnus over water, Alduchov & Eskridge (1996) eq. 21: e_s = 6.1094 exp(17.625 T / (243.04 + T)).
MAGNUS_B: Final = 17.625
MAGNUS_C_C: Final = 243.04
HEAT_INDEX_THRESHOLD_C: Final = 26.7  # CONTRACT §4: the heat index is the temperature below this
_ROTHFUSZ_FROM_F: Final = 80.0  # NWS: the regression applies once the simple formula reaches 80 °F


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """One derived parameter: its id, name, unit, the stored parameters it needs, its source."""

    id: str
    name: str
    unit: str
    inputs: tuple[str, ...]
    source: str


def _c_to_f(celsius: FloatArray) -> FloatArray:
    return celsius * 9.0 / 5.0 + 32.0


def _f_to_c(fahrenheit: FloatArray) -> FloatArray:
    return (fahrenheit - 32.0) * 5.0 / 9.0


def dew_point(air_temperature: FloatArray, relative_humidity: FloatArray) -> FloatArray:
    """Return the dew point (°C) by Magnus over water; NaN where RH <= 0 or an input is NaN."""
    t = np.asarray(air_temperature, dtype=np.float64)
    rh = np.asarray(relative_humidity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.log(np.where(rh > 0, rh, np.nan) / 100.0) + MAGNUS_B * t / (MAGNUS_C_C + t)
        result: FloatArray = MAGNUS_C_C * gamma / (MAGNUS_B - gamma)
    return result


def heat_index(air_temperature: FloatArray, relative_humidity: FloatArray) -> FloatArray:
    """Return the NWS heat index (°C); equal to the air temperature below 26.7 °C."""
    t_c = np.asarray(air_temperature, dtype=np.float64)
    rh = np.asarray(relative_humidity, dtype=np.float64)
    t = _c_to_f(t_c)
    # NWS: "the simple formula is computed first and its result averaged with the temperature".
    simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
    regression = (
        -42.379
        + 2.04901523 * t
        + 10.14333127 * rh
        - 0.22475541 * t * rh
        - 0.00683783 * t * t
        - 0.05481717 * rh * rh
        + 0.00122874 * t * t * rh
        + 0.00085282 * t * rh * rh
        - 0.00000199 * t * t * rh * rh
    )
    with np.errstate(invalid="ignore"):
        # Dry air: RH < 13 % and 80 <= T <= 112 °F.
        dry = (rh < 13.0) & (t >= 80.0) & (t <= 112.0)
        dry_term = np.where(
            dry,
            (13.0 - rh) / 4.0 * np.sqrt(np.clip((17.0 - np.abs(t - 95.0)) / 17.0, 0.0, None)),
            0.0,
        )
        # Humid air: RH > 85 % and 80 <= T <= 87 °F.
        humid = (rh > 85.0) & (t >= 80.0) & (t <= 87.0)
        humid_term = np.where(humid, (rh - 85.0) / 10.0 * ((87.0 - t) / 5.0), 0.0)
        rothfusz = regression - dry_term + humid_term
        use_regression = (simple + t) / 2.0 >= _ROTHFUSZ_FROM_F
        fahrenheit = np.where(use_regression, rothfusz, simple)
        result: FloatArray = np.where(t_c < HEAT_INDEX_THRESHOLD_C, t_c, _f_to_c(fahrenheit))
    result[np.isnan(t_c) | np.isnan(rh)] = np.nan
    return result


def humidex(air_temperature: FloatArray, relative_humidity: FloatArray) -> FloatArray:
    """Return Environment Canada's humidex (°C) from the temperature and the Magnus dew point."""
    t = np.asarray(air_temperature, dtype=np.float64)
    td = dew_point(t, np.asarray(relative_humidity, dtype=np.float64))
    return humidex_from_dew_point(t, td)


def humidex_from_dew_point(air_temperature: FloatArray, dew_point_c: FloatArray) -> FloatArray:
    """Return the humidex (°C) from the temperature and the dew point, as EC defines it."""
    t = np.asarray(air_temperature, dtype=np.float64)
    td = np.asarray(dew_point_c, dtype=np.float64)
    e = 6.11 * np.exp(5417.7530 * (1.0 / 273.16 - 1.0 / (273.15 + td)))
    result: FloatArray = t + 0.5555 * (e - 10.0)
    return result


def apparent_temperature(
    air_temperature: FloatArray, relative_humidity: FloatArray, wind_speed: FloatArray
) -> FloatArray:
    """Return the BoM apparent temperature (°C): Steadman's formula with wind, no radiation."""
    t = np.asarray(air_temperature, dtype=np.float64)
    rh = np.asarray(relative_humidity, dtype=np.float64)
    ws = np.asarray(wind_speed, dtype=np.float64)
    e = rh / 100.0 * 6.105 * np.exp(17.27 * t / (237.7 + t))
    result: FloatArray = t + 0.33 * e - 0.70 * ws - 4.00
    return result


_T_RH = ("air_temperature", "relative_humidity")

DERIVED: Final[dict[str, DerivedSpec]] = {
    spec.id: spec
    for spec in (
        DerivedSpec(
            "dew_point",
            "Dew point",
            "°C",
            _T_RH,
            "Magnus over water, Alduchov & Eskridge (1996)",
        ),
        DerivedSpec(
            "heat_index",
            "Heat index",
            "°C",
            _T_RH,
            "US NWS Rothfusz regression with adjustments (SR 90-23)",
        ),
        DerivedSpec(
            "humidex",
            "Humidex",
            "°C",
            _T_RH,
            "Environment Canada (Masterton & Richardson 1979)",
        ),
        DerivedSpec(
            "apparent_temperature",
            "Apparent temperature",
            "°C",
            (*_T_RH, "wind_speed"),
            "Steadman (1994) with wind, as used by the Australian Bureau of Meteorology",
        ),
    )
}
DERIVED_IDS: Final[frozenset[str]] = frozenset(DERIVED)

# US NWS heat index categories (80, 90, 103 and 125 °F in °C), lower bound inclusive, highest
# first; below the lowest one: "none". The dashboard and /v1/levels name them in every language.
HeatIndexCategory = Literal["none", "caution", "extreme_caution", "danger", "extreme_danger"]
HEAT_INDEX_CATEGORY_LOWER_BOUNDS_C: Final[tuple[tuple[float, HeatIndexCategory], ...]] = (
    (51.7, "extreme_danger"),
    (39.4, "danger"),
    (32.2, "extreme_caution"),
    (26.7, "caution"),
)

_FUNCTIONS: Final[dict[str, Callable[..., FloatArray]]] = {
    "dew_point": dew_point,
    "heat_index": heat_index,
    "humidex": humidex,
    "apparent_temperature": apparent_temperature,
}


def derivable(parameters: frozenset[str] | set[str] | tuple[str, ...]) -> list[str]:
    """Return the ids of the derived parameters whose inputs are all among ``parameters``."""
    have = set(parameters)
    return [spec.id for spec in DERIVED.values() if set(spec.inputs) <= have]


def compute_derived(values: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """Return every derived parameter whose inputs are all keys of ``values``.

    The arrays must have equal length; the results have that length, NaN wherever an input is
    NaN or the quantity is undefined (never inf).
    """
    arrays = {key: np.asarray(array, dtype=np.float64) for key, array in values.items()}
    lengths = {array.shape for array in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"arrays of unequal shapes: {sorted(lengths)}")
    result: dict[str, FloatArray] = {}
    with np.errstate(all="ignore"):
        for derived_id in derivable(tuple(arrays)):
            spec = DERIVED[derived_id]
            out = _FUNCTIONS[derived_id](*(arrays[name] for name in spec.inputs))
            out = np.asarray(out, dtype=np.float64)
            out[~np.isfinite(out)] = np.nan
            result[derived_id] = out
    return result
