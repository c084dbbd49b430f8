"""The Canadian Forest Fire Weather Index (FWI) System, daily, as cffdrs implements it.

Sources: Van Wagner, C.E. and Pickett, T.L. (1985), "Equations and FORTRAN program for the
Canadian Forest Fire Weather Index System", Can. For. Serv. For. Tech. Rep. 33; Van Wagner, C.E.
(1987), "Development and structure of the Canadian Forest Fire Weather Index System", For. Tech.
Rep. 35; and the reference implementation, the R package cffdrs 1.9.0 (nrcan-cfs-fire/cffdrs,
``R/fwi.r`` and the per-code files it calls), whose official test vectors the tests replay. The
equation numbers below are Van Wagner & Pickett's, as cffdrs cites them.

Inputs are daily, at noon local *standard* time (Greece: UTC+2, so 10:00 UTC all year):
air temperature °C, relative humidity %, 10 m wind speed km/h, and the rain of the previous
24 hours mm. FFMC, DMC and DC carry over from the previous day (``FwiState``); ISI, BUI, FWI and
DSR are recomputed each day from them.

Start-up and the missing-day rule (``resolve_start``): the chain starts from Van Wagner's
start-up values FFMC 85, DMC 6, DC 15. The system has no rule for a missing day, because every
code needs yesterday's value; Meltemi restarts from the start-up values after any gap and flags
the day ``after_gap``. The consequence is stated rather than hidden: after a gap in a dry summer
the restarted DMC and DC (and so BUI and FWI) under-read until they build up again, for days
(DMC) to weeks (DC).

The array functions take numpy arrays (or floats) that broadcast together and return arrays;
they reproduce cffdrs exactly, including NaN (R's NA) where its arithmetic gives NaN for inputs
outside the physical domain. ``fwi_step`` is the checked daily entry point.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayIn = FloatArray | float

# Van Wagner & Pickett (1985) eq. 1 and 10 convert FFMC to fine-fuel moisture with 147.2; cffdrs
# uses the exact 250 * 59.5 / 101 (147.27723...), and its vectors need the exact value: the
# rounded constant moves FFMC by ~0.12 and ISI/FWI by ~0.25 on the official rows.
FFMC_COEFFICIENT: Final = 250.0 * 59.5 / 101.0

# Van Wagner (1987): standard start-up values at the beginning of the fire season.
DEFAULT_FFMC: Final = 85.0
DEFAULT_DMC: Final = 6.0
DEFAULT_DC: Final = 15.0

# cffdrs fwi(): relative humidity of 100 % or more is computed as 99.9999 %.
RH_CAP: Final = 99.9999

# DMC effective day length L_e (hours) by month, cffdrs duff_moisture_code(): Van Wagner's
# table for 46° N, used for latitude >= 30° N (and for every latitude when lat_adjust is off).
_DMC_DAY_LENGTH_46N: Final = np.array(
    [6.5, 7.5, 9.0, 12.8, 13.9, 13.9, 12.4, 10.9, 9.4, 8.0, 7.0, 6.0]
)
_DMC_DAY_LENGTH_20N: Final = np.array(  # 10° N < latitude <= 30° N
    [7.9, 8.4, 8.9, 9.5, 9.9, 10.2, 10.1, 9.7, 9.1, 8.6, 8.1, 7.8]
)
_DMC_DAY_LENGTH_20S: Final = np.array(  # 30° S < latitude <= 10° S
    [10.1, 9.6, 9.1, 8.5, 8.1, 7.8, 7.9, 8.3, 8.9, 9.4, 9.9, 10.2]
)
_DMC_DAY_LENGTH_40S: Final = np.array(  # 90° S <= latitude <= 30° S
    [11.5, 10.5, 9.2, 7.9, 6.8, 6.2, 6.5, 7.4, 8.7, 10.0, 11.2, 11.8]
)
_DMC_DAY_LENGTH_EQUATOR: Final = 9.0  # 10° S < latitude <= 10° N: the same all year
# DC day-length factor L_f by month, cffdrs drought_code(): north of 20° N (the standard table),
# south of 20° S, and 1.4 all year in between.
_DC_DAY_LENGTH_NORTH: Final = np.array(
    [-1.6, -1.6, -1.6, 0.9, 3.8, 5.8, 6.4, 5.0, 2.4, 0.4, -1.6, -1.6]
)
_DC_DAY_LENGTH_SOUTH: Final = np.array(
    [6.4, 5.0, 2.4, 0.4, -1.6, -1.6, -1.6, -1.6, -1.6, 0.9, 3.8, 5.8]
)
_DC_DAY_LENGTH_EQUATOR: Final = 1.4


def _f(values: ArrayIn) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def fine_fuel_moisture_code(
    ffmc_yda: ArrayIn, temp: ArrayIn, rh: ArrayIn, ws: ArrayIn, prec: ArrayIn
) -> FloatArray:
    """Return today's FFMC (Van Wagner & Pickett 1985 eqs. 1-10; cffdrs fine_fuel_moisture_code)."""
    f0, t, h, w, p = _f(ffmc_yda), _f(temp), _f(rh), _f(ws), _f(prec)
    with np.errstate(all="ignore"):
        wmo = FFMC_COEFFICIENT * (101.0 - f0) / (59.5 + f0)  # eq. 1
        ra = np.where(p > 0.5, p - 0.5, p)  # eq. 2: the canopy holds back 0.5 mm
        rain_gain = 42.5 * ra * np.exp(-100.0 / (251.0 - wmo)) * (1.0 - np.exp(-6.93 / ra))
        wmo = np.where(
            p > 0.5,
            np.where(  # eqs. 3a, 3b
                wmo > 150.0,
                wmo + 0.0015 * (wmo - 150.0) ** 2 * np.sqrt(ra) + rain_gain,
                wmo + rain_gain,
            ),
            wmo,
        )
        wmo = np.where(wmo > 250.0, 250.0, wmo)  # pine litter holds at most ~250 % moisture
        dryness = 0.18 * (21.1 - t) * (1.0 - 1.0 / np.exp(h * 0.115))
        ed = 0.942 * h**0.679 + 11.0 * np.exp((h - 100.0) / 10.0) + dryness  # eq. 4
        ew = 0.618 * h**0.753 + 10.0 * np.exp((h - 100.0) / 10.0) + dryness  # eq. 5
        wetting = (wmo < ed) & (wmo < ew)
        z = np.where(  # eq. 6a
            wetting,
            0.424 * (1.0 - ((100.0 - h) / 100.0) ** 1.7)
            + 0.0694 * np.sqrt(w) * (1.0 - ((100.0 - h) / 100.0) ** 8),
            0.0,
        )
        x = z * 0.581 * np.exp(0.0365 * t)  # eq. 6b
        wm = np.where(wetting, ew - (ew - wmo) / 10.0**x, wmo)  # eq. 8
        z = np.where(  # eq. 7a
            wmo > ed,
            0.424 * (1.0 - (h / 100.0) ** 1.7) + 0.0694 * np.sqrt(w) * (1.0 - (h / 100.0) ** 8),
            z,
        )
        x = z * 0.581 * np.exp(0.0365 * t)  # eq. 7b
        wm = np.where(wmo > ed, ed + (wmo - ed) / 10.0**x, wm)  # eq. 9
        ffmc = 59.5 * (250.0 - wm) / (FFMC_COEFFICIENT + wm)  # eq. 10
        ffmc = np.clip(ffmc, 0.0, 101.0)
    # R's ifelse() on an NA comparison gives NA where numpy's comparison gives False: an
    # undefined equilibrium moisture (negative RH) makes the code undefined, as in cffdrs.
    result: FloatArray = np.where(np.isnan(ed) | np.isnan(ew), np.nan, ffmc)
    return result


