"""What the live stream re-checks before it shows a message: trust only what the ingester stored.

``meltemi/accepted/{id}`` is written by the ingester, but the broker does not prove who wrote a
message there: on the embedded broker anyone on the host may publish, a stale *retained* message
outlives the ingester that wrote it, and a mistaken ACL would let a station write there (issue 8:
"a forged or retained message there (59.9 °C, PM2.5 1999, year 2099, arbitrary keys) is streamed
to every dashboard, and a newly started API replays the retained one"). So every entry is judged
again against the same rules the ingester applies (CONTRACT §4 "Validation"): the station is
registered, each parameter is one of the station's registered parameters, each value is finite
and inside the catalogue's physical range, and ``ts`` lies inside the accepted time window. An
entry failing any rule is dropped whole and counted by reason, never streamed.

Pure: takes the entry, the registry and the clock; returns a reason or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sensors.catalog import CATALOG
from sensors.models import parse_ts_ns
from sensors.outbound import LatestEntry
from sensors.registry import StationRegistry
from sensors.schema import QcFlag

NS_PER_S: Final = 1_000_000_000
# The ingester judged ``ts`` against its own receive time, which precedes ours; an entry it
# re-publishes after a spool replay can be that much older again. One hour of slack keeps a
# genuine entry at the edge of the back-fill horizon; a forged year-2099 or 1970 one is far out.
OLD_SLACK_S: Final = 3600.0
MAX_CHECK_NAME: Final = 64  # QC check names are short words (sensors.qc)


class LiveDrop(StrEnum):
    """Why the live feed did not stream a message or an entry (label of a metric)."""

    RETAINED = "retained"  # a retained message on the accepted topic: replayed, not stored now
    MALFORMED = "malformed"  # not the LatestEntry shape (extra keys, wrong types, not JSON)
    UNKNOWN_STATION = "unknown_station"
    STATION_MISMATCH = "station_mismatch"  # the entry names another station than its topic
    UNREGISTERED_PARAMETER = "unregistered_parameter"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    QC_MISMATCH = "qc_mismatch"  # flags that do not belong to the entry's values
    TS_INVALID = "ts_invalid"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    STATUS_MALFORMED = "status_malformed"
    STATUS_TS_IN_FUTURE = "status_ts_in_future"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The ``ts`` window of CONTRACT §4, relative to the moment the API receives a message."""

    future_tolerance_s: float
    backfill_horizon_s: float

    def judge_ns(self, ts_ns: int, now_ns: int) -> LiveDrop | None:
        """Return TS_IN_FUTURE / TS_TOO_OLD when ``ts_ns`` falls outside the window, else None."""
        if ts_ns > now_ns + int(self.future_tolerance_s * NS_PER_S):
            return LiveDrop.TS_IN_FUTURE
        if ts_ns < now_ns - int((self.backfill_horizon_s + OLD_SLACK_S) * NS_PER_S):
            return LiveDrop.TS_TOO_OLD
        return None


def check_entry(
    entry: LatestEntry,
    topic_station: str,
    registry: StationRegistry,
    window: TimeWindow,
    now_ns: int,
) -> LiveDrop | None:
    """Return why ``entry`` (from ``topic_station``'s topic) must not be streamed, or None."""
    station = registry.get(topic_station)
    if station is None:
        return LiveDrop.UNKNOWN_STATION
    if entry.station != topic_station:
        return LiveDrop.STATION_MISMATCH
    if not entry.values:
        return LiveDrop.MALFORMED
    for parameter, value in entry.values.items():
        spec = CATALOG.get(parameter)
        if spec is None or parameter not in station.parameters:
            return LiveDrop.UNREGISTERED_PARAMETER
        if not math.isfinite(value):
            return LiveDrop.NON_FINITE
        if not spec.min <= value <= spec.max:
            return LiveDrop.OUT_OF_RANGE
    if set(entry.qc) != set(entry.values):
        return LiveDrop.QC_MISMATCH
    for parameter, check in entry.checks.items():
        if entry.qc.get(parameter) is not QcFlag.SUSPECT or len(check) > MAX_CHECK_NAME:
            return LiveDrop.QC_MISMATCH
    if entry.seq is not None and entry.seq < 0:
        return LiveDrop.MALFORMED
    try:
        ts_ns = parse_ts_ns(entry.ts)
    except (ValueError, OverflowError):
        return LiveDrop.TS_INVALID
    return window.judge_ns(ts_ns, now_ns)
