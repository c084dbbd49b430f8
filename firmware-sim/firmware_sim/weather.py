"""The weather of the network: one regional state plus local deviations, vectorised over stations.

``WeatherModel.sample(index, ts_s, prev_ts_s)`` returns the true values at stations ``index`` and
times ``ts_s`` (arrays of equal length); ``prev_ts_s`` is each station's previous sampling time,
for the precipitation accumulated since then. Every term is a pure function of (seed, station,
time) (see firmware_sim.noise), so any time can be evaluated directly, a year of hourly values
in one call as well as one 10-second tick of a thousand stations.

The physics, per station:
- sun: solar elevation for the real place and time (sensors.solar); clear-sky global irradiance
  (Haurwitz) reduced by cloud as Kasten & Czeplak (1980, Solar Energy 24, 177-189):
  G = G_clear (1 - 0.75 N^3.4), N the cloud fraction; UV index from Madronich (2007), attenuated
  less than the broadband by cloud;
- air temperature: the monthly normal (firmware_sim.climate) + a diurnal cycle from a minimum at
  sunrise to a maximum at 14:30 solar time, whose amplitude is the month's mean daily range,
  shrunk by cloud (clear nights are cooler, cloudy days cooler) and near the sea + a synoptic
  anomaly (periods 2-9 days, sigma 2.2 °C) + a lapse rate of -6.5 °C/km from the reference
  station's elevation + local deviations; rain cools it by up to 2.5 °C;
- humidity: a slowly varying dew point (monthly normal + synoptic moisture + local), moistened
  towards saturation in rain, never above the temperature; RH = 100 e_s(Td) / e_s(T) by Magnus
  over water, capped at 100 %;
- pressure: monthly sea-level pressure + synoptic swings bounded to ±15 hPa + the semi-diurnal
  tide (±0.8 hPa), reduced to the station's elevation by the barometric formula;
- wind: the month's prevailing flow (north-north-easterly Etesians in summer) + synoptic
  variability, a sea breeze from the south-south-west by day and a weak land breeze at night
  for stations near the shore, daytime mixing; gusts 25-60 % above the mean; the direction
  veers slowly with the synoptic and local flow and fluctuates more in light wind;
- precipitation: events (start, duration, depth) drawn per 3-hour block with the month's event
  probability, more likely under low pressure; each station sees the event with a delay that
  grows eastwards and its own intensity factor; reported as 0.2 mm tipping-bucket tips;
- particulate matter: a seasonal urban background, raised near the industrial zone, with
  rush-hour peaks (Athens local time, weaker at weekends), night-time inversions, dilution with
  wind and washout in rain; PM1 ≤ PM2.5 ≤ PM10.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_sim import climate
from firmware_sim.noise import BandProcess, normal, uniform
from firmware_sim.sites import Sites
from sensors import solar
from sensors.registry import Station

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HOUR_S: Final = 3600.0
DAY_S: Final = 86_400.0
LAPSE_RATE_C_PER_M: Final = -0.0065  # ICAO standard atmosphere, as the issue asks
DEW_POINT_LAPSE_C_PER_M: Final = -0.002  # dew point falls ~2 °C/km in a mixed layer
SYNOPTIC_T_SIGMA_C: Final = 2.2
SYNOPTIC_P_SIGMA_HPA: Final = 7.0
SYNOPTIC_P_BOUND_HPA: Final = 15.0  # the issue: swings of ±15 hPa over days
TEMPERATURE_MAX_HOUR: Final = 14.5  # solar time of the daily maximum: the lag behind the sun
RAIN_BLOCK_S: Final = 3 * HOUR_S
RAIN_MAX_DURATION_S: Final = 6 * HOUR_S
RAIN_TAIL_S: Final = 1.5 * HOUR_S  # how long the ground and air stay wet after rain
TIP_MM: Final = 0.2  # a typical tipping-bucket resolution
FRONT_DELAY_S_PER_DEG_LON: Final = 2.0 * HOUR_S  # ~45 km/h eastward motion of rain bands
MAGNUS_B: Final = 17.625  # Alduchov & Eskridge (1996), as sensors.qc and sensors.derived
MAGNUS_C: Final = 243.04
# Prevailing flow (m/s, u east, v north): the summer Etesians blow from the NNE.
ETESIAN_UV: Final = (-1.7, -4.6)
ETESIAN_STRENGTH: Final = (0.35, 0.35, 0.3, 0.3, 0.4, 0.7, 1.0, 1.0, 0.7, 0.45, 0.35, 0.35)
SEA_BREEZE_MAX_MS: Final = 3.5
SEA_BREEZE_FROM_DEG: Final = 200.0
PM25_BACKGROUND: Final = (24.0, 21.0, 17.0, 14.0, 13.0, 13.0, 14.0, 14.0, 14.0, 16.0, 20.0, 24.0)

# Stream numbers of the counter-based random numbers (firmware_sim.noise); never reuse one.
_S_PRESSURE, _S_TEMP, _S_MOIST, _S_CLOUD_SLOW, _S_CLOUD_FAST = 10, 12, 14, 16, 18
_S_WIND_U, _S_WIND_V, _S_PM = 20, 22, 24
_S_L_TEMP, _S_L_DEW, _S_L_CLOUD, _S_L_U, _S_L_V, _S_L_PM = 40, 42, 44, 46, 48, 50
_S_RAIN, _S_RAIN_START, _S_RAIN_DUR, _S_RAIN_DEPTH, _S_RAIN_LOCAL = 60, 61, 62, 63, 64
_S_NOISE = 100


@dataclass(frozen=True, slots=True)
class Weather:
    """True values at (station, time) pairs, in the catalogue's units, before sensor rounding."""

    air_temperature: FloatArray
    relative_humidity: FloatArray
    dew_point: FloatArray
    air_pressure: FloatArray
    wind_speed: FloatArray
    wind_gust: FloatArray
    wind_direction: FloatArray
    precipitation: FloatArray
    solar_radiation: FloatArray
    uv_index: FloatArray
    pm1: FloatArray
    pm2_5: FloatArray
    pm10: FloatArray
    clear_sky_ghi: FloatArray
    cloud: FloatArray
    wet: FloatArray

    def parameter(self, parameter: str) -> FloatArray:
        """Return the array of one catalogue parameter."""
        value: FloatArray = getattr(self, parameter)
        return value