def _month_index(month: npt.ArrayLike) -> npt.NDArray[np.intp]:
    months = np.asarray(month, dtype=np.intp)
    if np.any((months < 1) | (months > 12)):
        raise ValueError("month must be 1..12")
    return months - 1


def duff_moisture_code(
    dmc_yda: ArrayIn,
    temp: ArrayIn,
    rh: ArrayIn,
    prec: ArrayIn,
    lat: ArrayIn,
    month: npt.ArrayLike,
    lat_adjust: bool = True,
) -> FloatArray:
    """Return today's DMC (Van Wagner & Pickett 1985 eqs. 11-16; cffdrs duff_moisture_code)."""
    d0, h, p, la = _f(dmc_yda), _f(rh), _f(prec), _f(lat)
    t = np.maximum(_f(temp), -1.1)  # eq. 16 holds for temperatures above -1.1 °C
    m = _month_index(month)
    with np.errstate(all="ignore"):
        day_length = _DMC_DAY_LENGTH_46N[m]
        if lat_adjust:
            day_length = np.where((la <= 30.0) & (la > 10.0), _DMC_DAY_LENGTH_20N[m], day_length)
            day_length = np.where((la <= -10.0) & (la > -30.0), _DMC_DAY_LENGTH_20S[m], day_length)
            day_length = np.where((la <= -30.0) & (la >= -90.0), _DMC_DAY_LENGTH_40S[m], day_length)
            day_length = np.where((la <= 10.0) & (la > -10.0), _DMC_DAY_LENGTH_EQUATOR, day_length)
        rk = 1.894 * (t + 1.1) * (100.0 - h) * day_length * 1e-4  # eq. 16: log drying rate
        rw = 0.92 * p - 1.27  # eq. 11: effective rain
        wmi = 20.0 + 280.0 / np.exp(0.023 * d0)  # eq. 12, cffdrs' exact form
        b = np.where(  # eqs. 13a-c
            d0 <= 33.0,
            100.0 / (0.5 + 0.3 * d0),
            np.where(d0 <= 65.0, 14.0 - 1.3 * np.log(d0), 6.2 * np.log(d0) - 17.2),
        )
        wmr = wmi + 1000.0 * rw / (48.77 + b * rw)  # eq. 14
        after_rain = 43.43 * (5.6348 - np.log(wmr - 20.0))  # eq. 15, cffdrs' exact form
        pr = np.where(p <= 1.5, d0, after_rain)  # rain up to 1.5 mm does not reach the duff
        pr = np.where(pr < 0.0, 0.0, pr)
        dmc = pr + rk
        result: FloatArray = np.where(dmc < 0.0, 0.0, dmc)
    return result


