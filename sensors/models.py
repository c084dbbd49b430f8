"""Inbound MQTT payload models and the strict parser that turns bytes into them (CONTRACT §4)."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from sensors.schema import QuarantineReason

MAX_PAYLOAD_BYTES: Final = 256 * 1024  # CONTRACT §4: larger messages are quarantined whole
MAX_READINGS_PER_MESSAGE: Final = 500  # CONTRACT §4: an offline buffer replays in arrays of ≤ 500
MAX_VALUES_PER_READING: Final = 64  # the catalogue has 12; more is not a station talking
MAX_DIAG_PER_READING: Final = 64  # diag keys are capped like values (issue 8)
# Epoch seconds a ts may hold: years 1..9999, what RFC 3339 can write. Beyond it (a 4,000-digit
# integer) the number is refused before any arithmetic on it (issue 8: it used to overflow).
TS_MAX_ABS_S: Final = 253_402_300_799


class TsOutOfRange(ValueError):
    """A numeric ``ts`` beyond years 1..9999: ``ahead`` tells which side (issue 8)."""

    def __init__(self, ahead: bool) -> None:
        super().__init__("ts is out of range (years 1 to 9999)")
        self.ahead = ahead


class PayloadRefused(Exception):
    """A whole message is refused; ``reason`` is its quarantine reason."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# A value as sent: any JSON, with non-finite floats let through so that the value holding one is
# refused on its own (CONTRACT §4) instead of failing the whole reading's shape.
RawValue = Annotated[StrictFloat, AllowInfNan(True)] | JsonValue


class ReadingIn(BaseModel):
    """One reading object as a station sends it. Values are judged one by one later."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ts: StrictInt | StrictFloat | StrictStr
    seq: StrictInt | None = Field(None, ge=0, le=2**63 - 1)
    values: dict[str, RawValue] = Field(min_length=1, max_length=MAX_VALUES_PER_READING)
    diag: dict[str, RawValue] | None = Field(None, max_length=MAX_DIAG_PER_READING)


class StatusIn(BaseModel):
    """A station's retained status message (CONTRACT §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    state: Literal["online", "offline"]
    ts: StrictInt | StrictFloat | StrictStr | None = None
    firmware: str | None = Field(None, max_length=100)


_READINGS: Final = TypeAdapter(list[ReadingIn])


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]  # set.add returns None by design
        raise ValueError(f"duplicate key {duplicate[:64]!r}")
    return document


def _non_finite_constant(token: str) -> float:
    # json.loads accepts NaN and ±Infinity, which JSON (RFC 8259) does not. They are kept as
    # non-finite floats here so that the value holding one is refused on its own (CONTRACT §4).
    return float(token.replace("Infinity", "inf"))


def loads_strict(payload: bytes) -> object:
    """Decode UTF-8 JSON, refusing duplicate keys; raise PayloadRefused(INVALID_JSON) otherwise."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_JSON, f"not UTF-8: {exc.reason}") from exc
    try:
        return json.loads(
            text, object_pairs_hook=_refuse_duplicate_keys, parse_constant=_non_finite_constant
        )
    except RecursionError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_JSON, "nested too deeply") from exc
    except ValueError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_JSON, str(exc)[:200]) from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "message"
    return f"{where}: {error['msg']}"[:300]


def parse_readings(payload: bytes) -> list[ReadingIn]:
    """Return the readings of a readings message; raise PayloadRefused for the whole message."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRefused(
            QuarantineReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}"
        )
    document = loads_strict(payload)
    if isinstance(document, list):
        if not document:
            raise PayloadRefused(QuarantineReason.INVALID_SHAPE, "empty array")
        if len(document) > MAX_READINGS_PER_MESSAGE:
            raise PayloadRefused(
                QuarantineReason.TOO_MANY_READINGS,
                f"{len(document)} readings > {MAX_READINGS_PER_MESSAGE}",
            )
        items = document
    elif isinstance(document, dict):
        items = [document]
    else:
        raise PayloadRefused(QuarantineReason.INVALID_SHAPE, "not an object or an array")
    try:
        return _READINGS.validate_python(items)
    except ValidationError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_SHAPE, _first_error(exc)) from exc


def parse_status(payload: bytes) -> StatusIn:
    """Return the status message; raise PayloadRefused(INVALID_STATUS or INVALID_JSON)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRefused(QuarantineReason.TOO_LARGE, f"{len(payload)} bytes")
    document = loads_strict(payload)
    try:
        return StatusIn.model_validate(document)
    except ValidationError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_STATUS, _first_error(exc)) from exc


def parse_ts_ns(ts: int | float | str) -> int:
    """Return a reading's ``ts`` as integer nanoseconds since the epoch (UTC).

    Epoch numbers are rounded to the microsecond so that the same float always gives the same
    point key. Strings must be RFC 3339 with an offset; raise ValueError otherwise.
    """
    if isinstance(ts, bool):
        raise ValueError("ts is a boolean")
    if isinstance(ts, int):
        if abs(ts) > TS_MAX_ABS_S:
            raise TsOutOfRange(ahead=ts > 0)
        return ts * 1_000_000_000
    if isinstance(ts, float):
        if not math.isfinite(ts):
            raise ValueError("ts is not finite")
        if abs(ts) > TS_MAX_ABS_S:
            raise TsOutOfRange(ahead=ts > 0)
        return round(ts * 1_000_000) * 1000
    if len(ts) > 40 or ("T" not in ts.upper() and " " not in ts):
        raise ValueError("ts is not an RFC 3339 date-time")
    parsed = datetime.fromisoformat(ts)
    if parsed.tzinfo is None:
        raise ValueError("ts has no UTC offset")
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=4096)  # a burst repeats the same seconds across stations
def _format_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_ts(ts_ns: int) -> str:
    """Return RFC 3339 UTC with a Z, with fractional seconds only when they are non-zero."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    base = _format_seconds(seconds)
    if nanos:
        return f"{base}.{nanos:09d}".rstrip("0") + "Z"
    return base + "Z"
