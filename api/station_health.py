"""Station health computed from what InfluxDB holds (issue 11; CONTRACT §6).

Per UTC day and station, from the stored schema (sensors.schema) only:

- **readings** stored (points of ``readings``: the largest per-field count of the day, since a
  point holds at least one field and ``seq`` or some value is in every one the ingester writes);
- **completeness**: readings / expected, expected = the part of the day inside the window
  divided by the station's reporting interval (the median spacing of its newest 100 readings);
- **uptime**: the share of the day the station's last ``station_status`` said ``online``
  (retained status and LWT); ``null`` when the station never sent a status;
- **suspect values by check**: ``count(p)`` where ``{p}_qc = 'suspect'`` and ``{p}_check`` names
  the check, for every check of sensors.qc that can flag ``p``;
- **seq**: gaps (jumps of more than one), readings missing in them, and resets (``seq`` going
  down: a reboot), from ``difference(seq)`` in InfluxDB, per station series in time order;
- **quarantined** records by reason, from the ``quarantine`` measurement in the ``quarantine``
  retention policy (and in the default one, where older ingesters wrote it), by its station tag.

And now: last seen, status, the newest diagnostics (``station_diag``: battery, signal…, as the
station sends them), and **stuck sensors**: parameters whose newest value failed the
``persistence`` check (unchanged longer than the catalogue allows).

Not derivable per station from stored data, and said so in every answer (``not_derived``):
messages/readings *received* and *duplicates*. A duplicate overwrites the same point (its key
is station and ts), so storage cannot tell it happened; the ingester counts both only per
process (``ingest_stats``: ``readings_received``, ``duplicates_seen``), which the network view
reports per ingester.

Cost: one InfluxDB request per answer, all aggregation done by InfluxDB (no raw rows
transferred except 101 ``seq`` rows per station for the interval); windows are capped
(``MAX_STATION_DAYS``, ``MAX_NETWORK_DAYS``), and the figures of finished days are cached for
``DAY_CACHE_TTL_S`` (a late or replayed batch can still change them, so not forever).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from api.influx import Cell, InfluxReader, StatementResult
from api.influxql import InfluxQL, quote_identifier, quote_string, time_literal
from api.queries import latest_ingest_stats
from api.station_state import read_rows
from sensors import schema
from sensors.catalog import CATALOG
from sensors.registry import StationRegistry

NS: Final = 1_000_000_000
DAY_NS: Final = 86_400 * NS
MAX_STATION_DAYS: Final = 31  # a month of one station: ~40 statements over ≤ 270k points each
MAX_NETWORK_DAYS: Final = 7  # every station: the same statements over the whole network
DAY_CACHE_TTL_S: Final = 600.0  # finished days change only by late data; 10 min is fresh enough
DAY_CACHE_MAX: Final = 20_000  # (station, day) entries: 100 stations x 31 days, many times over
INTERVAL_SAMPLE: Final = 101  # newest readings whose spacing gives the reporting interval

# The checks of sensors.qc and the parameters each can flag.
TEMPORAL_CHECKS: Final = ("step", "persistence")
CONSISTENCY_CHECKS: Final = {
    "relative_humidity": ("dew_point_above_temperature",),
    "wind_gust": ("gust_below_speed",),
    "precipitation": ("rain_with_dry_air",),
    "solar_radiation": ("above_clear_sky",),
}
STUCK_CHECK: Final = "persistence"

NOT_DERIVED: Final = {
    "received": (
        "readings received are counted per ingester process (ingest_stats.readings_received), "
        "not per station; per station, stored + quarantined is what reached storage"
    ),
    "duplicates": (
        "a duplicate overwrites the same point (station, ts), so storage cannot tell it "
        "happened; the ingesters count them per process (ingest_stats.duplicates_seen)"
    ),
}

_R: Final = quote_identifier(schema.READINGS)
_ST: Final = quote_identifier(schema.STATION_TAG)
_SEQ: Final = quote_identifier(schema.SEQ_FIELD)
_COUNT: Final = quote_identifier("count")


def checks_of(parameter: str) -> tuple[str, ...]:
    """Return the QC checks that can flag ``parameter`` (sensors.qc)."""
    spec = CATALOG[parameter]
    temporal = tuple(
        check
        for check, limit in zip(
            TEMPORAL_CHECKS, (spec.max_step_per_min, spec.persistence_min), strict=True
        )
        if limit is not None
    )
    return temporal + CONSISTENCY_CHECKS.get(parameter, ())


@dataclass(slots=True)
class DayFigures:
    """One station's figures of one UTC day (or of the part of it inside the window)."""

    day_ns: int
    span_ns: int  # the part of the day inside the window (up to now)
    readings: int = 0
    values: dict[str, int] = field(default_factory=dict)
    suspect: dict[str, dict[str, int]] = field(default_factory=dict)  # parameter -> check -> n
    seq_gaps: int = 0
    seq_missing: int = 0
    seq_resets: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    online_ns: int | None = None  # None: no status known


