"""Newest reading rows as ``latest`` entries, with their derived values (pure).

Derived values (CONTRACT §4) are computed from each row's values, for all rows in one numpy
call, and rounded to 0.01 like the live stream's (api.live); each carries the worst QC flag of
its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from api.influx import Cell
from sensors import schema
from sensors.catalog import CATALOG
from sensors.derived import DERIVED, compute_derived
from sensors.models import format_ts
from sensors.outbound import LatestEntry
from sensors.schema import QcFlag

DERIVED_DECIMALS = 2  # as the live stream (api.live) rounds them: 0.01 °C is plenty
_INPUTS = sorted({name for spec in DERIVED.values() for name in spec.inputs})


def parse_flag(value: Cell) -> QcFlag:
    """Return a stored QC flag; anything unexpected counts as suspect, never as good."""
    return QcFlag.GOOD if value == QcFlag.GOOD.value else QcFlag.SUSPECT


def worst_flag(qc: Mapping[str, QcFlag], inputs: tuple[str, ...]) -> QcFlag:
    """Return suspect when any input is suspect, else good."""
    suspect = any(qc.get(name) == QcFlag.SUSPECT for name in inputs)
    return QcFlag.SUSPECT if suspect else QcFlag.GOOD


@dataclass(slots=True)
class _Row:
    station_id: str
    ts_ns: int
    values: dict[str, float]
    qc: dict[str, QcFlag]
    checks: dict[str, str]
    seq: int | None


def _parse(station_id: str, row: Mapping[str, Cell]) -> _Row | None:
    ts = row.get("time")
    if not isinstance(ts, int):
        return None
    parsed = _Row(station_id, ts, {}, {}, {}, None)
    for parameter in CATALOG:
        value = row.get(parameter)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        parsed.values[parameter] = float(value)
        parsed.qc[parameter] = flag = parse_flag(row.get(schema.qc_field(parameter)))
        check = row.get(schema.check_field(parameter))
        if flag == QcFlag.SUSPECT and isinstance(check, str) and check:
            parsed.checks[parameter] = check
    seq = row.get(schema.SEQ_FIELD)
    if isinstance(seq, int) and not isinstance(seq, bool):
        parsed.seq = seq
    return parsed if parsed.values else None


def latest_entries(rows: Sequence[tuple[str, Mapping[str, Cell]]]) -> list[LatestEntry]:
    """Return the entries of newest reading rows (``SELECT *``), in order; rows without a
    value are left out."""
    parsed = [item for station_id, row in rows if (item := _parse(station_id, row))]
    if not parsed:
        return []
    arrays = {
        name: np.array([item.values.get(name, np.nan) for item in parsed], dtype=np.float64)
        for name in _INPUTS
    }
    derived = {name: array.tolist() for name, array in compute_derived(arrays).items()}
    entries = []
    for k, item in enumerate(parsed):
        for derived_id, column in derived.items():
            value = column[k]
            if math.isfinite(value):
                item.values[derived_id] = round(value, DERIVED_DECIMALS)
                item.qc[derived_id] = worst_flag(item.qc, DERIVED[derived_id].inputs)
        entries.append(
            LatestEntry(
                station=item.station_id,
                ts=format_ts(item.ts_ns),
                values=item.values,
                qc=item.qc,
                checks=item.checks,
                seq=item.seq,
            )
        )
    return entries