def drought_code(
    dc_yda: ArrayIn,
    temp: ArrayIn,
    rh: ArrayIn,
    prec: ArrayIn,
    lat: ArrayIn,
    month: npt.ArrayLike,
    lat_adjust: bool = True,
) -> FloatArray:
    """Return today's DC (Van Wagner & Pickett 1985 eqs. 18-23; cffdrs drought_code).

    ``rh`` is accepted for symmetry with cffdrs' signature; the DC does not use it.
    """
    del rh
    d0, p, la = _f(dc_yda), _f(prec), _f(lat)
    t = np.maximum(_f(temp), -2.8)  # eq. 22 holds for temperatures above -2.8 °C
    m = _month_index(month)
    with np.errstate(all="ignore"):
        factor = _DC_DAY_LENGTH_NORTH[m]
        if lat_adjust:
            factor = np.where(la <= -20.0, _DC_DAY_LENGTH_SOUTH[m], factor)
            factor = np.where((la > -20.0) & (la <= 20.0), _DC_DAY_LENGTH_EQUATOR, factor)
        pe = (0.36 * (t + 2.8) + factor) / 2.0  # eq. 22: potential evapotranspiration
        pe = np.where(pe < 0.0, 0.0, pe)  # cffdrs: no negative evapotranspiration in winter
        rw = 0.83 * p - 1.27  # eq. 18: effective rain
        smi = 800.0 * np.exp(-d0 / 400.0)  # eq. 19: moisture equivalent
        dr0 = d0 - 400.0 * np.log(1.0 + 3.937 * rw / smi)  # eqs. 20-21, cffdrs' exact form
        dr0 = np.where(dr0 < 0.0, 0.0, dr0)
        dr = np.where(p <= 2.8, d0, dr0)  # rain up to 2.8 mm does not reach the deep layer
        dc = dr + pe  # eq. 23
        result: FloatArray = np.where(dc < 0.0, 0.0, dc)
    return result


def initial_spread_index(ffmc: ArrayIn, ws: ArrayIn, fbp_mod: bool = False) -> FloatArray:
    """Return the ISI (Van Wagner & Pickett 1985 eqs. 24-26; cffdrs initial_spread_index).

    ``fbp_mod`` applies the FBP System's wind function above 40 km/h (FCFDG 1992 eq. 53a);
    the FWI System itself uses ``False``.
    """
    f, w = _f(ffmc), _f(ws)
    with np.errstate(all="ignore"):
        fm = FFMC_COEFFICIENT * (101.0 - f) / (59.5 + f)  # eq. 10 inverted: fine-fuel moisture
        wind = np.where(
            (w >= 40.0) & fbp_mod,
            12.0 * (1.0 - np.exp(-0.0818 * (w - 28.0))),
            np.exp(0.05039 * w),  # eq. 24
        )
        fuel = 91.9 * np.exp(-0.1386 * fm) * (1.0 + fm**5.31 / 49300000.0)  # eq. 25
        result: FloatArray = 0.208 * wind * fuel  # eq. 26
    return result


