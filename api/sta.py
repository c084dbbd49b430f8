"""A read-only OGC SensorThings API v1.1 view of the registry, catalogue and readings.

Mapping (OGC 18-088, §8.2), with numeric ids that are computed, never stored:

=====================  ========================================  =============================
entity                 is                                        ``@iot.id``
=====================  ========================================  =============================
Thing                  a station of the registry                 t = registry position + 1
Location               the station's place (GeoJSON Point)       t
HistoricalLocation     the station at its place since its first  t (only once it has reported)
                       stored reading
FeatureOfInterest      the air at the station (GeoJSON Point)    t
Sensor                 the instrument measuring a parameter      k = catalogue position + 1
ObservedProperty       a parameter of the catalogue              k
Datastream             one parameter of one station              t * 100 + k
Observation            one stored value                          datastream id * 2**32 + ts in
                                                                 whole seconds
=====================  ========================================  =============================

Ids follow registry order: stations are appended by ``meltemi stations add`` and revoked ones
stay listed, so ids are stable. An Observation id fits in 53 bits (a JSON number any client
reads exactly) for up to 20,000 stations until 2106; a reading at a fractional second is found
by its whole second.

Observations are read from InfluxDB by api.sta_observations, oldest first per Datastream; a
collection over several Datastreams (``/Observations``, ``/FeaturesOfInterest(t)/Observations``)
lists them Datastream by Datastream. ``$filter`` accepts time comparisons only
(``phenomenonTime`` or ``resultTime`` with ``gt ge lt le eq`` and an RFC 3339 time, joined by
``and``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from sensors.catalog import PARAMETERS, ParameterSpec
from sensors.models import format_ts
from sensors.registry import Station, StationRegistry

NS: Final = 1_000_000_000
DS_FACTOR: Final = 100  # Datastream id = thing * 100 + k; the catalogue has fewer than 100 entries
OBS_SHIFT: Final = 2**32  # Observation id = datastream * 2**32 + seconds (until 2106)
DEFAULT_TOP: Final = 100
MAX_TOP: Final = 1000  # one page: 1000 observations is a ~250 KiB answer
MAX_SKIP: Final = 100_000  # InfluxDB scans what it skips; past this, narrow with $filter on time
MEASUREMENT: Final = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON: Final = "application/geo+json"

ENTITY_SETS: Final = (
    "Things",
    "Locations",
    "HistoricalLocations",
    "Datastreams",
    "Sensors",
    "ObservedProperties",
    "Observations",
    "FeaturesOfInterest",
)
SINGULAR: Final = {
    "Thing": "Things",
    "Location": "Locations",
    "HistoricalLocation": "HistoricalLocations",
    "Datastream": "Datastreams",
    "Sensor": "Sensors",
    "ObservedProperty": "ObservedProperties",
    "Observation": "Observations",
    "FeatureOfInterest": "FeaturesOfInterest",
}
RELATIONS: Final[dict[str, tuple[str, ...]]] = {
    "Things": ("Datastreams", "HistoricalLocations", "Locations"),
    "Locations": ("HistoricalLocations", "Things"),
    "HistoricalLocations": ("Thing", "Locations"),
    "Datastreams": ("Thing", "Sensor", "ObservedProperty", "Observations"),
    "Sensors": ("Datastreams",),
    "ObservedProperties": ("Datastreams",),
    "Observations": ("Datastream", "FeatureOfInterest"),
    "FeaturesOfInterest": ("Observations",),
}
CONFORMANCE: Final = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
]

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


class StaError(Exception):
    """A request the facade refuses: ``status`` 400 (bad request) or 404 (no such thing)."""

    def __init__(self, status: Literal[400, 404], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of an in-memory set: its set, id and properties, and what it stands for."""

    kind: str
    id: int
    properties: dict[str, Json]
    station: Station | None = None
    parameter: ParameterSpec | None = None