def saturation_vapour_pressure_hpa(t_c: FloatArray) -> FloatArray:
    """Return e_s over water (hPa), Magnus with Alduchov & Eskridge (1996) coefficients."""
    return np.asarray(6.1094 * np.exp(MAGNUS_B * t_c / (MAGNUS_C + t_c)), dtype=np.float64)


def dew_point_c(t_c: FloatArray, rh: FloatArray) -> FloatArray:
    """Return the dew point (°C) for temperature and relative humidity (Magnus, inverse)."""
    gamma = np.log(np.clip(rh, 1e-6, None) / 100.0) + MAGNUS_B * t_c / (MAGNUS_C + t_c)
    return np.asarray(MAGNUS_C * gamma / (MAGNUS_B - gamma), dtype=np.float64)


def athens_utc_offset_s(ts_s: FloatArray) -> FloatArray:
    """Return the UTC offset of Europe/Athens (EET/EEST, EU rule: last Sundays, 01:00 UTC)."""
    seconds = np.floor(ts_s).astype("int64")
    year = seconds.astype("datetime64[s]").astype("datetime64[Y]")

    def last_sunday_0100(month_end: str) -> npt.NDArray[np.int64]:
        day = (year.astype("datetime64[D]") + np.timedelta64(0, "D")).astype("datetime64[M]")
        end = (day + np.timedelta64(int(month_end), "M")).astype("datetime64[D]") - 1
        days = end.astype(np.int64)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        sunday = days - (weekday + 1) % 7
        return np.asarray(sunday * 86_400 + 3600, dtype=np.int64)

    start = last_sunday_0100("3")  # end of March
    end = last_sunday_0100("10")  # end of October
    summer = (seconds >= start) & (seconds < end)
    return np.where(summer, 3 * HOUR_S, 2 * HOUR_S)


def _diurnal_shape(solar_h: FloatArray, sunrise_h: FloatArray) -> FloatArray:
    """Return -0.5 at sunrise rising to +0.5 at 14:30 solar time and back; zero daily mean."""
    rise = np.clip(sunrise_h, 3.0, 9.0)
    warming = TEMPERATURE_MAX_HOUR - rise
    since_rise = np.mod(solar_h - rise, 24.0)
    phase_up = np.pi * since_rise / warming
    phase_down = np.pi * (since_rise - warming) / (24.0 - warming)
    return np.where(since_rise < warming, -0.5 * np.cos(phase_up), 0.5 * np.cos(phase_down))


