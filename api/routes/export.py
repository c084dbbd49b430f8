"""``GET /v1/export``: the HTTP face of api.export (streamed CSV/NDJSON, or JSON pages)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.cost import SpanCache, bound_export
from api.cpu import SlicedResponse, run_cpu
from api.deps import ReaderDep, RegistryDep
from api.export import (
    FORMATS,
    ExportQuery,
    Renderer,
    Resume,
    check_raw_derived,
    decode_cursor,
    encode_cursor,
    next_window_ns,
    raw_batch,
    resume_plans,
    slices,
)
from api.influx import InfluxReader, StreamCheck
from api.network import plan_network
from api.queries import raw_readings
from api.routes.series import get_settings, get_spans
from api.series import SeriesPlan, SeriesRequestError, parse_rfc3339_ns
from api.series_run import fetch_aggregate
from api.series_table import raw_points
from sensors.models import format_ts
from sensors.settings import Settings

router = APIRouter(tags=["readings"])

MEDIA: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
}


def accepts_gzip(header: str) -> bool:
    """Return True when an ``Accept-Encoding`` value accepts gzip (q above 0)."""
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip().lower()
        return not (quality.startswith("q=") and quality[2:].strip() in ("0", "0.0", "0.00"))
    return False


def _wanted(plan: SeriesPlan) -> list[str]:
    return list(dict.fromkeys((*plan.stored, *plan.derived_inputs)))


async def _stream(
    plans: list[SeriesPlan], renderer: Renderer, reader: InfluxReader
) -> AsyncIterator[bytes]:
    yield renderer.header()
    for plan in plans:
        start, end = plan.query_window
        if end <= start:
            continue
        if plan.interval != "raw":
            for part in slices(plan):
                points = await fetch_aggregate(part, reader)
                body = await run_cpu(renderer.rows, plan.station_id, points)
                if body:
                    yield body
            continue
        statement = raw_readings(
            plan.station_id, _wanted(plan), start_ns=start, end_ns=end, limit=None
        )
        check = StreamCheck()
        async for lines in reader.stream(statement):
            batch = await run_cpu(raw_batch, plan, check, lines, renderer)
            if batch.body:
                yield batch.body
        check.finish()
    yield renderer.end()


async def _page(
    query: ExportQuery, plans: list[SeriesPlan], offset: int, reader: InfluxReader
) -> dict[str, Any]:
    """Return one JSON page of at most ``page_size`` rows, with the cursor of the next."""
    rows: list[dict[str, Any]] = []
    remaining = query.page_size
    resume: Resume | None = None
    for k, plan in enumerate(plans):
        start, end = plan.query_window
        if end <= start:
            continue
        if plan.interval == "raw":
            statement = raw_readings(
                plan.station_id, _wanted(plan), start_ns=start, end_ns=end, limit=remaining
            )
            (result,) = await reader.query([statement])
            fetched = sum(len(series.values) for series in result.series)
            points = await run_cpu(raw_points, plan, result)
            rows += [{"station": plan.station_id, **point} for point in points]
            remaining -= fetched
            if remaining == 0:
                last = result.series[0].values[-1][result.series[0].columns.index("time")]
                assert isinstance(last, int)
                resume = Resume(offset + k, min(last + 1, plan.end_ns))
                break
            continue
        for part in slices(plan):
            windows = await fetch_aggregate(part, reader)
            taken = windows[:remaining]
            rows += [{"station": plan.station_id, **point} for point in taken]
            remaining -= len(taken)
            if remaining == 0:
                label = parse_rfc3339_ns("time", taken[-1]["time"])
                resume = Resume(offset + k, min(next_window_ns(plan, label), plan.end_ns))
                break
        if resume is not None:
            break
    first = plans[0] if plans else None
    return {
        "interval": first.interval if first else query.interval,
        "start": format_ts(first.start_ns) if first else query.start,
        "end": format_ts(first.end_ns) if first else query.end,
        "tz": first.tz if first else query.tz,
        "rows": rows,
        "next": None if resume is None else encode_cursor(query, resume),
    }


@router.get(
    "/v1/export",
    responses={
        200: {
            "content": {"text/csv": {}, "application/x-ndjson": {}},
            "description": "CSV (default) or NDJSON streamed; JSON pages with a `next` cursor",
        },
        400: {"description": "invalid parameter, or more work than MELTEMI_API_MAX_SCAN_VALUES"},
        429: {"description": "rate limit or heavy-request limit of this client (Retry-After)"},
        503: {"description": "too many heavy requests at once (Retry-After)"},
    },
)
async def export(
    request: Request,
    registry: RegistryDep,
    reader: ReaderDep,
    query: Annotated[ExportQuery, Query()],
    spans: Annotated[SpanCache, Depends(get_spans)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """Return any range of one or many stations, raw or aggregated, streamed."""
    now_ns = time.time_ns()
    if query.layout != "long":
        raise SeriesRequestError("layout: an export is long; /v1/series answers wide")
    network = plan_network(registry, query, now_ns=now_ns, formats=FORMATS, max_points=None)
    check_raw_derived(network.first)
    resume = decode_cursor(query)
    plans = resume_plans(network.plans, resume)
    plans = await bound_export(plans, reader, spans, settings, now_ns)
    if query.format == "json":
        offset = resume.station if resume is not None else 0
        doc = await _page(query, plans, offset, reader)
        return SlicedResponse(await run_cpu(_json_bytes, doc), media_type="application/json")
    gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
    first = network.first
    renderer = Renderer(first, query.format, gzip)
    extension = "csv" if query.format == "csv" else "ndjson"
    name = f"export_{first.interval}_{format_ts(first.start_ns)[:10]}.{extension}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Vary": "Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return StreamingResponse(
        _stream(plans, renderer, reader), media_type=MEDIA[query.format], headers=headers
    )


def _json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
