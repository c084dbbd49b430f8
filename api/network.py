"""``GET /v1/series``: one series request over many stations (pure logic).

The request is the single-station ``SeriesQuery`` plus which stations (``stations=`` a comma
list, or ``municipality=`` every registered station there) and the answer's ``layout``:

- ``long``: one point per (station, window or reading), ``{"station", "time", "values"}``;
  CSV columns ``time, station, {parameter}_{agg}…``.
- ``wide``: one point per window or reading time, ``values[station][parameter][agg]`` (raw:
  ``values[station][parameter]``); CSV columns ``time, {station}.{parameter}_{agg}…``.

Each station gets its own ``SeriesPlan`` (``plan_series``, so every aggregate, interval, zone
and check of the single-station route applies unchanged). Parameters: those asked for, or by
default the ones every selected station offers. Named stations must each offer every
parameter asked for (400 saying which does not); with ``municipality=``, stations that do not
are left out and listed in ``skipped``. The 100,000-point rule counts the points of all the
stations together; the work rule (api.cost) gives each station an equal share of
``api_max_scan_values``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field

from api.models import AggPoint, RawPoint
from api.series import (
    MAX_POINTS,
    SeriesPlan,
    SeriesQuery,
    SeriesRequestError,
    plan_series,
    resolve_parameters,
)
from sensors import schema
from sensors.models import format_ts
from sensors.registry import Station, StationRegistry

MAX_STATIONS: Final = 200  # stations in one request (the Thriasio network has ~100)
LAYOUTS: Final = ("long", "wide")


class NetworkQuery(SeriesQuery):
    """A series request over several stations (see the module docstring)."""

    stations: str | None = Field(
        None, max_length=8000, description="comma-separated station ids (or municipality)"
    )
    municipality: str | None = Field(
        None, max_length=100, description="every registered station of this municipality"
    )
    layout: str = Field("long", max_length=8, description="long or wide")


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    """The checked plans of a network request, one per station, in the order asked for."""

    plans: tuple[SeriesPlan, ...]
    layout: str
    skipped: tuple[str, ...]  # stations of the municipality without the parameters

    @property
    def first(self) -> SeriesPlan:
        """Return one of the plans: all share interval, range, zone, parameters and aggs."""
        return self.plans[0]


def _split_ids(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise SeriesRequestError("stations: give comma-separated ids without empty entries")
    return list(dict.fromkeys(parts))


def resolve_stations(
    registry: StationRegistry, stations: str | None, municipality: str | None
) -> tuple[list[Station], bool]:
    """Return the selected stations and whether they were named one by one (400 otherwise)."""
    if (stations is None) == (municipality is None):
        raise SeriesRequestError("give either stations=id,id,… or municipality=name")
    if stations is not None:
        ids = _split_ids(stations)
        if len(ids) > MAX_STATIONS:
            raise SeriesRequestError(f"stations: at most {MAX_STATIONS} at a time")
        found = []
        for station_id in ids:
            station = registry.get(station_id)
            if station is None:
                shown = station_id if len(station_id) <= 40 else station_id[:40] + "…"
                raise SeriesRequestError(f"stations: unknown station {shown!r}; see /v1/stations")
            found.append(station)
        return found, True
    assert municipality is not None
    wanted = municipality.strip().casefold()
    chosen = [s for s in registry if s.municipality.casefold() == wanted]
    if not chosen:
        names = sorted({s.municipality for s in registry})
        raise SeriesRequestError(
            f"municipality: no station in {municipality[:40]!r}; known: {', '.join(names)}"
        )
    return chosen[:MAX_STATIONS], False


def common_parameters(stations: Sequence[Station]) -> str:
    """Return, comma-separated, the parameters (stored and derived) every station offers."""
    offered = [resolve_parameters(station, None) for station in stations]
    shared = [p for p in offered[0] if all(p in other for other in offered[1:])]
    if not shared:
        raise SeriesRequestError("these stations have no parameter in common; name parameters")
    return ",".join(shared)


def _offers(station: Station, parameters: str) -> bool:
    try:
        resolve_parameters(station, parameters)
    except SeriesRequestError:
        return False
    return True


def plan_network(
    registry: StationRegistry,
    query: NetworkQuery,
    *,
    now_ns: int,
    formats: tuple[str, ...] = ("json", "csv"),
    max_points: int | None = MAX_POINTS,
) -> NetworkPlan:
    """Return the plans of a network request, or raise SeriesRequestError (400)."""
    if query.layout not in LAYOUTS:
        raise SeriesRequestError(f"layout: {query.layout[:16]!r} is not long or wide")
    stations, named = resolve_stations(registry, query.stations, query.municipality)
    skipped: list[str] = []
    if query.parameters is None:
        query = query.model_copy(update={"parameters": common_parameters(stations)})
    elif not named:
        assert query.parameters is not None
        kept = [s for s in stations if _offers(s, query.parameters)]
        skipped = [s.id for s in stations if s not in kept]
        if not kept:
            raise SeriesRequestError(
                f"parameters: no station of {query.municipality} offers {query.parameters[:80]}"
            )
        stations = kept
    plans = tuple(
        plan_series(station, query, now_ns=now_ns, formats=formats, max_points=max_points)
        for station in stations
    )
    total = sum(plan.estimated_points for plan in plans)
    if max_points is not None and total > max_points:
        raise SeriesRequestError(
            f"{len(plans)} stations x {plans[0].estimated_points:,} points is {total:,}, more "
            f"than {max_points:,}: narrow start/end, choose a coarser interval, ask for fewer "
            "stations, or use /v1/export (streamed, no point limit)"
        )
    return NetworkPlan(plans=plans, layout=query.layout, skipped=tuple(skipped))


StationPoints = list[AggPoint] | list[RawPoint]


def _cell(value: object) -> str:
    return "" if value is None else repr(value)


def _columns(plan: SeriesPlan) -> list[tuple[str, str | None]]:
    """Return the (parameter, agg) value columns of a plan (agg None: a raw value)."""
    if plan.interval == "raw":
        return [(p, None) for p in plan.parameters]
    return [(p, agg) for p in plan.parameters for agg in plan.aggs[p]]


def _value(point: AggPoint | RawPoint, parameter: str, agg: str | None) -> object:
    values: dict[str, Any] = dict(point["values"])
    if agg is None:
        return values.get(parameter)
    return values.get(parameter, {}).get(agg)


def _label(parameter: str, agg: str | None) -> str:
    return parameter if agg is None else f"{parameter}_{agg}"


def network_json(network: NetworkPlan, answers: Sequence[StationPoints]) -> bytes:
    """Return the JSON answer of a network request (long or wide, see the module docstring)."""
    plan = network.first
    doc: dict[str, Any] = {
        "interval": plan.interval,
        "start": format_ts(plan.start_ns),
        "end": format_ts(plan.end_ns),
        "tz": plan.tz,
        "layout": network.layout,
        "stations": [p.station_id for p in network.plans],
        "skipped": list(network.skipped),
    }
    if network.layout == "long":
        doc["points"] = [
            {"station": p.station_id, **point}
            for p, points in zip(network.plans, answers, strict=True)
            for point in points
        ]
    else:
        table: dict[str, dict[str, Any]] = {}
        for p, points in zip(network.plans, answers, strict=True):
            for point in points:
                row = table.setdefault(point["time"], {"time": point["time"], "values": {}})
                row["values"][p.station_id] = point["values"]
                if "qc" in point:
                    row.setdefault("qc", {})[p.station_id] = dict(point)["qc"]
        doc["points"] = [table[t] for t in sorted(table)]
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def network_csv(network: NetworkPlan, answers: Sequence[StationPoints]) -> str:
    """Return the CSV answer of a network request (long or wide, see the module docstring).

    Raw series with ``include_suspect`` carry ``{parameter}_qc`` columns in the long layout,
    so that suspect values stay distinguishable (the wide layout has values only: ask for the
    long layout to tell suspect values apart).
    """
    plan = network.first
    columns = _columns(plan)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    raw_qc = plan.interval == "raw" and plan.include_suspect
    if network.layout == "long":
        header = ["time", "station", *(_label(p, agg) for p, agg in columns)]
        if raw_qc:
            header += [schema.qc_field(p) for p in plan.parameters]
        writer.writerow(header)
        for p, points in zip(network.plans, answers, strict=True):
            for point in points:
                row = [point["time"], p.station_id]
                row += [_cell(_value(point, name, agg)) for name, agg in columns]
                if raw_qc:
                    qc: dict[str, str] = dict(point).get("qc", {})  # type: ignore[assignment]
                    row += [qc.get(name, "") for name in plan.parameters]
                writer.writerow(row)
        return buffer.getvalue()
    ids = [p.station_id for p in network.plans]
    writer.writerow(["time", *(f"{s}.{_label(p, agg)}" for s in ids for p, agg in columns)])
    table: dict[str, dict[str, AggPoint | RawPoint]] = {}
    for station_id, points in zip(ids, answers, strict=True):
        for point in points:
            table.setdefault(point["time"], {})[station_id] = point
    for time_label in sorted(table):
        by_station = table[time_label]
        row = [time_label]
        for station_id in ids:
            found = by_station.get(station_id)
            row += [
                "" if found is None else _cell(_value(found, name, agg)) for name, agg in columns
            ]
        writer.writerow(row)
    return buffer.getvalue()
