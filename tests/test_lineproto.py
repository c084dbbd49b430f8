"""Every string that can reach line protocol either is refused or reads back byte-identical."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.lineproto import LineProtocolError, escape_key, format_point
from ingest.points import quarantine_line
from sensors.schema import QuarantineReason
from tests.helpers import influx_query, influx_rows, write_lines

HOSTILE = [
    "plain",
    "with space",
    "comma,inside",
    "equals=sign",
    'double"quote',
    "single'quote",
    "back\\slash",
    "trailing backslash\\",
    "\\",
    "new\nline",
    "carriage\r\nreturn",
    "hash # not a comment",
    "tab\there",
    "unicode Ελευσίνα µg/m³ ✓ 🌡",
    "nul\x00byte",
    'all of them ,= "\\ \n#\\',
]
TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=40
) | st.sampled_from(HOSTILE)


def _readback(url: str, db: str, measurement: str, column: str) -> list[str]:
    rows = influx_rows(url, db, f'SELECT "{column}" FROM "{measurement}"')
    return [row[column] for row in sorted(rows, key=lambda r: r["time"])]


@pytest.fixture
def database(influx, db_name):
    influx.create_database(db_name)
    return influx.url, db_name


def test_hostile_strings_round_trip_in_string_fields(database):
    url, db = database
    lines = [
        format_point("m", {"station": "s1"}, {"text": s}, k + 1) for k, s in enumerate(HOSTILE)
    ]
    write_lines(url, db, lines)
    assert _readback(url, db, "m", "text") == HOSTILE


def test_hostile_tag_values_round_trip_or_are_refused(database):
    url, db = database
    accepted, lines = [], []
    for k, value in enumerate(HOSTILE):
        try:
            lines.append(format_point("m", {"tagged": value}, {"v": 1.0}, k + 1))
            accepted.append(value)
        except LineProtocolError:
            assert "\n" in value or "\r" in value or value.endswith("\\")
    write_lines(url, db, lines)
    tags = influx_query(url, db, 'SHOW TAG VALUES FROM "m" WITH KEY = "tagged"')
    stored = sorted(value for _, value in tags[0]["values"])
    assert stored == sorted(accepted)
    assert len(accepted) == len(HOSTILE) - 5  # newline x3, trailing backslash x2 refused


def test_escape_key_refuses_what_cannot_be_represented():
    for bad in ("", "a\nb", "a\rb", "ends\\"):
        with pytest.raises(LineProtocolError):
            escape_key(bad)


def test_quarantine_record_keeps_the_raw_payload_byte_exact(database):
    url, db = database
    payload = '{"x": "a\\"b", "ü": 1}\n#,= \\'.encode() + b"\xff\xfe not utf-8" + b"z" * 5000
    line = quarantine_line(
        reason=QuarantineReason.INVALID_JSON,
        detail='bad "json"\n',
        station_id="elefsina-01",
        topic="stations/elefsina-01/readings",
        payload=payload,
        received_ns=5,
        time_ns=7,
        slot="r",
        parameter="\ud800lone",
        seq=3,
    )
    write_lines(url, db, [line])
    [row] = influx_rows(url, db, "SELECT * FROM quarantine")
    import base64

    assert base64.b64decode(row["raw_b64"]) == payload[:4096]
    assert row["size"] == len(payload)
    assert row["detail"] == 'bad "json"\n'
    assert row["parameter"] == "\\ud800lone"
    assert (row["reason"], row["station"], row["slot"], row["seq"]) == (
        "invalid_json",
        "elefsina-01",
        "r",
        3,
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(strings=st.lists(TEXT, min_size=1, max_size=250))
def test_property_any_text_round_trips_in_string_fields(influx, strings):
    db = "lineproto_property"
    influx.create_database(db)
    influx_query(influx.url, db, 'DROP MEASUREMENT "p"')
    lines = [format_point("p", {"k": "v"}, {"s": s}, k + 1) for k, s in enumerate(strings)]
    write_lines(influx.url, db, lines)
    assert _readback(influx.url, db, "p", "s") == strings
    keys = influx_query(influx.url, db, 'SHOW TAG KEYS FROM "p"')
    assert keys[0]["values"] == [["k"]]  # no injected tag


_QC_VALUES = st.dictionaries(
    st.sampled_from(["air_temperature", "relative_humidity", "wind_speed", "pm2_5", "odd%r name"]),
    st.tuples(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.sampled_from(["good", "step", "persistence", "dew_point_above_temperature"]),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(_QC_VALUES, st.none() | st.integers(0, 2**63 - 1), st.sampled_from(["a-1", "b,2 x"]))
def test_reading_line_is_the_point_format_point_writes(judged, seq, station_id):
    """Issue 9: the reading line's fast templates (all good) and its general path (any
    suspect) write exactly what the generic line-protocol writer writes for the same fields."""
    from ingest.points import reading_line
    from sensors.qc import GOOD, QcResult
    from sensors.schema import QcFlag
    from sensors.validation import AcceptedReading

    values = {p: v for p, (v, _) in judged.items()}
    qc = {
        p: GOOD if check == "good" else QcResult(QcFlag.SUSPECT, check)
        for p, (_, check) in judged.items()
    }
    ts_ns = 1_795_000_000_123_456_789
    fields: dict[str, float | int | str] = {}
    for parameter, value in values.items():
        fields[parameter] = value
        fields[f"{parameter}_qc"] = qc[parameter].flag.value
        if qc[parameter] is not GOOD:
            fields[f"{parameter}_check"] = qc[parameter].check
    if seq is not None:
        fields["seq"] = seq
    expected = format_point("readings", {"station": station_id}, fields, ts_ns)
    reading = AcceptedReading(station_id, ts_ns, seq, values)
    assert reading_line(reading, qc) == expected
    assert reading_line(reading, qc) == expected  # the second time from the cached template
