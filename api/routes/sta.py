"""``/sta/v1.1/…``: the read-only OGC SensorThings API v1.1 facade (CONTRACT §6).

Resource paths (OGC 18-088 §9.2): an entity set, ``Set(id)``, navigation properties to any
depth (``/Things(1)/Datastreams(101)/Observations``), a property (``/Things(1)/name``), its
``$value``, and ``$ref`` after a collection or an entity. Query options: ``$top``, ``$skip``,
``$count``, ``$filter`` on time for Observations; others are refused with 400. The mapping of
Meltemi onto SensorThings is in api.sta.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.deps import ReaderDep, RegistryDep
from api.influx import InfluxReader
from api.sta import (
    CONFORMANCE,
    ENTITY_SETS,
    RELATIONS,
    SINGULAR,
    Entity,
    Json,
    Model,
    Observation,
    ObservationSet,
    Options,
    StaError,
    parse_options,
    value_text,
)
from api.sta_observations import read_first_seen, read_observation, read_observations

router = APIRouter(tags=["SensorThings"])

ROOT: Final = "/sta/v1.1"
_SEGMENT: Final = re.compile(r"([A-Za-z]+)(?:\((\d{1,19})\))?")
Resolved = Entity | Observation | list[Entity] | ObservationSet


def _model(request: Request, registry: RegistryDep) -> Model:
    api_base = str(request.base_url).rstrip("/")
    return Model(registry, api_base + ROOT, api_base)


@router.get(ROOT, summary="SensorThings service root")
async def service_root(request: Request, registry: RegistryDep) -> JSONResponse:
    """Return the entity sets and the conformance classes of the facade."""
    model = _model(request, registry)
    return JSONResponse(
        {
            "value": [{"name": name, "url": f"{model.base}/{name}"} for name in ENTITY_SETS],
            "serverSettings": {"conformance": CONFORMANCE},
        }
    )


async def _pick(
    reader: InfluxReader, model: Model, found: Resolved, kind: str, entity_id: int
) -> Entity | Observation:
    """Return the member of a collection with that id (404 when it is not a member)."""
    if isinstance(found, ObservationSet):
        observation = await read_observation(reader, model, entity_id)
        if observation is None or observation.datastream.id not in {
            ds.id for ds in found.datastreams
        }:
            raise StaError(404, f"no {kind}({entity_id}) here")
        return observation
    if isinstance(found, list):
        for entity in found:
            if entity.id == entity_id:
                return entity
    raise StaError(404, f"no {kind}({entity_id}) here")


async def _resolve(
    reader: InfluxReader, model: Model, segments: list[str]
) -> tuple[Resolved, str, str | None]:
    """Walk the resource path; return what it names, its set's name, and a property if any."""
    current: Resolved | None = None
    kind = ""
    for position, segment in enumerate(segments):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise StaError(404, f"no resource {segment[:60]!r}")
        name, id_text = match.group(1), match.group(2)
        entity_id = int(id_text) if id_text is not None else None
        if current is None:
            if name not in ENTITY_SETS:
                raise StaError(404, f"no entity set {name[:60]!r}")
            kind = name
            current = (
                ObservationSet(model.datastreams())
                if name == "Observations"
                else model.collection(name)
            )
        elif isinstance(current, Entity | Observation):
            relations = RELATIONS[current.kind if isinstance(current, Entity) else "Observations"]
            if name not in relations:
                if entity_id is None and position == len(segments) - 1:
                    return current, kind, name  # a property
                raise StaError(404, f"{kind} has no navigation property {name[:60]!r}")
            if isinstance(current, Observation):
                current = model.observation_navigate(current, name)
            else:
                current = model.navigate(current, name)
            kind = SINGULAR.get(name, name)
            if isinstance(current, Entity) and entity_id is not None:
                raise StaError(404, f"{name} is a single entity; it takes no id")
        else:
            raise StaError(404, f"a collection is followed by (id), not {segment[:60]!r}")
        if entity_id is not None:
            current = await _pick(reader, model, current, kind, entity_id)
    if current is None:
        raise StaError(404, "empty resource path")
    return current, kind, None


def _next_link(request: Request, params: dict[str, str], options: Options) -> str:
    kept = {k: v for k, v in request.query_params.items() if k not in ("$skip", "$skiptoken")}
    kept.setdefault("$top", str(options.top))
    return f"{str(request.url).split('?', 1)[0]}?{urlencode(kept | params)}"


def _json(body: Json, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


async def _collection(
    request: Request, reader: InfluxReader, model: Model, found: Resolved, ref: bool
) -> JSONResponse:
    options = parse_options(dict(request.query_params))
    body: dict[str, Json] = {}
    members: list[Json]
    if isinstance(found, ObservationSet):
        page = await read_observations(reader, found, options)
        observations = [m for m in page.members if isinstance(m, Observation)]
        members = [
            {"@iot.selfLink": model.link("Observations", o.id)}
            if ref
            else model.observation_json(o)
            for o in observations
        ]
        count, next_params = page.count, page.next_params
    else:
        assert isinstance(found, list)
        if options.filter_text is not None:
            raise StaError(400, "$filter is supported on Observations only (time comparisons)")
        if options.skiptoken is not None:
            raise StaError(400, "$skiptoken is used for Observations only")
        chosen = found[options.skip : options.skip + options.top]
        members = [
            {"@iot.selfLink": model.link(e.kind, e.id)} if ref else model.entity_json(e)
            for e in chosen
        ]
        count = len(found) if options.count else None
        more = options.skip + options.top < len(found)
        next_params = {"$skip": str(options.skip + options.top)} if more else None
    if count is not None:
        body["@iot.count"] = count
    if next_params is not None:
        body["@iot.nextLink"] = _next_link(request, next_params, options)
    body["value"] = members
    return _json(body)


@router.get(ROOT + "/{resource_path:path}", summary="SensorThings resource path")
async def resource(
    request: Request, resource_path: str, reader: ReaderDep, registry: RegistryDep
) -> Response:
    """Return the entity, collection, property, ``$value`` or ``$ref`` the path names."""
    model = _model(request, registry)
    segments = [s for s in resource_path.split("/") if s]
    try:
        tail = segments[-1] if segments else ""
        ref, value = tail == "$ref", tail == "$value"
        if ref or value:
            segments = segments[:-1]
        if not segments:
            raise StaError(404, "no resource path")
        if "HistoricalLocation" in resource_path:
            await read_first_seen(reader, model)
        found, _, prop = await _resolve(reader, model, segments)
        if prop is not None:
            if ref:
                raise StaError(400, "$ref follows an entity or a collection, not a property")
            properties = (
                model.observation_properties(found)
                if isinstance(found, Observation)
                else found.properties
                if isinstance(found, Entity)
                else {}
            )
            if prop not in properties:
                raise StaError(404, f"no property {prop[:60]!r}")
            if value:
                media, text = value_text(properties[prop])
                return Response(text, media_type=media)
            return _json({prop: properties[prop]})
        if value:
            raise StaError(400, "$value follows a property")
        if isinstance(found, list | ObservationSet):
            return await _collection(request, reader, model, found, ref)
        link = (
            model.link("Observations", found.id)
            if isinstance(found, Observation)
            else model.link(found.kind, found.id)
        )
        if ref:
            return _json({"@iot.selfLink": link})
        if isinstance(found, Observation):
            return _json(model.observation_json(found))
        return _json(model.entity_json(found))
    except StaError as exc:
        return _json({"detail": exc.detail}, exc.status)
