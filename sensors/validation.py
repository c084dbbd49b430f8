"""Judging one message against CONTRACT §4 "Validation": what is accepted and what is refused.

Pure: takes the parsed message, the registry and the receive time; returns values, never raises
for bad input. A refused value does not refuse its reading's other values.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Final, cast

from sensors.catalog import CATALOG
from sensors.models import (
    TS_MAX_ABS_S,
    PayloadRefused,
    PlainReading,
    TsOutOfRange,
    parse_readings,
    parse_ts_ns,
)
from sensors.registry import StationRegistry
from sensors.schema import QuarantineReason
from sensors.topics import StationId

DIAG_KEY_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
NS_PER_S: Final = 1_000_000_000
# Quarantine records one message may produce (issue 8: 500 readings x 64 unknown names made
# 32,000). Past the cap the refusals are counted, and one ``too_many_refusals`` record carries
# the count: a message then costs at most MAX_REFUSALS_PER_MESSAGE + 1 records.
MAX_REFUSALS_PER_MESSAGE: Final = 100


@dataclass(frozen=True, slots=True)
class Refusal:
    """One quarantine record: a whole message, one reading, or one value."""

    reason: QuarantineReason
    detail: str
    parameter: str | None = None
    # The reading's observation time when it was valid; None for message-level refusals and
    # refused timestamps (the quarantine then uses the receive time).
    ts_ns: int | None = None
    seq: int | None = None
    # Which part of the reading was refused: "v{i}" its i-th value, "d{i}" its i-th diagnostic,
    # "r" the reading or the whole message. Keeps the quarantine records of one reading apart.
    slot: str = "r"


@dataclass(slots=True)
class AcceptedReading:
    """A reading's accepted values, before QC (not frozen: built once per reading, issue 9)."""

    station_id: StationId
    ts_ns: int
    seq: int | None
    values: dict[str, float]
    diag: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Verdict:
    """Everything one message gave: readings to store and refusals to quarantine."""

    readings: list[AcceptedReading] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    readings_received: int = 0
    # Refusals past MAX_REFUSALS_PER_MESSAGE: counted, not kept one by one.
    refusals_over_cap: int = 0

    def refuse(self, refusal: Refusal) -> None:
        """Keep a refusal, or only count it once the message has MAX_REFUSALS_PER_MESSAGE."""
        if len(self.refusals) < MAX_REFUSALS_PER_MESSAGE:
            self.refusals.append(refusal)
        else:
            self.refusals_over_cap += 1

    @property
    def refusals_total(self) -> int:
        """Return every refusal of the message, kept or only counted."""
        return len(self.refusals) + self.refusals_over_cap


@dataclass(frozen=True, slots=True)
class Limits:
    """The time window a reading's ``ts`` must fall in, relative to its receive time."""

    future_tolerance_s: float = 300.0  # CONTRACT §4: 5 minutes ahead
    backfill_horizon_s: float = 30 * 86_400.0  # CONTRACT §4: 30 days back by default


def judge_readings_message(
    station_id: StationId,
    payload: bytes,
    registry: StationRegistry,
    received_ns: int,
    limits: Limits,
) -> Verdict:
    """Return the verdict on a ``stations/{id}/readings`` message received at ``received_ns``."""
    verdict = Verdict()
    try:
        readings = parse_readings(payload)
    except PayloadRefused as refused:
        verdict.refuse(Refusal(refused.reason, refused.detail))
        return verdict
    verdict.readings_received = len(readings)
    station = registry.get(station_id)
    if station is None:
        for reading in readings:
            verdict.refuse(
                Refusal(
                    QuarantineReason.UNKNOWN_STATION,
                    "station not in the registry",
                    seq=reading.seq,
                )
            )
        return verdict
    bounds = _bounds_of(station.parameters)
    newest_ns = received_ns + int(limits.future_tolerance_s * NS_PER_S)
    oldest_ns = received_ns - int(limits.backfill_horizon_s * NS_PER_S)
    accepted = verdict.readings
    for reading in readings:
        ts = reading.ts
        if type(ts) is int and -TS_MAX_ABS_S <= ts <= TS_MAX_ABS_S:  # the usual epoch seconds
            ts_ns = ts * NS_PER_S
            refusal = (
                None if oldest_ns <= ts_ns <= newest_ns else _refuse_ts(ts_ns, reading, received_ns)
            )
        else:
            ts_ns, refusal = _judge_ts(reading, received_ns, limits)
        if refusal is not None:
            verdict.refuse(refusal)
            continue
        # The parsed values: all floats once the loop below found nothing to refuse.
        values = cast(dict[str, float], reading.values)
        # Fast path (issue 9): when every value is a float of a registered parameter inside its
        # range (finite, then), the parsed object is accepted as it is, without a copy.
        for parameter, raw in values.items():
            low_high = bounds.get(parameter)
            if low_high is None or type(raw) is not float or not low_high[0] <= raw <= low_high[1]:
                values = _judge_values(reading, bounds, station.parameters, ts_ns, verdict)
                break
        diag = _judge_diag(reading, ts_ns, verdict) if reading.diag else {}
        if values:
            accepted.append(AcceptedReading(station_id, ts_ns, reading.seq, values, diag))
    return verdict


