"""``GET /v1/stations`` and ``GET /v1/stations/{id}``: the registry with last_seen and status."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReaderDep, RegistryDep, StationDep
from api.models import StationOut, StationsOut, StationStatus
from api.station_state import StationState, read_state
from sensors.models import format_ts
from sensors.registry import Station

router = APIRouter(tags=["stations"])


def station_out(station: Station, state: StationState) -> StationOut:
    """Return a station as served: ``last_seen`` is its newest reading's observation time."""
    row = state.rows.get(station.id)
    ts = row.get("time") if row is not None else None
    status: StationStatus = "unknown"
    match state.statuses.get(station.id):
        case "online":
            status = "online"
        case "offline":
            status = "offline"
    return StationOut(
        id=station.id,
        name=station.name,
        municipality=station.municipality,
        lat=station.lat,
        lon=station.lon,
        elevation_m=station.elevation_m,
        parameters=list(station.parameters),
        last_seen=format_ts(ts) if isinstance(ts, int) else None,
        status=status,
    )


@router.get("/v1/stations", response_model=StationsOut)
async def stations(reader: ReaderDep, registry: RegistryDep) -> StationsOut:
    """Return every registered station, in registry order."""
    state = await read_state(reader, registry)
    return StationsOut(stations=[station_out(station, state) for station in registry])


@router.get(
    "/v1/stations/{station_id}",
    response_model=StationOut,
    responses={404: {"description": "unknown station"}},
)
async def station(station: StationDep, reader: ReaderDep, registry: RegistryDep) -> StationOut:
    """Return one station."""
    return station_out(station, await read_state(reader, registry, station.id))
