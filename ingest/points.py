"""Turning verdicts into stored points (the schema of sensors.schema) in line protocol."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Final, NamedTuple

from ingest.lineproto import FieldValue, escape_key, escape_string_field, format_point
from sensors import schema
from sensors.qc import GOOD, QcResult
from sensors.schema import QcFlag, QuarantineReason
from sensors.validation import AcceptedReading

UNKNOWN_STATION = "_unknown"
TOPIC_MAX_CHARS = 256  # a topic is kept for reading, not byte-exact (the raw payload is)


class Line(NamedTuple):
    """One line of line protocol and what it stands for, so that nothing parses it back."""

    text: str
    station_id: str | None = None
    readings: int = 0  # 1 for a ``readings`` point
    values: int = 0  # the values it stores


def message_key(topic: str, payload: bytes) -> str:
    """Return the key of one message, 16 hex digits of BLAKE2b over its topic and payload.

    Every quarantine record of the message carries it (field ``msg``): the raw payload is
    stored once, on the first record, and the others reference it by this key.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(topic.encode("utf-8", "backslashreplace"))
    digest.update(b"\0")
    digest.update(payload)
    return digest.hexdigest()


def utf8_text(text: str) -> str:
    """Return text that encodes as UTF-8: lone surrogates (from JSON ``\\ud800`` escapes in a
    station's keys) become visible backslash escapes instead of failing the whole write."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class UniqueClock:
    """Nanosecond receive times that never repeat within this process (quarantine keys)."""

    def __init__(self) -> None:
        self._last = 0

    def now_ns(self) -> int:
        """Return time.time_ns(), bumped so that it is strictly greater than the last one."""
        now = time.time_ns()
        self._last = now if now > self._last else self._last + 1
        return self._last


_READINGS_HEAD = escape_key(schema.READINGS) + "," + escape_key(schema.STATION_TAG) + "="
_SEQ_HEAD = "," + escape_key(schema.SEQ_FIELD) + "="


def _field_heads(parameter: str) -> tuple[str, str, str]:
    """Return the escaped ``,p=``, ``,p_qc=`` and ``,p_check=`` prefixes of a parameter."""
    return (
        "," + escape_key(parameter) + "=",
        "," + escape_key(schema.qc_field(parameter)) + "=",
        "," + escape_key(schema.check_field(parameter)) + "=",
    )


_HEADS: dict[str, tuple[str, str, str]] = {}
# The text of a reading whose values are all good, by its parameters in order: one %-template
# per parameter list (a station sends the same list every time). Bounded: a station may send
# its parameters in any order.
_GOOD_TEMPLATES: dict[tuple[str, ...], str] = {}
_GOOD_TEMPLATES_MAX: Final = 4096
_STATION_HEADS: dict[str, str] = {}
_GOOD_TEXT: Final = '"' + QcFlag.GOOD.value + '"'


def all_good(qc: Mapping[str, QcResult]) -> bool:
    """Return whether every value of a reading was judged good (the usual case)."""
    for result in qc.values():  # noqa: SIM110  # a loop: all() with a generator costs twice as much
        if result is not GOOD:
            return False
    return True


def _good_template(parameters: tuple[str, ...]) -> str:
    parts = []
    for p in parameters:
        # %-escaped keys around one %r per value
        key = escape_key(p).replace("%", "%%")
        qc_key = escape_key(schema.qc_field(p)).replace("%", "%%")
        parts.append(f"{key}=%r,{qc_key}={_GOOD_TEXT},")
    template = "".join(parts)
    if len(_GOOD_TEMPLATES) < _GOOD_TEMPLATES_MAX:
        _GOOD_TEMPLATES[parameters] = template
    return template


def reading_line(
    reading: AcceptedReading, qc: Mapping[str, QcResult], good: bool | None = None
) -> str:
    """Return the ``readings`` point of an accepted reading with each value's QC flag.

    ``{p}_check`` is written only for suspect values; readers consult it only when the flag
    says ``suspect``, so a stale check name behind a later ``good`` flag is never shown. The
    text is what ``format_point`` gives for the same fields, built from cached prefixes (the
    values are finite floats, checked by sensors.validation); ``good`` is ``all_good(qc)`` when
    the caller knows it.
    """
    station_id = reading.station_id
    head = _STATION_HEADS.get(station_id)
    if head is None:
        head = _READINGS_HEAD + escape_key(station_id) + " "
        if len(_STATION_HEADS) < _GOOD_TEMPLATES_MAX:
            _STATION_HEADS[station_id] = head
    values = reading.values
    if good if good is not None else all_good(qc):
        parameters = tuple(values)
        template = _GOOD_TEMPLATES.get(parameters) or _good_template(parameters)
        fields = template % tuple(values.values())
        if reading.seq is not None:
            return f"{head}{fields}{_SEQ_HEAD[1:]}{reading.seq}i {reading.ts_ns}"
        return f"{head}{fields[:-1]} {reading.ts_ns}"
    parts = []
    for parameter, value in values.items():
        heads = _HEADS.get(parameter)
        if heads is None:
            heads = _HEADS[parameter] = _field_heads(parameter)
        result = qc[parameter]
        parts.append(f'{heads[0]}{value!r}{heads[1]}"{result.flag.value}"')
        if result.flag is QcFlag.SUSPECT:
            parts.append(heads[2] + escape_string_field(result.check))
    if reading.seq is not None:
        parts.append(f"{_SEQ_HEAD}{reading.seq}i")
    return f"{head}{''.join(parts)[1:]} {reading.ts_ns}"


def diagnostics_line(reading: AcceptedReading) -> str | None:
    """Return the ``diagnostics`` point of a reading's station diagnostics, if any."""
    if not reading.diag:
        return None
    fields: dict[str, FieldValue] = dict(reading.diag)
    return format_point(
        schema.DIAGNOSTICS, {schema.STATION_TAG: reading.station_id}, fields, reading.ts_ns
    )


