"""``GET /v1/latest`` and ``GET /v1/stations/{id}/latest``: newest reading by observation time.

"Latest" is the row with the greatest ``ts`` (CONTRACT §5), so a late replayed batch, stored
with its older timestamps, never replaces a newer value. Served from memory (api.latest_memory:
fed by the live feed, seeded from InfluxDB) whenever the feed has missed nothing since the
seed; from InfluxDB otherwise (no broker, a reconnection not yet re-seeded, or
``MELTEMI_API_LATEST_FROM_MEMORY=false``).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from api.deps import ReaderDep, RegistryDep, StationDep
from api.influx import InfluxReader
from api.latest import latest_entries
from api.latest_memory import LatestStore
from api.live import LiveFeed
from api.models import LatestOut
from api.station_state import read_rows
from sensors.outbound import LatestEntry
from sensors.registry import StationRegistry

router = APIRouter(tags=["readings"])


async def _memory(
    request: Request, reader: InfluxReader, registry: StationRegistry
) -> LatestStore | None:
    """Return the store when it may answer (seeding it first if needed), else None."""
    store: LatestStore | None = getattr(request.app.state, "latest_store", None)
    feed: LiveFeed = request.app.state.live_feed
    if store is None or not feed.connected:
        return None
    gaps = feed.gaps
    if not store.ready(registry, gaps, True):
        await store.seed(reader, registry, gaps, feed.connected)
    return store if store.ready(registry, feed.gaps, feed.connected) else None


@router.get("/v1/latest", response_model=LatestOut, response_model_exclude_none=True)
async def latest(request: Request, reader: ReaderDep, registry: RegistryDep) -> Response:
    """Return one entry per registered station that has reported, in registry order."""
    store = await _memory(request, reader, registry)
    if store is not None:
        return Response(store.body(registry), media_type="application/json")
    rows = await read_rows(reader, registry)
    ordered = [(station.id, rows[station.id]) for station in registry if station.id in rows]
    answer = LatestOut(stations=latest_entries(ordered))
    return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")


@router.get(
    "/v1/stations/{station_id}/latest",
    response_model=LatestEntry,
    response_model_exclude_none=True,
    responses={404: {"description": "unknown station, or no reading yet"}},
)
async def station_latest(
    request: Request, station: StationDep, reader: ReaderDep, registry: RegistryDep
) -> LatestEntry:
    """Return the station's newest reading with its QC flags and derived values."""
    store = await _memory(request, reader, registry)
    if store is not None:
        entry = store.entry(station.id)
        if entry is None:
            raise HTTPException(404, detail=f"station {station.id} has not reported yet")
        return entry
    rows = await read_rows(reader, registry, station.id)
    entries = latest_entries([(station.id, rows[station.id])] if station.id in rows else [])
    if not entries:
        raise HTTPException(404, detail=f"station {station.id} has not reported yet")
    return entries[0]
