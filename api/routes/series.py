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

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.cost import SpanCache, bound_plan
from api.cpu import SlicedResponse, run_cpu
from api.deps import ReaderDep, StationDep
from api.influx import InfluxReader, StatementResult
from api.influxql import InfluxQL
from api.models import AGG_SERIES_JSON, RAW_SERIES_JSON, AggSeriesOut, RawSeriesOut
from api.queries import aggregate_series, circular_series, raw_readings
from api.series import (
    DERIVED_MAX_READINGS,
    MAX_POINTS,
    NS,
    SeriesPlan,
    SeriesRequestError,
    parse_rfc3339_ns,
    plan_series,
)
from api.series_table import (
    Windows,
    aggregate_csv,
    aggregate_points,
    derived_windows,
    raw_csv,
    raw_points,
    stored_windows,
)
from sensors.catalog import CATALOG
from sensors.models import format_ts
from sensors.settings import Settings

router = APIRouter(tags=["readings"])


class SeriesQuery(BaseModel):
    """The query string of a series request, before it is checked against the catalogue."""

    model_config = ConfigDict(frozen=True)

    parameters: str | None = Field(
        None, max_length=2000, description="comma-separated ids (default: all the station has)"
    )
    start: str | None = Field(None, max_length=64, description="RFC 3339 (default: end - 24 h)")
    end: str | None = Field(None, max_length=64, description="RFC 3339, exclusive (default: now)")
    interval: str | None = Field(
        None,
        max_length=16,
        description="raw, 1m, 5m, 10m, 15m, 30m, 1h, 3h, 6h, 1d (default: raw up to 24 h, else 1h)",
    )
    agg: str | None = Field(
        None,
        max_length=64,
        description="comma-separated from mean, min, max, sum, count (default: per parameter)",
    )
    tz: str = Field(
        "UTC",
        max_length=64,
        description="IANA zone of the 1d windows' midnights (other intervals are UTC-aligned)",
    )
    include_suspect: bool = Field(False, description="aggregate suspect values too")
    format: str = Field("json", max_length=8, description="json or csv")


def plan_statements(plan: SeriesPlan) -> tuple[list[InfluxQL], InfluxQL | None]:
    """Return the stored parameters' statements and the raw-readings statement, if any.

    For ``raw`` everything comes from one readings statement; otherwise one aggregate statement
    per stored parameter, plus the readings of the derived parameters' inputs. The statements
    cover the plan's query window (the range clipped to the station's data, api.cost); an
    empty window needs no statement at all.
    """
    start_ns, end_ns = plan.query_window
    if end_ns <= start_ns:
        return [], None
    window = {"start_ns": start_ns, "end_ns": end_ns}
    if plan.interval == "raw":
        wanted = list(dict.fromkeys((*plan.stored, *plan.derived_inputs)))
        return [], raw_readings(plan.station_id, wanted, limit=MAX_POINTS + 1, **window)
    statements = []
    for parameter in plan.stored:
        aggs = plan.aggs[parameter]
        build = (
            circular_series if CATALOG[parameter].circular and "mean" in aggs else aggregate_series
        )
        statements.append(
            build(
                plan.station_id,
                parameter,
                aggs,
                interval=plan.interval,
                tz=plan.window_tz,
                include_suspect=plan.include_suspect,
                **window,
            )
        )
    readings = None
    if plan.derived:
        readings = raw_readings(
            plan.station_id, plan.derived_inputs, limit=DERIVED_MAX_READINGS + 1, **window
        )
    return statements, readings


async def _query(
    reader: InfluxReader, statements: list[InfluxQL], shared: bool
) -> list[StatementResult]:
    return await reader.query(statements, cache=shared) if statements else []


def _csv_response(plan: SeriesPlan, text: str) -> Response:
    name = f"{plan.station_id}_{plan.interval}_{format_ts(plan.start_ns)[:10]}.csv"
    return SlicedResponse(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def live_edge(end: str | None, now_ns: int, ttl_s: float) -> int | None:
    """Return the instant a series ending "now" is served as of, or None for a fixed range.

    A request whose end is absent or within the cache TTL of now (the dashboard asks for the
    last 24 h / 7 d / 30 d ending at its clock's now) is answered as of the last TTL boundary,
    with start moved by the same amount: every such request in one TTL has the same bounds,
    hence the same statements, and shares one cached answer (api.influx). The answer's
    ``start``/``end`` say which range it covers.
    """
    if ttl_s <= 0:
        return None
    ttl_ns = int(ttl_s * NS)
    if end is not None:
        try:
            end_ns = parse_rfc3339_ns("end", end)
        except SeriesRequestError:
            return None  # plan_series says what is wrong with it
        if abs(end_ns - now_ns) > ttl_ns:
            return None
    return now_ns - now_ns % ttl_ns


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
    return SlicedResponse(RAW_SERIES_JSON.dump_json(raw_doc), media_type="application/json")


def _render_aggregate(
    plan: SeriesPlan,
    stored_results: list[StatementResult],
    derived_results: list[StatementResult],
) -> Response:
    windows: dict[str, Windows] = {
        parameter: stored_windows(parameter, result)
        for parameter, result in zip(plan.stored, stored_results, strict=True)
    }
    if derived_results:
        windows |= derived_windows(plan, derived_results[0])
    points = aggregate_points(plan, windows)
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
    return SlicedResponse(AGG_SERIES_JSON.dump_json(doc), media_type="application/json")


def get_spans(request: Request) -> SpanCache:
    """Return the app's cache of station data spans (created on first use)."""
    spans: SpanCache | None = getattr(request.app.state, "series_spans", None)
    if spans is None:
        spans = request.app.state.series_spans = SpanCache()
    return spans


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
) -> Response:
    """Return the station's history, raw or aggregated per window."""
    now_ns = time.time_ns()
    edge = live_edge(query.end, now_ns, settings.api_cache_ttl_s)
    start, end = query.start, query.end
    if edge is not None:
        if start is not None and end is not None:
            shift = parse_rfc3339_ns("end", end) - edge
            start_ns = parse_rfc3339_ns("start", start) - shift
            start = format_ts(start_ns) if start_ns > 0 else start
        end = format_ts(edge)
    plan = plan_series(
        station,
        now_ns=now_ns,
        parameters=query.parameters,
        start=start,
        end=end,
        interval=query.interval,
        agg=query.agg,
        tz=query.tz,
        include_suspect=query.include_suspect,
        output=query.format,
    )
    plan = await bound_plan(plan, reader, spans, settings, now_ns)
    statements, readings = plan_statements(plan)
    shared = edge is not None
    if plan.interval == "raw":
        if readings is None:
            result = StatementResult()
        else:
            (result,) = await reader.query([readings], cache=shared)
        return await run_cpu(_render_raw, plan, result)
    stored_results, derived_results = await asyncio.gather(
        _query(reader, statements, shared), _query(reader, [readings] if readings else [], shared)
    )
    if not statements:  # an empty window: every parameter has no window
        stored_results = [StatementResult() for _ in plan.stored]
    return await run_cpu(_render_aggregate, plan, stored_results, derived_results)
