"""S6: payload fuzzing, pure (hypothesis over the parser and judge) and through the pipeline.

The pure test runs 10k generated messages through ``judge_delivery`` and the line builders: it
never raises, never says ``internal_error``, keeps its caps, and every line formats. The
pipeline test publishes a few thousand hostile messages to a real broker, ingester and
InfluxDB and checks stored + quarantined = what the pure judge says was sent, exactly.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.delivery import judge_delivery
from ingest.points import diagnostics_line, message_key, quarantine_line, reading_line
from sensors.catalog import CATALOG
from sensors.qc import GOOD
from sensors.registry import load_registry
from sensors.schema import QuarantineReason
from sensors.settings import Settings
from sensors.validation import MAX_REFUSALS_PER_MESSAGE, Limits
from tests.helpers import (
    hostile_messages,
    influx_count,
    influx_rows,
    publish_all,
    wait_for,
    write_registry,
)

REGISTRY = load_registry()
STATION = REGISTRY.ids[0]
NOW_NS = 1_796_000_000 * 1_000_000_000
LIMITS = Limits()

_SPECIALS = st.sampled_from(["\\", '"', ",", "=", " ", "\n", "\r", "\x00", "\ud800", "é"])
_TEXT = st.text(st.one_of(st.characters(), _SPECIALS), max_size=12)
_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(min_value=-60, max_value=1100),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBER, _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12,
)
_NAME = st.one_of(st.sampled_from(sorted(CATALOG)), _TEXT)
_READING = st.fixed_dictionaries(
    {
        "ts": st.one_of(
            st.integers(min_value=-(10**10), max_value=10**20),
            st.integers(NOW_NS // 10**9 - 40 * 86_400, NOW_NS // 10**9 + 600),
            st.floats(allow_nan=True, allow_infinity=True),
            _TEXT,
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
        ),
        "values": st.dictionaries(_NAME, st.one_of(_NUMBER, _JSON), max_size=6),
    },
    optional={
        "seq": st.one_of(st.integers(), _JSON),
        "diag": st.dictionaries(_TEXT, st.one_of(_NUMBER, _JSON), max_size=4),
    },
)


def _encode(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")


_PAYLOAD = st.one_of(
    _READING.map(_encode),
    st.lists(_READING, min_size=0, max_size=5).map(_encode),
    _JSON.map(_encode),
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.builds(lambda n: b'{"ts": ' + b"9" * n + b', "values": {"a": 1}}', st.integers(1, 4300)),
)
_TOPIC = st.one_of(
    st.just(f"stations/{STATION}/readings"),
    st.just(f"stations/{STATION}/status"),
    st.sampled_from(["stations/a/b/readings", "stations/A!/readings", "<undecodable>"]),
    _TEXT,
)


@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(topic=_TOPIC, payload=_PAYLOAD)
def test_judging_any_payload_never_raises_and_keeps_its_caps(topic: str, payload: bytes):
    delivery = judge_delivery(1, 1, topic, payload, NOW_NS, REGISTRY, LIMITS)
    if delivery.status is not None:
        return
    verdict = delivery.verdict
    assert verdict is not None
    assert len(verdict.refusals) <= MAX_REFUSALS_PER_MESSAGE
    assert verdict.readings or verdict.refusals  # every message is stored or quarantined
    assert len(verdict.readings) <= verdict.readings_received
    key = message_key(delivery.topic, delivery.payload)
    for index, refusal in enumerate(verdict.refusals):
        assert refusal.reason is not QuarantineReason.INTERNAL_ERROR
        line = quarantine_line(
            reason=refusal.reason,
            detail=refusal.detail,
            station_id=delivery.station_id,
            topic=delivery.topic,
            payload=delivery.payload if index == 0 else None,
            received_ns=NOW_NS,
            time_ns=NOW_NS + index,
            slot=refusal.slot,
            parameter=refusal.parameter,
            seq=refusal.seq,
            msg=key,
            ts_ns=refusal.ts_ns,
        )
        assert line.startswith("quarantine,")
        line.encode("utf-8")  # never a lone surrogate in a line
    for reading in verdict.readings:
        assert reading.values
        for parameter, value in reading.values.items():
            spec = CATALOG[parameter]
            assert math.isfinite(value)
            assert spec.min <= value <= spec.max
        reading_line(reading, dict.fromkeys(reading.values, GOOD)).encode("utf-8")
        diag = diagnostics_line(reading)
        if diag is not None:
            diag.encode("utf-8")


def _expected(
    messages: list[tuple[str, bytes]], registry_path: Path, received_ns: int
) -> tuple[int, int, int]:
    """Return (readings stored, statuses stored, quarantine records) the pure judge predicts."""
    from sensors.registry import load_registry as load

    registry = load(registry_path)
    readings = statuses = records = 0
    for topic, payload in messages:
        delivery = judge_delivery(1, 1, topic, payload, received_ns, registry, LIMITS)
        if delivery.status is not None:
            statuses += 1
            continue
        assert delivery.verdict is not None
        readings += len(delivery.verdict.readings)
        total = delivery.verdict.refusals_total
        records += min(total, MAX_REFUSALS_PER_MESSAGE) + (
            1 if total > MAX_REFUSALS_PER_MESSAGE else 0
        )
    return readings, statuses, records


def test_hostile_payloads_through_the_pipeline_are_stored_or_quarantined_exactly(
    settings: Settings, broker, influx, ingester_factory, tmp_path
):
    ids = ["fuzz-a", "fuzz-b", "fuzz-c"]
    registry_path = write_registry(tmp_path / "stations.toml", ids)
    fuzz_settings = settings.model_copy(update={"stations_file": registry_path})
    ingester = ingester_factory(fuzz_settings)
    now = int(time.time())
    messages = hostile_messages(seed=8, n=3000, station_ids=ids, base_ts=now - 3600)
    readings, statuses, records = _expected(messages, registry_path, now * 1_000_000_000)
    assert readings > 1000
    assert records > 1000
    assert publish_all(broker.port, messages, timeout_s=120) == len(messages)
    url, db = settings.influx_url, settings.influx_db

    def counts() -> tuple[int, int, int]:
        return (
            influx_count(url, db, 'SELECT count("air_temperature") FROM readings'),
            influx_count(url, db, 'SELECT count("state") FROM station_status'),
            influx_count(url, db, 'SELECT count("detail") FROM quarantine.quarantine'),
        )

    wait_for(
        lambda: counts() == (readings, statuses, records),
        timeout_s=120,
        message=f"stored + quarantined = sent: {(readings, statuses, records)}",
    )
    assert ingester.metric("meltemi_ingest_handler_errors_total") == 0
    assert ingester.metric("meltemi_ingest_mqtt_connects_total") == 1  # never restarted
    assert ingester.process.process is not None
    assert ingester.process.process.poll() is None
    for reason in ("internal_error", "write_rejected"):
        assert ingester.metric("meltemi_ingest_quarantined_total", f'reason="{reason}"') == 0
    assert "unable to parse" not in ingester.process.log_text()
    # The raw payload, once per message, byte-exact for its first 4 KiB.
    by_key = {message_key(topic, payload): payload for topic, payload in messages}
    rows = influx_rows(
        url, db, "SELECT msg, raw, raw_b64, size FROM quarantine.quarantine WHERE size >= 0"
    )
    assert len(rows) == len({row["msg"] for row in rows})
    for row in rows:
        payload = by_key[row["msg"]]
        head = (
            base64.b64decode(row["raw_b64"])
            if row["raw_b64"] is not None
            else row["raw"].encode("utf-8")
        )
        assert head == payload[:4096]
        assert row["size"] == len(payload)
