"""``GET /v1/stations/{id}/health`` and ``GET /v1/health/stations`` (CONTRACT §6).

The figures and how each is derived are in api.station_health; this module shapes them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from api.deps import ReaderDep, RegistryDep, StationDep
from api.station_health import (
    MAX_NETWORK_DAYS,
    MAX_STATION_DAYS,
    NOT_DERIVED,
    NS,
    DayCache,
    DayFigures,
    HealthFigures,
    StationNow,
    format_day,
    read_health,
)
from sensors.models import format_ts

router = APIRouter(tags=["health"])

Status = Literal["online", "offline", "unknown"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)


class WindowOut(_Out):
    """The UTC days covered: from the start of the first to now."""

    start: str
    end: str
    days: int


class ParameterDayOut(_Out):
    """One parameter's day: values stored, completeness, and suspect values by check."""

    values: int
    completeness: float | None
    suspect: int
    suspect_share: float | None
    suspect_by_check: dict[str, int]


class SeqOut(_Out):
    """``seq`` accounting: jumps of more than one, readings missing in them, resets (reboots)."""

    gaps: int
    missing: int
    resets: int


class DayOut(_Out):
    """One station's UTC day (today: up to now)."""

    date: str
    readings: int
    expected: int | None
    completeness: float | None
    uptime: float | None
    seq: SeqOut
    quarantined: dict[str, int]
    parameters: dict[str, ParameterDayOut]


class DiagnosticsOut(_Out):
    """The newest diagnostics the station sent (``diag``: battery, signal, as named by it)."""

    ts: str
    values: dict[str, float]


class LedgerOut(_Out):
    """What reached storage from the station over the window; ``null``: not derivable."""

    stored: int
    quarantined: dict[str, int]
    quarantined_total: int
    received: int | None = None
    duplicates: int | None = None


class StationHealthOut(_Out):
    """One station's health over the window."""

    station: str
    window: WindowOut
    last_seen: str | None
    status: Status
    reporting_interval_s: float | None
    stuck_parameters: list[str]
    diagnostics: DiagnosticsOut | None
    completeness: float | None
    uptime: float | None
    suspect_share: float | None
    suspect_by_check: dict[str, int]
    seq: SeqOut
    ledger: LedgerOut
    days: list[DayOut]
    not_derived: dict[str, str]


class StationSummaryOut(_Out):
    """One station in the network view (totals over the window)."""

    station: str
    last_seen: str | None
    status: Status
    reporting_interval_s: float | None
    stuck_parameters: list[str]
    diagnostics: DiagnosticsOut | None
    completeness: float | None
    uptime: float | None
    suspect_share: float | None
    seq: SeqOut
    ledger: LedgerOut


class IngesterOut(_Out):
    """One ingester's newest counters (since it started; network-wide, not per station)."""

    ingester: str
    readings_received: int | None
    readings_stored: int | None
    duplicates_seen: int | None


class NetworkHealthOut(_Out):
    """Every registered station's health, and the ingesters' counters."""

    window: WindowOut
    stations: list[StationSummaryOut]
    ingesters: list[IngesterOut]
    not_derived: dict[str, str]


def _cache(request: Request) -> DayCache:
    cache = getattr(request.app.state, "health_day_cache", None)
    if not isinstance(cache, DayCache):
        cache = DayCache()
        request.app.state.health_day_cache = cache
    return cache


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _expected(figures: DayFigures, interval_s: float | None) -> int | None:
    if not interval_s:
        return None
    return max(1, round(figures.span_ns / NS / interval_s))


def _day(figures: DayFigures, interval_s: float | None) -> DayOut:
    expected = _expected(figures, interval_s)
    parameters = {}
    for parameter, values in sorted(figures.values.items()):
        by_check = dict(sorted(figures.suspect.get(parameter, {}).items()))
        suspect = sum(by_check.values())
        parameters[parameter] = ParameterDayOut(
            values=values,
            completeness=_share(values, expected) if expected else None,
            suspect=suspect,
            suspect_share=_share(suspect, values),
            suspect_by_check=by_check,
        )
    return DayOut(
        date=format_day(figures.day_ns),
        readings=figures.readings,
        expected=expected,
        completeness=_share(figures.readings, expected) if expected else None,
        uptime=None if figures.online_ns is None else _share(figures.online_ns, figures.span_ns),
        seq=SeqOut(gaps=figures.seq_gaps, missing=figures.seq_missing, resets=figures.seq_resets),
        quarantined=dict(sorted(figures.quarantined.items())),
        parameters=parameters,
    )


