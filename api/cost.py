"""What a series request would cost InfluxDB, judged before any of its real statements run.

The 100,000-point rule (api.series) bounds the answer by the *requested* range and is checked
before any query at all (RELIABILITY S9). This module then bounds the *work* (issue 8 part 6):

1. **Clip the range to where the station can have data.** Its data span (oldest and newest
   reading) is read with two ``LIMIT 1`` statements and kept ``SPAN_TTL_S`` per station. The
   statements then cover ``[max(start, min(first, now - backfill horizon)),
   min(end, max(last + 1 ns, now + future tolerance)))``: the ingester refuses readings older
   than the backfill horizon or further ahead than the future tolerance (CONTRACT §4), so no
   reading stored after the span was read can fall outside it, and a cached span never hides
   data. A ``1d`` series over 1900-2200 thus groups the days the station has, not 110,000.
   An empty clipped range is answered without any statement.
2. **Count the work.** Values scanned = readings in the clipped range x parameters read (one
   per aggregated stored parameter, plus every input of the derived ones, read raw). The
   readings are bounded first by one per second (as the raw rule); only when that bound
   exceeds the budget are they counted with one ``count()`` of one parameter over the clipped
   range (a single field: about half the cost of aggregating that one parameter). More than
   ``api_max_scan_values`` is refused with 400 saying how to narrow; so is a raw series of more
   than 100,000 readings or derived parameters over more than ``DERIVED_MAX_READINGS``
   readings, before their rows are fetched.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Final

from api.influx import InfluxReader, StatementResult
from api.queries import count_values, data_edge
from api.rollups import RollupSource
from api.series import DERIVED_MAX_READINGS, MAX_POINTS, NS, SeriesPlan, SeriesRequestError
from sensors.models import format_ts
from sensors.settings import Settings

SPAN_TTL_S: Final = 30.0  # a station's data span is re-read after this
MAX_SPANS: Final = 10_000  # cached spans (one per registered station in practice)


@dataclass(frozen=True, slots=True)
class DataSpan:
    """The oldest and newest reading times of a station (None: no reading yet)."""

    first_ns: int | None
    last_ns: int | None


def _edge(result: StatementResult) -> int | None:
    for series in result.series:
        for row in series.values:
            ts = row[series.columns.index("time")] if "time" in series.columns else None
            if isinstance(ts, int) and not isinstance(ts, bool):
                return ts
    return None


class SpanCache:
    """Each station's data span, read from InfluxDB at most once per ``SPAN_TTL_S``."""

    def __init__(self, ttl_s: float = SPAN_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._spans: dict[str, tuple[float, DataSpan]] = {}

    async def get(self, reader: InfluxReader, station_id: str) -> DataSpan:
        """Return the station's data span (cached)."""
        now = time.monotonic()
        cached = self._spans.get(station_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        first, last = await reader.query(
            [data_edge(station_id, newest=False), data_edge(station_id, newest=True)]
        )
        span = DataSpan(_edge(first), _edge(last))
        if len(self._spans) >= MAX_SPANS:
            self._spans.clear()
        self._spans[station_id] = (now, span)
        return span


def clip(plan: SeriesPlan, span: DataSpan, settings: Settings, now_ns: int) -> SeriesPlan:
    """Return the plan with its statements' bounds clipped to where data can be (see 1.)."""
    horizon_ns = now_ns - int(settings.backfill_horizon_days * 86400 * NS)
    ahead_ns = now_ns + int(settings.future_tolerance_s * NS)
    lowest = horizon_ns if span.first_ns is None else min(span.first_ns, horizon_ns)
    highest = ahead_ns if span.last_ns is None else max(span.last_ns + 1, ahead_ns)
    start = max(plan.start_ns, lowest)
    end = min(plan.end_ns, highest)
    if end <= start:
        start = end = plan.start_ns
    return dataclasses.replace(plan, query_start_ns=start, query_end_ns=end)


def values_per_reading(plan: SeriesPlan) -> int:
    """Return how many stored values of each reading the plan's statements read."""
    if plan.interval == "raw":
        return len(set(plan.stored) | set(plan.derived_inputs))
    return len(plan.stored) + len(plan.derived_inputs)


def count_parameter(plan: SeriesPlan) -> str:
    """Return the parameter whose values are counted as the readings of the range."""
    return (*plan.stored, *plan.derived_inputs)[0]


def _narrow(plan: SeriesPlan, span: DataSpan) -> str:
    if span.first_ns is None or span.last_ns is None:
        return "narrow start/end"
    return (
        f"narrow start/end (station {plan.station_id} has readings from "
        f"{format_ts(span.first_ns)} to {format_ts(span.last_ns)})"
    )


def judge(plan: SeriesPlan, readings: int, span: DataSpan, budget: int) -> None:
    """Raise SeriesRequestError when ``readings`` in the clipped range make the plan too costly."""
    per_reading = values_per_reading(plan)
    narrow = _narrow(plan, span)
    if plan.interval == "raw" and readings > MAX_POINTS:
        raise SeriesRequestError(
            f"this range holds about {readings:,} readings, more than {MAX_POINTS:,}: {narrow}, "
            "or choose an aggregated interval such as 1m"
        )
    if plan.derived and readings > DERIVED_MAX_READINGS:
        raise SeriesRequestError(
            f"{', '.join(plan.derived)} are computed from every reading, and this range holds "
            f"about {readings:,}, more than {DERIVED_MAX_READINGS:,}: {narrow}, or ask for "
            "stored parameters only"
        )
    if readings * per_reading > budget:
        raise SeriesRequestError(
            f"this request would scan about {readings * per_reading:,} stored values "
            f"({readings:,} readings x {per_reading} parameters), more than {budget:,} "
            f"(MELTEMI_API_MAX_SCAN_VALUES): {narrow}, ask for fewer parameters, or split "
            "the range into several requests"
        )


async def bound_plan(
    plan: SeriesPlan,
    reader: InfluxReader,
    spans: SpanCache,
    settings: Settings,
    now_ns: int,
    rollups: RollupSource | None = None,
) -> SeriesPlan:
    """Return the plan clipped to the station's data, or raise SeriesRequestError (400).

    With ``rollups``, the windows they answer are set aside first (api.rollups): only the
    rest is read raw, and only the rest is counted.
    """
    span = await spans.get(reader, plan.station_id)
    clipped = clip(plan, span, settings, now_ns)
    if rollups is not None:
        clipped = await rollups.assign(clipped, reader, now_ns)
    start, end = clipped.query_window
    if end <= start:
        return clipped
    upper = math.ceil((end - start) / NS)  # at most one reading per second (api.series)
    per_reading = values_per_reading(clipped)
    within = upper * per_reading <= settings.api_max_scan_values and (
        not clipped.derived or upper <= DERIVED_MAX_READINGS
    )
    if within:
        return clipped
    judge(clipped, await count_readings(reader, clipped), span, settings.api_max_scan_values)
    return clipped


async def count_readings(reader: InfluxReader, plan: SeriesPlan) -> int:
    """Return how many readings the plan's (clipped) query window holds: one ``count()``."""
    start, end = plan.query_window
    if end <= start:
        return 0
    (result,) = await reader.query(
        [count_values(plan.station_id, count_parameter(plan), start_ns=start, end_ns=end)]
    )
    counted = 0
    for series in result.series:
        for row in series.rows():
            value = row.get("count")
            if isinstance(value, int) and not isinstance(value, bool):
                counted += value
    return counted


async def bound_export(
    plans: list[SeriesPlan],
    reader: InfluxReader,
    spans: SpanCache,
    settings: Settings,
    now_ns: int,
) -> list[SeriesPlan]:
    """Return the plans of an export clipped to each station's data, or raise (400).

    An export has no point limit (it is streamed, api.export): it is judged by its work
    alone, the stored values it reads over all its stations, counted before anything runs.
    """
    clipped = []
    total = 0
    for plan in plans:
        span = await spans.get(reader, plan.station_id)
        bounded = clip(plan, span, settings, now_ns)
        clipped.append(bounded)
        total += await count_readings(reader, bounded) * values_per_reading(bounded)
    if total > settings.api_max_scan_values:
        raise SeriesRequestError(
            f"this export would read about {total:,} stored values, more than "
            f"{settings.api_max_scan_values:,} (MELTEMI_API_MAX_SCAN_VALUES): narrow start/end, "
            "ask for fewer parameters or stations, or split it into several exports"
        )
    return clipped
