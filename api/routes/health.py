"""``GET /health``: whether the API's own paths work (CONTRACT §5; 503 when degraded).

``mqtt``: the live feed is connected with the API's broker credential and its subscriptions
were granted; ``influxdb``: a query as the API's InfluxDB user on its database succeeded.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import HealthDep
from api.models import HealthOut

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the live feed or InfluxDB fails"}},
)
async def health(probe: HealthDep) -> JSONResponse:
    """Return ok (200) when the live feed and an InfluxDB query both work, else 503."""
    verdict = await probe.check()
    return JSONResponse(verdict.model_dump(), status_code=200 if verdict.status == "ok" else 503)
