"""``GET /v1/stations/{id}/series``: raw or aggregated history, as JSON or CSV (CONTRACT §5).

How each value is computed (the queries are in api.queries, the numpy in api.aggregate):
- stored parameters: InfluxQL ``mean/min/max/sum/count`` per ``GROUP BY time()`` window
  (``fill(none)``: empty windows are left out), one statement per parameter so that each one
  keeps only its own ``good`` values (``WHERE "{p}_qc" = 'good'``) unless ``include_suspect``;
- wind direction: ``mean`` is the vector mean, atan2 of the means of sin and cos (a subquery),
  so 350° and 10° average to 0°, not 180°; ``min``, ``max``, ``count`` are of the plain angle,
  and ``sum`` is refused (400): a sum of directions means nothing;
- derived parameters: computed per reading with sensors.derived from the inputs' values (good
  ones only unless ``include_suspect``; the derived value is good when all inputs are), then
  aggregated per window in numpy, in a worker thread, with the same window alignment;
- ``1d`` with ``tz``: InfluxDB's ``tz()`` (local midnights; 23/25 h DST days), and the same
  local midnights for derived parameters; other intervals are aligned to the Unix epoch (UTC).
- ``raw``: one point per reading; suspect values are left out unless ``include_suspect``, and
  then the ``qc`` sibling (and, in CSV, a ``{parameter}_qc`` column) tells them apart.

The size rule (100,000 points, checked before any query) is described in api.series; the
work rule (the range clipped to the station's data, values scanned counted before the real
statements) in api.cost; rate and concurrency limits in api.limits. Everything CPU-heavy
(chunk merging, windows, rendering) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.cost import SpanCache, bound_plan
from api.cpu import SlicedResponse, run_cpu
from api.deps import ReaderDep, StationDep
from api.influx import StatementResult
from api.models import (
    AGG_POINTS_JSON,
    AGG_SERIES_JSON,
    RAW_POINTS_JSON,
    RAW_SERIES_JSON,
    AggPoint,
    AggSeriesOut,
    RawSeriesOut,
    dump_series_json,
)
from api.rollups import RollupSource
from api.series import SeriesPlan, SeriesQuery, at_live_edge, plan_series, plan_statements
from api.series_run import fetch_aggregate
from api.series_table import (
    aggregate_csv,
    raw_csv,
    raw_points,
)
from sensors.models import format_ts
from sensors.settings import Settings

router = APIRouter(tags=["readings"])


def _csv_response(plan: SeriesPlan, text: str) -> Response:
    name = f"{plan.station_id}_{plan.interval}_{format_ts(plan.start_ns)[:10]}.csv"
    return SlicedResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _render_raw(plan: SeriesPlan, result: StatementResult) -> Response:
    raw = raw_points(plan, result)
    if plan.output == "csv":
        return _csv_response(plan, raw_csv(plan, raw))
    raw_doc: RawSeriesOut = {
        "station": plan.station_id,
        "interval": "raw",
        "start": format_ts(plan.start_ns),
        "end": format_ts(plan.end_ns),
        "tz": plan.tz,
        "points": raw,
    }
    body = dump_series_json(RAW_SERIES_JSON, RAW_POINTS_JSON, raw_doc)
    return SlicedResponse(body, media_type="application/json")


def _render_aggregate(plan: SeriesPlan, points: list[AggPoint]) -> Response:
    if plan.output == "csv":
        return _csv_response(plan, aggregate_csv(plan, points))
    doc: AggSeriesOut = {
        "station": plan.station_id,
        "interval": plan.interval,
        "start": format_ts(plan.start_ns),
        "end": format_ts(plan.end_ns),
        "tz": plan.tz,
        "points": points,
    }
    body = dump_series_json(AGG_SERIES_JSON, AGG_POINTS_JSON, doc)
    return SlicedResponse(body, media_type="application/json")


def get_spans(request: Request) -> SpanCache:
    """Return the app's cache of station data spans (created on first use)."""
    spans: SpanCache | None = getattr(request.app.state, "series_spans", None)
    if spans is None:
        spans = request.app.state.series_spans = SpanCache()
    return spans


def get_rollups(request: Request) -> RollupSource | None:
    """Return the app's rollup source (api.rollups), None when rollups are not read."""
    rollups: RollupSource | None = getattr(request.app.state, "rollups", None)
    return rollups


def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


@router.get(
    "/v1/stations/{station_id}/series",
    response_model=AggSeriesOut | RawSeriesOut,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON (default) or CSV"},
        400: {
            "description": "invalid parameter, more than 100,000 points, or more work than "
            "MELTEMI_API_MAX_SCAN_VALUES"
        },
        404: {"description": "unknown station"},
        429: {"description": "rate limit or heavy-request limit of this client (Retry-After)"},
        503: {"description": "too many heavy requests at once (Retry-After)"},
    },
)
async def series(
    station: StationDep,
    reader: ReaderDep,
    query: Annotated[SeriesQuery, Query()],
    spans: Annotated[SpanCache, Depends(get_spans)],
    settings: Annotated[Settings, Depends(get_settings)],
    rollups: Annotated[RollupSource | None, Depends(get_rollups)],
) -> Response:
    """Return the station's history, raw or aggregated per window."""
    now_ns = time.time_ns()
    query, shared = at_live_edge(query, now_ns, settings.api_cache_ttl_s)
    plan = plan_series(station, query, now_ns=now_ns)
    plan = await bound_plan(plan, reader, spans, settings, now_ns, rollups)
    if plan.interval == "raw":
        _, readings = plan_statements(plan)
        if readings is None:
            result = StatementResult()
        else:
            (result,) = await reader.query([readings], cache=shared)
        return await run_cpu(_render_raw, plan, result)
    points = await fetch_aggregate(plan, reader, shared)
    return await run_cpu(_render_aggregate, plan, points)
