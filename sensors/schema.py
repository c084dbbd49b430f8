"""The stored schema: measurement, tag and field names, QC flags and quarantine reasons.

One point per reading: measurement ``readings``, tag ``station``, one float field per parameter,
a string field ``{parameter}_qc`` with its flag and ``{parameter}_check`` naming the failed check.
The QC flag is a field, never a tag, so a replay that recomputes it overwrites the same point
(RELIABILITY §0.2). The point key (measurement, station, ts) is deterministic.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

READINGS: Final = "readings"
QUARANTINE: Final = "quarantine"
STATUS: Final = "station_status"
DIAGNOSTICS: Final = "station_diag"  # not "diagnostics": an InfluxQL keyword
INGEST_STATS: Final = "ingest_stats"

STATION_TAG: Final = "station"
SEQ_FIELD: Final = "seq"
QC_SUFFIX: Final = "_qc"
CHECK_SUFFIX: Final = "_check"

RAW_PAYLOAD_MAX_BYTES: Final = 4096  # CONTRACT §3: quarantined payloads are truncated to 4 KiB
# Quarantine records live in a retention policy of their own (issue 8), so that refused input
# ages out without touching the readings' retention.
QUARANTINE_RP: Final = "quarantine"
# The quarantine as an InfluxQL source (retention policy and measurement, both plain names).
QUARANTINE_FROM: Final = f'"{QUARANTINE_RP}"."{QUARANTINE}"'
# Field of every quarantine record naming its message (a hash of topic and payload): the raw
# payload is stored once, on the message's first record, and the others reference it.
MSG_FIELD: Final = "msg"


class QcFlag(StrEnum):
    """The QC flag stored next to every accepted value (CONTRACT §4)."""

    GOOD = "good"
    SUSPECT = "suspect"


class QuarantineReason(StrEnum):
    """Why the ingester refused a message, a reading or a value."""

    INVALID_JSON = "invalid_json"
    INVALID_SHAPE = "invalid_shape"
    TOO_LARGE = "too_large"
    TOO_MANY_READINGS = "too_many_readings"
    INVALID_TOPIC = "invalid_topic"
    UNKNOWN_STATION = "unknown_station"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    NON_FINITE = "non_finite"
    UNKNOWN_PARAMETER = "unknown_parameter"
    OUT_OF_RANGE = "out_of_range"
    INVALID_STATUS = "invalid_status"
    WRITE_REJECTED = "write_rejected"
    INTERNAL_ERROR = "internal_error"  # a bug met this message; it is kept, not lost
    # issue 8: a bounded cost for every message
    TOO_MANY_REFUSALS = "too_many_refusals"  # one record with the count past the per-message cap
    RATE_EXCEEDED = "rate_exceeded"  # one record per station per interval with the count
    CONFLICT = "conflict"  # a different value for an already stored (station, ts, parameter)


def qc_field(parameter: str) -> str:
    """Return the name of the field holding ``parameter``'s QC flag."""
    return parameter + QC_SUFFIX


def check_field(parameter: str) -> str:
    """Return the name of the field naming the QC check ``parameter`` failed ('' when good)."""
    return parameter + CHECK_SUFFIX
