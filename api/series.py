"""``/v1/stations/{id}/series``: turning query parameters into a checked plan (pure logic).

Every query parameter is validated here against the catalogue (sensors.catalog and
sensors.derived) and the station's registry entry, before any query is built (CONTRACT §5).
A mistake raises ``SeriesRequestError`` with a sentence that says what to send instead.

Size rule (CONTRACT §5: more than 100,000 points is refused, and RELIABILITY S9: before any
query is sent). A point is one entry of ``points``: one window, or one reading for ``raw``.
- Aggregated intervals: the number of interval-aligned windows the range touches (for ``1d``
  with a zone, the local days it touches).
- ``raw``: the range in seconds, i.e. at most one reading per second per station. Stations
  report every 10-60 s, so this over-estimates; a station that reported faster would be cut
  by the query's ``LIMIT 100001`` backstop, which is refused the same way, never truncated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from api.influxql import InfluxQL
from api.queries import aggregate_series, circular_series, raw_readings
from sensors.catalog import AGGREGATIONS, CATALOG, Aggregation
from sensors.derived import DERIVED
from sensors.models import format_ts
from sensors.registry import DEFAULT_INTERVAL_S, Station

Interval = Literal["raw", "1m", "5m", "10m", "15m", "30m", "1h", "3h", "6h", "1d"]
INTERVALS: Final[tuple[Interval, ...]] = get_args(Interval)
OutputFormat = str  # "json" or "csv"; the export adds "ndjson"

NS: Final = 1_000_000_000
INTERVAL_NS: Final[dict[str, int]] = {
    "1m": 60 * NS,
    "5m": 300 * NS,
    "10m": 600 * NS,
    "15m": 900 * NS,
    "30m": 1800 * NS,
    "1h": 3600 * NS,
    "3h": 3 * 3600 * NS,
    "6h": 6 * 3600 * NS,
    "1d": 86400 * NS,
}
MAX_POINTS: Final = 100_000  # CONTRACT §5: larger answers are refused with 400
RAW_MAX_READINGS_PER_S: Final = 1  # the raw size bound assumes at most 1 reading/s (see above)
DEFAULT_RANGE_NS: Final = 24 * 3600 * NS  # CONTRACT §5: the last 24 hours
RAW_DEFAULT_UP_TO_NS: Final = 24 * 3600 * NS  # CONTRACT §5: raw up to 24 h, 1h beyond
# Derived parameters are aggregated from every reading of the range (CONTRACT §4), fetched raw;
# this many readings at most (about 35 days at 10 s), so that one request stays bounded.
DERIVED_MAX_READINGS: Final = 300_000
MAX_PARAMETERS: Final = 32  # the catalogue has 16 ids; more than twice that is not a request
# InfluxDB's time range is 1677-2262; the API serves a comfortable subset of it.
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2200

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_ZONE_NAME: Final = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+){0,2}")


class SeriesRequestError(ValueError):
    """A query parameter is invalid; the message says which and what to send (400)."""


class SeriesQuery(BaseModel):
    """The query string of a series request, before it is checked against the catalogue.

    This one model travels whole from the route (``api.routes.series``, FastAPI fills it from
    the query string) to ``plan_series``, which turns it into a ``SeriesPlan``: adding a query
    parameter is one field here and its use in ``plan_series``. The network route and the
    export extend it (``api.network``, ``api.export``).
    """

    model_config = ConfigDict(frozen=True)

    parameters: str | None = Field(
        None, max_length=2000, description="comma-separated ids (default: all the station has)"
    )
    start: str | None = Field(None, max_length=64, description="RFC 3339 (default: end - 24 h)")
    end: str | None = Field(None, max_length=64, description="RFC 3339, exclusive (default: now)")
    interval: str | None = Field(
        None,
        max_length=16,
        description="raw, 1m, 5m, 10m, 15m, 30m, 1h, 3h, 6h, 1d (default: raw up to 24 h, else 1h)",
    )
    agg: str | None = Field(
        None,
        max_length=64,
        description="comma-separated from mean, min, max, sum, count (default: per parameter)",
    )
    tz: str = Field(
        "UTC",
        max_length=64,
        description="IANA zone of the 1d windows' midnights (other intervals are UTC-aligned)",
    )
    include_suspect: bool = Field(False, description="aggregate suspect values too")
    format: str = Field("json", max_length=8, description="json or csv")


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """A validated series request: what to query, over which windows, and how to answer."""

    station_id: str
    parameters: tuple[str, ...]  # in the order asked for; stored and derived
    aggs: dict[str, tuple[Aggregation, ...]]  # per parameter; empty for raw
    interval: Interval
    start_ns: int
    end_ns: int
    tz: str
    include_suspect: bool
    output: OutputFormat
    estimated_points: int
    # The time bounds the statements use: the range clipped to where the station can have
    # data (api.cost); None until then, meaning start_ns/end_ns. Equal bounds: nothing to read.
    query_start_ns: int | None = None
    query_end_ns: int | None = None
    # The part [low, split) answered from rollups (api.rollups), None: none. The raw
    # statements then cover only what follows it (``query_window``).
    rollup_window: tuple[int, int] | None = None
    # Seconds between the station's readings: the completeness of windows (api.series_run).
    interval_s: float = DEFAULT_INTERVAL_S

    @property
    def clipped_window(self) -> tuple[int, int]:
        """Return the range clipped to where the station can have data (api.cost)."""
        start = self.start_ns if self.query_start_ns is None else self.query_start_ns
        end = self.end_ns if self.query_end_ns is None else self.query_end_ns
        return start, end

    @property
    def query_window(self) -> tuple[int, int]:
        """Return the raw statements' time bounds: the clipped range, after the rollups'."""
        start, end = self.clipped_window
        if self.rollup_window is not None:
            start = max(start, self.rollup_window[1])
        return start, max(start, end)

    @property
    def stored(self) -> tuple[str, ...]:
        """Return the requested parameters that are stored (catalogue parameters)."""
        return tuple(p for p in self.parameters if p in CATALOG)

    @property
    def derived(self) -> tuple[str, ...]:
        """Return the requested derived parameters."""
        return tuple(p for p in self.parameters if p in DERIVED)

    @property
    def derived_inputs(self) -> tuple[str, ...]:
        """Return the stored parameters the derived ones are computed from."""
        needed = {name for p in self.derived for name in DERIVED[p].inputs}
        return tuple(sorted(needed))

    @property
    def window_tz(self) -> str | None:
        """Return the zone windows are aligned to: only ``1d`` follows ``tz`` (CONTRACT §5)."""
        return self.tz if self.interval == "1d" and self.tz != "UTC" else None


def _shown(value: str) -> str:
    """Return client text fit to quote in an error: short, with control characters escaped."""
    short = value if len(value) <= 40 else value[:40] + "…"
    return repr(short)


def parse_rfc3339_ns(name: str, value: str) -> int:
    """Return an RFC 3339 date-time with an offset as epoch nanoseconds (400 otherwise)."""
    text = value.strip()
    # An unencoded '+' in a URL arrives as a space: "…T00:00:00 03:00" means "+03:00".
    if re.fullmatch(r".*\d \d{2}:\d{2}", text):
        text = text[:-6] + "+" + text[-5:]
    match = _RFC3339.fullmatch(text)
    hint = "an RFC 3339 date-time with an offset, e.g. 2026-11-22T15:00:00Z (send '+' as %2B)"
    if match is None:
        raise SeriesRequestError(f"{name}: {_shown(value)} is not {hint}")
    year, month, day, hour, minute, second = (int(match.group(k)) for k in range(1, 7))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise SeriesRequestError(f"{name}: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    fraction, offset = match.group(7) or "", match.group(8).upper()
    try:
        parsed = datetime.fromisoformat(
            f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
            + ("+00:00" if offset == "Z" else offset)
        )
    except ValueError as exc:
        raise SeriesRequestError(f"{name}: {_shown(value)} is not {hint}") from exc
    seconds = int((parsed - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * NS + int(fraction.ljust(9, "0") or 0)


def parse_zone(value: str) -> str:
    """Return a valid IANA zone name (checked with zoneinfo), or raise SeriesRequestError."""
    if value.upper() == "UTC":
        return "UTC"
    if len(value) > 64 or _ZONE_NAME.fullmatch(value) is None:
        raise SeriesRequestError(f"tz: {_shown(value)} is not an IANA zone such as Europe/Athens")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise SeriesRequestError(
            f"tz: {_shown(value)} is not an IANA zone such as Europe/Athens"
        ) from exc
    return value


def _split(name: str, value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise SeriesRequestError(f"{name}: give comma-separated names without empty entries")
    return list(dict.fromkeys(parts))  # repeated names count once


def resolve_parameters(station: Station, value: str | None) -> tuple[str, ...]:
    """Return the parameters asked for, each known and measured (or derivable) at the station."""
    measured = set(station.parameters)
    derivable = [d for d, spec in DERIVED.items() if set(spec.inputs) <= measured]
    # Hourly and daily indices (EAQI levels, WHO ratios) only when asked for: they need >= 1h/1d.
    if value is None:
        return (
            *station.parameters,
            *(d for d in derivable if not (DERIVED[d].hourly or DERIVED[d].daily)),
        )
    names = _split("parameters", value)
    if len(names) > MAX_PARAMETERS:
        raise SeriesRequestError(f"parameters: at most {MAX_PARAMETERS} at a time")
    offered = ", ".join((*station.parameters, *derivable))
    for name in names:
        if name not in CATALOG and name not in DERIVED:
            raise SeriesRequestError(
                f"parameters: {_shown(name)} is not a parameter; see /v1/parameters "
                f"(this station offers {offered})"
            )
        if name in CATALOG and name not in measured:
            raise SeriesRequestError(
                f"parameters: station {station.id} does not measure {name}; it offers {offered}"
            )
        if name in DERIVED and name not in derivable:
            missing = ", ".join(i for i in DERIVED[name].inputs if i not in measured)
            raise SeriesRequestError(
                f"parameters: {name} needs {missing}, which station {station.id} does not measure"
            )
    return tuple(names)


def resolve_aggs(
    parameters: tuple[str, ...], value: str | None, interval: Interval
) -> dict[str, tuple[Aggregation, ...]]:
    """Return each parameter's aggregations: ``agg`` for all, or the parameter's own default."""
    if interval == "raw":
        if value is not None:
            raise SeriesRequestError(
                "agg: raw readings are not aggregated; drop agg or choose an interval such as 1h"
            )
        return {}
    if value is None:
        return {
            p: (CATALOG[p].default_agg if p in CATALOG else DERIVED[p].default_agg,)
            for p in parameters
        }
    chosen: list[Aggregation] = []
    for name in _split("agg", value):
        if name not in AGGREGATIONS:
            raise SeriesRequestError(f"agg: {_shown(name)} is not one of {', '.join(AGGREGATIONS)}")
        chosen += [agg for agg in AGGREGATIONS if agg == name]
    circular = [p for p in parameters if p in CATALOG and CATALOG[p].circular]
    if "sum" in chosen and circular:
        # A sum of compass directions has no physical meaning (350° + 20° is not 370° of wind).
        raise SeriesRequestError(
            f"agg: sum is not defined for {', '.join(circular)} (a direction); "
            "use mean (the vector mean), min, max or count, or ask for it separately"
        )
    return dict.fromkeys(parameters, tuple(chosen))


def estimate_points(interval: Interval, start_ns: int, end_ns: int, tz: str | None) -> int:
    """Return an upper bound of the points a request can return (see the module's size rule)."""
    if interval == "raw":
        return math.ceil((end_ns - start_ns) / NS * RAW_MAX_READINGS_PER_S)
    step = INTERVAL_NS[interval]
    if tz is not None:  # local days are 23-25 h long; count generously
        return math.ceil((end_ns - start_ns) / (23 * 3600 * NS)) + 1
    return (end_ns - 1) // step - start_ns // step + 1


def _refusal(plan_points: int, interval: Interval, start_ns: int, end_ns: int) -> str:
    hours = (end_ns - start_ns) / (3600 * NS)
    if interval == "raw":
        most = MAX_POINTS / RAW_MAX_READINGS_PER_S / 3600
        return (
            f"interval=raw over {hours:.1f} h could return up to {plan_points:,} points "
            f"(raw is bounded at {RAW_MAX_READINGS_PER_S} reading/s), more than {MAX_POINTS:,}: "
            f"narrow start/end to at most {most:.0f} h, or choose an aggregated interval "
            "such as 1m or 1h"
        )
    coarser = [i for i in INTERVALS[1:] if INTERVAL_NS[i] > INTERVAL_NS[interval]]
    return (
        f"interval={interval} over {hours:.1f} h gives {plan_points:,} windows, more than "
        f"{MAX_POINTS:,}: narrow start/end, or choose a coarser interval"
        + (f" ({', '.join(coarser)})" if coarser else "")
    )


def plan_series(
    station: Station,
    query: SeriesQuery,
    *,
    now_ns: int,
    formats: tuple[str, ...] = ("json", "csv"),
    max_points: int | None = MAX_POINTS,
) -> SeriesPlan:
    """Return the checked plan of a series request, or raise SeriesRequestError (400).

    ``formats`` are the output formats the caller offers; ``max_points`` is the answer size
    rule (None for a streamed export, which is bounded by its cost instead, api.cost).
    """
    output = query.format
    if output not in formats:
        raise SeriesRequestError(f"format: {_shown(output)} is not {' or '.join(formats)}")
    zone = parse_zone(query.tz)
    end_ns = parse_rfc3339_ns("end", query.end) if query.end is not None else now_ns
    start_ns = (
        parse_rfc3339_ns("start", query.start)
        if query.start is not None
        else end_ns - DEFAULT_RANGE_NS
    )
    if end_ns <= start_ns:
        raise SeriesRequestError("start must be before end (end is exclusive)")
    interval = query.interval
    if interval is None:
        chosen: Interval = "raw" if end_ns - start_ns <= RAW_DEFAULT_UP_TO_NS else "1h"
    elif interval in INTERVALS:
        chosen = next(i for i in INTERVALS if i == interval)
    else:
        raise SeriesRequestError(
            f"interval: {_shown(interval)} is not one of {', '.join(INTERVALS)}"
        )
    names = resolve_parameters(station, query.parameters)
    aggs = resolve_aggs(names, query.agg, chosen)
    window_tz = zone if chosen == "1d" and zone != "UTC" else None
    points = estimate_points(chosen, start_ns, end_ns, window_tz)
    if max_points is not None and points > max_points:
        raise SeriesRequestError(_refusal(points, chosen, start_ns, end_ns))
    return SeriesPlan(
        station_id=station.id,
        parameters=names,
        aggs=aggs,
        interval=chosen,
        start_ns=start_ns,
        end_ns=end_ns,
        tz=zone,
        include_suspect=query.include_suspect,
        output=output,
        estimated_points=points,
        interval_s=station.reporting_interval_s,
    )


Q = TypeVar("Q", bound=SeriesQuery)


def live_edge(end: str | None, now_ns: int, ttl_s: float) -> int | None:
    """Return the instant a series ending "now" is served as of, or None for a fixed range.

    A request whose end is absent or within the cache TTL of now (the dashboard asks for the
    last 24 h / 7 d / 30 d ending at its clock's now) is answered as of the last TTL boundary,
    with start moved by the same amount: every such request in one TTL has the same bounds,
    hence the same statements, and shares one cached answer (api.influx). The answer's
    ``start``/``end`` say which range it covers.
    """
    if ttl_s <= 0:
        return None
    ttl_ns = int(ttl_s * NS)
    if end is not None:
        try:
            end_ns = parse_rfc3339_ns("end", end)
        except SeriesRequestError:
            return None  # plan_series says what is wrong with it
        if abs(end_ns - now_ns) > ttl_ns:
            return None
    return now_ns - now_ns % ttl_ns


def at_live_edge(query: Q, now_ns: int, ttl_s: float) -> tuple[Q, bool]:
    """Return the query moved to the live edge (see ``live_edge``) and whether it moved.

    A moved query's answer may be shared between callers (api.influx's cache).
    """
    edge = live_edge(query.end, now_ns, ttl_s)
    if edge is None:
        return query, False
    start = query.start
    if query.start is not None and query.end is not None:
        shift = parse_rfc3339_ns("end", query.end) - edge
        start_ns = parse_rfc3339_ns("start", query.start) - shift
        start = format_ts(start_ns) if start_ns > 0 else query.start
    return query.model_copy(update={"start": start, "end": format_ts(edge)}), True


def with_count(aggs: tuple[Aggregation, ...]) -> tuple[Aggregation, ...]:
    """Return the aggregations plus ``count`` (every window says how many readings it has)."""
    return aggs if "count" in aggs else (*aggs, "count")


def counting(plan: SeriesPlan) -> SeriesPlan:
    """Return the plan asking every parameter's count too (see ``with_count``)."""
    return replace(plan, aggs={p: with_count(aggs) for p, aggs in plan.aggs.items()})


def plan_statements(plan: SeriesPlan) -> tuple[list[InfluxQL], InfluxQL | None]:
    """Return the stored parameters' statements and the raw-readings statement, if any.

    For ``raw`` everything comes from one readings statement; otherwise one aggregate statement
    per stored parameter, plus the readings of the derived parameters' inputs. The statements
    cover the plan's query window (the range clipped to the station's data, api.cost); an
    empty window needs no statement at all.
    """
    start_ns, end_ns = plan.query_window
    if end_ns <= start_ns:
        return [], None
    window = {"start_ns": start_ns, "end_ns": end_ns}
    if plan.interval == "raw":
        wanted = list(dict.fromkeys((*plan.stored, *plan.derived_inputs)))
        return [], raw_readings(plan.station_id, wanted, limit=MAX_POINTS + 1, **window)
    statements = []
    for parameter in plan.stored:
        aggs = with_count(plan.aggs[parameter])  # counts: each window's completeness
        build = (
            circular_series if CATALOG[parameter].circular and "mean" in aggs else aggregate_series
        )
        statements.append(
            build(
                plan.station_id,
                parameter,
                aggs,
                interval=plan.interval,
                tz=plan.window_tz,
                include_suspect=plan.include_suspect,
                **window,
            )
        )
    readings = None
    if plan.derived:
        readings = raw_readings(
            plan.station_id, plan.derived_inputs, limit=DERIVED_MAX_READINGS + 1, **window
        )
    return statements, readings
