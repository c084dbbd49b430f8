"""``GET /catalog.jsonld``: the DCAT-AP 3.0.1 description of the datasets and the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.dcat import CatalogBuilder
from api.deps import RegistryDep

router = APIRouter(tags=["open data"])


class JsonLdResponse(JSONResponse):
    """JSON-LD (RFC 6839 / W3C JSON-LD 1.1 §C: ``application/ld+json``)."""

    media_type = "application/ld+json"


@router.get(
    "/catalog.jsonld",
    response_class=JsonLdResponse,
    responses={200: {"content": {"application/ld+json": {}}}},
)
async def catalog(request: Request, registry: RegistryDep) -> JsonLdResponse:
    """Return the DCAT-AP catalogue: a dataset for the network and one per station, their
    distributions (the API's routes and the SensorThings API) and the two data services."""
    base = str(request.base_url)
    settings = request.app.state.settings
    builder = CatalogBuilder(
        base,
        list(registry),
        publisher=settings.catalog_publisher,
        licence=settings.catalog_licence,
        contact_email=settings.catalog_contact_email,
    )
    return JsonLdResponse(builder.build())
