"""Aggregated series from the rollups Meltemi keeps (sensors.rollups, meltemi.rollup).

When a plan may use them (``RollupSource.assign``):
- the interval is ``1h``, ``3h``, ``6h`` or ``1d`` (a ``1d`` with a zone whose midnights fall
  on whole UTC hours, as every European zone's do);
- ``meltemi rollup`` completed a pass less than ``api_rollup_stale_s`` ago (its
  ``rollup_state`` point, read at most every ``STATE_TTL_S``), and the API's live feed has
  been subscribed without a gap since the last deep pass started;
- no hour of the windows received a reading (seen on the live feed, ``LateArrivals``) after
  the pass that covers it started: from the first such hour's window on, the range is raw;
- the windows lie after ``from_ns`` (rollups are kept from there) and before the last pass,
  cut at window boundaries: windows ``[low, split)`` come from rollups, the rest of the range
  from raw readings exactly as before (api.series ``query_window``). The range's start must be
  a window boundary, or the range clipped to the station's data (nothing before it);
  otherwise its first, partial window (the "head") is read raw too.

One statement reads every parameter's fields (``sum`` of counts, sums and vector sums, ``min``
of minima, ``max`` of maxima per window, ``GROUP BY time()`` with the plan's zone), instead
of one statement per parameter over every reading. Means are sum / count; a direction's mean
is the direction of the summed unit vectors (as api.aggregate's vector mean).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Final

from api.aggregate import local_midnights, vector_mean_deg
from api.influx import InfluxReader, StatementResult
from api.influxql import (
    DURATIONS,
    InfluxQL,
    quote_identifier,
    quote_string,
    time_literal,
    tz_clause,
)
from api.live import LiveFeed
from api.series import INTERVAL_NS, NS, SeriesPlan
from api.series_table import Windows
from sensors import schema
from sensors.catalog import Aggregation
from sensors.models import parse_ts_ns
from sensors.outbound import LatestEntry
from sensors.rollups import (
    HOUR_NS,
    ROLLED,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_STATE,
    field,
    is_circular,
)

ROLLUP_INTERVALS: Final = frozenset({"1h", "3h", "6h", "1d"})
STATE_TTL_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class RollupState:
    """The last completed pass of ``meltemi rollup``: when it started, when the last pass over
    the whole horizon started, and since when rollups are kept."""

    pass_ns: int
    from_ns: int
    deep_ns: int


OLD_AGE_NS: Final = 3600 * NS  # a reading older than this on arrival waits for a deep pass
PRUNE_EVERY: Final = 1000  # arrivals between two prunings of the tracker


class LateArrivals:
    """When readings arrived, per station and hour, as the API's live feed saw them.

    A reading arriving at wall time A for hour H is in the rollups once a pass that started
    after A has looked at H: a recent pass (``rollup_recent_hours`` >= 2 h back) for a reading
    at most ``OLD_AGE_NS`` old on arrival, only a deep pass otherwise. Until then H is read raw.
    """

    def __init__(self) -> None:
        self._hours: dict[str, dict[int, list[int]]] = {}  # [old arrival, recent arrival]
        self._state: RollupState | None = None
        self._offers = 0

    def offer(self, entry: LatestEntry) -> None:
        """Note an accepted reading's arrival (a live feed listener, on the event loop)."""
        try:
            ts_ns = parse_ts_ns(entry.ts)
        except (ValueError, OverflowError):
            return
        now = time.time_ns()
        hour = ts_ns // HOUR_NS * HOUR_NS
        slot = self._hours.setdefault(entry.station, {}).setdefault(hour, [0, 0])
        k = 0 if now - ts_ns > OLD_AGE_NS else 1
        slot[k] = max(slot[k], now)
        self._offers += 1
        if self._offers % PRUNE_EVERY == 0 and self._state is not None:
            self.prune(self._state)

    def prune(self, state: RollupState) -> None:
        """Forget the arrivals every pass has seen."""
        self._state = state
        for station in list(self._hours):
            hours = self._hours[station]
            for hour in [
                h for h, (old, recent) in hours.items() if not _unseen(old, recent, state)
            ]:
                del hours[hour]
            if not hours:
                del self._hours[station]

    def first_unseen(self, station: str, low: int, split: int, state: RollupState) -> int | None:
        """Return the first hour of [low, split) with an arrival no pass has seen, or None."""
        hours = self._hours.get(station)
        if not hours:
            return None
        first = low // HOUR_NS * HOUR_NS
        unseen = [h for h, (o, r) in hours.items() if first <= h < split and _unseen(o, r, state)]
        return min(unseen) if unseen else None


