"""Inbound MQTT payload models and the strict parser that turns bytes into them (CONTRACT §4)."""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, NamedTuple

import orjson
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


# A quote followed by JSON whitespace and a colon. Every key's closing quote is one; other
# matches (a string that starts with a colon, an escaped quote before a colon) only add. So a
# parsed document with as many keys as the text has matches lost none to a duplicate, and held
# no nested object with keys either (those are not counted below).
_KEY_END: Final = re.compile(rb'"[ \t\n\r]*:')
_READING_KEYS: Final = frozenset(("ts", "seq", "values", "diag"))
_I64_MAX: Final = 2**63 - 1


class PlainReading(NamedTuple):
    """One reading as parsed, before judging: ``values`` and ``diag`` hold JSON values as sent
    (each is judged on its own by sensors.validation)."""

    ts: int | float | str
    seq: int | None
    values: dict[str, object]
    diag: dict[str, object] | None


def _plain_reading(item: object) -> PlainReading | None:
    """Return the reading when it has the plain shape ReadingIn accepts unchanged (an in-range
    integer seq, a finite or integer or string ts within 64 bits, known keys, objects of
    values and diagnostics within their caps); None for anything else, which pydantic then
    judges (and words its refusal) as before. Nested objects are caught by the key count."""
    if type(item) is not dict or "ts" not in item or not item.keys() <= _READING_KEYS:
        return None
    ts = item["ts"]
    if type(ts) is float:
        # orjson reads an integer beyond 64 bits as a float, json as an int: the strict path.
        if not -_I64_MAX <= ts <= _I64_MAX:  # NaN fails this too
            return None
    elif type(ts) is int:
        if not -_I64_MAX <= ts <= _I64_MAX:
            return None
    elif type(ts) is not str:
        return None
    seq = item.get("seq")
    if seq is not None and (type(seq) is not int or not 0 <= seq <= _I64_MAX):
        return None
    values = item.get("values")
    if type(values) is not dict or not 1 <= len(values) <= MAX_VALUES_PER_READING:
        return None
    diag = item.get("diag")
    if diag is not None and (type(diag) is not dict or len(diag) > MAX_DIAG_PER_READING):
        return None
    return PlainReading(ts, seq, values, diag)


def _keys_of(reading: PlainReading, item: dict[str, object]) -> int:
    return len(item) + len(reading.values) + (len(reading.diag) if reading.diag else 0)


def _fast_readings(payload: bytes) -> list[PlainReading] | None:
    """Return the readings of a plain, well-formed message parsed by orjson; None when the
    message needs the strict path (any error, a duplicate key, NaN, a nested object, an
    integer beyond 64 bits, an unusual shape), which then gives exactly the verdict and
    wording it always gave.

    Issue 9: json.loads with a Python hook per object and pydantic's union of JSON values
    cost ~26 µs per single-reading message; this path ~2. orjson keeps the last of duplicate
    keys, so they are ruled out by counting (_KEY_END); it refuses NaN and numbers beyond the
    double range, which the strict path words.
    """
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(document) is dict:
        reading = _plain_reading(document)
        if reading is None or _keys_of(reading, document) != len(_KEY_END.findall(payload)):
            return None
        return [reading]
    if type(document) is not list or not 1 <= len(document) <= MAX_READINGS_PER_MESSAGE:
        return None
    readings = []
    keys = 0
    for item in document:
        reading = _plain_reading(item)
        if reading is None:
            return None
        keys += _keys_of(reading, item)
        readings.append(reading)
    if keys != len(_KEY_END.findall(payload)):
        return None  # maybe a duplicate key (orjson keeps the last): the strict path decides
    return readings


def parse_readings(payload: bytes) -> list[PlainReading]:
    """Return the readings of a readings message; raise PayloadRefused for the whole message."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRefused(
            QuarantineReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}"
        )
    fast = _fast_readings(payload)
    if fast is not None:
        return fast
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
        validated = _READINGS.validate_python(items)
    except ValidationError as exc:
        raise PayloadRefused(QuarantineReason.INVALID_SHAPE, _first_error(exc)) from exc
    return [
        PlainReading(r.ts, r.seq, dict(r.values), None if r.diag is None else dict(r.diag))
        for r in validated
    ]


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
