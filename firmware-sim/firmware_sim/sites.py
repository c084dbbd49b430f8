"""Where the stations are: site factors from a registry entry, and extra stations on demand.

Site factors are static per station: distance to the sea (sea breeze, damped diurnal range),
distance to the industrial zone (particulate baseline) and elevation (lapse rate, pressure).
The geography is a deliberately small model of the Thriasio plain: the north shore of the Bay of
Elefsina as a polyline, and the two industrial clusters as points (WGS84, from the map).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from firmware_sim.noise import uniform
from sensors.catalog import PARAMETER_IDS
from sensors.registry import Station
from sensors.topics import StationId

FloatArray = npt.NDArray[np.float64]

KM_PER_DEG_LAT: Final = 111.0
KM_PER_DEG_LON: Final = 87.5  # at 38° N
# North shore of the Bay of Elefsina, west to east (lat, lon).
COASTLINE: Final = (
    (38.030, 23.420),
    (38.036, 23.480),
    (38.038, 23.520),
    (38.036, 23.550),
    (38.030, 23.575),
    (38.024, 23.600),
    (38.012, 23.625),
)
# Industrial clusters: Aspropyrgos refinery and the Elefsina western industrial zone/shipyards.
INDUSTRIAL_SITES: Final = ((38.036, 23.588), (38.045, 23.512))
COASTAL_SCALE_KM: Final = 2.0  # the sea breeze is strongest within a few km of the shore
INDUSTRIAL_SCALE_KM: Final = 2.5
# Extra stations are placed over the plain and its foothills.
PLAIN_LAT: Final = (38.035, 38.115)
PLAIN_LON: Final = (23.44, 23.72)
_TOWNS: Final = (
    ("Elefsina", 38.041, 23.543),
    ("Aspropyrgos", 38.062, 23.592),
    ("Mandra-Eidyllia", 38.070, 23.499),
    ("Fyli", 38.090, 23.680),
)
_CORE: Final = ("air_temperature", "relative_humidity", "air_pressure")
_WIND: Final = ("wind_speed", "wind_gust", "wind_direction", "precipitation")
_SUN: Final = ("solar_radiation", "uv_index")
_PM: Final = ("pm1", "pm2_5", "pm10")
_EXTRA_STREAM: Final = 9001


def _distance_km(lat: FloatArray, lon: FloatArray, lat0: float, lon0: float) -> FloatArray:
    return np.asarray(
        np.hypot((lat - lat0) * KM_PER_DEG_LAT, (lon - lon0) * KM_PER_DEG_LON), dtype=np.float64
    )


def coast_distance_km(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Return the distance (km) to the modelled shore; 0 for points south of it (on the water)."""
    points = np.asarray(COASTLINE)
    # distance to each segment of the polyline, in a local flat projection
    best = np.full(np.shape(lat), np.inf)
    px, py = lon * KM_PER_DEG_LON, lat * KM_PER_DEG_LAT
    for (lat_a, lon_a), (lat_b, lon_b) in itertools.pairwise(points):
        ax, ay = lon_a * KM_PER_DEG_LON, lat_a * KM_PER_DEG_LAT
        bx, by = lon_b * KM_PER_DEG_LON, lat_b * KM_PER_DEG_LAT
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        best = np.minimum(best, np.hypot(px - (ax + t * dx), py - (ay + t * dy)))
    shore_lat = np.interp(lon, points[:, 1], points[:, 0])
    return np.where(lat <= shore_lat, 0.0, best)