@dataclass(slots=True)
class StationNow:
    """What is true of a station now: newest reading, status, diagnostics, interval."""

    last_seen_ns: int | None = None
    status: str | None = None
    stuck: list[str] = field(default_factory=list)
    diagnostics: dict[str, float] = field(default_factory=dict)
    diagnostics_ns: int | None = None
    interval_s: float | None = None


@dataclass(slots=True)
class HealthFigures:
    """Everything the health answers are built from, for some stations over whole days."""

    start_ns: int
    end_ns: int
    days: dict[str, list[DayFigures]]
    now: dict[str, StationNow]
    ingesters: dict[str, dict[str, Cell]]


def day_start(ts_ns: int) -> int:
    """Return the start of the UTC day holding ``ts_ns``."""
    return ts_ns - ts_ns % DAY_NS


def format_day(day_ns: int) -> str:
    """Return a UTC day as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(day_ns // NS, UTC).strftime("%Y-%m-%d")


# --- statements ----------------------------------------------------------------------------


def _filter(station_ids: Sequence[str] | None) -> str:
    if station_ids is None:
        return ""
    return "(" + " OR ".join(f"{_ST} = {quote_string(s)}" for s in station_ids) + ") AND "


def _range(start_ns: int, end_ns: int) -> str:
    return f"time >= {time_literal(start_ns)} AND time < {time_literal(end_ns)}"


def _day_statements(
    ids: Sequence[str] | None,
    parameters: Sequence[str],
    start_ns: int,
    end_ns: int,
    with_rp: bool,
) -> tuple[list[InfluxQL], list[tuple[str, str]]]:
    """Return the per-day statements and the (parameter, check) of each suspect statement.

    The quarantine is counted in its retention policy (when the database has it) and in the
    default one; without the policy, an empty-result statement keeps the positions."""
    where = f"WHERE {_filter(ids)}{_range(start_ns, end_ns)}"
    by_day = f"GROUP BY time(1d), {_ST} fill(none)"
    by_reason = f"GROUP BY time(1d), {_ST}, {quote_identifier('reason')} fill(none)"
    d = quote_identifier("d")
    inner = f"SELECT difference({_SEQ}) AS {d} FROM {_R} {where} GROUP BY {_ST}"
    outer_range = _range(start_ns, end_ns)
    q = quote_identifier(schema.QUARANTINE)
    detail = quote_identifier("detail")
    statements = [
        InfluxQL(f"SELECT count(*) FROM {_R} {where} {by_day}"),
        InfluxQL(
            f"SELECT sum({d}) AS {quote_identifier('sum')}, count({d}) AS {_COUNT} "
            f"FROM ({inner}) WHERE {d} > 1 AND {outer_range} {by_day}"
        ),
        InfluxQL(
            f"SELECT count({d}) AS {_COUNT} FROM ({inner}) WHERE {d} < 0 AND {outer_range} {by_day}"
        ),
        InfluxQL(
            f"SELECT count({detail}) AS {_COUNT} FROM {quote_identifier(schema.QUARANTINE_RP)}.{q} "
            f"{where} {by_reason}"
            if with_rp
            else f"SELECT count({detail}) AS {_COUNT} FROM {q} WHERE time < 0"  # nothing
        ),
        InfluxQL(f"SELECT count({detail}) AS {_COUNT} FROM {q} {where} {by_reason}"),
        InfluxQL(
            f"SELECT last({quote_identifier('state')}) AS {quote_identifier('state')} "
            f"FROM {quote_identifier(schema.STATUS)} WHERE {_filter(ids)}"
            f"time < {time_literal(start_ns)} GROUP BY {_ST}"
        ),
        InfluxQL(
            f"SELECT {quote_identifier('state')} FROM {quote_identifier(schema.STATUS)} "
            f"{where} GROUP BY {_ST}"
        ),
    ]
    pairs = [(p, check) for p in parameters for check in checks_of(p)]
    for parameter, check in pairs:
        field_ = quote_identifier(parameter)
        qc = quote_identifier(schema.qc_field(parameter))
        failed = quote_identifier(schema.check_field(parameter))
        statements.append(
            InfluxQL(
                f"SELECT count({field_}) AS {_COUNT} FROM {_R} {where} "
                f"AND {qc} = {quote_string(schema.QcFlag.SUSPECT)} "
                f"AND {failed} = {quote_string(check)} {by_day}"
            )
        )
    return statements, pairs


def _now_statements(ids: Sequence[str] | None) -> list[InfluxQL]:
    only = f" WHERE {_filter(ids).removesuffix(' AND ')}" if ids is not None else ""
    state = quote_identifier("state")
    return [
        InfluxQL(
            f"SELECT last({state}) AS {state} FROM {quote_identifier(schema.STATUS)}{only} "
            f"GROUP BY {_ST}"
        ),
        InfluxQL(
            f"SELECT * FROM {quote_identifier(schema.DIAGNOSTICS)}{only} "
            f"GROUP BY {_ST} ORDER BY time DESC LIMIT 1"
        ),
        InfluxQL(
            f"SELECT {_SEQ} FROM {_R}{only} "
            f"GROUP BY {_ST} ORDER BY time DESC LIMIT {INTERVAL_SAMPLE}"
        ),
    ]


# --- reading the answers -------------------------------------------------------------------


def _int(cell: Cell) -> int:
    return int(cell) if isinstance(cell, int | float) and not isinstance(cell, bool) else 0


def _per_day(result: StatementResult, column: str) -> dict[tuple[str, int, str], int]:
    """Return {(station, day, reason-or-''): value} of a GROUP BY time(1d) result."""
    found: dict[tuple[str, int, str], int] = {}
    for series in result.series:
        station = series.tags.get(schema.STATION_TAG, "")
        reason = series.tags.get("reason", "")
        for row in series.rows():
            ts = row.get("time")
            if isinstance(ts, int):
                found[(station, day_start(ts), reason)] = _int(row.get(column))
    return found


def _uptime(
    before: StatementResult, inside: StatementResult, start_ns: int, end_ns: int
) -> dict[tuple[str, int], int]:
    """Return online nanoseconds per (station, day) from the status timeline."""
    initial = {
        s.tags.get(schema.STATION_TAG, ""): s.rows()[0].get("state")
        for s in before.series
        if s.values
    }
    changes: dict[str, list[tuple[int, Cell]]] = defaultdict(list)
    for series in inside.series:
        station = series.tags.get(schema.STATION_TAG, "")
        changes[station] = [
            (ts, row.get("state"))
            for row in series.rows()
            if isinstance(ts := row.get("time"), int)
        ]
    online: dict[tuple[str, int], int] = {}
    for station in set(initial) | set(changes):
        state, since = initial.get(station), start_ns
        # a station first heard of inside the window has no uptime (null) before that day
        heard = changes.get(station)
        first = start_ns if station in initial or not heard else day_start(heard[0][0])
        for day in range(start_ns, end_ns, DAY_NS):
            if day >= first:
                online[(station, day)] = 0
        for ts, new_state in [*changes.get(station, []), (end_ns, None)]:
            cursor = since
            while state == "online" and cursor < ts:
                day = day_start(cursor)
                piece_end = min(ts, day + DAY_NS)
                online[(station, day)] += piece_end - cursor
                cursor = piece_end
            state, since = new_state, ts
    return online


def _read_days(
    results: list[StatementResult],
    pairs: list[tuple[str, str]],
    ids: Sequence[str],
    start_ns: int,
    end_ns: int,
) -> dict[str, list[DayFigures]]:
    counts, gaps, resets, q_rp, q_default, before, inside = results[:7]
    days: dict[str, dict[int, DayFigures]] = {
        s: {d: DayFigures(d, min(end_ns, d + DAY_NS) - d) for d in range(start_ns, end_ns, DAY_NS)}
        for s in ids
    }
    for series in counts.series:
        station = series.tags.get(schema.STATION_TAG, "")
        if station not in days:
            continue
        for row in series.rows():
            ts = row.get("time")
            if not isinstance(ts, int) or day_start(ts) not in days[station]:
                continue
            figures = days[station][day_start(ts)]
            per_field = {k[6:]: _int(v) for k, v in row.items() if k.startswith("count_")}
            figures.readings = max(per_field.values(), default=0)
            figures.values = {k: v for k, v in per_field.items() if k in CATALOG and v}
    for (station, day, _), value in _per_day(gaps, "count").items():
        if station in days and day in days[station]:
            days[station][day].seq_gaps = value
    for (station, day, _), value in _per_day(gaps, "sum").items():
        if station in days and day in days[station]:
            days[station][day].seq_missing = value - days[station][day].seq_gaps
    for (station, day, _), value in _per_day(resets, "count").items():
        if station in days and day in days[station]:
            days[station][day].seq_resets = value
    for result in (q_rp, q_default):
        for (station, day, reason), value in _per_day(result, "count").items():
            if station in days and day in days[station] and value:
                held = days[station][day].quarantined
                held[reason] = held.get(reason, 0) + value
    for (station, day), online_ns in _uptime(before, inside, start_ns, end_ns).items():
        if station in days and day in days[station]:
            days[station][day].online_ns = online_ns
    for (parameter, check), result in zip(pairs, results[7:], strict=True):
        for (station, day, _), value in _per_day(result, "count").items():
            if station in days and day in days[station] and value:
                days[station][day].suspect.setdefault(parameter, {})[check] = value
    return {s: [days[s][d] for d in sorted(days[s])] for s in ids}


def _read_now(
    results: list[StatementResult], newest: dict[str, dict[str, Cell]], ids: Sequence[str]
) -> dict[str, StationNow]:
    status, diag, seqs = results
    now = {s: StationNow() for s in ids}
    for station, row in newest.items():
        entry = now.get(station)
        if entry is None:
            continue
        entry.last_seen_ns = ts if isinstance(ts := row.get("time"), int) else None
        entry.stuck = sorted(
            p
            for p in CATALOG
            if row.get(schema.qc_field(p)) == schema.QcFlag.SUSPECT
            and row.get(schema.check_field(p)) == STUCK_CHECK
        )
    for series in status.series:
        entry = now.get(series.tags.get(schema.STATION_TAG, ""))
        if entry is not None and series.values:
            state = series.rows()[0].get("state")
            entry.status = state if isinstance(state, str) else None
    for series in diag.series:
        entry = now.get(series.tags.get(schema.STATION_TAG, ""))
        if entry is None or not series.values:
            continue
        row = series.rows()[0]
        entry.diagnostics_ns = ts if isinstance(ts := row.pop("time"), int) else None
        entry.diagnostics = {
            k: float(v)
            for k, v in sorted(row.items())
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    for series in seqs.series:
        entry = now.get(series.tags.get(schema.STATION_TAG, ""))
        times = [ts for row in series.values if isinstance(ts := row[0], int)]
        steps = [a - b for a, b in itertools.pairwise(times) if a > b]
        if entry is not None and steps:
            entry.interval_s = statistics.median(steps) / NS
    return now


class DayCache:
    """Figures of finished days by (station, day), each kept for ``DAY_CACHE_TTL_S``."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], tuple[float, DayFigures]] = {}
        self.rp_checked_s = -math.inf  # when SHOW RETENTION POLICIES was last asked
        self.has_rp = False  # the database has the quarantine retention policy

    def get(self, station_id: str, day_ns: int) -> DayFigures | None:
        """Return the cached figures, or None when absent or too old."""
        held = self._held.get((station_id, day_ns))
        if held is None or time.monotonic() - held[0] > DAY_CACHE_TTL_S:
            return None
        return held[1]

    def put(self, station_id: str, figures: DayFigures) -> None:
        """Keep the figures of a finished day."""
        if len(self._held) >= DAY_CACHE_MAX:
            self._held.clear()  # simplest bound: start again; a refill costs one request
        self._held[(station_id, figures.day_ns)] = (time.monotonic(), figures)


