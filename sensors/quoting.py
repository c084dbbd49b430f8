"""InfluxQL quoting, the one escaper every component uses (InfluxQL reference, "Quoting").

String literals are single-quoted with ``\\'``, identifiers double-quoted with ``\\"``; the
backslash is escaped first (RELIABILITY §0.7: a quote-only escaper lets ``a\\' OR …`` through).
Control characters are refused: InfluxQL's scanner ends a string at a newline, so no escaping
makes one safe. Quoting is not validation: the API whitelists names before it quotes them.
"""

from __future__ import annotations

import re
from typing import Final

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _escape(value: str, quote: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control character in an InfluxQL string or identifier")
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote)


def influxql_string(value: str) -> str:
    """Return ``value`` as a single-quoted InfluxQL string literal; ValueError on controls."""
    return "'" + _escape(value, "'") + "'"


def influxql_identifier(name: str) -> str:
    """Return ``name`` as a double-quoted InfluxQL identifier; ValueError on controls."""
    return '"' + _escape(name, '"') + '"'