@dataclass(frozen=True, slots=True)
class Sites:
    """Static per-station factors, as arrays in registry order."""

    station_ids: tuple[StationId, ...]
    lat: FloatArray
    lon: FloatArray
    elevation_m: FloatArray
    coastal: FloatArray  # 1 on the shore, falling to 0 inland
    industrial: FloatArray  # 1 at an industrial cluster, falling to 0 away from it
    parameters: tuple[tuple[str, ...], ...]

    @classmethod
    def from_stations(cls, stations: Sequence[Station]) -> Sites:
        """Return the site factors of these stations."""
        lat = np.asarray([s.lat for s in stations], dtype=np.float64)
        lon = np.asarray([s.lon for s in stations], dtype=np.float64)
        coastal = np.exp(-coast_distance_km(lat, lon) / COASTAL_SCALE_KM)
        industrial = np.zeros_like(lat)
        for site_lat, site_lon in INDUSTRIAL_SITES:
            near = np.exp(-_distance_km(lat, lon, site_lat, site_lon) / INDUSTRIAL_SCALE_KM)
            industrial = np.maximum(industrial, near)
        return cls(
            station_ids=tuple(s.id for s in stations),
            lat=lat,
            lon=lon,
            elevation_m=np.asarray([s.elevation_m for s in stations], dtype=np.float64),
            coastal=coastal,
            industrial=industrial,
            parameters=tuple(s.parameters for s in stations),
        )


def _terrain_elevation_m(lat: float, lon: float) -> float:
    """Return a plausible elevation: the plain rising to Pateras (W) and Parnitha (NE)."""
    shore = float(coast_distance_km(np.asarray([lat]), np.asarray([lon]))[0])
    west = max(0.0, (23.50 - lon) * KM_PER_DEG_LON) * 60.0
    north = max(0.0, (lat - 38.08) * KM_PER_DEG_LAT) * 45.0
    return round(2.0 + 9.0 * shore + west + north, 0)


def extra_stations(count: int, seed: int, taken: Sequence[StationId]) -> list[Station]:
    """Return ``count`` generated stations spread over the plain (ids ``sim-0001``...)."""
    stations: list[Station] = []
    used = set(taken)
    number = 0
    while len(stations) < count:
        number += 1
        station_id = StationId(f"sim-{number:04d}")
        if station_id in used:
            continue
        u = uniform(seed, _EXTRA_STREAM, number, np.arange(4))
        lat = round(PLAIN_LAT[0] + (PLAIN_LAT[1] - PLAIN_LAT[0]) * float(u[0]), 4)
        lon = round(PLAIN_LON[0] + (PLAIN_LON[1] - PLAIN_LON[0]) * float(u[1]), 4)
        town = min(_TOWNS, key=lambda t: (t[1] - lat) ** 2 + (t[2] - lon) ** 2)
        parameters: tuple[str, ...] = _CORE + _WIND
        if u[2] < 0.7:
            parameters += _SUN
        if u[3] < 0.5:
            parameters += _PM
        stations.append(
            Station(
                id=station_id,
                name=f"{town[0]}, simulated site {number}",
                municipality=town[0],
                lat=lat,
                lon=lon,
                elevation_m=_terrain_elevation_m(lat, lon),
                parameters=parameters,
            )
        )
    return stations


def registry_toml(stations: Sequence[Station]) -> str:
    """Return registry TOML (CONTRACT §2) listing these stations."""
    tables = ["# Written by `meltemi simulate --write-registry` (firmware_sim.sites).\n"]
    for station in stations:
        assert set(station.parameters) <= PARAMETER_IDS
        params = ", ".join(f'"{p}"' for p in station.parameters)
        tables.append(
            "[[station]]\n"
            f'id = "{station.id}"\n'
            f"name = {_toml_string(station.name)}\n"
            f"municipality = {_toml_string(station.municipality)}\n"
            f"lat = {station.lat!r}\nlon = {station.lon!r}\nelevation_m = {station.elevation_m!r}\n"
            f"parameters = [{params}]\n"
        )
    return "\n".join(tables)


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in escaped) + '"'


def write_registry(path: Path, stations: Sequence[Station]) -> None:
    """Write a registry TOML file listing these stations (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(registry_toml(stations), "utf-8")
    tmp.replace(path)