def buildup_index(dmc: ArrayIn, dc: ArrayIn) -> FloatArray:
    """Return the BUI (Van Wagner & Pickett 1985 eqs. 27a-b; cffdrs buildup_index)."""
    p, d = _f(dmc), _f(dc)
    with np.errstate(all="ignore"):
        bui1 = np.where((p == 0.0) & (d == 0.0), 0.0, 0.8 * d * p / (p + 0.4 * d))  # eq. 27a
        ratio = np.where(p == 0.0, 0.0, (p - bui1) / p)  # eq. 27b
        cc = 0.92 + (0.0114 * p) ** 1.7
        bui0 = p - cc * ratio
        bui0 = np.where(bui0 < 0.0, 0.0, bui0)
        result: FloatArray = np.where(bui1 < p, bui0, bui1)
    return result


def fire_weather_index(isi: ArrayIn, bui: ArrayIn) -> FloatArray:
    """Return the FWI (Van Wagner & Pickett 1985 eqs. 28-30; cffdrs fire_weather_index)."""
    r, u = _f(isi), _f(bui)
    with np.errstate(all="ignore"):
        bb = np.where(  # eqs. 28a, 28b, 29
            u > 80.0,
            0.1 * r * (1000.0 / (25.0 + 108.64 / np.exp(0.023 * u))),
            0.1 * r * (0.626 * u**0.809 + 2.0),
        )
        result: FloatArray = np.where(  # eqs. 30a, 30b
            bb <= 1.0, bb, np.exp(2.72 * (0.434 * np.log(bb)) ** 0.647)
        )
    return result


def daily_severity_rating(fwi: ArrayIn) -> FloatArray:
    """Return the DSR, 0.0272 FWI^1.77 (Van Wagner & Pickett 1985 eq. 31, as in cffdrs fwi())."""
    result: FloatArray = 0.0272 * _f(fwi) ** 1.77
    return result


@dataclass(frozen=True, slots=True)
class FwiState:
    """The moisture codes at the end of ``day``: what the next day starts from (persist this)."""

    day: dt.date
    ffmc: float
    dmc: float
    dc: float

    def to_record(self) -> dict[str, str | float]:
        """Return a JSON-ready record; ``from_record`` reads it back unchanged."""
        return {"day": self.day.isoformat(), "ffmc": self.ffmc, "dmc": self.dmc, "dc": self.dc}

    @classmethod
    def from_record(cls, record: dict[str, str | float]) -> FwiState:
        """Return the state written by ``to_record``."""
        return cls(
            day=dt.date.fromisoformat(str(record["day"])),
            ffmc=float(record["ffmc"]),
            dmc=float(record["dmc"]),
            dc=float(record["dc"]),
        )


@dataclass(frozen=True, slots=True)
class FwiWeather:
    """One day's inputs, at noon local standard time (the rain is that of the previous 24 h)."""

    temperature_c: float
    relative_humidity: float
    wind_speed_kmh: float
    rain_24h_mm: float


StartReason = Literal["carried", "start_up", "after_gap"]


@dataclass(frozen=True, slots=True)
class FwiDay:
    """One day of the FWI System: the six codes, the DSR and where the chain started from."""

    day: dt.date
    ffmc: float
    dmc: float
    dc: float
    isi: float
    bui: float
    fwi: float
    dsr: float
    start: StartReason  # ``carried`` from yesterday, or restarted from 85/6/15 and why
    missing_days: int  # days without inputs between the previous state and this day

    @property
    def state(self) -> FwiState:
        """Return the state tomorrow starts from."""
        return FwiState(self.day, self.ffmc, self.dmc, self.dc)


def resolve_start(
    previous: FwiState | None, day: dt.date
) -> tuple[float, float, float, StartReason, int]:
    """Return yesterday's (FFMC, DMC, DC) for ``day``, the reason, and the missing days.

    The missing-day rule: the chain carries only from the day before. No previous state gives
    the start-up values 85/6/15 (``start_up``); a previous state older than yesterday restarts
    from them too (``after_gap``), with the number of days that had no inputs. A previous state
    on or after ``day`` is refused: days must be computed in order.
    """
    if previous is None:
        return DEFAULT_FFMC, DEFAULT_DMC, DEFAULT_DC, "start_up", 0
    if previous.day >= day:
        raise ValueError(f"FWI days must be computed in order: {day} after {previous.day}")
    missing = (day - previous.day).days - 1
    if missing == 0:
        return previous.ffmc, previous.dmc, previous.dc, "carried", 0
    return DEFAULT_FFMC, DEFAULT_DMC, DEFAULT_DC, "after_gap", missing


