"""``GET /health``: whether the broker and InfluxDB answer (CONTRACT §5; 503 when degraded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import HealthDep
from api.models import HealthOut

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the broker or InfluxDB does not answer"}},
)
async def health(probe: HealthDep) -> JSONResponse:
    """Return ok (200) when the broker and InfluxDB both answer, else degraded (503)."""
    verdict = await probe.check()
    return JSONResponse(verdict.model_dump(), status_code=200 if verdict.status == "ok" else 503)
