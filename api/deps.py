"""FastAPI dependencies: the lifespan's InfluxDB reader, the registry, and a checked station."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from api.health import HealthProbe
from api.influx import InfluxReader
from api.metrics import ApiMetrics
from sensors.registry import Station, StationRegistry


def get_reader(request: Request) -> InfluxReader:
    """Return the InfluxDB reader opened in the lifespan (``app.state.influx``)."""
    reader: InfluxReader = request.app.state.influx
    return reader


def get_registry(request: Request) -> StationRegistry:
    """Return the station registry loaded by create_app (``app.state.registry``)."""
    registry: StationRegistry = request.app.state.registry
    return registry


def get_metrics(request: Request) -> ApiMetrics:
    """Return the app's own metrics (``app.state.metrics``)."""
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def get_health(request: Request) -> HealthProbe:
    """Return the cached health probe opened in the lifespan (``app.state.health``)."""
    probe: HealthProbe = request.app.state.health
    return probe


ReaderDep = Annotated[InfluxReader, Depends(get_reader)]
RegistryDep = Annotated[StationRegistry, Depends(get_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
HealthDep = Annotated[HealthProbe, Depends(get_health)]


def get_station(
    station_id: Annotated[str, Path(description="a station id of the registry")],
    registry: RegistryDep,
) -> Station:
    """Return the registered station, or answer 404 (any other text is simply not a station)."""
    station = registry.get(station_id)
    if station is None:
        shown = json.dumps(station_id if len(station_id) <= 70 else station_id[:70] + "…")
        raise HTTPException(404, detail=f"unknown station {shown}; see /v1/stations")
    return station


StationDep = Annotated[Station, Depends(get_station)]
