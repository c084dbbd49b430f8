"""The InfluxQL statements the API sends, built from validated values only (api.influxql).

Each builder takes values the routes have already checked against the catalogue and registry
(station ids, parameter ids, interval names, zone names, int nanoseconds) and quotes them once
more on the way in, so a whitelist miss is a crash in our code, never a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from api.influxql import (
    DURATIONS,
    InfluxQL,
    quote_identifier,
    quote_string,
    time_literal,
    tz_clause,
)
from sensors import schema
from sensors.catalog import Aggregation

_READINGS: Final = quote_identifier(schema.READINGS)
_STATION: Final = quote_identifier(schema.STATION_TAG)
DEG_TO_RAD: Final = 0.017453292519943295  # pi / 180, written out in full for the query text
INGEST_STATS_WINDOW: Final = "1h"  # an ingester silent for longer is no longer reported


RECENT: Final = "1h"  # /v1/latest looks here first: ~7x faster than the whole history


def _stations_filter(station_ids: Sequence[str] | None) -> str:
    if station_ids is None:
        return ""
    if not station_ids:
        raise ValueError("an empty station filter would match every station")
    alternatives = " OR ".join(f"{_STATION} = {quote_string(s)}" for s in station_ids)
    return f"({alternatives})"


def _where_clause(*conditions: str) -> str:
    present = [condition for condition in conditions if condition]
    return f" WHERE {' AND '.join(present)}" if present else ""


def latest_readings(station_ids: Sequence[str] | None = None, *, recent: bool = False) -> InfluxQL:
    """Return the newest reading row (by observation time) of some or every station.

    ``ORDER BY time DESC LIMIT 1`` per station series gives the whole newest row; ``last(*)``
    would mix fields of different readings. With ``recent``, only the last hour is searched:
    a station whose newest row is older is simply absent, and is looked up again without it.
    """
    since = f"time > now() - {RECENT}" if recent else ""
    return InfluxQL(
        f"SELECT * FROM {_READINGS}{_where_clause(_stations_filter(station_ids), since)} "
        f"GROUP BY {_STATION} ORDER BY time DESC LIMIT 1"
    )


def latest_status(station_ids: Sequence[str] | None = None) -> InfluxQL:
    """Return each station's newest ``station_status`` state."""
    state = quote_identifier("state")
    return InfluxQL(
        f"SELECT last({state}) AS {state} FROM {quote_identifier(schema.STATUS)}"
        f"{_where_clause(_stations_filter(station_ids))} GROUP BY {_STATION}"
    )


def latest_ingest_stats() -> InfluxQL:
    """Return the newest ``ingest_stats`` snapshot of each ingester seen in the last hour."""
    return InfluxQL(
        f"SELECT * FROM {quote_identifier(schema.INGEST_STATS)} "
        f"WHERE time > now() - {INGEST_STATS_WINDOW} "
        f"GROUP BY {quote_identifier('ingester')} ORDER BY time DESC LIMIT 1"
    )


def _where(station_id: str, start_ns: int, end_ns: int) -> str:
    return (
        f"WHERE {_STATION} = {quote_string(station_id)} "
        f"AND time >= {time_literal(start_ns)} AND time < {time_literal(end_ns)}"
    )


def _qc_filter(parameter: str, include_suspect: bool) -> str:
    """``"{p}_qc" = 'good'`` (CONTRACT §5 default), or good-or-suspect: the value is present."""
    qc = quote_identifier(schema.qc_field(parameter))
    good = f"{qc} = {quote_string(schema.QcFlag.GOOD)}"
    if not include_suspect:
        return good
    return f"({good} OR {qc} = {quote_string(schema.QcFlag.SUSPECT)})"


def _group_by(interval: str, tz: str | None) -> str:
    clause = f"GROUP BY time({DURATIONS[interval]}) fill(none)"
    return clause if tz is None else f"{clause} {tz_clause(tz)}"