def _judge_values(
    reading: PlainReading,
    bounds: dict[str, tuple[float, float]],
    registered: tuple[str, ...],
    ts_ns: int,
    verdict: Verdict,
) -> dict[str, float]:
    """Return a reading's accepted values, refusing the others one by one."""
    values: dict[str, float] = {}
    for index, (parameter, raw) in enumerate(reading.values.items()):
        low_high = bounds.get(parameter)
        if low_high is not None and type(raw) is float and low_high[0] <= raw <= low_high[1]:
            values[parameter] = raw
            continue
        value, problem = _judge_value(parameter, raw, registered)
        if problem is None:
            values[parameter] = value
        else:
            reason, detail = problem
            verdict.refuse(
                Refusal(reason, detail, parameter[:100], ts_ns, reading.seq, f"v{index}")
            )
    return values


@functools.lru_cache(maxsize=1024)  # one entry per distinct parameter list in the registry
def _bounds_of(registered: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Return the physical range of each registered parameter of the catalogue."""
    return {p: (CATALOG[p].min, CATALOG[p].max) for p in registered if p in CATALOG}


def _judge_ts(
    reading: PlainReading, received_ns: int, limits: Limits
) -> tuple[int, Refusal | None]:
    try:
        ts_ns = parse_ts_ns(reading.ts)
    except TsOutOfRange as exc:
        reason = QuarantineReason.TS_IN_FUTURE if exc.ahead else QuarantineReason.TS_TOO_OLD
        return 0, Refusal(reason, str(exc), seq=reading.seq)
    except (ValueError, OverflowError) as exc:
        return 0, Refusal(QuarantineReason.INVALID_SHAPE, f"ts: {exc}"[:200], seq=reading.seq)
    if ts_ns > received_ns + int(limits.future_tolerance_s * NS_PER_S):
        return 0, _refuse_ts(ts_ns, reading, received_ns)
    if ts_ns < received_ns - int(limits.backfill_horizon_s * NS_PER_S):
        return 0, _refuse_ts(ts_ns, reading, received_ns)
    return ts_ns, None


def _refuse_ts(ts_ns: int, reading: PlainReading, received_ns: int) -> Refusal:
    """Return the refusal of a reading whose ts is outside the accepted window."""
    if ts_ns > received_ns:
        ahead_s = (ts_ns - received_ns) / NS_PER_S
        detail = f"ts {ahead_s:.0f} s ahead of the receive time" if ahead_s < 1e12 else "ts ahead"
        return Refusal(QuarantineReason.TS_IN_FUTURE, detail, seq=reading.seq)
    behind_d = (received_ns - ts_ns) / NS_PER_S / 86_400
    detail = f"ts {behind_d:.1f} days old" if behind_d < 1e9 else "ts too old"
    return Refusal(QuarantineReason.TS_TOO_OLD, detail, seq=reading.seq)


def _judge_value(
    parameter: str, raw: object, registered: tuple[str, ...]
) -> tuple[float, tuple[QuarantineReason, str] | None]:
    spec = CATALOG.get(parameter)
    if spec is None:
        return 0.0, (QuarantineReason.UNKNOWN_PARAMETER, "not in the catalogue")
    if parameter not in registered:
        return 0.0, (QuarantineReason.UNKNOWN_PARAMETER, "not registered for this station")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0.0, (QuarantineReason.NON_FINITE, f"not a number ({type(raw).__name__})")
    try:
        value = float(raw)
    except OverflowError:  # an integer beyond float range
        return 0.0, (QuarantineReason.NON_FINITE, "number too large")
    if not math.isfinite(value):
        return 0.0, (QuarantineReason.NON_FINITE, f"{value} is not finite")
    if not spec.min <= value <= spec.max:
        return 0.0, (
            QuarantineReason.OUT_OF_RANGE,
            f"{value:g} {spec.unit} outside {spec.min:g} … {spec.max:g}",
        )
    return value, None


def _judge_diag(reading: PlainReading, ts_ns: int, verdict: Verdict) -> dict[str, float]:
    diag: dict[str, float] = {}
    for index, (key, raw) in enumerate((reading.diag or {}).items()):
        problem: tuple[QuarantineReason, str] | None = None
        if DIAG_KEY_RE.fullmatch(key) is None:
            problem = QuarantineReason.INVALID_SHAPE, "diag key must match [a-z][a-z0-9_]{0,31}"
        elif isinstance(raw, bool) or not isinstance(raw, int | float):
            problem = QuarantineReason.NON_FINITE, "not a number"
        else:
            try:
                value = float(raw)
            except OverflowError:
                value = math.inf
            if math.isfinite(value):
                diag[key] = value
            else:
                problem = QuarantineReason.NON_FINITE, "not finite"
        if problem is not None:
            verdict.refuse(
                Refusal(problem[0], problem[1], f"diag.{key[:40]}", ts_ns, reading.seq, f"d{index}")
            )
    return diag
