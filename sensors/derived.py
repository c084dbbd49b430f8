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
  e = rh/100 * 6.105 exp(17.27 Ta / (237.7 + Ta)) hPa and ws the 10 m wind speed in m/s;
- discomfort index: Thom (1959), the °C/RH form, with its six classes (sensors.heat);
- UTCI in the shade: the Bröde et al. (2012) polynomial with Tmrt = Ta (sensors.heat), NaN
  outside the polynomial's validity, never an extrapolation;
- EAQI levels of PM2.5 and PM10 (``pm2_5_eaqi``, ``pm10_eaqi``, sensors.airquality): the level
  index 0 (good) .. 5 (extremely poor) of the European Air Quality Index (2024), which is defined
  on hourly means. In a series (interval 1h or longer) each hour's level is that of the hour's
  mean, and a window aggregates its hours' levels (by default the worst, ``max``); in latest and
  the stream, which have no hourly mean, the level is the newest reading's, labelled
  "indicative" (``per_reading_note``). A level whose PM value was taken above 70 % RH (or with
  no humidity measured) is flagged ``suspect`` with the check ``pm_humid`` (resp.
  ``pm_humidity_unknown``), never corrected.

Every caller pairs a derived value with its QC flag through ``derive`` (arrays) or
``derive_readings`` (one mapping per reading): the flag is ``good`` only when every input is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from sensors import airquality, heat
from sensors.catalog import Aggregation
from sensors.schema import QcFlag

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DERIVED_DECIMALS: Final = 2  # served values are rounded to 0.01: plenty for °C

# Magnus over water, Alduchov & Eskridge (1996) eq. 21: e_s = 6.1094 exp(17.625 T / (243.04 + T)).
MAGNUS_B: Final = 17.625
MAGNUS_C_C: Final = 243.04
HEAT_INDEX_THRESHOLD_C: Final = 26.7  # CONTRACT §4: the heat index is the temperature below this
_ROTHFUSZ_FROM_F: Final = 80.0  # NWS: the regression applies once the simple formula reaches 80 °F


@dataclass(frozen=True, slots=True)
class Band:
    """One named class of a derived value: ``min`` <= value < ``max`` or min < value <= max,
    as its spec's ``edge`` says (``None``: unbounded on that side)."""

    id: str
    label: str
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """One derived parameter: its id, name, unit, the stored parameters it needs, its source,
    and its classes (``bands``, lowest first) with which edge of a band belongs to it."""

    id: str
    name: str
    unit: str
    inputs: tuple[str, ...]
    source: str
    bands: tuple[Band, ...] = ()
    edge: Literal["lower", "upper"] = "lower"
    default_agg: Aggregation = "mean"
    hourly: bool = False  # defined on hourly means: series need an interval of 1h or more
    daily: bool = False  # defined on daily means of hourly means: series with interval 1d only
    note: str | None = None  # how latest and the stream differ from series, if they do


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


def discomfort_index(air_temperature: FloatArray, relative_humidity: FloatArray) -> FloatArray:
    """Return Thom's discomfort index (°C); NaN where an input is NaN (sensors.heat)."""
    return heat.discomfort_index(air_temperature, relative_humidity)


def utci_shade(
    air_temperature: FloatArray, relative_humidity: FloatArray, wind_speed: FloatArray
) -> FloatArray:
    """Return the UTCI in the shade (°C, Tmrt = Ta); NaN outside the polynomial's validity."""
    return heat.utci_in_shade(air_temperature, relative_humidity, wind_speed)


def _di_bands() -> tuple[Band, ...]:
    # heat.DI_CLASS_LOWER_BOUNDS is highest first, lower bound inclusive.
    lowers = [(None, "no_discomfort"), *reversed(heat.DI_CLASS_LOWER_BOUNDS)]
    bands = []
    for k, (lower, name) in enumerate(lowers):
        upper = lowers[k + 1][0] if k + 1 < len(lowers) else None
        bands.append(Band(name, heat.DI_CLASS_LABELS[name], lower, upper))
    return tuple(bands)


def _utci_bands() -> tuple[Band, ...]:
    # heat.UTCI_CATEGORY_UPPER_BOUNDS is lowest first, upper bound inclusive.
    uppers = [*heat.UTCI_CATEGORY_UPPER_BOUNDS, (None, "extreme_heat")]
    bands = []
    for k, (upper, name) in enumerate(uppers):
        lower = uppers[k - 1][0] if k else None
        bands.append(Band(name, heat.UTCI_CATEGORY_LABELS[name], lower, upper))
    return tuple(bands)


