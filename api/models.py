"""What the API promises (CONTRACT §5): one outbound model per answer.

Series answers are TypedDicts serialised by a pydantic TypeAdapter: up to 100,000 points are
plain dicts, three times cheaper to build than model instances, with the same schema in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from sensors.catalog import Aggregation
from sensors.outbound import LatestEntry


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)


class ErrorOut(_Out):
    """Every error answer (CONTRACT §5): a sentence (or FastAPI's list of validation problems),
    and for a 5xx the request id under which the details are logged."""

    detail: str | list[dict[str, Any]]
    request_id: str | None = None


# The answers any route may give besides its own (documented once, for every operation).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorOut,
        "description": "bad parameters, or more work than one request may cost",
    },
    404: {"model": ErrorOut, "description": "unknown station or resource"},
    429: {"model": ErrorOut, "description": "rate limit: retry after `Retry-After` seconds"},
    502: {"model": ErrorOut, "description": "storage refused or answered incompletely"},
    503: {"model": ErrorOut, "description": "storage away, or no capacity: retry later"},
}


class HealthOut(_Out):
    """``/health``: ok only when the live feed is subscribed and an authenticated query works."""

    status: Literal["ok", "degraded"]
    mqtt: bool
    influxdb: bool
    # issue 9: messages the broker dropped since it started (its $SYS counter, as the ingesters
    # last read it); null when unknown. Shown so that a loss is never silent.
    broker_dropped: int | None = None


class BandOut(_Out):
    """One class of a derived value (e.g. a Thom discomfort class): null ``min``/``max`` is
    unbounded; which edge belongs to the class is the parameter's ``band_edge``."""

    id: str
    label: str
    min: float | None
    max: float | None


class ParameterOut(_Out):
    """One catalogue entry; derived parameters have no physical range, list their inputs and
    name their source, and those with classes list them (lowest first)."""

    id: str
    name: str
    unit: str
    min: float | None
    max: float | None
    agg: Aggregation
    derived: bool = False
    inputs: list[str] | None = None
    source: str | None = None
    bands: list[BandOut] | None = None
    band_edge: Literal["lower", "upper"] | None = None  # the edge a class includes
    min_interval: str | None = None  # series of it need at least this interval (EAQI: 1h)
    note: str | None = None  # how latest and the stream differ from series, if they do


class ParametersOut(_Out):
    """``/v1/parameters``."""

    parameters: list[ParameterOut]


StationStatus = Literal["online", "offline", "unknown"]


class StationOut(_Out):
    """A station of the registry, with when it last reported and its last status."""

    id: str
    name: str
    municipality: str
    lat: float
    lon: float
    elevation_m: float
    parameters: list[str]
    last_seen: str | None  # the observation time of its newest reading (RFC 3339 UTC)
    status: StationStatus


class StationsOut(_Out):
    """``/v1/stations``."""

    stations: list[StationOut]


class LatestOut(_Out):
    """``/v1/latest``: one entry per station that has reported."""

    stations: list[LatestEntry]


class Completeness(TypedDict):
    """How complete a window is: each parameter's readings present, and the number expected
    from the station's reporting interval (registry ``interval_s``) over the window's part
    inside the requested range."""

    expected: int
    present: dict[str, int]


class AggPoint(TypedDict):
    """One window: ``values[parameter][agg]``; a vector mean with no direction is null."""

    time: str
    values: dict[str, dict[str, float | int | None]]
    completeness: NotRequired[Completeness]


class RawPoint(TypedDict):
    """One reading: ``values[parameter]``, its QC flag in ``qc[parameter]`` and, for a suspect
    stored value, the QC check it failed in ``checks[parameter]`` (sensors.qc)."""

    time: str
    values: dict[str, float]
    qc: dict[str, str]
    checks: NotRequired[dict[str, str]]


class AggSeriesOut(TypedDict):
    """``/v1/stations/{id}/series`` for an aggregated interval."""

    station: str
    interval: str
    start: str
    end: str
    tz: str
    points: list[AggPoint]


class RawSeriesOut(TypedDict):
    """``/v1/stations/{id}/series?interval=raw``."""

    station: str
    interval: Literal["raw"]
    start: str
    end: str
    tz: str
    points: list[RawPoint]


AGG_SERIES_JSON: TypeAdapter[AggSeriesOut] = TypeAdapter(AggSeriesOut)
RAW_SERIES_JSON: TypeAdapter[RawSeriesOut] = TypeAdapter(RawSeriesOut)
AGG_POINTS_JSON: TypeAdapter[list[AggPoint]] = TypeAdapter(list[AggPoint])
RAW_POINTS_JSON: TypeAdapter[list[RawPoint]] = TypeAdapter(list[RawPoint])
# Points serialized per call: one call holds the GIL from start to end (pydantic-core), so a
# 72,000-point body in one call stopped the event loop for ~100 ms; slices let it run between.
POINTS_PER_DUMP: Final = 2000


def dump_series_json(
    doc_json: TypeAdapter[Any], points_json: TypeAdapter[Any], doc: Mapping[str, Any]
) -> bytes:
    """Return the JSON of a series document (``points`` last), its points a slice at a time."""
    head = doc_json.dump_json({**doc, "points": []})
    if not head.endswith(b'"points":[]}'):
        raise ValueError("a series document must end with its points")
    points = doc["points"]
    slices = (
        points_json.dump_json(points[i : i + POINTS_PER_DUMP])[1:-1]
        for i in range(0, len(points), POINTS_PER_DUMP)
    )
    return head[:-2] + b",".join(slices) + b"]}"
