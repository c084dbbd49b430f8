"""InfluxQL text from trusted parts only: quoting, and the whitelist of names a query may use.

Escaping alone is not enough (RELIABILITY §0.7: on 1.6.7 ``a\\' OR station=~/.*/ --`` gets
through a quote-only escaper, and a stacked ``; DROP ...`` runs over GET). So every name that
reaches a query is first checked against the catalogue, the registry or the schema, and only
then quoted; literals are escaped backslash first, then quote (InfluxQL reference, "Quoting":
string literals are single-quoted with ``\\'``, identifiers double-quoted with ``\\"``).
Newlines and other control characters are refused outright: InfluxQL's scanner ends a string
literal at a newline, so no escaping can make one safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NewType

from sensors import schema
from sensors.catalog import PARAMETER_IDS
from sensors.quoting import influxql_identifier, influxql_string

# A fragment of InfluxQL built by this module (or from its output); never raw client text.
InfluxQL = NewType("InfluxQL", str)

# Every identifier a query may name: measurements, the station tag, and the fields of the
# stored schema (sensors.schema). Anything else is a bug, not input.
MEASUREMENTS: Final = frozenset(
    {schema.READINGS, schema.STATUS, schema.QUARANTINE, schema.INGEST_STATS, schema.DIAGNOSTICS}
)
_SCHEMA_FIELDS: Final = frozenset(
    {schema.STATION_TAG, schema.SEQ_FIELD, "ingester", "state", "firmware", "reason", "detail"}
    | PARAMETER_IDS
    | {schema.qc_field(p) for p in PARAMETER_IDS}
    | {schema.check_field(p) for p in PARAMETER_IDS}
)
ALLOWED_IDENTIFIERS: Final = MEASUREMENTS | _SCHEMA_FIELDS

# Column aliases the query builders use (fixed words, listed so that they pass the same check).
ALIASES: Final = frozenset({"mean", "min", "max", "sum", "count", "s", "c", "d"})


class UnsafeQueryPart(ValueError):
    """A value was about to enter InfluxQL that the whitelist or the escaper refuses."""


def _quoted(quote: Callable[[str], str], value: str) -> InfluxQL:
    try:
        return InfluxQL(quote(value))
    except ValueError as exc:  # a control character: no escaping makes it safe
        raise UnsafeQueryPart(str(exc)) from exc


def quote_string(value: str) -> InfluxQL:
    """Return ``value`` as a single-quoted InfluxQL string literal (backslash, then quote)."""
    return _quoted(influxql_string, value)


def quote_identifier(name: str) -> InfluxQL:
    """Return a whitelisted name double-quoted; raise UnsafeQueryPart for any other name."""
    if name not in ALLOWED_IDENTIFIERS and name not in ALIASES:
        raise UnsafeQueryPart(f"identifier {name[:64]!r} is not in the schema whitelist")
    return _quoted(influxql_identifier, name)


def time_literal(ts_ns: int) -> InfluxQL:
    """Return an epoch-nanosecond time literal (an int formatted here, never client text)."""
    if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
        raise UnsafeQueryPart("a time literal must be an int of nanoseconds")
    return InfluxQL(str(int(ts_ns)))


# GROUP BY time() durations of CONTRACT §5, by interval name; the only durations a query uses.
DURATIONS: Final[dict[str, InfluxQL]] = {
    name: InfluxQL(name) for name in ("1m", "5m", "10m", "15m", "30m", "1h", "3h", "6h", "1d")
}

_TZ_NAME: Final = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")


def tz_clause(zone: str) -> InfluxQL:
    """Return ``tz('Zone/Name')`` for a zone already validated with zoneinfo."""
    if _TZ_NAME.fullmatch(zone) is None:
        raise UnsafeQueryPart("not an IANA zone name")
    return InfluxQL(f"tz({quote_string(zone)})")


def join_statements(statements: list[InfluxQL]) -> InfluxQL:
    """Return several statements built by this package as one request (``;``-separated)."""
    return InfluxQL(";\n".join(statements))