def _unseen(old: int, recent: int, state: RollupState) -> bool:
    return bool(old and old >= state.deep_ns) or bool(recent and recent >= state.pass_ns)


def _boundaries(plan: SeriesPlan, start_ns: int, end_ns: int) -> list[int] | None:
    """Return the window starts from before ``start`` to after ``end`` (zone-aligned days), or
    None when they do not fall on whole hours."""
    zone = plan.window_tz
    if zone is None:
        return None  # fixed steps: computed arithmetically
    bounds = local_midnights(start_ns, end_ns + 2 * 86400 * NS, zone).tolist()
    return bounds if all(b % HOUR_NS == 0 for b in bounds) else []


def _align_down(plan: SeriesPlan, ts_ns: int, bounds: list[int] | None) -> int:
    if bounds is None:
        step = INTERVAL_NS[plan.interval]
        return ts_ns // step * step
    return max((b for b in bounds if b <= ts_ns), default=bounds[0])


def _align_up(plan: SeriesPlan, ts_ns: int, bounds: list[int] | None) -> int:
    down = _align_down(plan, ts_ns, bounds)
    if down == ts_ns:
        return ts_ns
    if bounds is None:
        return down + INTERVAL_NS[plan.interval]
    return min(b for b in bounds if b > ts_ns)


def rollup_window(
    plan: SeriesPlan,
    state: RollupState | None,
    now_ns: int,
    stale_s: float,
    late: LateArrivals | None = None,
) -> tuple[int, int] | None:
    """Return the windows ``[low, split)`` rollups can answer for the plan, or None."""
    if plan.interval not in ROLLUP_INTERVALS or state is None:
        return None
    if any(p not in ROLLED for p in plan.parameters):
        return None  # a derived parameter of hourly or daily means: all raw
    if now_ns - state.pass_ns > stale_s * NS:
        return None
    start, end = plan.clipped_window
    if end <= start:
        return None
    bounds = _boundaries(plan, start, end)
    if bounds is not None and not bounds:
        return None  # a zone whose midnights are not on whole hours
    low = _align_down(plan, start, bounds)
    if low != start and start == plan.start_ns:
        # The range starts inside a window: that partial window is read raw (the "head",
        # api.series_run), rollups from the next window on.
        low = _align_up(plan, start, bounds)
    split = _align_down(plan, min(end, state.pass_ns), bounds)
    if low < state.from_ns or split <= low:
        return None
    unseen = late.first_unseen(plan.station_id, low, split, state) if late else None
    if unseen is not None:  # from the window of the first hour no pass has seen: raw
        split = _align_down(plan, unseen, bounds)
        if split <= low:
            return None
    return low, split


