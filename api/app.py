"""The HTTP API as a FastAPI app: ``create_app(settings)`` (CONTRACT §5).

The registry is loaded here, before the port is bound, so that a broken registry stops
start-up with its message (CONTRACT §2) and routers built now can hold it. The lifespan opens
the one ``httpx.AsyncClient`` for InfluxDB (``app.state.influx``) and then runs each entry of
``app.state.lifespan_hooks`` (async context managers entered in order, left in reverse).

Adding a component: include its router in ``_include_routers`` and, if it has something to
start and stop, append a hook, e.g.::

    app.state.lifespan_hooks.append(my_component_lifespan)  # (app) -> AsyncContextManager
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.errors import ApiStorageError, StorageUnavailable
from api.health import HealthProbe
from api.influx import InfluxReader, open_influx_client
from api.influxql import UnsafeQueryPart
from api.latest_memory import LatestStore, latest_store_lifespan
from api.limits import install_limits
from api.live import LiveFeed, live_feed_lifespan
from api.metrics import ApiMetrics, MetricsMiddleware
from api.models import ERROR_RESPONSES
from api.rollups import RollupSource
from api.routes import (
    alerts,
    catalog,
    dashboard,
    docs,
    export,
    fire_weather,
    health,
    latest,
    metrics,
    network,
    parameters,
    series,
    sta,
    station_health,
    stations,
    stream,
)
from api.series import SeriesRequestError
from api.surface import REQUEST_ID_KEY, HeadAsGet, SurfaceMiddleware
from sensors.registry import open_registry
from sensors.settings import Settings

logger = logging.getLogger(__name__)

LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[None]]
RETRY_AFTER_S = 5  # advice to clients when InfluxDB is unavailable


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    hooks: list[LifespanHook] = app.state.lifespan_hooks
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(open_influx_client(settings))
        app.state.influx = InfluxReader(client, settings.influx_db, settings.api_cache_ttl_s)
        app.state.health = HealthProbe(app.state.influx, app.state.live_feed)
        for hook in hooks:
            await stack.enter_async_context(hook(app))
        logger.info("API ready: InfluxDB %s, database %s", settings.influx_url, settings.influx_db)
        yield
    logger.info("API stopped")


def _include_routers(app: FastAPI) -> None:
    """Every route of the app; add a component's router here."""
    for module in (
        health,
        metrics,
        parameters,
        stations,
        latest,
        series,
        network,  # issue 11: /v1/series over many stations
        export,  # issue 11: /v1/export
        stream,
        station_health,
        sta,
        catalog,
    ):
        app.include_router(module.router)
    for module in (fire_weather, alerts):  # issue 10 (helper "civil")
        app.include_router(module.router)
    dashboard.install(app)  # GET / and /static
    if app.state.settings.api_docs:
        app.include_router(docs.router)  # GET /docs: Swagger UI from vendored files


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    # Issue 8 part 8: a 5xx body says what kind of failure and the request id, never InfluxDB's
    # own text (names, query fragments, credential problems); those go to the log under the id.
    assert isinstance(exc, ApiStorageError)
    request_id = str(getattr(request.state, REQUEST_ID_KEY, ""))
    logger.warning("request %s: %s %s: %s", request_id, request.method, request.url.path, exc)
    request.app.state.metrics.storage_errors.labels(type(exc).__name__).inc()
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, StorageUnavailable) else None
    detail = "storage unavailable; retry later" if headers else "storage error"
    return JSONResponse(
        {"detail": detail, "request_id": request_id}, status_code=exc.status_code, headers=headers
    )


async def _bad_request(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _unsafe_query(request: Request, exc: Exception) -> JSONResponse:
    # Validation should have refused this before; refusing it here too keeps it out of InfluxQL.
    logger.error("refused an unsafe query part for %s: %s", request.url.path, exc)
    return JSONResponse({"detail": "invalid query parameter"}, status_code=400)


def create_app(settings: Settings) -> FastAPI:
    """Return the API app for these settings (the registry is loaded now; RegistryError)."""
    app = FastAPI(
        title="Meltemi",
        summary="Real-time and aggregated readings of the Meltemi climate stations",
        version="0.1.0",
        lifespan=_lifespan,
        docs_url=None,  # api.routes.docs serves /docs from vendored files (no CDN)
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.registry = open_registry(settings)
    app.state.metrics = ApiMetrics()
    app.state.lifespan_hooks = []
    app.state.live_feed = LiveFeed(  # /v1/stream's MQTT feed; what it refuses is counted
        settings,
        app.state.registry,
        on_drop=lambda reason: app.state.metrics.live_dropped.labels(reason.value).inc(),
    )
    app.state.lifespan_hooks.append(live_feed_lifespan)
    app.state.rollups = RollupSource(settings.api_rollup_stale_s, app.state.live_feed)
    if settings.api_latest_from_memory:  # /v1/latest from memory (api.latest_memory)
        app.state.latest_store = LatestStore()
        app.state.lifespan_hooks.append(latest_store_lifespan)
    _include_routers(app)
    app.add_exception_handler(ApiStorageError, _storage_error)
    app.add_exception_handler(SeriesRequestError, _bad_request)
    app.add_exception_handler(UnsafeQueryPart, _unsafe_query)
    install_limits(app, settings)  # api.limits: rate, concurrency, cancel-on-disconnect (inner)
    if settings.api_cors_origins:
        # RELIABILITY S12: read-only and anonymous, so GET/HEAD only and never credentials.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "HEAD"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # counts all
    # --- API surface (issue 8 part 8): headers, request ids, generic 500s, HEAD -------------
    app.add_middleware(
        SurfaceMiddleware, hsts=settings.api_hsts, data_max_age_s=settings.api_data_max_age_s
    )
    app.add_middleware(HeadAsGet)  # outermost: everything inside sees HEAD as GET
    # --- end API surface --------------------------------------------------------------------
    return app