def _window(figures: HealthFigures, days: int) -> WindowOut:
    return WindowOut(start=format_ts(figures.start_ns), end=format_ts(figures.end_ns), days=days)


def _status(now: StationNow) -> Status:
    return (
        "online" if now.status == "online" else "offline" if now.status == "offline" else "unknown"
    )


def _totals(days: list[DayFigures], now: StationNow) -> dict[str, object]:
    readings = sum(d.readings for d in days)
    expected = [_expected(d, now.interval_s) for d in days]
    spans = sum(d.span_ns for d in days if d.online_ns is not None)
    quarantined: dict[str, int] = {}
    by_check: dict[str, int] = {}
    for d in days:
        for reason, n in d.quarantined.items():
            quarantined[reason] = quarantined.get(reason, 0) + n
        for checks in d.suspect.values():
            for check, n in checks.items():
                by_check[check] = by_check.get(check, 0) + n
    values = sum(sum(d.values.values()) for d in days)
    return {
        "completeness": _share(readings, sum(e for e in expected if e)) if all(expected) else None,
        "uptime": _share(sum(d.online_ns or 0 for d in days), spans) if spans else None,
        "suspect_share": _share(sum(by_check.values()), values),
        "suspect_by_check": dict(sorted(by_check.items())),
        "seq": SeqOut(
            gaps=sum(d.seq_gaps for d in days),
            missing=sum(d.seq_missing for d in days),
            resets=sum(d.seq_resets for d in days),
        ),
        "ledger": LedgerOut(
            stored=readings,
            quarantined=dict(sorted(quarantined.items())),
            quarantined_total=sum(quarantined.values()),
        ),
    }


def _diagnostics(now: StationNow) -> DiagnosticsOut | None:
    if now.diagnostics_ns is None or not now.diagnostics:
        return None
    return DiagnosticsOut(ts=format_ts(now.diagnostics_ns), values=now.diagnostics)


def _common(station_id: str, figures: HealthFigures) -> dict[str, object]:
    now = figures.now[station_id]
    return {
        "station": station_id,
        "last_seen": format_ts(now.last_seen_ns) if now.last_seen_ns is not None else None,
        "status": _status(now),
        "reporting_interval_s": now.interval_s,
        "stuck_parameters": now.stuck,
        "diagnostics": _diagnostics(now),
    } | _totals(figures.days[station_id], now)


@router.get(
    "/v1/stations/{station_id}/health",
    response_model=StationHealthOut,
    responses={404: {"description": "unknown station"}},
)
async def station_health(
    request: Request,
    station: StationDep,
    reader: ReaderDep,
    registry: RegistryDep,
    days: Annotated[
        int, Query(ge=1, le=MAX_STATION_DAYS, description="UTC days, today included")
    ] = 7,
) -> StationHealthOut:
    """Return one station's health per UTC day and over the window."""
    figures = await read_health(
        reader, registry, [station.id], days, _cache(request), one_station=True
    )
    now = figures.now[station.id]
    common = _common(station.id, figures)
    return StationHealthOut.model_validate(
        common
        | {
            "window": _window(figures, days),
            "days": [_day(d, now.interval_s) for d in figures.days[station.id]],
            "not_derived": NOT_DERIVED,
        }
    )


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@router.get("/v1/health/stations", response_model=NetworkHealthOut)
async def network_health(
    request: Request,
    reader: ReaderDep,
    registry: RegistryDep,
    days: Annotated[
        int, Query(ge=1, le=MAX_NETWORK_DAYS, description="UTC days, today included")
    ] = 1,
) -> NetworkHealthOut:
    """Return every registered station's health totals over the window, in registry order."""
    ids = list(registry.ids)
    figures = await read_health(reader, registry, ids, days, _cache(request), one_station=False)
    stations = [StationSummaryOut.model_validate(_common(s, figures)) for s in ids]
    ingesters = [
        IngesterOut(
            ingester=name,
            readings_received=_optional_int(row.get("readings_received")),
            readings_stored=_optional_int(row.get("readings_stored")),
            duplicates_seen=_optional_int(row.get("duplicates_seen")),
        )
        for name, row in sorted(figures.ingesters.items())
    ]
    return NetworkHealthOut(
        window=_window(figures, days),
        stations=stations,
        ingesters=ingesters,
        not_derived=NOT_DERIVED,
    )