def _eaqi(pollutant: airquality.Pollutant) -> Callable[[FloatArray], FloatArray]:
    def level(concentration: FloatArray) -> FloatArray:
        values = np.asarray(concentration, dtype=np.float64)
        values = np.where(values >= 0.0, values, np.nan)  # NaN stays NaN; never negative
        indices = airquality.eaqi_level_indices(pollutant, values).astype(np.float64)
        result: FloatArray = np.where(indices >= 0, indices, np.nan)
        return result

    level.__doc__ = f"Return the EAQI level index (0 good .. 5 extremely poor) of {pollutant}."
    return level


pm2_5_eaqi = _eaqi("pm2_5")
pm10_eaqi = _eaqi("pm10")


def _eaqi_bands(pollutant: airquality.Pollutant) -> tuple[Band, ...]:
    # The level index is the value; each level is one integer, and its concentration band is
    # in the label (upper edge included, EEA 2024).
    edges = airquality.EAQI_UPPER_EDGES_UG_M3[pollutant]
    bands = []
    for k, level in enumerate(airquality.EAQI_LEVELS):
        low = 0.0 if k == 0 else edges[k - 1]
        span = f"> {low:g}" if k == len(edges) else f"{low:g}-{edges[k]:g}"
        label = f"{airquality.EAQI_LABELS[level]} ({span} µg/m³ hourly mean)"
        bands.append(Band(level, label, k - 0.5, k + 0.5))
    return tuple(bands)


def _who_ratio(pollutant: airquality.Pollutant) -> Callable[[FloatArray], FloatArray]:
    def ratio(daily_mean: FloatArray) -> FloatArray:
        result: FloatArray = (
            np.asarray(daily_mean, dtype=np.float64) / (airquality.WHO_2021_24H_UG_M3[pollutant])
        )
        return result

    ratio.__doc__ = f"Return daily means of {pollutant} over the WHO 2021 24-hour guideline."
    return ratio