async def read_health(
    reader: InfluxReader,
    registry: StationRegistry,
    station_ids: Sequence[str],
    days: int,
    cache: DayCache,
    *,
    one_station: bool,
    now_ns: int | None = None,
) -> HealthFigures:
    """Return the figures of the last ``days`` UTC days (today included) of some stations."""
    end_ns = time.time_ns() if now_ns is None else now_ns
    today = day_start(end_ns)
    start_ns = today - (days - 1) * DAY_NS
    finished = range(start_ns, today, DAY_NS)
    cached = {
        s: {d: hit for d in finished if (hit := cache.get(s, d)) is not None} for s in station_ids
    }
    first_missing = min(
        (d for s in station_ids for d in [*finished, today] if d not in cached[s]), default=today
    )
    ids: list[str] | None = list(station_ids) if one_station else None
    parameters = sorted({p for s in station_ids if (st := registry.get(s)) for p in st.parameters})
    if time.monotonic() - cache.rp_checked_s > DAY_CACHE_TTL_S:
        (policies,) = await reader.query([InfluxQL("SHOW RETENTION POLICIES")])
        cache.has_rp = any(
            row and row[0] == schema.QUARANTINE_RP for s in policies.series for row in s.values
        )
        cache.rp_checked_s = time.monotonic()
    day_statements, pairs = _day_statements(
        ids, parameters, first_missing, end_ns, with_rp=cache.has_rp
    )
    now_statements = _now_statements(ids)
    # The newest rows the way /v1/stations finds them: the last hour first, then the rest.
    results, newest = await asyncio.gather(
        reader.query([*day_statements, *now_statements, latest_ingest_stats()]),
        read_rows(reader, registry, station_ids[0] if one_station else None),
    )
    fresh = _read_days(results[: len(day_statements)], pairs, station_ids, first_missing, end_ns)
    now = _read_now(results[len(day_statements) : -1], newest, station_ids)
    all_days: dict[str, list[DayFigures]] = {}
    for s in station_ids:
        for figures in fresh[s]:
            if figures.day_ns < today:
                cache.put(s, figures)
        all_days[s] = [cached[s][d] for d in finished if d < first_missing] + fresh[s]
    ingesters = {
        series.tags.get("ingester", ""): series.rows()[0]
        for series in results[-1].series
        if series.values
    }
    return HealthFigures(start_ns, end_ns, all_days, now, ingesters)
