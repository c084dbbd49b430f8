"""InfluxDB line protocol: escaping and formatting of points (InfluxDB v1 line protocol reference).

Measurement: escape comma and space. Tag keys, tag values and field keys: escape comma, equals
sign and space. String field values: escape backslash and double quote. Newlines cannot be
escaped in names or tags, so those must not contain them (they come only from validated names);
inside a quoted string field a literal newline is kept and reads back byte-identical (checked
against InfluxDB 1.6.7 by tests/test_lineproto.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Final

_MEASUREMENT: Final = str.maketrans({",": r"\,", " ": r"\ "})
_KEY: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})

FieldValue = float | int | str | bool


class LineProtocolError(ValueError):
    """A value cannot be represented in line protocol."""


def escape_measurement(name: str) -> str:
    """Return a measurement name escaped for line protocol."""
    _refuse_controls(name)
    return name.translate(_MEASUREMENT)


@functools.lru_cache(maxsize=8192)  # keys and tags are few and repeat on every line
def escape_key(value: str) -> str:
    """Return a tag key, tag value or field key escaped for line protocol."""
    _refuse_controls(value)
    if not value:
        raise LineProtocolError("empty tag or field key/value")
    if value.endswith("\\"):
        raise LineProtocolError("a key or tag value cannot end with a backslash")
    return value.translate(_KEY)


def escape_string_field(value: str) -> str:
    """Return a string field value, quoted, with backslash and double quote escaped."""
    return '"' + value.translate(_STRING) + '"'


def format_field(value: FieldValue) -> str:
    """Return one field value: floats as floats, ints with ``i``, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError("non-finite float")
        return repr(value)
    return escape_string_field(value)


def format_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int
) -> str:
    """Return one line of line protocol; tags are sorted (InfluxDB's recommended order)."""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    head = escape_measurement(measurement)
    for key in sorted(tags):
        head += f",{escape_key(key)}={escape_key(tags[key])}"
    body = ",".join(f"{escape_key(key)}={format_field(value)}" for key, value in fields.items())
    return f"{head} {body} {ts_ns}"


def _refuse_controls(value: str) -> None:
    if "\n" in value or "\r" in value:
        raise LineProtocolError("newline in a name or tag value")