WHO_NOTE: Final = (
    "WHO 2021 24-hour guideline: the daily mean (of hourly means, at least "
    f"{airquality.DAILY_MEAN_MIN_HOURS} hours) over the guideline; above 1 exceeds it. "
    "Series with interval 1d only; not in latest or the stream"
)
EAQI_NOTE: Final = (
    "EAQI levels are defined on hourly means: series (interval 1h or longer) give each hour's "
    "level from the hour's mean; latest and the stream give the level of the newest reading, "
    "indicative only"
)
PM_HUMIDITY_CHECKS: Final = {"humid": "pm_humid", "humidity_unknown": "pm_humidity_unknown"}

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
        DerivedSpec(
            "discomfort_index",
            "Discomfort index (Thom)",
            "°C",
            _T_RH,
            heat.DI_SOURCE,
            _di_bands(),
            "lower",
        ),
        DerivedSpec(
            "utci_shade",
            heat.UTCI_SHADE_LABEL,
            "°C",
            (*_T_RH, "wind_speed"),
            heat.UTCI_SOURCE,
            _utci_bands(),
            "upper",
        ),
        *(
            DerivedSpec(
                f"{pollutant}_eaqi",
                f"{'PM2.5' if pollutant == 'pm2_5' else 'PM10'} European Air Quality Index level",
                "level",
                (pollutant,),
                airquality.EAQI_SOURCE,
                _eaqi_bands(pollutant),
                "lower",
                default_agg="max",
                hourly=True,
                note=EAQI_NOTE,
            )
            for pollutant in airquality.POLLUTANTS
        ),
        *(
            DerivedSpec(
                f"{pollutant}_who2021",
                f"{'PM2.5' if pollutant == 'pm2_5' else 'PM10'} daily mean / WHO 2021 guideline "
                f"({airquality.WHO_2021_24H_UG_M3[pollutant]:g} µg/m³)",
                "ratio",
                (pollutant,),
                airquality.WHO_SOURCE,
                (
                    Band("within", "at or below the guideline", None, 1.0),
                    Band("exceeds", "above the guideline", 1.0, None),
                ),
                "upper",
                default_agg="max",
                daily=True,
                note=WHO_NOTE,
            )
            for pollutant in airquality.POLLUTANTS
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
    "discomfort_index": discomfort_index,
    "utci_shade": utci_shade,
    "pm2_5_eaqi": pm2_5_eaqi,
    "pm10_eaqi": pm10_eaqi,
    "pm2_5_who2021": _who_ratio("pm2_5"),
    "pm10_who2021": _who_ratio("pm10"),
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


def band_of(derived_id: str, value: float) -> str | None:
    """Return the id of the class ``value`` falls in, or None (no classes, or NaN)."""
    spec = DERIVED[derived_id]
    if not spec.bands or value != value:
        return None
    for band in spec.bands:
        if spec.edge == "lower":
            inside = (band.min is None or value >= band.min) and (
                band.max is None or value < band.max
            )
        else:
            inside = (band.min is None or value > band.min) and (
                band.max is None or value <= band.max
            )
        if inside:
            return band.id
    return None


@dataclass(frozen=True, slots=True)
class DerivedColumn:
    """A derived parameter over readings: its values (NaN where undefined) and, per reading,
    whether its QC flag is good (every input good)."""

    values: FloatArray
    good: BoolArray
    checks: tuple[str | None, ...] | None = None  # why a value is flagged, per reading

    def rounded(self) -> FloatArray:
        """Return the values as served per reading: rounded to ``DERIVED_DECIMALS``."""
        result: FloatArray = np.round(self.values, DERIVED_DECIMALS)
        return result

    def flag(self, k: int) -> QcFlag:
        """Return the QC flag of reading ``k``."""
        return QcFlag.GOOD if bool(self.good[k]) else QcFlag.SUSPECT


def derive(
    values: Mapping[str, FloatArray],
    good: Mapping[str, BoolArray],
    wanted: Sequence[str] | None = None,
) -> dict[str, DerivedColumn]:
    """Return each derived parameter computable from ``values`` (or those of ``wanted``) with
    its QC flags: the one place where a derived value is paired with its flag.

    ``good[name]`` says per reading whether an input's flag is good; an input without flags
    counts as good. The value is NaN wherever an input is NaN or the quantity undefined.
    """
    computed = compute_derived(values)
    result: dict[str, DerivedColumn] = {}
    for derived_id, column in computed.items():
        if wanted is not None and derived_id not in wanted:
            continue
        if wanted is None and DERIVED[derived_id].daily:  # a daily mean is no reading's
            continue
        flags = [
            np.asarray(good[name], dtype=np.bool_)
            for name in DERIVED[derived_id].inputs
            if name in good
        ]
        ok: BoolArray = (
            np.logical_and.reduce(flags) if flags else np.ones(column.shape, dtype=np.bool_)
        )
        checks = None
        if DERIVED[derived_id].hourly:
            checks = pm_humidity_checks(values.get("relative_humidity"), column.shape)
            ok = ok & np.array([check is None for check in checks], dtype=np.bool_)
        result[derived_id] = DerivedColumn(column, ok, checks)
    return result


def pm_humidity_checks(
    relative_humidity: FloatArray | None, shape: tuple[int, ...]
) -> tuple[str | None, ...]:
    """Return, per reading, why a PM value may over-read (``pm_humid`` above 70 % RH,
    ``pm_humidity_unknown`` without RH) or None: a flag, never a correction. Stations report
    no fog observation, so only humidity is checked."""
    rh = (
        np.full(shape, np.nan)
        if relative_humidity is None
        else np.asarray(relative_humidity, dtype=np.float64)
    )
    flags = (airquality.pm_humidity_flag(float(value)) for value in rh.tolist())
    return tuple(None if flag is None else PM_HUMIDITY_CHECKS[flag] for flag in flags)


_INPUTS: Final = tuple(sorted({name for spec in DERIVED.values() for name in spec.inputs}))


class DerivedValue(NamedTuple):
    """One served derived value, its QC flag and, when flagged by its own check, the check."""

    value: float
    flag: QcFlag
    check: str | None


def derive_readings(
    readings: Sequence[tuple[Mapping[str, float], Mapping[str, QcFlag]]],
) -> list[dict[str, DerivedValue]]:
    """Return, per reading (its values and QC flags), each defined derived value, rounded as
    served, with its flag (``suspect`` when any input is suspect); one numpy pass for all."""
    if not readings:
        return []
    present = {name for values, _ in readings for name in values if name in _INPUTS}
    present |= {"relative_humidity"} & {name for values, _ in readings for name in values}
    arrays = {
        name: np.array([values.get(name, np.nan) for values, _ in readings], dtype=np.float64)
        for name in present
    }
    good = {
        name: np.array([qc.get(name) != QcFlag.SUSPECT for _, qc in readings], dtype=np.bool_)
        for name in present
    }
    columns = [
        (d, c.rounded().tolist(), c.good.tolist(), c.checks)
        for d, c in derive(arrays, good).items()
    ]
    out: list[dict[str, DerivedValue]] = []
    for k in range(len(readings)):
        row: dict[str, DerivedValue] = {}
        for derived_id, column, ok, checks in columns:
            value = column[k]
            if value == value:  # not NaN
                flag = QcFlag.GOOD if ok[k] else QcFlag.SUSPECT
                row[derived_id] = DerivedValue(value, flag, checks[k] if checks else None)
        out.append(row)
    return out
