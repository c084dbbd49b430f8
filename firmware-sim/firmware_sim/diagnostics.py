"""Station diagnostics sent with each reading: battery voltage, radio signal, uptime.

The battery is a Li-ion cell on a small solar panel: it charges from sunrise to sunset (less
under cloud) and discharges through the night, between about 3.7 and 4.15 V.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_sim.noise import BandProcess, normal, uniform
from firmware_sim.weather import Weather, WeatherModel
from sensors import solar

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BATTERY_EMPTY_V: Final = 3.70
BATTERY_SWING_V: Final = 0.42
_S_BATTERY, _S_RSSI, _S_RSSI_FADE, _S_DIAG_NOISE = 200, 201, 202, 203
_FADE: dict[int, BandProcess] = {}


def _charge_level(lat: FloatArray, lon: FloatArray, ts_s: FloatArray) -> FloatArray:
    """Return 0 at sunrise rising to 1 at sunset, then falling linearly back to 0 by sunrise."""
    decl = np.radians(solar.declination_deg(ts_s))
    cos_h0 = np.clip(-np.tan(np.radians(lat)) * np.tan(decl), -1.0, 1.0)
    half_day_h = np.degrees(np.arccos(cos_h0)) / 15.0
    rise, day = 12.0 - half_day_h, 2.0 * half_day_h
    since = np.mod(solar.solar_time_h(lon, ts_s) - rise, 24.0)
    charging = (1.0 - np.cos(np.pi * np.clip(since / np.maximum(day, 1e-6), 0.0, 1.0))) / 2.0
    night = 1.0 - (since - day) / np.maximum(24.0 - day, 1e-6)
    return np.asarray(np.where(since < day, charging, night), dtype=np.float64)


def diagnostics(
    model: WeatherModel,
    index: IntArray,
    ts_s: FloatArray,
    weather: Weather,
    boot_s: float | FloatArray,
) -> dict[str, list[float]]:
    """Return battery_v, rssi_dbm and uptime_s columns for (station, time) pairs."""
    sites, seed = model.sites, model.seed
    fade = _FADE.get(seed)
    if fade is None or fade.phase.shape[0] < len(sites.lat):
        fade = _FADE[seed] = BandProcess(seed, _S_RSSI_FADE, len(sites.lat), 600.0, 21_600.0)
    level = _charge_level(sites.lat[index], sites.lon[index], ts_s)
    mean_cloud = 0.5 + 0.5 * (1.0 - weather.cloud)
    capacity = 0.75 + 0.25 * uniform(seed, _S_BATTERY, index)
    battery = BATTERY_EMPTY_V + BATTERY_SWING_V * capacity * level * mean_cloud
    second = np.floor(ts_s).astype(np.int64)
    battery += 0.004 * normal(seed, _S_DIAG_NOISE, index, second)
    rssi = (
        -95.0
        + 35.0 * uniform(seed, _S_RSSI, index)
        + 4.0 * fade.value(index, ts_s)
        + 1.5 * normal(seed, _S_DIAG_NOISE + 1, index, second)
    )
    uptime = np.maximum(np.floor(ts_s - boot_s), 0.0)
    return {
        "battery_v": np.round(battery, 2).tolist(),
        "rssi_dbm": np.round(np.clip(rssi, -120.0, -30.0)).tolist(),
        "uptime_s": uptime.tolist(),
    }