@dataclass(frozen=True, slots=True)
class Datastream:
    """One parameter of one station."""

    id: int
    station: Station
    thing_id: int
    parameter: ParameterSpec


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored value of a Datastream."""

    datastream: Datastream
    ts_ns: int
    result: float
    qc: str
    check: str

    @property
    def id(self) -> int:
        """Return the Observation's id (datastream * 2**32 + whole seconds)."""
        return self.datastream.id * OBS_SHIFT + self.ts_ns // NS


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start_ns, end_ns)`` of a ``$filter`` on time (None: unbounded)."""

    start_ns: int | None = None
    end_ns: int | None = None


@dataclass(slots=True)
class ObservationSet:
    """The Observations of some Datastreams, in Datastream order, then oldest first."""

    datastreams: list[Datastream]
    only_id: int | None = None  # /…/Observations(id): just that one


@dataclass(slots=True)
class Page:
    """One page of a collection: its members and where the next page starts."""

    members: list[Entity] | list[Observation]
    count: int | None = None
    next_params: dict[str, str] | None = None


@dataclass(slots=True)
class Options:
    """The query options of a request, checked."""

    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    time: TimeRange = field(default_factory=TimeRange)
    skiptoken: tuple[int, int] | None = None
    filter_text: str | None = None


_UNSUPPORTED: Final = ("$expand", "$select", "$orderby", "$resultFormat", "$search", "$format")
_COMPARISON: Final = re.compile(
    r"\s*(phenomenonTime|resultTime)\s+(gt|ge|lt|le|eq)\s+"
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))\s*"
)


def _time_ns(text: str) -> int:
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise StaError(400, f"not an RFC 3339 time: {text[:40]}")
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError as exc:
        raise StaError(400, f"not a valid time: {text[:40]}") from exc
    return int(moment.timestamp()) * NS + int((fraction or "0").ljust(9, "0"))


def parse_filter(text: str) -> TimeRange:
    """Return the time range of a ``$filter`` of time comparisons joined by ``and``."""
    start: int | None = None
    end: int | None = None
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _COMPARISON.fullmatch(part)
        if match is None:
            raise StaError(
                400,
                "$filter supports only time comparisons: phenomenonTime or resultTime with "
                "gt, ge, lt, le or eq and an RFC 3339 time, joined by 'and'",
            )
        _, op, moment = match.groups()
        ts = _time_ns(moment)
        low = {"gt": ts + 1, "ge": ts, "eq": ts}.get(op)
        high = {"lt": ts, "le": ts + 1, "eq": ts + 1}.get(op)
        if low is not None:
            start = low if start is None else max(start, low)
        if high is not None:
            end = high if end is None else min(end, high)
    return TimeRange(start, end)


def _int_option(params: dict[str, str], name: str, default: int, high: int, advice: str) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise StaError(400, f"{name} must be a whole number")
    value = int(text)
    if value > high:
        raise StaError(400, f"{name} is at most {high}; {advice}")
    return value


def parse_options(params: dict[str, str]) -> Options:
    """Return the checked query options (400 for unsupported or malformed ones)."""
    for name in _UNSUPPORTED:
        if name in params:
            raise StaError(400, f"{name} is not supported by this read-only facade")
    options = Options(
        top=_int_option(params, "$top", DEFAULT_TOP, MAX_TOP, "page on with @iot.nextLink"),
        skip=_int_option(params, "$skip", 0, MAX_SKIP, "narrow the range with $filter on time"),
    )
    count = params.get("$count", "false")
    if count not in ("true", "false"):
        raise StaError(400, "$count must be true or false")
    options.count = count == "true"
    if "$filter" in params:
        options.filter_text = params["$filter"]
        options.time = parse_filter(params["$filter"])
    token = params.get("$skiptoken")
    if token is not None:
        match = re.fullmatch(r"(\d{1,6})\.(\d{1,9})", token)
        if match is None:
            raise StaError(400, "$skiptoken is not one this server gave")
        options.skiptoken = (int(match.group(1)), int(match.group(2)))
    return options


# --- the in-memory entities ---------------------------------------------------------------


class Model:
    """The entities of the registry and catalogue, with the stations' first reading times."""

    def __init__(self, registry: StationRegistry, base: str, api_base: str) -> None:
        self.stations = list(registry)
        self.base = base
        self.api_base = api_base
        self.first_seen: dict[str, int] = {}

    def thing_index(self, thing_id: int) -> Station | None:
        """Return the station of a Thing id."""
        return self.stations[thing_id - 1] if 1 <= thing_id <= len(self.stations) else None

    def parameter(self, k: int) -> ParameterSpec | None:
        """Return the catalogue entry of a Sensor/ObservedProperty id."""
        return PARAMETERS[k - 1] if 1 <= k <= len(PARAMETERS) else None

    def datastreams(self) -> list[Datastream]:
        """Return every Datastream in id order."""
        index = {spec.id: k for k, spec in enumerate(PARAMETERS, start=1)}
        found = []
        for t, station in enumerate(self.stations, start=1):
            for parameter in sorted(station.parameters, key=index.__getitem__):
                k = index[parameter]
                found.append(Datastream(t * DS_FACTOR + k, station, t, PARAMETERS[k - 1]))
        return found

    def datastream(self, ds_id: int) -> Datastream | None:
        """Return the Datastream of an id, if the station has that parameter."""
        station, spec = self.thing_index(ds_id // DS_FACTOR), self.parameter(ds_id % DS_FACTOR)
        if station is None or spec is None or spec.id not in station.parameters:
            return None
        return Datastream(ds_id, station, ds_id // DS_FACTOR, spec)

    def link(self, kind: str, entity_id: int) -> str:
        """Return an entity's selfLink."""
        return f"{self.base}/{kind}({entity_id})"

    def _point(self, station: Station) -> dict[str, Json]:
        return {"type": "Point", "coordinates": [station.lon, station.lat, station.elevation_m]}

    def entity(self, kind: str, entity_id: int) -> Entity | None:
        """Return one in-memory entity (not Observations, not Datastreams' own objects)."""
        if kind in ("Sensors", "ObservedProperties"):
            spec = self.parameter(entity_id)
            return None if spec is None else self._parameter_entity(kind, entity_id, spec)
        if kind == "Datastreams":
            ds = self.datastream(entity_id)
            return None if ds is None else self.datastream_entity(ds)
        station = self.thing_index(entity_id)
        if station is None:
            return None
        return self._station_entity(kind, entity_id, station)

    def _parameter_entity(self, kind: str, k: int, spec: ParameterSpec) -> Entity:
        if kind == "Sensors":
            properties: dict[str, Json] = {
                "name": f"{spec.name} sensor",
                "description": f"The instrument measuring {spec.name.lower()} ({spec.unit}) "
                "at Meltemi stations; quality control: " + (spec.source or "range checks"),
                "encodingType": "text/html",
                "metadata": f"{self.api_base}/v1/parameters",
            }
        else:
            properties = {
                "name": spec.name,
                "definition": f"{self.api_base}/v1/parameters#{spec.id}",
                "description": f"{spec.name} in {spec.unit} (Meltemi parameter {spec.id})",
            }
        return Entity(kind, k, properties, parameter=spec)

    def _station_entity(self, kind: str, t: int, station: Station) -> Entity | None:
        match kind:
            case "Things":
                properties: dict[str, Json] = {
                    "name": station.name,
                    "description": f"Meltemi climate station {station.id} in "
                    f"{station.municipality}",
                    "properties": {
                        "station_id": station.id,
                        "municipality": station.municipality,
                        "elevation_m": station.elevation_m,
                    },
                }
            case "Locations" | "FeaturesOfInterest":
                key = "location" if kind == "Locations" else "feature"
                properties = {
                    "name": station.name,
                    "description": f"Where station {station.id} stands",
                    "encodingType": GEOJSON,
                    key: self._point(station),
                }
            case "HistoricalLocations":
                first = self.first_seen.get(station.id)
                if first is None:
                    return None
                properties = {"time": format_ts(first)}
            case _:
                return None
        return Entity(kind, t, properties, station=station)

    def datastream_entity(self, ds: Datastream) -> Entity:
        """Return a Datastream as an entity."""
        spec = ds.parameter
        properties: dict[str, Json] = {
            "name": f"{ds.station.name}: {spec.name}",
            "description": f"{spec.name} at station {ds.station.id}",
            "unitOfMeasurement": {
                "name": spec.unit,
                "symbol": spec.unit,
                "definition": f"{self.api_base}/v1/parameters#{spec.id}",
            },
            "observationType": MEASUREMENT,
        }
        return Entity("Datastreams", ds.id, properties, station=ds.station, parameter=spec)

    def collection(self, kind: str) -> list[Entity]:
        """Return every entity of an in-memory set, in id order."""
        if kind == "Datastreams":
            return [self.datastream_entity(ds) for ds in self.datastreams()]
        count = len(PARAMETERS) if kind in ("Sensors", "ObservedProperties") else len(self.stations)
        return [e for i in range(1, count + 1) if (e := self.entity(kind, i)) is not None]

    def datastreams_of(self, entity: Entity) -> list[Datastream]:
        """Return the Datastreams of a Thing, Sensor or ObservedProperty, or a FoI's."""
        return [
            ds
            for ds in self.datastreams()
            if (entity.station is not None and ds.station.id == entity.station.id)
            or (entity.parameter is not None and ds.parameter.id == entity.parameter.id)
        ]

    def navigate(self, entity: Entity, relation: str) -> Entity | list[Entity] | ObservationSet:
        """Return what a navigation property of an in-memory entity leads to."""
        if relation not in RELATIONS[entity.kind]:
            raise StaError(404, f"{entity.kind} has no navigation property {relation}")
        t = entity.id
        match entity.kind, relation:
            case "Datastreams", "Thing":
                return self._one("Things", entity.id // DS_FACTOR)
            case "Datastreams", "Sensor":
                return self._one("Sensors", entity.id % DS_FACTOR)
            case "Datastreams", "ObservedProperty":
                return self._one("ObservedProperties", entity.id % DS_FACTOR)
            case "Datastreams", "Observations":
                ds = self.datastream(entity.id)
                return ObservationSet([ds] if ds is not None else [])
            case "FeaturesOfInterest", "Observations":
                return ObservationSet(self.datastreams_of(entity))
            case "HistoricalLocations", "Thing":
                return self._one("Things", t)
            case _, "Datastreams":
                return [self.datastream_entity(ds) for ds in self.datastreams_of(entity)]
        related = self.entity(relation, t)  # a station's Location, HistoricalLocation, Thing
        return [related] if related is not None else []

    def _one(self, kind: str, entity_id: int) -> Entity:
        found = self.entity(kind, entity_id)
        if found is None:
            raise StaError(404, f"no {kind}({entity_id})")
        return found

    # --- serialisation ------------------------------------------------------------------

    def entity_json(self, entity: Entity) -> dict[str, Json]:
        """Return an entity with its id, selfLink, properties and navigation links."""
        link = self.link(entity.kind, entity.id)
        body: dict[str, Json] = {"@iot.id": entity.id, "@iot.selfLink": link}
        body.update(entity.properties)
        for relation in RELATIONS[entity.kind]:
            body[f"{relation}@iot.navigationLink"] = f"{link}/{relation}"
        return body

    def observation_properties(self, observation: Observation) -> dict[str, Json]:
        """Return an Observation's properties."""
        ts = format_ts(observation.ts_ns)
        quality = (
            observation.qc if not observation.check else f"{observation.qc}: {observation.check}"
        )
        return {
            "phenomenonTime": ts,
            "resultTime": ts,
            "result": observation.result,
            "resultQuality": quality,
        }

    def observation_json(self, observation: Observation) -> dict[str, Json]:
        """Return an Observation with its id, selfLink, properties and navigation links."""
        link = self.link("Observations", observation.id)
        body: dict[str, Json] = {"@iot.id": observation.id, "@iot.selfLink": link}
        body.update(self.observation_properties(observation))
        for relation in RELATIONS["Observations"]:
            body[f"{relation}@iot.navigationLink"] = f"{link}/{relation}"
        return body

    def observation_navigate(self, observation: Observation, relation: str) -> Entity:
        """Return an Observation's Datastream or FeatureOfInterest."""
        if relation == "Datastream":
            return self.datastream_entity(observation.datastream)
        if relation == "FeatureOfInterest":
            return self._one("FeaturesOfInterest", observation.datastream.thing_id)
        raise StaError(404, f"Observations have no navigation property {relation}")


def value_text(value: Json) -> tuple[str, str]:
    """Return a property's ``$value``: (media type, text); objects stay JSON."""
    if isinstance(value, dict | list):
        return "application/json", json.dumps(value, ensure_ascii=False)
    if value is None:
        return "text/plain", ""
    return "text/plain", str(value).lower() if isinstance(value, bool) else str(value)
