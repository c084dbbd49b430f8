"""Readings as a station sends them (CONTRACT §4), built from simulated weather, and the library
entry point that generates them without a broker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from firmware_sim.diagnostics import diagnostics
from firmware_sim.weather import Weather, WeatherModel
from sensors.models import MAX_READINGS_PER_MESSAGE, format_ts
from sensors.registry import Station

FloatArray = npt.NDArray[np.float64]
NS_PER_S: Final = 1_000_000_000

# Decimals a station reports per parameter (the resolution of a typical AWS sensor).
DECIMALS: Final[dict[str, int]] = {
    "air_temperature": 1,
    "relative_humidity": 1,
    "air_pressure": 1,
    "wind_speed": 1,
    "wind_gust": 1,
    "wind_direction": 0,
    "precipitation": 1,
    "solar_radiation": 1,
    "uv_index": 1,
    "pm1": 1,
    "pm2_5": 1,
    "pm10": 1,
}


class ReadingOut(TypedDict):
    """One reading object as published on ``stations/{id}/readings`` (CONTRACT §4)."""

    ts: str
    seq: int
    values: dict[str, float]
    diag: NotRequired[dict[str, float]]


def rounded_columns(weather: Weather, parameters: Sequence[str]) -> dict[str, list[float]]:
    """Return each parameter's values rounded to the reported resolution, as Python floats."""
    columns: dict[str, list[float]] = {}
    for parameter in parameters:
        values = np.round(weather.parameter(parameter), DECIMALS[parameter])
        if parameter == "relative_humidity":
            values = np.minimum(values, 100.0)
        elif parameter == "wind_direction":
            values = np.mod(values, 360.0)
        columns[parameter] = values.tolist()
    return columns


def encode_readings(readings: Sequence[ReadingOut]) -> bytes:
    """Return the message body: one object, or an array of at most 500 (CONTRACT §4)."""
    if not 1 <= len(readings) <= MAX_READINGS_PER_MESSAGE:
        raise ValueError(f"{len(readings)} readings: a message holds 1 to 500")
    body = readings[0] if len(readings) == 1 else list(readings)
    return json.dumps(body, separators=(",", ":")).encode()


class Simulator:
    """Library mode: the readings a network of stations would send, without a broker."""

    def __init__(self, stations: Sequence[Station], seed: int = 0) -> None:
        self.model = WeatherModel(stations, seed)
        self._index: dict[str, int] = {station.id: k for k, station in enumerate(stations)}

    def weather(self, station_id: str, ts_s: FloatArray, prev_ts_s: FloatArray) -> Weather:
        """Return the true weather at one station for each time (prev: the previous sample)."""
        index = np.full(len(ts_s), self._index[station_id], dtype=np.int64)
        return self.model.sample(index, ts_s, prev_ts_s)

    def readings(
        self,
        station_id: str,
        start_s: float,
        end_s: float,
        interval_s: float,
        first_seq: int = 0,
        boot_s: float | None = None,
    ) -> list[ReadingOut]:
        """Return the readings sampled every ``interval_s`` in [start_s, end_s), oldest first."""
        ts = np.arange(start_s, end_s, interval_s, dtype=np.float64)
        station = self.model.stations[self._index[station_id]]
        weather = self.weather(station_id, ts, ts - interval_s)
        index = np.full(len(ts), self._index[station_id], dtype=np.int64)
        diag = diagnostics(self.model, index, ts, weather, start_s if boot_s is None else boot_s)
        columns = rounded_columns(weather, station.parameters)
        out: list[ReadingOut] = []
        for row, t in enumerate(ts.tolist()):
            out.append(
                {
                    "ts": format_ts(round(t * NS_PER_S)),
                    "seq": first_seq + row,
                    "values": {p: columns[p][row] for p in station.parameters},
                    "diag": {key: values[row] for key, values in diag.items()},
                }
            )
        return out
