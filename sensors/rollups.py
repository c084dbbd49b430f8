"""Rollups: hourly and daily aggregates of every parameter, kept by Meltemi itself (pure).

Portable across InfluxDB 1.x/2.x/3.x: no continuous query and no task, only ordinary points
written by ``meltemi rollup`` (meltemi.rollup) and read with plain InfluxQL by the API.

Layout (one point per station and window, tag ``station``, time = the window's start, UTC):

- measurement ``rollup_1h`` (hours) and ``rollup_1d`` (UTC days, combined from the hours);
- per parameter ``p`` (stored and derived) and value set ``s`` (``good``: values flagged good,
  the default of every series; ``all``: every stored value, for ``include_suspect``), fields
  ``{p}__{s}_count`` (integer), ``{p}__{s}_sum``, ``{p}__{s}_min``, ``{p}__{s}_max``; for a
  direction also ``{p}__{s}_sin`` and ``{p}__{s}_cos``, the sums of the unit vector, whose
  ratio gives the vector mean. A window with no value of a set has none of its fields.
- derived parameters defined per reading are computed from their inputs (good ones for
  ``good``), unrounded (as api.series_table's windows), then aggregated; those defined on
  hourly or daily means (EAQI levels, WHO ratios) are not rolled up.

Every field of a coarser window is a plain combination of the finer ones (sum of counts and
sums, min of minima, max of maxima), so a 3 h, 6 h, day or local-day window is read from the
hourly points with ``sum()/min()/max()`` and ``GROUP BY time()``; a count, minimum and
maximum from rollups are exactly the raw ones, and a sum or mean differs only by the order of
floating-point additions (relative 1e-12 and below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from sensors.catalog import CATALOG, PARAMETER_IDS
from sensors.derived import DERIVED, compute_derived

ROLLUP_1H: Final = "rollup_1h"
ROLLUP_1D: Final = "rollup_1d"
ROLLUP_STATE: Final = "rollup_state"  # one point per completed pass (meltemi.rollup)
HOUR_NS: Final = 3600 * 1_000_000_000
DAY_NS: Final = 24 * HOUR_NS
SETS: Final = ("good", "all")
STATS: Final = ("count", "sum", "min", "max")
VECTOR_STATS: Final = ("sin", "cos")
# Derived parameters defined per reading; those defined on hourly or daily means (EAQI levels,
# WHO ratios) are computed from raw readings by the API, never rolled up.
PER_READING_DERIVED: Final = tuple(
    spec.id for spec in DERIVED.values() if not spec.hourly and not spec.daily
)
ROLLED: Final = tuple(sorted(PARAMETER_IDS)) + PER_READING_DERIVED

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Fields = dict[str, float | int]


def field(parameter: str, value_set: str, stat: str) -> str:
    """Return the name of one rollup field, e.g. ``air_temperature__good_sum``."""
    return f"{parameter}__{value_set}_{stat}"


def is_circular(parameter: str) -> bool:
    """Return True for a direction (its mean is the vector mean)."""
    spec = CATALOG.get(parameter)
    return spec is not None and spec.circular


def stats_of(parameter: str) -> tuple[str, ...]:
    """Return the stats kept of a parameter."""
    return STATS + VECTOR_STATS if is_circular(parameter) else STATS


ALL_FIELDS: Final = frozenset(
    field(p, s, stat) for p in ROLLED for s in SETS for stat in stats_of(p)
)


def _windows(
    ts_ns: IntArray, values: FloatArray, step_ns: int, parameter: str, out: dict[int, Fields]
) -> None:
    """Add ``parameter|stat`` entries of each window with a finite value to ``out``."""
    keep = np.isfinite(values)
    ts, kept = ts_ns[keep], values[keep]
    if kept.size == 0:
        return
    windows = (ts // step_ns) * step_ns
    firsts = np.concatenate(([0], np.flatnonzero(np.diff(windows)) + 1))
    counts = np.diff(np.concatenate((firsts, [kept.size])))
    columns: dict[str, list[float] | list[int]] = {
        "count": [int(n) for n in counts],
        "sum": np.add.reduceat(kept, firsts).tolist(),
        "min": np.minimum.reduceat(kept, firsts).tolist(),
        "max": np.maximum.reduceat(kept, firsts).tolist(),
    }
    if is_circular(parameter):
        radians = np.radians(kept)
        columns["sin"] = np.add.reduceat(np.sin(radians), firsts).tolist()
        columns["cos"] = np.add.reduceat(np.cos(radians), firsts).tolist()
    for k, label in enumerate(windows[firsts].tolist()):
        row = out.setdefault(int(label), {})
        for stat, column in columns.items():
            row[parameter + "|" + stat] = column[k]


def hourly(
    ts_ns: IntArray,
    values: Mapping[str, FloatArray],
    good: Mapping[str, BoolArray],
) -> dict[int, Fields]:
    """Return ``{hour_start_ns: {field: value}}`` of readings sorted by time.

    ``values`` holds each stored parameter's values (NaN where absent), ``good`` where each
    is flagged good. Derived parameters are computed here from the inputs present.
    """
    out: dict[int, Fields] = {}
    for value_set in SETS:
        usable = {
            p: (column if value_set == "all" else np.where(good[p], column, np.nan))
            for p, column in values.items()
        }
        derived = {
            p: column for p, column in compute_derived(usable).items() if p in PER_READING_DERIVED
        }
        raw: dict[int, Fields] = {}
        for parameter, column in (*usable.items(), *derived.items()):
            _windows(ts_ns, np.asarray(column, dtype=np.float64), HOUR_NS, parameter, raw)
        for label, row in raw.items():
            target = out.setdefault(label, {})
            for key, value in row.items():
                parameter, stat = key.split("|")
                target[field(parameter, value_set, stat)] = value
    return out


def combine(rows: list[Fields]) -> Fields:
    """Return the fields of a window made of finer windows (counts and sums add up)."""
    out: Fields = {}
    for row in rows:
        for name, value in row.items():
            stat = name.rsplit("_", 1)[1]
            if name not in out:
                out[name] = value
            elif stat == "min":
                out[name] = min(out[name], value)
            elif stat == "max":
                out[name] = max(out[name], value)
            else:
                out[name] = out[name] + value
    return out


def daily(hours: Mapping[int, Fields]) -> dict[int, Fields]:
    """Return the UTC days of hourly windows."""
    days: dict[int, list[Fields]] = {}
    for label in sorted(hours):
        days.setdefault(label // DAY_NS * DAY_NS, []).append(hours[label])
    return {label: combine(rows) for label, rows in days.items()}
