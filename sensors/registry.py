"""The station registry: a TOML file, one ``[[station]]`` table per station (CONTRACT §2).

Where it lives (``registry_file``): ``MELTEMI_STATIONS_FILE`` if set, else
``<MELTEMI_DATA_DIR>/stations.toml``, seeded from the packaged Thriasio registry by the first
``meltemi stations`` command that writes; until then the packaged one is read. A registry loaded
by ``open_registry`` follows its file: at most once a second a lookup stats it and re-reads it
when it changed, so a station added while the ingester and the API run is known to them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sensors.catalog import PARAMETER_IDS
from sensors.topics import STATION_ID_RE, StationId

if TYPE_CHECKING:
    from sensors.settings import Settings

logger = logging.getLogger(__name__)

RELOAD_CHECK_S: Final = 1.0  # how often a lookup may stat the registry file


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
    # `meltemi stations revoke`: the broker refuses the station; its entry and data are kept.
    revoked: bool = False

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
    revoked: bool = False


def _index(stations: Sequence[Station]) -> dict[str, Station]:
    indexed: dict[str, Station] = {}
    for station in stations:
        if station.id in indexed:
            raise RegistryError(f"station {station.id!r} is listed twice")
        indexed[station.id] = station
    return indexed


class StationRegistry:
    """The stations of the network, by id, in registry order.

    With a ``source`` file it re-reads that file when its size or mtime changed (checked at most
    every RELOAD_CHECK_S, on lookup); a file that no longer parses keeps the last good stations
    (logged). The swap is one reference assignment, so readers in other threads see either the
    old or the new mapping, never a mix.
    """

    def __init__(
        self, stations: Sequence[Station], source: Path | None = None, fallback: str | None = None
    ) -> None:
        self._stations: dict[str, Station] = _index(stations)
        self.source = source
        self._fallback = fallback  # packaged TOML read while ``source`` does not exist yet
        self._signature = _signature(source) if source is not None else None
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the source file if it changed (rate-limited unless ``force``); True if so."""
        if self.source is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_CHECK_S:
            return False
        if not self._lock.acquire(blocking=False):
            return False  # another thread is checking right now
        try:
            self._checked_at = now
            signature = _signature(self.source)
            if signature == self._signature:
                return False
            try:
                fresh = _read_registry(self.source, self._fallback)
            except RegistryError as exc:
                logger.warning("registry changed but cannot be used; keeping the last one: %s", exc)
                self._signature = signature
                return False
            self._stations = fresh._stations
            self._signature = signature
            logger.info("registry reloaded from %s: %d stations", self.source, len(fresh))
            return True
        finally:
            self._lock.release()

    def get(self, station_id: str) -> Station | None:
        """Return the station with this id, or None when it is not registered."""
        self.refresh()
        return self._stations.get(station_id)

    def __contains__(self, station_id: object) -> bool:
        self.refresh()
        return station_id in self._stations

    def __iter__(self) -> Iterator[Station]:
        self.refresh()
        return iter(list(self._stations.values()))

    def __len__(self) -> int:
        self.refresh()
        return len(self._stations)

    @property
    def ids(self) -> list[StationId]:
        """Return every station id in registry order."""
        return [station.id for station in self]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


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
        stations.append(station_from_model(model))
    try:
        return StationRegistry(stations)
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from exc


PACKAGED_SOURCE: Final = "thriasio.toml (packaged)"


def packaged_registry_text() -> str:
    """Return the TOML of the packaged Thriasio registry."""
    return resources.files("sensors").joinpath("data/thriasio.toml").read_text("utf-8")


def load_registry(path: Path | None = None) -> StationRegistry:
    """Load the registry at ``path``, or the packaged Thriasio registry when None."""
    if path is None:
        return parse_registry(packaged_registry_text(), PACKAGED_SOURCE)
    return _read_registry(path, None)


def _read_registry(path: Path, fallback: str | None) -> StationRegistry:
    try:
        text = path.read_text("utf-8")
        source = str(path)
    except FileNotFoundError as exc:
        if fallback is None:
            raise RegistryError(f"{path}: cannot read: {exc.strerror}") from exc
        text, source = fallback, PACKAGED_SOURCE
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_registry(text, source)


def registry_file(settings: Settings) -> Path:
    """Return the registry file of this deployment: MELTEMI_STATIONS_FILE, else the data dir's.

    ``<MELTEMI_DATA_DIR>/stations.toml`` may not exist yet: then the packaged registry is what
    is read (``open_registry``) and what the first write seeds it with (``save_registry``).
    """
    if settings.stations_file is not None:
        return settings.stations_file
    return settings.data_dir / "stations.toml"


def open_registry(settings: Settings) -> StationRegistry:
    """Load the deployment's registry and keep following its file (the three load sites)."""
    path = registry_file(settings)
    fallback = None if settings.stations_file is not None else packaged_registry_text()
    loaded = _read_registry(path, fallback)
    return StationRegistry(list(loaded), source=path, fallback=fallback)


def registry_toml(stations: Sequence[Station], header: str = "") -> str:
    """Return registry TOML (CONTRACT §2) listing these stations, one table each."""
    tables = [header] if header else []
    for station in stations:
        table = (
            "[[station]]\n"
            f"id = {_toml_string(station.id)}\n"
            f"name = {_toml_string(station.name)}\n"
            f"municipality = {_toml_string(station.municipality)}\n"
            f"lat = {station.lat!r}\nlon = {station.lon!r}\nelevation_m = {station.elevation_m!r}\n"
            f"parameters = [{', '.join(_toml_string(p) for p in station.parameters)}]\n"
        )
        if station.revoked:
            table += "revoked = true\n"
        tables.append(table)
    return "\n".join(tables)


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes; json never emits "\/").
    return json.dumps(text, ensure_ascii=False)


def save_registry(path: Path, stations: Sequence[Station]) -> None:
    """Write the registry file atomically (a reader sees the old or the new file, never half)."""
    text = registry_toml(
        stations, "# Station registry (CONTRACT §2), written by `meltemi stations`.\n"
    )
    parse_registry(text, str(path))  # never write a file the services would refuse
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def station_from_model(model: StationIn) -> Station:
    """Return the registry entry a validated registry table describes."""
    return Station(
        id=StationId(model.id),
        name=model.name,
        municipality=model.municipality,
        lat=model.lat,
        lon=model.lon,
        elevation_m=model.elevation_m,
        parameters=model.parameters,
        revoked=model.revoked,
    )
