"""Validation rules of CONTRACT §4, one row per rule, checked on the pure judge."""

from __future__ import annotations

import json

import pytest

from sensors.models import MAX_PAYLOAD_BYTES, format_ts, parse_ts_ns
from sensors.registry import load_registry
from sensors.schema import QuarantineReason as R
from sensors.topics import StationId, parse_station_topic
from sensors.validation import Limits, judge_readings_message

NOW_S = 1_795_000_000
NOW_NS = NOW_S * 1_000_000_000
REGISTRY = load_registry()
STATION = StationId("elefsina-01")


def judge(payload: bytes | str, station: str = STATION):
    data = payload.encode() if isinstance(payload, str) else payload
    return judge_readings_message(StationId(station), data, REGISTRY, NOW_NS, Limits())


def reading(**values: object) -> str:
    return json.dumps({"ts": NOW_S - 10, "seq": 1, "values": values})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param("not json", R.INVALID_JSON, id="not-json"),
        pytest.param(b"\xff\xfe{}", R.INVALID_JSON, id="not-utf8"),
        pytest.param('{"ts": 1, "values": {"a": 1}, "ts": 2}', R.INVALID_JSON, id="duplicate-key"),
        pytest.param("[" * 20000 + "]" * 20000, R.INVALID_JSON, id="nested-20k-deep"),
        pytest.param("42", R.INVALID_SHAPE, id="scalar"),
        pytest.param("[]", R.INVALID_SHAPE, id="empty-array"),
        pytest.param('{"values": {"air_temperature": 1}}', R.INVALID_SHAPE, id="no-ts"),
        pytest.param('{"ts": 1795000000}', R.INVALID_SHAPE, id="no-values"),
        pytest.param('{"ts": 1795000000, "values": {}}', R.INVALID_SHAPE, id="empty-values"),
        pytest.param(
            '{"ts": 1795000000, "values": {"air_temperature": 1}, "station": "x"}',
            R.INVALID_SHAPE,
            id="extra-key-station-spoof",
        ),
        pytest.param('{"ts": true, "values": {"pm10": 1}}', R.INVALID_SHAPE, id="ts-bool"),
        pytest.param('{"ts": NaN, "values": {"pm10": 1}}', R.INVALID_SHAPE, id="ts-nan"),
        pytest.param('{"ts": 1, "seq": -1, "values": {"pm10": 1}}', R.INVALID_SHAPE, id="seq<0"),
        pytest.param(
            '{"ts": 1, "seq": 1.5, "values": {"pm10": 1}}', R.INVALID_SHAPE, id="seq-float"
        ),
        pytest.param(
            json.dumps([{"ts": NOW_S, "values": {"pm10": 1}}] * 501),
            R.TOO_MANY_READINGS,
            id="501-readings",
        ),
        pytest.param(b" " * (MAX_PAYLOAD_BYTES + 1), R.TOO_LARGE, id="256KiB+1"),
    ],
)
def test_whole_message_refused(payload, reason):
    verdict = judge(payload)
    assert verdict.readings == []
    assert [r.reason for r in verdict.refusals] == [reason]
    assert verdict.refusals[0].ts_ns is None


def test_500_readings_at_the_limit_accepted():
    items = [{"ts": NOW_S - 600 + i, "values": {"air_temperature": 20.0}} for i in range(500)]
    verdict = judge(json.dumps(items))
    assert len(verdict.readings) == 500
    assert verdict.refusals == []


