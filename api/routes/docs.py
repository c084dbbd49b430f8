"""``GET /docs``: Swagger UI for ``/openapi.json``, served from vendored files (issue 8 part 8).

FastAPI's built-in page loads Swagger UI from a CDN (jsDelivr) and starts it with an inline
script. Here every file comes from this origin (``/static/vendor/swagger-ui-bundle.js`` and
``swagger-ui.css`` from ``npm pack swagger-ui-dist``, ``/static/docs.js``), and the page's CSP
allows nothing else, so ``/docs`` works on a closed network and cannot be turned into a CDN
compromise. ``MELTEMI_API_DOCS=false`` leaves the route out (``/openapi.json`` stays).
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

# Swagger UI sets style attributes from React, hence 'unsafe-inline' for styles only; its
# icons are data: SVGs. Scripts and connections: this origin only.
DOCS_CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

DOCS_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Meltemi API</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""

router = APIRouter(tags=["docs"])


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    """Return the Swagger UI page."""
    return HTMLResponse(
        DOCS_PAGE,
        headers={
            "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "same-origin",
        },
    )
