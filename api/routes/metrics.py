"""``GET /metrics``: Prometheus text, the API's own and each ingester's latest snapshot."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import MetricsDep, ReaderDep
from api.errors import ApiStorageError
from api.influx import Cell
from api.metrics import IngestSnapshots
from api.queries import latest_ingest_stats

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(reader: ReaderDep, api_metrics: MetricsDep) -> Response:
    """Return Prometheus text; ingest figures are left out (``stats_up 0``) if InfluxDB is away."""
    snapshots: dict[str, dict[str, Cell]] = {}
    up = True
    try:
        (result,) = await reader.query([latest_ingest_stats()])
    except ApiStorageError as exc:
        logger.warning("ingest_stats unavailable for /metrics: %s", exc)
        api_metrics.storage_errors.labels(type(exc).__name__).inc()
        up = False
    else:
        for series in result.series:
            rows = series.rows()
            if rows:
                snapshots[series.tags.get("ingester", "")] = rows[0]
    body = api_metrics.render(IngestSnapshots(snapshots, up))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