def aggregate_series(
    station_id: str,
    parameter: str,
    aggs: Sequence[Aggregation],
    *,
    start_ns: int,
    end_ns: int,
    interval: str,
    tz: str | None,
    include_suspect: bool,
) -> InfluxQL:
    """Return one parameter's windows: a column per aggregation, named after it.

    Empty windows are left out (``fill(none)``); windows are labelled by their start.
    """
    field = quote_identifier(parameter)
    columns = ", ".join(f"{agg}({field}) AS {quote_identifier(agg)}" for agg in aggs)
    return InfluxQL(
        f"SELECT {columns} FROM {_READINGS} {_where(station_id, start_ns, end_ns)} "
        f"AND {_qc_filter(parameter, include_suspect)} {_group_by(interval, tz)}"
    )


def circular_series(
    station_id: str,
    parameter: str,
    aggs: Sequence[Aggregation],
    *,
    start_ns: int,
    end_ns: int,
    interval: str,
    tz: str | None,
    include_suspect: bool,
) -> InfluxQL:
    """Return a direction's windows: the means of its unit vector (``s``, ``c``) for ``mean``.

    The caller turns (s, c) into atan2(s, c) in degrees; ``min``, ``max`` and ``count`` are of
    the plain angle. ``sum`` of a direction is refused before this is called.
    """
    field = quote_identifier(parameter)
    s, c, d = quote_identifier("s"), quote_identifier("c"), quote_identifier("d")
    columns = []
    for agg in aggs:
        if agg == "mean":
            columns += [f"mean({s}) AS {s}", f"mean({c}) AS {c}"]
        else:
            columns.append(f"{agg}({d}) AS {quote_identifier(agg)}")
    inner = (
        f"SELECT sin({field} * {DEG_TO_RAD!r}) AS {s}, cos({field} * {DEG_TO_RAD!r}) AS {c}, "
        f"{field} AS {d} FROM {_READINGS} {_where(station_id, start_ns, end_ns)} "
        f"AND {_qc_filter(parameter, include_suspect)}"
    )
    return InfluxQL(
        f"SELECT {', '.join(columns)} FROM ({inner}) "
        f"WHERE time >= {time_literal(start_ns)} AND time < {time_literal(end_ns)} "
        f"{_group_by(interval, tz)}"
    )


def raw_readings(
    station_id: str,
    parameters: Sequence[str],
    *,
    start_ns: int,
    end_ns: int,
    limit: int | None,
) -> InfluxQL:
    """Return the readings of a range, oldest first: each parameter's value, QC flag and
    failed check (written for suspect values only). ``limit`` None: every reading (the
    streamed export, bounded by its counted cost instead)."""
    names = [name for p in parameters for name in (p, schema.qc_field(p), schema.check_field(p))]

    columns = ", ".join(quote_identifier(name) for name in names)
    return InfluxQL(
        f"SELECT {columns} FROM {_READINGS} {_where(station_id, start_ns, end_ns)} "
        f"ORDER BY time ASC" + ("" if limit is None else f" LIMIT {int(limit)}")
    )


def data_edge(station_id: str, *, newest: bool) -> InfluxQL:
    """Return the station's oldest (or newest) reading row: the edges of its data span."""
    order = "DESC" if newest else "ASC"
    return InfluxQL(
        f"SELECT * FROM {_READINGS} WHERE {_STATION} = {quote_string(station_id)} "
        f"ORDER BY time {order} LIMIT 1"
    )


def count_values(station_id: str, parameter: str, *, start_ns: int, end_ns: int) -> InfluxQL:
    """Return how many values of one parameter a range holds: the cheap count a series
    request's cost is judged by before its real statements run (api.cost)."""
    return InfluxQL(
        f"SELECT count({quote_identifier(parameter)}) AS {quote_identifier('count')} "
        f"FROM {_READINGS} {_where(station_id, start_ns, end_ns)}"
    )