def quarantine_line(
    *,
    reason: QuarantineReason,
    detail: str,
    station_id: str | None,
    topic: str,
    payload: bytes | None,
    received_ns: int,
    time_ns: int,
    slot: str,
    parameter: str | None = None,
    seq: int | None = None,
    msg: str | None = None,
    ts_ns: int | None = None,
    count: int | None = None,
) -> str:
    """Return one ``quarantine`` point (CONTRACT §3: reason, station, receive time, raw ≤ 4 KiB).

    ``time_ns`` is a receive time unique within the process, so that distinct deliveries never
    overwrite each other (a redelivery is recognised by its message key instead, see
    ingest.writer). ``payload`` is given for the first record of a message only; the others
    reference it through ``msg``. ``ts_ns`` is the refused reading's observation time when it
    was valid; ``count`` how many refusals one record stands for (too_many_refusals,
    rate_exceeded). ``slot`` (a tag of bounded cardinality) tells which part was refused:
    ``v{i}`` the i-th value, ``d{i}`` a diagnostic, ``r`` the reading or the whole message.
    """
    fields: dict[str, FieldValue] = {
        "detail": utf8_text(detail),
        "topic": utf8_text(topic[:TOPIC_MAX_CHARS]),
        "received": received_ns,
    }
    if payload is not None:
        head = payload[: schema.RAW_PAYLOAD_MAX_BYTES]
        fields["size"] = len(payload)
        try:
            fields["raw"] = head.decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8 (or cut inside a character): keep it byte-exact in base64, and readable.
            fields["raw"] = head.decode("utf-8", "replace")
            fields["raw_b64"] = base64.b64encode(head).decode("ascii")
    if msg is not None:
        fields[schema.MSG_FIELD] = msg
    if parameter is not None:
        fields["parameter"] = utf8_text(parameter)
    if seq is not None:
        fields["seq"] = seq
    if ts_ns is not None:
        fields["ts"] = ts_ns
    if count is not None:
        fields["count"] = count
    tags = {"reason": reason.value, schema.STATION_TAG: station_id or UNKNOWN_STATION, "slot": slot}
    return format_point(schema.QUARANTINE, tags, fields, time_ns)


def status_line(station_id: str, state: str, firmware: str | None, received_ns: int) -> str:
    """Return the ``station_status`` point of a status message."""
    fields: dict[str, FieldValue] = {"state": state}
    if firmware:
        fields["firmware"] = firmware
    return format_point(schema.STATUS, {schema.STATION_TAG: station_id}, fields, received_ns)


def stats_line(ingester: str, stats: Mapping[str, float | int], now_ns: int) -> str:
    """Return an ``ingest_stats`` snapshot of one ingester's counters."""
    return format_point(schema.INGEST_STATS, {"ingester": ingester}, dict(stats), now_ns)
