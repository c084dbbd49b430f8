"""``GET /v1/latest`` and ``GET /v1/stations/{id}/latest``: newest reading by observation time.

"Latest" is the row with the greatest ``ts`` (CONTRACT §5), so a late replayed batch, stored
with its older timestamps, never replaces a newer value.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import ReaderDep, RegistryDep, StationDep
from api.latest import latest_entries
from api.models import LatestOut
from api.station_state import read_rows
from sensors.outbound import LatestEntry

router = APIRouter(tags=["readings"])


@router.get("/v1/latest", response_model=LatestOut, response_model_exclude_none=True)
async def latest(reader: ReaderDep, registry: RegistryDep) -> LatestOut:
    """Return one entry per registered station that has reported, in registry order."""
    rows = await read_rows(reader, registry)
    ordered = [(station.id, rows[station.id]) for station in registry if station.id in rows]
    return LatestOut(stations=latest_entries(ordered))


@router.get(
    "/v1/stations/{station_id}/latest",
    response_model=LatestEntry,
    response_model_exclude_none=True,
    responses={404: {"description": "unknown station, or no reading yet"}},
)
async def station_latest(
    station: StationDep, reader: ReaderDep, registry: RegistryDep
) -> LatestEntry:
    """Return the station's newest reading with its QC flags and derived values."""
    rows = await read_rows(reader, registry, station.id)
    entries = latest_entries([(station.id, rows[station.id])] if station.id in rows else [])
    if not entries:
        raise HTTPException(404, detail=f"station {station.id} has not reported yet")
    return entries[0]
