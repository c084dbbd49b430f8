"""Window aggregation in numpy: for derived parameters, which InfluxDB cannot compute (pure).

Windows match InfluxDB's ``GROUP BY time()`` exactly, so that stored and derived parameters
share their window labels: fixed intervals are aligned to the Unix epoch, and ``1d`` with a
zone starts at each local midnight (a DST day is 23 or 25 hours long). A window is labelled by
its start; windows without a value are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from sensors.catalog import Aggregation

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
AggValue = float | int | None

NS = 1_000_000_000
CALM_VECTOR = 1e-9  # unit-vector mean shorter than this: opposite winds cancel, no direction


def local_midnights(start_ns: int, end_ns: int, zone: str) -> IntArray:
    """Return, as epoch ns, the local midnight at or before ``start_ns`` and each one up to end."""
    tzinfo = ZoneInfo(zone)
    day = datetime.fromtimestamp(start_ns // NS, UTC).astimezone(tzinfo).date()
    bounds: list[int] = []
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tzinfo)
        bound = int(midnight.timestamp()) * NS
        if bound >= end_ns and bounds:
            break
        bounds.append(bound)
        day += timedelta(days=1)
    return np.asarray(bounds, dtype=np.int64)


def window_starts(
    ts_ns: IntArray, step_ns: int, zone: str | None, start_ns: int, end_ns: int
) -> IntArray:
    """Return the start of the window each timestamp falls in (InfluxDB's alignment)."""
    if zone is None:
        starts: IntArray = (ts_ns // step_ns) * step_ns
        return starts
    bounds = local_midnights(start_ns, end_ns, zone)
    index = np.searchsorted(bounds, ts_ns, side="right") - 1
    located: IntArray = bounds[np.clip(index, 0, len(bounds) - 1)]
    return located


def aggregate_windows(
    ts_ns: IntArray,
    values: FloatArray,
    aggs: Sequence[Aggregation],
    *,
    step_ns: int,
    zone: str | None,
    start_ns: int,
    end_ns: int,
) -> dict[int, dict[Aggregation, AggValue]]:
    """Return ``{window_start_ns: {agg: value}}`` over the finite values, for sorted ``ts_ns``."""
    keep = np.isfinite(values)
    ts, kept = ts_ns[keep], values[keep]
    if kept.size == 0:
        return {}
    windows = window_starts(ts, step_ns, zone, start_ns, end_ns)
    firsts = np.concatenate(([0], np.flatnonzero(np.diff(windows)) + 1))
    counts = np.diff(np.concatenate((firsts, [kept.size])))
    columns: dict[Aggregation, list[AggValue]] = {}
    for agg in aggs:
        if agg == "count":
            columns[agg] = [int(n) for n in counts]
        elif agg == "sum":
            columns[agg] = np.add.reduceat(kept, firsts).tolist()
        elif agg == "mean":
            columns[agg] = (np.add.reduceat(kept, firsts) / counts).tolist()
        elif agg == "min":
            columns[agg] = np.minimum.reduceat(kept, firsts).tolist()
        else:
            columns[agg] = np.maximum.reduceat(kept, firsts).tolist()
    labels = windows[firsts].tolist()
    return {
        int(label): {agg: column[k] for agg, column in columns.items()}
        for k, label in enumerate(labels)
    }


def vector_mean_deg(mean_sin: float | None, mean_cos: float | None) -> float | None:
    """Return the direction (0-360°) of the mean unit vector; None when it has no direction."""
    if mean_sin is None or mean_cos is None or math.hypot(mean_sin, mean_cos) < CALM_VECTOR:
        return None
    return math.degrees(math.atan2(mean_sin, mean_cos)) % 360.0