def test_payload_at_256_kib_is_not_too_large():
    body = json.dumps({"ts": NOW_S, "values": {"air_temperature": 20.0}})
    padded = body + " " * (MAX_PAYLOAD_BYTES - len(body))
    assert len(padded) == MAX_PAYLOAD_BYTES
    verdict = judge(padded)
    assert len(verdict.readings) == 1
    assert verdict.refusals == []


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        pytest.param(NOW_S + 301, R.TS_IN_FUTURE, id="301s-ahead"),
        pytest.param(NOW_S + 10**12, R.TS_IN_FUTURE, id="far-future"),
        pytest.param(NOW_S - 30 * 86400 - 1, R.TS_TOO_OLD, id="30d+1s-old"),
        pytest.param("2026-11-22T16:30:00", R.INVALID_SHAPE, id="no-offset"),
        pytest.param("yesterday", R.INVALID_SHAPE, id="not-a-date"),
    ],
)
def test_reading_refused_for_its_ts(ts, reason):
    verdict = judge(json.dumps({"ts": ts, "values": {"air_temperature": 20.0}}))
    assert verdict.readings == []
    assert [r.reason for r in verdict.refusals] == [reason]


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(NOW_S + 300, id="300s-ahead-at-limit"),
        pytest.param(NOW_S - 30 * 86400, id="30d-old-at-limit"),
        pytest.param(format_ts(NOW_NS - 5_000_000_000).replace("Z", "+02:00"), id="offset"),
        pytest.param(NOW_S - 0.25, id="float-epoch"),
    ],
)
def test_reading_accepted_at_ts_limits(ts):
    verdict = judge(json.dumps({"ts": ts, "values": {"air_temperature": 20.0}}))
    assert len(verdict.readings) == 1
    assert verdict.refusals == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("NaN", R.NON_FINITE, id="nan-token"),
        pytest.param("Infinity", R.NON_FINITE, id="infinity-token"),
        pytest.param("-Infinity", R.NON_FINITE, id="minus-infinity-token"),
        pytest.param("1e400", R.NON_FINITE, id="1e400"),
        pytest.param('"18.4"', R.NON_FINITE, id="string"),
        pytest.param("true", R.NON_FINITE, id="bool"),
        pytest.param("null", R.NON_FINITE, id="null"),
        pytest.param("60.01", R.OUT_OF_RANGE, id="above-max"),
        pytest.param("-50.01", R.OUT_OF_RANGE, id="below-min"),
    ],
)
def test_bad_value_refused_alone(raw, reason):
    values = f'{{"relative_humidity": 50, "air_temperature": {raw}}}'
    text = f'{{"ts": {NOW_S}, "seq": 7, "values": {values}}}'
    verdict = judge(text)
    assert len(verdict.readings) == 1
    assert verdict.readings[0].values == {"relative_humidity": 50.0}
    [refusal] = verdict.refusals
    assert (refusal.reason, refusal.parameter, refusal.slot) == (reason, "air_temperature", "v1")
    assert refusal.ts_ns == NOW_NS
    assert refusal.seq == 7


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        pytest.param(-50, True, id="min"),
        pytest.param(60, True, id="max"),
        pytest.param(60.000001, False, id="just-above-max"),
    ],
)
def test_range_limits_are_inclusive(value, accepted):
    verdict = judge(reading(air_temperature=value))
    assert bool(verdict.readings) is accepted


def test_unknown_parameter_and_unregistered_parameter():
    # elefsina-02 is a coastal station without particulate sensors in the registry.
    verdict = judge(reading(air_temperature=20, soil_moisture=3, pm10=20), station="elefsina-02")
    assert verdict.readings[0].values == {"air_temperature": 20.0}
    details = sorted((r.reason, r.parameter, r.detail) for r in verdict.refusals)
    assert details == [
        (R.UNKNOWN_PARAMETER, "pm10", "not registered for this station"),
        (R.UNKNOWN_PARAMETER, "soil_moisture", "not in the catalogue"),
    ]


def test_unknown_station_quarantines_each_reading():
    verdict = judge(json.dumps([{"ts": NOW_S, "values": {"pm10": 1}}] * 3), station="nobody-01")
    assert verdict.readings == []
    assert [r.reason for r in verdict.refusals] == [R.UNKNOWN_STATION] * 3


def test_diag_kept_and_bad_diag_refused_alone():
    text = json.dumps(
        {"ts": NOW_S, "values": {"pm10": 1}, "diag": {"battery_v": 3.9, "Bad Key": 1, "x": "y"}}
    )
    verdict = judge(text)
    assert verdict.readings[0].diag == {"battery_v": 3.9}
    assert sorted((r.reason, r.slot) for r in verdict.refusals) == [
        (R.INVALID_SHAPE, "d1"),
        (R.NON_FINITE, "d2"),
    ]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        pytest.param("stations/elefsina-01/readings", ("elefsina-01", "readings"), id="readings"),
        pytest.param("stations/elefsina-01/status", ("elefsina-01", "status"), id="status"),
        pytest.param("stations/a/b/readings", None, id="extra-level"),
        pytest.param("stations/A1/readings", None, id="uppercase-id"),
        pytest.param("stations/-ab/readings", None, id="leading-dash"),
        pytest.param("stations/x/readings", None, id="one-char-id"),
        pytest.param("stations/elefsina-01/other", None, id="other-kind"),
        pytest.param("station/elefsina-01/readings", None, id="wrong-prefix"),
    ],
)
def test_topic_shapes(topic, expected):
    assert parse_station_topic(topic) == expected


