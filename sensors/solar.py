"""Solar geometry and clear-sky irradiance: pure numpy functions of place and time.

Times are seconds since the Unix epoch (UTC); angles are degrees; every function accepts scalars
or arrays (broadcast together) and returns float64 arrays. Sources:

- declination and equation of time: the Fourier series of J. W. Spencer (1971), "Fourier series
  representation of the position of the sun", Search 2(5), 172, as used by NOAA's
  "General Solar Position Calculations"; accurate to about 0.05° in elevation, far below what
  a 10-second weather reading can notice;
- sunrise and sunset: the same hour-angle equation with the standard -0.833° (refraction and
  the solar disc's radius, NOAA);
- clear-sky global horizontal irradiance: the Haurwitz model, B. Haurwitz (1945), "Insolation in
  relation to cloudiness and cloud density", J. Meteorol. 2, 154-166, in the form evaluated by
  Reno, Hansen & Stein (2012), "Global horizontal irradiance clear sky models: implementation and
  analysis", Sandia report SAND2012-2389, eq. 6: GHI = 1098 cos(z) exp(-0.057 / cos(z)) W/m²;
- clear-sky UV index: S. Madronich (2007), "Analytic formula for the clear-sky UV index",
  Photochem. Photobiol. 83, 1537-1538: UVI = 12.5 mu0^2.42 (ozone / 300 DU)^-1.23.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = float | npt.ArrayLike

SECONDS_PER_DAY: Final = 86_400.0
SUNRISE_ELEVATION_DEG: Final = -0.833  # NOAA: refraction plus the sun's apparent radius
HAURWITZ_A: Final = 1098.0  # W/m², Haurwitz (1945) via SAND2012-2389 eq. 6
HAURWITZ_B: Final = 0.057
MADRONICH_SCALE: Final = 12.5  # Madronich (2007)
MADRONICH_EXPONENT: Final = 2.42
MADRONICH_OZONE_EXPONENT: Final = -1.23


def _as_float(value: ArrayLike) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def _day_angle(ts_s: FloatArray) -> FloatArray:
    """Return Spencer's fractional-year angle (radians) for each time."""
    seconds = np.floor(ts_s).astype("int64").astype("datetime64[s]")
    year_start = seconds.astype("datetime64[Y]").astype("datetime64[s]")
    day_of_year = (seconds - year_start).astype(np.float64) / SECONDS_PER_DAY  # 0 at 1 Jan 00:00
    day_of_year += ts_s - np.floor(ts_s)
    return np.asarray(2.0 * np.pi * day_of_year / 365.0, dtype=np.float64)


def declination_deg(ts_s: ArrayLike) -> FloatArray:
    """Return the solar declination (degrees) at each time (Spencer 1971)."""
    g = _day_angle(_as_float(ts_s))
    rad = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    return np.degrees(rad)


def equation_of_time_min(ts_s: ArrayLike) -> FloatArray:
    """Return the equation of time (minutes, apparent minus mean solar time) (Spencer 1971)."""
    g = _day_angle(_as_float(ts_s))
    return 229.18 * (
        0.000075
        + 0.001868 * np.cos(g)
        - 0.032077 * np.sin(g)
        - 0.014615 * np.cos(2 * g)
        - 0.040849 * np.sin(2 * g)
    )


def solar_time_h(lon_deg: ArrayLike, ts_s: ArrayLike) -> FloatArray:
    """Return the apparent (true) solar time in hours, 0 ≤ h < 24, at each longitude and time."""
    ts = _as_float(ts_s)
    utc_min = np.mod(ts, SECONDS_PER_DAY) / 60.0
    true_min = utc_min + equation_of_time_min(ts) + 4.0 * _as_float(lon_deg)
    return np.mod(true_min / 60.0, 24.0)


