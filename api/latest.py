"""Newest reading rows as ``latest`` entries, with their derived values (pure).

Derived values (CONTRACT §4) are computed from each row's values, for all rows in one numpy
call, by sensors.derived.derive_readings: rounded to 0.01 like the live stream's (api.live),
each with the worst QC flag of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.influx import Cell
from sensors import schema
from sensors.catalog import CATALOG
from sensors.derived import derive_readings
from sensors.models import format_ts
from sensors.outbound import LatestEntry
from sensors.schema import QcFlag


def parse_flag(value: Cell) -> QcFlag:
    """Return a stored QC flag; anything unexpected counts as suspect, never as good."""
    return QcFlag.GOOD if value == QcFlag.GOOD.value else QcFlag.SUSPECT


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
    derived = derive_readings([(item.values, item.qc) for item in parsed])
    entries = []
    for item, extra in zip(parsed, derived, strict=True):
        for derived_id, served in extra.items():
            item.values[derived_id] = served.value
            item.qc[derived_id] = served.flag
            if served.check:
                item.checks[derived_id] = served.check
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
