"""Running a checked ``SeriesPlan``: its statements, then its points (the I/O half).

``api.series`` plans, ``api.series_table`` turns results into points; this module joins the two
for the routes that need points rather than a rendered answer (``/v1/series`` over many
stations, ``/v1/export``'s aggregated slices). The numpy and row work runs in a worker thread.
"""

from __future__ import annotations

import asyncio

from api.cpu import run_cpu
from api.influx import InfluxReader, StatementResult
from api.influxql import InfluxQL
from api.models import AggPoint, RawPoint
from api.rollups import rollup_statement, rollup_windows
from api.series import SeriesPlan, plan_statements
from api.series_table import (
    Windows,
    aggregate_points,
    derived_windows,
    raw_points,
    stored_windows,
)


async def run_statements(
    reader: InfluxReader, statements: list[InfluxQL], shared: bool
) -> list[StatementResult]:
    """Return the statements' results (none for no statement); ``shared``: cacheable."""
    return await reader.query(statements, cache=shared) if statements else []


def aggregate_from_results(
    plan: SeriesPlan,
    stored_results: list[StatementResult],
    derived_results: list[StatementResult],
    rolled_results: list[StatementResult] | None = None,
) -> list[AggPoint]:
    """Return the aggregated points of a plan from its statements' results (CPU work): the
    raw statements' windows and, before them, the rollups' (api.rollups)."""
    if not stored_results:  # an empty window: every parameter has no window
        stored_results = [StatementResult() for _ in plan.stored]
    windows: dict[str, Windows] = {
        parameter: stored_windows(parameter, result)
        for parameter, result in zip(plan.stored, stored_results, strict=True)
    }
    if derived_results:
        windows |= derived_windows(plan, derived_results[0])
    if rolled_results:
        for parameter, rolled in rollup_windows(plan, rolled_results[0]).items():
            windows[parameter] = rolled | windows.get(parameter, {})
    return aggregate_points(plan, windows)


async def fetch_aggregate(
    plan: SeriesPlan, reader: InfluxReader, shared: bool = False
) -> list[AggPoint]:
    """Return the points of an aggregated plan."""
    statements, readings = plan_statements(plan)
    rolled = [rollup_statement(plan, *plan.rollup_window)] if plan.rollup_window else []
    stored_results, derived_results, rolled_results = await asyncio.gather(
        run_statements(reader, statements, shared),
        run_statements(reader, [readings] if readings else [], shared),
        run_statements(reader, rolled, shared),
    )
    return await run_cpu(
        aggregate_from_results, plan, stored_results, derived_results, rolled_results
    )


async def fetch_raw(plan: SeriesPlan, reader: InfluxReader, shared: bool = False) -> list[RawPoint]:
    """Return the readings of a raw plan."""
    _, readings = plan_statements(plan)
    if readings is None:
        return []
    (result,) = await reader.query([readings], cache=shared)
    return await run_cpu(raw_points, plan, result)