def cos_zenith(lat_deg: ArrayLike, lon_deg: ArrayLike, ts_s: ArrayLike) -> FloatArray:
    """Return the cosine of the solar zenith angle (negative when the sun is below the horizon)."""
    lat = np.radians(_as_float(lat_deg))
    decl = np.radians(declination_deg(ts_s))
    hour_angle = np.radians(15.0 * (solar_time_h(lon_deg, ts_s) - 12.0))
    cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    return np.asarray(cos_z, dtype=np.float64)


def solar_elevation_deg(lat_deg: ArrayLike, lon_deg: ArrayLike, ts_s: ArrayLike) -> FloatArray:
    """Return the solar elevation above the horizon (degrees, geometric, no refraction)."""
    return np.degrees(np.arcsin(np.clip(cos_zenith(lat_deg, lon_deg, ts_s), -1.0, 1.0)))


def sunrise_sunset(
    lat_deg: ArrayLike, lon_deg: ArrayLike, ts_s: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Return (sunrise, sunset) in epoch seconds UTC for the UTC day containing each time.

    Where the sun never rises (polar night) both are NaN; where it never sets, sunrise is the
    start and sunset the end of the day.
    """
    ts = _as_float(ts_s)
    day_start = np.floor(ts / SECONDS_PER_DAY) * SECONDS_PER_DAY
    noon = day_start + SECONDS_PER_DAY / 2
    lat = np.radians(_as_float(lat_deg))
    decl = np.radians(declination_deg(noon))
    cos_h0 = (np.sin(np.radians(SUNRISE_ELEVATION_DEG)) - np.sin(lat) * np.sin(decl)) / (
        np.cos(lat) * np.cos(decl)
    )
    half_day_deg = np.degrees(np.arccos(np.clip(cos_h0, -1.0, 1.0)))
    solar_noon_min = 720.0 - 4.0 * _as_float(lon_deg) - equation_of_time_min(noon)
    sunrise = day_start + 60.0 * (solar_noon_min - 4.0 * half_day_deg)
    sunset = day_start + 60.0 * (solar_noon_min + 4.0 * half_day_deg)
    polar_night = cos_h0 > 1.0
    return np.where(polar_night, np.nan, sunrise), np.where(polar_night, np.nan, sunset)


def clear_sky_ghi_from_cos_zenith(cos_z: ArrayLike) -> FloatArray:
    """Return Haurwitz clear-sky global horizontal irradiance (W/m²) for cos(zenith); 0 at night."""
    mu = _as_float(cos_z)
    safe = np.where(mu > 0, mu, 1.0)
    ghi = HAURWITZ_A * safe * np.exp(-HAURWITZ_B / safe)
    return np.where(mu > 0, ghi, 0.0)


def clear_sky_ghi(lat_deg: ArrayLike, lon_deg: ArrayLike, ts_s: ArrayLike) -> FloatArray:
    """Return the clear-sky global horizontal irradiance (W/m²) at a place and time.

    Haurwitz (1945): GHI = 1098 cos(z) exp(-0.057 / cos(z)) for a sun above the horizon, 0
    otherwise (evaluation: Reno, Hansen & Stein 2012, SAND2012-2389, eq. 6). It depends on the
    solar zenith angle only: no altitude, turbidity or water-vapour term, so it is a smooth
    cloudless-sky reference, about 1000 W/m² at a 20° zenith. A measured value may exceed it by
    cloud-edge enhancement for minutes (sensors.qc allows a margin); the simulator never does.
    """
    return clear_sky_ghi_from_cos_zenith(cos_zenith(lat_deg, lon_deg, ts_s))


def clear_sky_uv_index(cos_z: ArrayLike, ozone_du: ArrayLike = 300.0) -> FloatArray:
    """Return the clear-sky UV index for cos(zenith) and total ozone in DU (Madronich 2007)."""
    mu = np.clip(_as_float(cos_z), 0.0, 1.0)
    return (
        MADRONICH_SCALE
        * mu**MADRONICH_EXPONENT
        * (_as_float(ozone_du) / 300.0) ** MADRONICH_OZONE_EXPONENT
    )