def rollup_statement(plan: SeriesPlan, low: int, split: int) -> InfluxQL:
    """Return the one statement reading every parameter's windows from the rollups."""
    value_set = "all" if plan.include_suspect else "good"
    daily_points = plan.interval == "1d" and plan.window_tz is None
    source = quote_identifier(ROLLUP_1D if daily_points else ROLLUP_1H)
    # Hours from hourly points and UTC days from daily points are the points themselves.
    plain = plan.interval == "1h" or daily_points
    columns: list[str] = []
    for parameter in plan.parameters:
        wanted: set[str] = {"count"}
        for agg in plan.aggs[parameter]:
            if agg == "mean":
                wanted |= {"sin", "cos"} if is_circular(parameter) else {"sum"}
            elif agg != "count":
                wanted.add(agg)
        for stat in sorted(wanted):
            name = quote_identifier(field(parameter, value_set, stat))
            if plain:
                columns.append(name)
            else:
                function = {"min": "min", "max": "max"}.get(stat, "sum")
                columns.append(f"{function}({name}) AS {name}")
    group = "" if plain else f" GROUP BY time({DURATIONS[plan.interval]}) fill(none)"
    if plan.window_tz is not None:
        group += f" {tz_clause(plan.window_tz)}"
    return InfluxQL(
        f"SELECT {', '.join(columns)} FROM {source} "
        f"WHERE {quote_identifier(schema.STATION_TAG)} = {quote_string(plan.station_id)} "
        f"AND time >= {time_literal(low)} AND time < {time_literal(split)}{group}"
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def rollup_windows(plan: SeriesPlan, result: StatementResult) -> dict[str, Windows]:
    """Return each parameter's windows from the rollup statement's result."""
    value_set = "all" if plan.include_suspect else "good"
    out: dict[str, Windows] = {p: {} for p in plan.parameters}
    for series in result.series:
        at = {name: k for k, name in enumerate(series.columns)}
        for row in series.values:
            ts = row[at["time"]]
            if not isinstance(ts, int):
                continue
            for parameter in plan.parameters:
                cells = {
                    stat: _number(row[at[name]]) if name in at else None
                    for stat in ("count", "sum", "min", "max", "sin", "cos")
                    if (name := field(parameter, value_set, stat))
                }
                count = cells["count"]
                if not count:
                    continue
                values: dict[Aggregation, float | int | None] = {}
                for agg in plan.aggs[parameter]:
                    if agg == "count":
                        values[agg] = int(count)
                    elif agg == "mean" and is_circular(parameter):
                        sin, cos = cells["sin"], cells["cos"]
                        values[agg] = vector_mean_deg(
                            None if sin is None else sin / count,
                            None if cos is None else cos / count,
                        )
                    elif agg == "mean":
                        total = cells["sum"]
                        values[agg] = None if total is None else total / count
                    else:
                        values[agg] = cells[agg]
                out[parameter][ts] = values
    return out


class RollupSource:
    """The last ``rollup_state`` of InfluxDB (read at most every ``STATE_TTL_S``), and the late
    arrivals the live feed saw since.

    Rollups are read only while the live feed is subscribed and has missed nothing since the
    last deep pass started (``LiveFeed.last_gap_ns``): otherwise an arrival the tracker did not
    see could make a rolled-up window stale.
    """

    def __init__(self, stale_s: float, feed: LiveFeed) -> None:
        self.stale_s = stale_s
        self.feed = feed
        self.late = LateArrivals()
        feed.listeners.append(self.late.offer)
        self._state: tuple[float, RollupState | None] | None = None

    async def state(self, reader: InfluxReader) -> RollupState | None:
        """Return the last pass (cached), None when there is none."""
        now = time.monotonic()
        if self._state is not None and now - self._state[0] < STATE_TTL_S:
            return self._state[1]
        names = ("pass_ns", "from_ns", "deep_ns")
        columns = ", ".join(f"last({quote_identifier(n)}) AS {quote_identifier(n)}" for n in names)
        (result,) = await reader.query(
            [InfluxQL(f"SELECT {columns} FROM {quote_identifier(ROLLUP_STATE)}")]
        )
        state = None
        for series in result.series:
            for row in series.values:
                cells = [row[series.columns.index(n)] for n in names]
                if all(isinstance(c, int) and not isinstance(c, bool) for c in cells):
                    pass_ns, from_ns, deep_ns = (int(c) for c in cells)  # type: ignore[arg-type]
                    state = RollupState(pass_ns, from_ns, deep_ns)
        if state is not None:
            self.late.prune(state)
        self._state = (now, state)
        return state

    async def assign(self, plan: SeriesPlan, reader: InfluxReader, now_ns: int) -> SeriesPlan:
        """Return the plan with the part rollups answer set (``rollup_window``)."""
        if plan.interval not in ROLLUP_INTERVALS or not self.feed.connected:
            return plan
        state = await self.state(reader)
        if state is None or self.feed.last_gap_ns > state.deep_ns:
            return plan  # the feed may have missed arrivals since the last deep pass
        window = rollup_window(plan, state, now_ns, self.stale_s, self.late)
        return plan if window is None else replace(plan, rollup_window=window)
