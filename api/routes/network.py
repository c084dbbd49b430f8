"""``GET /v1/series``: a series over many stations in one request (HTTP face of api.network).

Each station's plan is bounded by api.cost with an equal share of
``MELTEMI_API_MAX_SCAN_VALUES`` and run like the single-station route's (api.series_run); the
answer is rendered in a worker thread.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.cost import SpanCache, bound_plan
from api.cpu import SlicedResponse, run_cpu
from api.deps import ReaderDep, RegistryDep
from api.network import NetworkQuery, StationPoints, network_csv, network_json, plan_network
from api.rollups import RollupSource
from api.routes.series import get_rollups, get_settings, get_spans
from api.series import at_live_edge
from api.series_run import fetch_aggregate, fetch_raw
from sensors.models import format_ts
from sensors.settings import Settings

router = APIRouter(tags=["readings"])


@router.get(
    "/v1/series",
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON (default) or CSV, long or wide"},
        400: {
            "description": "invalid parameter or station, more than 100,000 points in all, "
            "or more work than MELTEMI_API_MAX_SCAN_VALUES"
        },
        429: {"description": "rate limit or heavy-request limit of this client (Retry-After)"},
        503: {"description": "too many heavy requests at once (Retry-After)"},
    },
)
async def network_series(
    registry: RegistryDep,
    reader: ReaderDep,
    query: Annotated[NetworkQuery, Query()],
    spans: Annotated[SpanCache, Depends(get_spans)],
    settings: Annotated[Settings, Depends(get_settings)],
    rollups: Annotated[RollupSource | None, Depends(get_rollups)],
) -> Response:
    """Return the history of several stations (``stations=`` or ``municipality=``)."""
    now_ns = time.time_ns()
    query, shared = at_live_edge(query, now_ns, settings.api_cache_ttl_s)
    network = plan_network(registry, query, now_ns=now_ns)
    share = settings.model_copy(
        update={"api_max_scan_values": max(1, settings.api_max_scan_values // len(network.plans))}
    )
    bounded = [
        await bound_plan(plan, reader, spans, share, now_ns, rollups) for plan in network.plans
    ]
    answers: list[StationPoints] = []
    for plan in bounded:
        if plan.interval == "raw":
            answers.append(await fetch_raw(plan, reader, shared))
        else:
            answers.append(await fetch_aggregate(plan, reader, shared))
    first = network.first
    if first.output == "csv":
        text = await run_cpu(network_csv, network, answers)
        name = f"network_{first.interval}_{format_ts(first.start_ns)[:10]}.csv"
        return SlicedResponse(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    body = await run_cpu(network_json, network, answers)
    return SlicedResponse(body, media_type="application/json")