@pytest.mark.parametrize(
    ("ts", "ns"),
    [
        pytest.param("2026-11-22T16:30:00Z", 1_795_365_000 * 10**9, id="z"),
        pytest.param("2026-11-22T18:30:00+02:00", 1_795_365_000 * 10**9, id="offset"),
        pytest.param("2026-11-22T16:30:00.123456Z", 1_795_365_000_123_456_000, id="micro"),
        pytest.param(1_795_365_000, 1_795_365_000 * 10**9, id="int"),
        pytest.param(1_795_365_000.5, 1_795_365_000_500_000_000, id="float"),
    ],
)
def test_parse_ts(ts, ns):
    assert parse_ts_ns(ts) == ns
    assert parse_ts_ns(format_ts(ns)) == ns


def _strict_readings(payload: bytes) -> object:
    """The strict path alone (json with its hooks, then pydantic): the reference."""
    from pydantic import ValidationError

    from sensors.models import _READINGS, PayloadRefused, loads_strict

    try:
        document = loads_strict(payload)
    except PayloadRefused as refused:
        return ("refused", refused.reason)
    items = document if isinstance(document, list) else [document]
    try:
        readings = [r.model_dump() for r in _READINGS.validate_python(items)]
    except ValidationError:
        return ("refused", "shape")
    for reading in readings:  # see below: integers beyond 64 bits in values and diag
        for part in ("values", "diag"):
            if reading[part] is not None:
                reading[part] = {k: _as_orjson_reads(v) for k, v in reading[part].items()}
    return readings


def _as_orjson_reads(value: object) -> object:
    """An integer beyond 64 bits as orjson reads it: the nearest float, which is what the judge
    makes of it either way (``float(raw)``: the same range check, the same wording)."""
    if type(value) is int and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def test_fast_parse_agrees_with_the_strict_path_on_hostile_and_plain_messages():
    """Issue 9: orjson plus a shape check reads what the strict path reads, or steps aside."""
    from sensors.models import _fast_readings
    from tests.helpers import hostile_messages, reading_messages

    messages = hostile_messages(9, 3000, ["elefsina-01", "magoula-01"], NOW_S)
    messages += reading_messages(["elefsina-01"], 200, NOW_S)
    extra = [
        b'{"ts": 1, "values": {"a" : 1, "a": 2}}',  # whitespace before a duplicate's colon
        b'{"ts": 1, "values": {"a": ":x", "b": 1}, "diag": {"a": 1}}',  # same key, two objects
        b'{"ts": 1, "values": {"a\\": 1": 2}}',  # an escaped quote before a colon
        b'{"ts": 123456789012345678901234567890, "values": {"a": 1}}',  # beyond 64 bits
        b'{"ts": 1, "seq": 12345678901234567890123, "values": {"a": 1}}',
        b'{"ts": 1e400, "values": {"a": 1}}',
        b'{"ts": 1, "values": {"a": [1, 2]}}',
        b'[{"ts": 1, "values": {"a": 1}}, {"ts": 2, "values": {"a": 1}, "ts": 3}]',
    ]
    fast_taken = 0
    for payload in [p for _, p in messages] + extra:
        fast = _fast_readings(payload)
        if fast is None:
            continue
        fast_taken += 1
        assert [r._asdict() for r in fast] == _strict_readings(payload), payload
    assert fast_taken >= 200  # the plain readings take it
    for payload in extra:
        if (payload.count(b'"a"') > 1 and b"diag" not in payload) or b'"ts": 3' in payload:
            assert _fast_readings(payload) is None, payload  # duplicates: the strict path
