"""What paho's thread hands to the writer: one received message, already judged.

Judging (parse and validate, pure and fast) runs on paho's thread inside ``on_message``; QC,
storage and acknowledgement run on the writer thread (STYLE: nothing slow on paho's thread).
"""

from __future__ import annotations

from dataclasses import dataclass

from sensors.models import PayloadRefused, StatusIn, parse_status
from sensors.registry import StationRegistry
from sensors.schema import QuarantineReason
from sensors.topics import StationId, parse_station_topic
from sensors.validation import Limits, Refusal, Verdict, judge_readings_message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One MQTT message: its identity for the acknowledgement and what it was judged to hold."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ns: int
    station_id: StationId | None
    verdict: Verdict | None = None  # for readings messages
    status: StatusIn | None = None  # for status messages
    # MQTT DUP flag: the broker delivered this message before (a redelivery after a lost
    # acknowledgement), so its quarantine records may exist already.
    dup: bool = False


def judge_delivery(
    mid: int,
    qos: int,
    topic: str,
    payload: bytes,
    received_ns: int,
    registry: StationRegistry,
    limits: Limits,
) -> Delivery:
    """Return the Delivery of one message; never raises for bad input."""
    parsed = parse_station_topic(topic)
    if parsed is None:
        refusal = Refusal(QuarantineReason.INVALID_TOPIC, "not stations/{id}/readings|status")
        return Delivery(mid, qos, topic, payload, received_ns, None, Verdict(refusals=[refusal]))
    station_id, kind = parsed
    if kind == "readings":
        verdict = judge_readings_message(station_id, payload, registry, received_ns, limits)
        return Delivery(mid, qos, topic, payload, received_ns, station_id, verdict)
    try:
        status = parse_status(payload)
    except PayloadRefused as refused:
        verdict = Verdict(refusals=[Refusal(refused.reason, refused.detail)])
        return Delivery(mid, qos, topic, payload, received_ns, station_id, verdict)
    if station_id not in registry:
        refusal = Refusal(QuarantineReason.UNKNOWN_STATION, "station not in the registry")
        return Delivery(
            mid, qos, topic, payload, received_ns, station_id, Verdict(refusals=[refusal])
        )
    return Delivery(mid, qos, topic, payload, received_ns, station_id, status=status)
