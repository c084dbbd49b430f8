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

The size rule (100,000 points, checked before any query) is described in api.series.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ReaderDep, StationDep
from api.influx import InfluxReader, StatementResult
from api.influxql import InfluxQL
from api.models import AGG_SERIES_JSON, RAW_SERIES_JSON, AggSeriesOut, RawSeriesOut
from api.queries import aggregate_series, circular_series, raw_readings
from api.series import DERIVED_MAX_READINGS, MAX_POINTS, SeriesPlan, plan_series
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
    per stored parameter, plus the readings of the derived parameters' inputs.
    """
    window = {
        "start_ns": plan.start_ns,
        "end_ns": plan.end_ns,
    }
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


async def _query(reader: InfluxReader, statements: list[InfluxQL]) -> list[StatementResult]:
    return await reader.query(statements) if statements else []


def _csv_response(plan: SeriesPlan, text: str) -> Response:
    name = f"{plan.station_id}_{plan.interval}_{format_ts(plan.start_ns)[:10]}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/v1/stations/{station_id}/series",
    response_model=AggSeriesOut | RawSeriesOut,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON (default) or CSV"},
        400: {"description": "invalid parameter, or more than 100,000 points"},
        404: {"description": "unknown station"},
    },
)
async def series(
    station: StationDep, reader: ReaderDep, query: Annotated[SeriesQuery, Query()]
) -> Response:
    """Return the station's history, raw or aggregated per window."""
    plan = plan_series(
        station,
        now_ns=time.time_ns(),
        parameters=query.parameters,
        start=query.start,
        end=query.end,
        interval=query.interval,
        agg=query.agg,
        tz=query.tz,
        include_suspect=query.include_suspect,
        output=query.format,
    )
    statements, readings = plan_statements(plan)
    if plan.interval == "raw":
        assert readings is not None
        (result,) = await reader.query([readings])
        raw = await anyio.to_thread.run_sync(raw_points, plan, result)
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
        return Response(RAW_SERIES_JSON.dump_json(raw_doc), media_type="application/json")
    stored_results, derived_results = await asyncio.gather(
        _query(reader, statements), _query(reader, [readings] if readings else [])
    )
    windows: dict[str, Windows] = {
        parameter: stored_windows(parameter, result)
        for parameter, result in zip(plan.stored, stored_results, strict=True)
    }
    if derived_results:
        windows |= await anyio.to_thread.run_sync(derived_windows, plan, derived_results[0])
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
    return Response(AGG_SERIES_JSON.dump_json(doc), media_type="application/json")