class WeatherModel:
    """The regional weather state and each station's deviations from it."""

    def __init__(self, stations: Sequence[Station], seed: int) -> None:
        self.stations = tuple(stations)
        self.sites = Sites.from_stations(self.stations)
        self.seed = seed
        n = len(self.stations)
        s = seed
        self._pressure = BandProcess(s, _S_PRESSURE, 1, 2 * DAY_S, 9 * DAY_S)
        self._temperature = BandProcess(s, _S_TEMP, 1, 2 * DAY_S, 9 * DAY_S)
        self._moisture = BandProcess(s, _S_MOIST, 1, 1 * DAY_S, 6 * DAY_S)
        self._cloud_slow = BandProcess(s, _S_CLOUD_SLOW, 1, 8 * HOUR_S, 3 * DAY_S)
        self._cloud_fast = BandProcess(s, _S_CLOUD_FAST, 1, 900.0, 3 * HOUR_S)
        self._wind_u = BandProcess(s, _S_WIND_U, 1, 12 * HOUR_S, 5 * DAY_S)
        self._wind_v = BandProcess(s, _S_WIND_V, 1, 12 * HOUR_S, 5 * DAY_S)
        self._pm = BandProcess(s, _S_PM, 1, 1 * DAY_S, 5 * DAY_S)
        self._l_temp = BandProcess(s, _S_L_TEMP, n, 3 * HOUR_S, 3 * DAY_S)
        self._l_dew = BandProcess(s, _S_L_DEW, n, 3 * HOUR_S, 3 * DAY_S)
        self._l_cloud = BandProcess(s, _S_L_CLOUD, n, 1200.0, 6 * HOUR_S)
        self._l_u = BandProcess(s, _S_L_U, n, 1800.0, DAY_S)
        self._l_v = BandProcess(s, _S_L_V, n, 1800.0, DAY_S)
        self._l_pm = BandProcess(s, _S_L_PM, n, HOUR_S, DAY_S)
        # Fixed per-station offsets (siting): a few tenths of a degree, ±15 % rain catch.
        station_keys = np.arange(n)
        self._t_offset = 0.2 * normal(s, 70, station_keys) + 0.3 * self.sites.industrial
        self._rain_catch = np.exp(0.15 * normal(s, 71, station_keys))
        # An episode laid over the weather (firmware_sim.scenarios), set by --scenario.
        self.overlay: Callable[[Weather, FloatArray], Weather] | None = None

    def sample(self, index: IntArray, ts_s: FloatArray, prev_ts_s: FloatArray) -> Weather:
        """Return the weather at stations ``index`` at times ``ts_s`` (equal-length arrays)."""
        idx = np.asarray(index, dtype=np.int64)
        t = np.asarray(ts_s, dtype=np.float64)
        prev = np.asarray(prev_ts_s, dtype=np.float64)
        sites, seed = self.sites, self.seed
        lat, lon, elev = sites.lat[idx], sites.lon[idx], sites.elevation_m[idx]
        coastal, industrial = sites.coastal[idx], sites.industrial[idx]
        second = np.floor(t).astype(np.int64)

        def noise(stream: int) -> FloatArray:
            return normal(seed, _S_NOISE + stream, idx, second)

        doy = climate.day_of_year(t)
        month = climate.month_index(doy)
        cos_z = solar.cos_zenith(lat, lon, t)
        solar_h = solar.solar_time_h(lon, t)
        decl = np.radians(solar.declination_deg(t))
        cos_h0 = np.clip(-np.tan(np.radians(lat)) * np.tan(decl), -1.0, 1.0)
        sunrise_h = 12.0 - np.degrees(np.arccos(cos_h0)) / 15.0

        # regional synoptic state
        zero = np.zeros_like(idx)
        p_anom = self._pressure.value(zero, t)
        t_anom = self._temperature.value(zero, t)
        moist = self._moisture.value(zero, t)

        # rain
        rain_mm, wet, overcast = self._rain(idx, t, prev, lon)

        # cloud fraction and radiation
        c_month = climate.monthly(climate.CLOUD_FRACTION, doy)
        logit = (
            np.log(c_month / (1 - c_month))
            + 1.4 * self._cloud_slow.value(zero, t)
            + 0.7 * self._cloud_fast.value(zero, t)
            + 0.5 * self._l_cloud.value(idx, t)
            - 0.8 * p_anom
        )
        cloud = 1.0 / (1.0 + np.exp(-logit))
        cloud = 1.0 - (1.0 - cloud) * (1.0 - overcast)
        clear_sky = solar.clear_sky_ghi_from_cos_zenith(cos_z)
        attenuation = (1.0 - 0.75 * cloud**3.4) * (1.0 - 0.5 * wet)
        attenuation *= 1.0 - 0.02 * np.abs(noise(0))
        radiation = np.floor(clear_sky * attenuation * 10.0) / 10.0
        uv = solar.clear_sky_uv_index(cos_z, 320.0) * (1.0 - 0.5 * cloud**2) * (1.0 - 0.4 * wet)

        # air temperature
        t_mean = climate.monthly(climate.ELEFSINA_MEAN_C, doy)
        t_range = climate.monthly(climate.ELEFSINA_RANGE_C, doy)
        amplitude = t_range * (1.25 - 0.6 * cloud) * (1.0 - 0.25 * coastal) * (1.0 - 0.4 * wet)
        temperature = (
            t_mean
            + amplitude * _diurnal_shape(solar_h, sunrise_h)
            + SYNOPTIC_T_SIGMA_C * t_anom
            + 0.5 * self._l_temp.value(idx, t)
            + LAPSE_RATE_C_PER_M * (elev - climate.REFERENCE_ELEVATION_M)
            + self._t_offset[idx]
            - 2.5 * wet
            + 0.05 * noise(1)
        )

        # humidity from a slowly varying dew point
        rh_month = climate.monthly(climate.ATHENS_RELATIVE_HUMIDITY, doy)
        dew = (
            dew_point_c(t_mean, rh_month - 1.0)
            + 2.2 * (0.5 * t_anom + 0.85 * moist)
            + 0.6 * self._l_dew.value(idx, t)
            + DEW_POINT_LAPSE_C_PER_M * (elev - climate.REFERENCE_ELEVATION_M)
        )
        dew = dew + wet * np.clip(temperature - 0.3 - dew, 0.0, None)
        dew = np.minimum(dew, temperature)
        rh = np.minimum(
            100.0
            * saturation_vapour_pressure_hpa(dew)
            / saturation_vapour_pressure_hpa(temperature),
            100.0,
        )

        # pressure
        slp = (
            climate.monthly(climate.SEA_LEVEL_PRESSURE_HPA, doy)
            + SYNOPTIC_P_BOUND_HPA * np.tanh(SYNOPTIC_P_SIGMA_HPA * p_anom / SYNOPTIC_P_BOUND_HPA)
            + 0.8 * np.cos(4.0 * np.pi * (solar_h - 10.0) / 24.0)
        )
        reduction = 1.0 - 0.0065 * elev / (temperature + 0.0065 * elev + 273.15)
        pressure = slp * reduction**5.257 + 0.03 * noise(2)

        # wind
        strength = np.asarray(ETESIAN_STRENGTH)[month]
        u = ETESIAN_UV[0] * strength + 2.2 * self._wind_u.value(zero, t)
        v = ETESIAN_UV[1] * strength + 2.2 * self._wind_v.value(zero, t)
        daytime = np.clip(np.sin(np.pi * (solar_h - 9.0) / 9.0), 0.0, None)
        daytime = np.where((solar_h > 9.0) & (solar_h < 18.0), daytime, 0.0)
        breeze = (
            SEA_BREEZE_MAX_MS * coastal * daytime * (1.0 - 0.6 * cloud) * (0.5 + 0.5 * strength)
        )
        toward = np.radians(SEA_BREEZE_FROM_DEG + 180.0)
        night = (cos_z < -0.1).astype(np.float64)
        u = u + breeze * np.sin(toward) + 0.7 * self._l_u.value(idx, t)
        v = v + breeze * np.cos(toward) - 1.0 * coastal * night + 0.7 * self._l_v.value(idx, t)
        mixing = (0.75 + 0.5 * np.clip(cos_z, 0.0, None)) * (1.0 + elev / 800.0)
        mean_speed = np.hypot(u, v) * mixing
        speed = np.clip(mean_speed * (1.0 + 0.12 * noise(3)), 0.0, None)
        gust = speed * (1.25 + 0.2 * np.abs(noise(4))) + 0.4
        direction = np.degrees(np.arctan2(u, v)) + 180.0  # the direction it blows from
        direction = np.mod(direction + noise(5) * (6.0 + 25.0 / (1.0 + speed)), 360.0)

        # particulate matter
        local_h = np.mod((t + athens_utc_offset_s(t)) / HOUR_S, 24.0)
        weekday = (np.floor((t + athens_utc_offset_s(t)) / DAY_S).astype(np.int64) + 3) % 7
        traffic = 0.75 * np.exp(-(((local_h - 8.5) / 1.3) ** 2)) + 0.55 * np.exp(
            -(((local_h - 19.5) / 2.0) ** 2)
        )
        traffic = np.where(weekday >= 5, 0.6 * traffic, traffic)
        inversion = 1.0 + 0.35 * (1.0 - np.clip(3.0 * cos_z, 0.0, 1.0))
        pm25 = (
            np.asarray(PM25_BACKGROUND)[month]
            * (1.0 + 1.4 * industrial)
            * (0.55 + traffic)
            * inversion
            * (1.6 / (1.0 + mean_speed / 4.0))
            * (1.0 - 0.7 * wet)
            * np.exp(0.3 * self._pm.value(zero, t) + 0.25 * self._l_pm.value(idx, t))
        )
        pm25 = np.clip(pm25 + 0.8 * noise(6), 0.5, 1500.0)
        pm1 = np.clip(pm25 * (0.66 + 0.03 * noise(7)), 0.3, pm25)
        resuspension = 1.5 * np.clip(mean_speed - 7.0, 0.0, None) ** 2 * (1.0 - wet)
        pm10 = np.clip(pm25 * (1.65 + 0.4 * industrial) + resuspension + noise(8), pm25, 2000.0)

        weather = Weather(
            air_temperature=temperature,
            relative_humidity=rh,
            dew_point=dew,
            air_pressure=pressure,
            wind_speed=speed,
            wind_gust=gust,
            wind_direction=direction,
            precipitation=rain_mm,
            solar_radiation=radiation,
            uv_index=np.clip(uv, 0.0, None),
            pm1=pm1,
            pm2_5=pm25,
            pm10=pm10,
            clear_sky_ghi=clear_sky,
            cloud=cloud,
            wet=wet,
        )
        return weather if self.overlay is None else self.overlay(weather, t)

    def _rain(
        self, idx: IntArray, t: FloatArray, prev: FloatArray, lon: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Return (mm since prev as 0.2 mm tips, wetness 0..1, overcast 0..1) per pair."""
        seed = self.seed
        delay = (lon - 23.5) * FRONT_DELAY_S_PER_DEG_LON
        t_r, prev_r = (t - delay)[:, None], (prev - delay)[:, None]
        lookback = int(np.ceil((RAIN_MAX_DURATION_S + RAIN_TAIL_S) / RAIN_BLOCK_S)) + 1
        block = np.floor(t_r / RAIN_BLOCK_S).astype(np.int64) - np.arange(lookback)[None, :]
        block_start = np.asarray(block * RAIN_BLOCK_S, dtype=np.float64)
        doy = climate.day_of_year(block_start)
        month = climate.month_index(doy)
        per_block = np.asarray(climate.RAIN_EVENTS_PER_MONTH)[month] / (
            np.asarray(climate.DAYS_IN_MONTH)[month] * DAY_S / RAIN_BLOCK_S
        )
        # low pressure makes rain likelier; E[exp(-0.7 x)] = exp(0.245) keeps the monthly count
        pressure = self._pressure.value(np.zeros_like(block), block_start)
        probability = np.clip(per_block * np.exp(-0.7 * pressure - 0.245), 0.0, 0.9)
        happens = uniform(seed, _S_RAIN, block) < probability
        start = block_start + uniform(seed, _S_RAIN_START, block) * RAIN_BLOCK_S
        duration = np.clip(
            -np.log(uniform(seed, _S_RAIN_DUR, block)) * 2.5 * HOUR_S, 1800.0, RAIN_MAX_DURATION_S
        )
        mean_depth = (
            np.asarray(climate.ELEFSINA_PRECIPITATION_MM)[month]
            / np.asarray(climate.RAIN_EVENTS_PER_MONTH)[month]
        )
        depth = np.minimum(-np.log(uniform(seed, _S_RAIN_DEPTH, block)) * mean_depth, 80.0)
        local = np.exp(0.3 * normal(seed, _S_RAIN_LOCAL, idx[:, None], block))
        depth = depth * local * self._rain_catch[idx][:, None]

        def tips(at: FloatArray) -> FloatArray:
            fraction = np.clip((at - start) / duration, 0.0, 1.0)
            return np.asarray(np.floor(depth * fraction / TIP_MM + 1e-9), dtype=np.float64)

        rain_mm = (np.where(happens, tips(t_r) - tips(prev_r), 0.0).sum(axis=1)) * TIP_MM
        end = start + duration
        during = np.clip((t_r - start) / 600.0, 0.0, 1.0) * (t_r < end)
        after = np.where(t_r >= end, np.exp(-(t_r - end) / RAIN_TAIL_S), 0.0)
        wet = np.where(happens, np.maximum(during, after), 0.0).max(axis=1)
        before = np.where(t_r < start, np.exp(-(start - t_r) / HOUR_S), 0.0)
        overcast = np.where(happens, np.maximum(np.maximum(during, after), before), 0.0).max(axis=1)
        return np.round(rain_mm, 1), wet, overcast
