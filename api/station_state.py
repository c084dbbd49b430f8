"""Each station's newest reading row and last status, read from InfluxDB.

The newest rows are looked for in the last hour first (one fast query when the network is
reporting), then, only for the stations missing from it, over their whole history.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.influx import Cell, InfluxReader, StatementResult
from api.queries import latest_readings, latest_status
from sensors.registry import StationRegistry

MAX_NAMED_STATIONS = 50  # past this, a filter by name costs more than it saves (and a long URL)


@dataclass(frozen=True, slots=True)
class StationState:
    """Newest reading rows and status states, by station id (registered stations only)."""

    rows: dict[str, dict[str, Cell]]
    statuses: dict[str, str]


def _by_station(result: StatementResult, registry: StationRegistry) -> dict[str, dict[str, Cell]]:
    found: dict[str, dict[str, Cell]] = {}
    for series in result.series:
        station_id = series.tags.get("station", "")
        rows = series.rows()
        if station_id in registry and rows:
            found[station_id] = rows[0]
    return found


async def _with_older(
    reader: InfluxReader,
    registry: StationRegistry,
    wanted: list[str],
    recent: dict[str, dict[str, Cell]],
    cache: bool = False,
) -> dict[str, dict[str, Cell]]:
    """Add the newest rows of the wanted stations that did not report in the recent window."""
    missing = [station_id for station_id in wanted if station_id not in recent]
    if not missing:
        return recent
    only = missing if len(missing) <= MAX_NAMED_STATIONS else None
    (older,) = await reader.query([latest_readings(only)], cache=cache)
    return recent | _by_station(older, registry)


async def read_rows(
    reader: InfluxReader, registry: StationRegistry, station_id: str | None = None
) -> dict[str, dict[str, Cell]]:
    """Return the newest reading row of one station (or every registered station)."""
    wanted: list[str] = [station_id] if station_id is not None else list(registry.ids)
    # Every station's newest rows (the dashboard's /v1/latest) are shared for the cache TTL.
    (result,) = await reader.query(
        [latest_readings(wanted if station_id else None, recent=True)], cache=station_id is None
    )
    return await _with_older(
        reader, registry, wanted, _by_station(result, registry), cache=station_id is None
    )


async def read_state(
    reader: InfluxReader, registry: StationRegistry, station_id: str | None = None
) -> StationState:
    """Return newest rows and statuses of one station (or every registered station)."""
    wanted: list[str] = [station_id] if station_id is not None else list(registry.ids)
    only = wanted if station_id else None
    readings, status = await reader.query(
        [latest_readings(only, recent=True), latest_status(only)], cache=station_id is None
    )
    statuses = {
        station: state
        for station, row in _by_station(status, registry).items()
        if isinstance(state := row.get("state"), str) and state in ("online", "offline")
    }
    rows = await _with_older(
        reader, registry, wanted, _by_station(readings, registry), cache=station_id is None
    )
    return StationState(rows=rows, statuses=statuses)
