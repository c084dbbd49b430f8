"""Running a checked ``SeriesPlan``: its statements, then its points (the I/O half).

``api.series`` plans, ``api.series_table`` turns results into points; this module joins the two
for the routes that need points rather than a rendered answer (``/v1/series`` over many
stations, ``/v1/export``'s aggregated slices). The numpy and row work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from api.aggregate import local_midnights
from api.cpu import run_cpu
from api.influx import InfluxReader, StatementResult
from api.influxql import InfluxQL
from api.models import AggPoint, RawPoint
from api.rollups import rollup_statement, rollup_windows
from api.series import INTERVAL_NS, NS, SeriesPlan, counting, plan_statements
from api.series_table import (
    Windows,
    aggregate_points,
    derived_windows,
    raw_points,
    stored_windows,
)
from sensors.derived import DERIVED


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
    head_results: tuple[list[StatementResult], list[StatementResult]] | None = None,
) -> list[AggPoint]:
    """Return the aggregated points of a plan from its statements' results (CPU work): the
    raw statements' windows and, before them, the rollups' (api.rollups)."""
    if not stored_results:  # an empty window: every parameter has no window
        stored_results = [StatementResult() for _ in plan.stored]
    counted = counting(plan)
    windows = _windows_of(plan, stored_results, derived_results)
    if rolled_results:
        for parameter, rolled in rollup_windows(counted, rolled_results[0]).items():
            windows[parameter] = rolled | windows.get(parameter, {})
    if head_results is not None:
        head = head_plan(plan)
        assert head is not None
        for parameter, first in _windows_of(head, *head_results).items():
            windows[parameter] = first | windows.get(parameter, {})
    points = aggregate_points(plan, windows)
    add_completeness(plan, windows, points)
    return points


def _windows_of(
    plan: SeriesPlan, stored_results: list[StatementResult], derived_results: list[StatementResult]
) -> dict[str, Windows]:
    """Return the windows of the raw statements' results (counts included)."""
    if not stored_results:  # an empty window: every parameter has no window
        stored_results = [StatementResult() for _ in plan.stored]
    windows: dict[str, Windows] = {
        parameter: stored_windows(parameter, result)
        for parameter, result in zip(plan.stored, stored_results, strict=True)
    }
    if derived_results:
        windows |= derived_windows(counting(plan), derived_results[0])
    return windows


OF_MEANS = frozenset(spec.id for spec in DERIVED.values() if spec.hourly or spec.daily)


def window_end_ns(plan: SeriesPlan, start_ns: int) -> int:
    """Return the end of the window starting at ``start_ns``."""
    zone = plan.window_tz
    if zone is None:
        return start_ns + INTERVAL_NS[plan.interval]
    return int(local_midnights(start_ns, start_ns + 26 * 3600 * NS, zone)[1])


def add_completeness(plan: SeriesPlan, windows: dict[str, Windows], points: list[AggPoint]) -> None:
    """Give each point its completeness: the readings of each parameter present in the window
    and the number expected from the station's reporting interval over the window's part
    inside the requested range (at least 1)."""
    order = sorted({ts for p in plan.parameters for ts in windows.get(p, {})})
    for ts, point in zip(order, points, strict=True):
        low = max(ts, plan.start_ns)
        high = min(window_end_ns(plan, ts), plan.end_ns)
        expected = max(1, round((high - low) / NS / plan.interval_s))
        present = {
            p: int(count)
            for p in plan.parameters
            if p not in OF_MEANS  # hourly/daily means: their count is of hours or days
            and isinstance(count := windows.get(p, {}).get(ts, {}).get("count"), int | float)
        }
        point["completeness"] = {"expected": expected, "present": present}


async def fetch_aggregate(
    plan: SeriesPlan, reader: InfluxReader, shared: bool = False
) -> list[AggPoint]:
    """Return the points of an aggregated plan."""
    statements, readings = plan_statements(plan)
    rolled = [rollup_statement(plan, *plan.rollup_window)] if plan.rollup_window else []
    head = head_plan(plan)
    head_statements, head_readings = plan_statements(head) if head else ([], None)
    results = await asyncio.gather(
        run_statements(reader, statements, shared),
        run_statements(reader, [readings] if readings else [], shared),
        run_statements(reader, rolled, shared),
        run_statements(reader, head_statements, shared),
        run_statements(reader, [head_readings] if head_readings else [], shared),
    )
    stored_results, derived_results, rolled_results, head_stored, head_derived = results
    return await run_cpu(
        aggregate_from_results,
        plan,
        stored_results,
        derived_results,
        rolled_results,
        (head_stored, head_derived) if head else None,
    )


def head_plan(plan: SeriesPlan) -> SeriesPlan | None:
    """Return the raw plan of the partial first window before the rollups' (api.rollups)."""
    if plan.rollup_window is None:
        return None
    start, _ = plan.clipped_window
    low = plan.rollup_window[0]
    if start >= low:
        return None
    return replace(plan, rollup_window=None, query_start_ns=start, query_end_ns=low)


async def fetch_raw(plan: SeriesPlan, reader: InfluxReader, shared: bool = False) -> list[RawPoint]:
    """Return the readings of a raw plan."""
    _, readings = plan_statements(plan)
    if readings is None:
        return []
    (result,) = await reader.query([readings], cache=shared)
    return await run_cpu(raw_points, plan, result)
