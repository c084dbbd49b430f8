"""The station registry: a TOML file, one ``[[station]]`` table per station (CONTRACT §2)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sensors.catalog import PARAMETER_IDS
from sensors.topics import STATION_ID_RE, StationId


class RegistryError(Exception):
    """The registry cannot be used; the message names the line or the station."""


class StationIn(BaseModel):
    """One ``[[station]]`` table as written in the registry file."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern=STATION_ID_RE.pattern + "$")
    name: str = Field(min_length=1, max_length=200)
    municipality: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    elevation_m: float = Field(ge=-500, le=9000)
    parameters: tuple[str, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id_in_full(cls, value: str) -> str:
        if STATION_ID_RE.fullmatch(value) is None:
            raise ValueError("must match ^[a-z0-9][a-z0-9-]{1,62}$")
        return value

    @field_validator("parameters")
    @classmethod
    def _known_parameters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - PARAMETER_IDS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}")
        if len(set(value)) != len(value):
            raise ValueError("a parameter is listed twice")
        return value


@dataclass(frozen=True, slots=True)
class Station:
    """A station of the network, as every component sees it."""

    id: StationId
    name: str
    municipality: str
    lat: float
    lon: float
    elevation_m: float
    parameters: tuple[str, ...]


class StationRegistry:
    """The stations of the network, by id, in registry order."""

    def __init__(self, stations: list[Station]) -> None:
        self._stations: dict[str, Station] = {}
        for station in stations:
            if station.id in self._stations:
                raise RegistryError(f"station {station.id!r} is listed twice")
            self._stations[station.id] = station

    def get(self, station_id: str) -> Station | None:
        """Return the station with this id, or None when it is not registered."""
        return self._stations.get(station_id)

    def __contains__(self, station_id: object) -> bool:
        return station_id in self._stations

    def __iter__(self) -> Iterator[Station]:
        return iter(self._stations.values())

    def __len__(self) -> int:
        return len(self._stations)

    @property
    def ids(self) -> list[StationId]:
        """Return every station id in registry order."""
        return [station.id for station in self._stations.values()]


def parse_registry(text: str, source: str = "<registry>") -> StationRegistry:
    """Parse registry TOML text; raise RegistryError naming the line or station at fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{source}: cannot parse: {exc}") from exc
    unknown_keys = sorted(set(document) - {"station"})
    if unknown_keys:
        raise RegistryError(f"{source}: unknown top-level key(s) {', '.join(unknown_keys)}")
    tables = document.get("station", [])
    if not isinstance(tables, list) or not tables:
        raise RegistryError(f"{source}: no [[station]] tables")
    stations: list[Station] = []
    for index, table in enumerate(tables, start=1):
        label = f"station #{index}"
        if isinstance(table, dict) and isinstance(table.get("id"), str):
            label += f" ({table['id']!r})"
        try:
            model = StationIn.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'table'}: {err['msg']}"
                for err in exc.errors()
            )
            raise RegistryError(f"{source}: {label}: {problems}") from exc
        stations.append(
            Station(
                id=StationId(model.id),
                name=model.name,
                municipality=model.municipality,
                lat=model.lat,
                lon=model.lon,
                elevation_m=model.elevation_m,
                parameters=model.parameters,
            )
        )
    try:
        return StationRegistry(stations)
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from exc


def load_registry(path: Path | None = None) -> StationRegistry:
    """Load the registry at ``path``, or the packaged Thriasio registry when None."""
    if path is None:
        text = resources.files("sensors").joinpath("data/thriasio.toml").read_text("utf-8")
        return parse_registry(text, "thriasio.toml (packaged)")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_registry(text, str(path))