def _check_weather(weather: FwiWeather, latitude: float) -> None:
    values = (
        weather.temperature_c,
        weather.relative_humidity,
        weather.wind_speed_kmh,
        weather.rain_24h_mm,
        latitude,
    )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"FWI inputs must be finite: {weather}, latitude {latitude}")
    # cffdrs fwi() stops on negative humidity, wind or rain.
    if weather.relative_humidity < 0.0 or weather.wind_speed_kmh < 0.0:
        raise ValueError(f"FWI inputs out of range: {weather}")
    if weather.rain_24h_mm < 0.0:
        raise ValueError(f"FWI rain cannot be negative: {weather}")
    if not -90.0 <= latitude <= 90.0:
        raise ValueError(f"latitude out of range: {latitude}")


def fwi_step(
    previous: FwiState | None,
    day: dt.date,
    weather: FwiWeather,
    latitude: float,
    lat_adjust: bool = True,
) -> FwiDay:
    """Return the FWI System for ``day`` from the previous state (cffdrs fwi(), one day).

    The previous state is used only if it is yesterday's (see ``resolve_start``). Relative
    humidity of 100 % or more is computed as 99.9999 %, as cffdrs does.
    """
    _check_weather(weather, latitude)
    ffmc0, dmc0, dc0, start, missing = resolve_start(previous, day)
    rh = min(weather.relative_humidity, RH_CAP)
    t, ws, rain = weather.temperature_c, weather.wind_speed_kmh, weather.rain_24h_mm
    ffmc = fine_fuel_moisture_code(ffmc0, t, rh, ws, rain)
    dmc = duff_moisture_code(dmc0, t, rh, rain, latitude, day.month, lat_adjust)
    dc = drought_code(dc0, t, rh, rain, latitude, day.month, lat_adjust)
    isi = initial_spread_index(ffmc, ws)
    bui = buildup_index(dmc, dc)
    fwi = fire_weather_index(isi, bui)
    return FwiDay(
        day=day,
        ffmc=float(ffmc),
        dmc=float(dmc),
        dc=float(dc),
        isi=float(isi),
        bui=float(bui),
        fwi=float(fwi),
        dsr=float(daily_severity_rating(fwi)),
        start=start,
        missing_days=missing,
    )


def fwi_series(
    days: Sequence[tuple[dt.date, FwiWeather]],
    latitude: float,
    previous: FwiState | None = None,
    lat_adjust: bool = True,
) -> list[FwiDay]:
    """Return the FWI System for each of ``days`` (in order), carrying the state between them.

    A date missing from ``days`` is a gap: the next day restarts from 85/6/15 (``after_gap``).
    """
    out: list[FwiDay] = []
    state = previous
    for day, weather in days:
        result = fwi_step(state, day, weather, latitude, lat_adjust)
        out.append(result)
        state = result.state
    return out


# EFFIS fire danger classes of the FWI (European Forest Fire Information System, JRC: "Fire
# danger forecast" classes harmonised for Europe); lower bound inclusive, upper bound excluded.
EffisClass = Literal["very_low", "low", "moderate", "high", "very_high", "extreme"]
EFFIS_LOWER_BOUNDS: Final[tuple[tuple[float, EffisClass], ...]] = (
    (50.0, "extreme"),
    (38.0, "very_high"),
    (21.3, "high"),
    (11.2, "moderate"),
    (5.2, "low"),
)
EFFIS_LABELS: Final[dict[EffisClass, str]] = {
    "very_low": "Very low (EFFIS)",
    "low": "Low (EFFIS)",
    "moderate": "Moderate (EFFIS)",
    "high": "High (EFFIS)",
    "very_high": "Very high (EFFIS)",
    "extreme": "Extreme (EFFIS)",
}
EFFIS_SOURCE: Final = (
    "EFFIS fire danger classes (European Forest Fire Information System, JRC); "
    "not the Greek civil-protection fire-risk map, which publishes no mapping from the FWI"
)


def effis_class(fwi: float) -> EffisClass | None:
    """Return the EFFIS danger class of an FWI value (lower bound inclusive); None if NaN."""
    if math.isnan(fwi):
        return None
    if fwi < 0.0:
        raise ValueError(f"FWI cannot be negative: {fwi}")
    for lower, name in EFFIS_LOWER_BOUNDS:
        if fwi >= lower:
            return name
    return "very_low"
