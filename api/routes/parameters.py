"""``GET /v1/parameters``: the catalogue (CONTRACT §4), stored parameters then derived ones."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter

from api.models import BandOut, ParameterOut, ParametersOut
from sensors.catalog import PARAMETERS
from sensors.derived import DERIVED

router = APIRouter(tags=["catalogue"])


def catalogue() -> ParametersOut:
    """Return every stored parameter and every derived one (``derived: true``, with its
    inputs, source and classes: the page reads them here rather than repeating them)."""
    stored = [
        ParameterOut(
            id=spec.id,
            name=spec.name,
            unit=spec.unit,
            min=spec.min,
            max=spec.max,
            agg=spec.default_agg,
        )
        for spec in PARAMETERS
    ]
    derived = [
        ParameterOut(
            id=spec.id,
            name=spec.name,
            unit=spec.unit,
            min=None,
            max=None,
            agg=spec.default_agg,
            derived=True,
            inputs=list(spec.inputs),
            source=spec.source,
            bands=[BandOut(id=b.id, label=b.label, min=b.min, max=b.max) for b in spec.bands]
            or None,
            band_edge=spec.edge if spec.bands else None,
            min_interval="1d" if spec.daily else "1h" if spec.hourly else None,
            note=spec.note,
        )
        for spec in DERIVED.values()
    ]
    return ParametersOut(parameters=stored + derived)


_CATALOGUE: Final = catalogue()


@router.get("/v1/parameters", response_model=ParametersOut)
async def parameters() -> ParametersOut:
    """Return the parameter catalogue: id, name, unit, physical range, default aggregation."""
    return _CATALOGUE
