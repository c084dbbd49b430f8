"""What paho's thread hands to the writer: one received message, already judged.

Judging (parse and validate, pure and fast) runs on paho's thread inside ``on_message``; QC,
storage and acknowledgement run on the writer thread (STYLE: nothing slow on paho's thread).
The hand-over is a Handoff: a deque, with a wake-up only when the writer waits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from sensors.models import PayloadRefused, StatusIn, parse_status
from sensors.registry import StationRegistry
from sensors.schema import QuarantineReason
from sensors.topics import StationId, parse_station_topic
from sensors.validation import Limits, Refusal, Verdict, judge_readings_message


@dataclass(slots=True)
class Delivery:
    """One MQTT message: its identity for the acknowledgement and what it was judged to hold.

    Not frozen: one is built per message, and a frozen dataclass's __init__ costs several
    times more (issue 9); nothing changes one after the hand-over.
    """

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
    dup: bool = False,
) -> Delivery:
    """Return the Delivery of one message; never raises for bad input."""
    parsed = parse_station_topic(topic)
    if parsed is None:
        refusal = Refusal(QuarantineReason.INVALID_TOPIC, "not stations/{id}/readings|status")
        return Delivery(
            mid, qos, topic, payload, received_ns, None, Verdict(refusals=[refusal]), dup=dup
        )
    station_id, kind = parsed
    if kind == "readings":
        verdict = judge_readings_message(station_id, payload, registry, received_ns, limits)
        return Delivery(mid, qos, topic, payload, received_ns, station_id, verdict, dup=dup)
    try:
        status = parse_status(payload)
    except PayloadRefused as refused:
        verdict = Verdict(refusals=[Refusal(refused.reason, refused.detail)])
        return Delivery(mid, qos, topic, payload, received_ns, station_id, verdict, dup=dup)
    if station_id not in registry:
        refusal = Refusal(QuarantineReason.UNKNOWN_STATION, "station not in the registry")
        return Delivery(
            mid, qos, topic, payload, received_ns, station_id, Verdict(refusals=[refusal]), dup=dup
        )
    return Delivery(mid, qos, topic, payload, received_ns, station_id, status=status, dup=dup)


# What the hand-over may hold, in readings (a message counts its readings, at least 1): the
# broker's window is counted in messages (Receive Maximum), and 5,000 arrays of 500 readings
# parsed in memory would be gigabytes. Past it, paho's thread waits for the writer (it stops
# reading the socket: TCP holds the rest back), at most MAX_BLOCK_S at a time (keepalive).
MAX_HELD_READINGS = 50_000
MAX_BLOCK_S = 10.0


def _cost(delivery: Delivery) -> int:
    verdict = delivery.verdict
    return 1 if verdict is None or verdict.readings_received < 1 else verdict.readings_received


class Handoff:
    """Deliveries from paho's thread to the writer, in receive order.

    ``put`` is a deque append (atomic under the GIL), with an Event set only while the writer
    waits: queue.Queue took a lock and a condition per message on both sides (issue 9). Bounded
    in readings (MAX_HELD_READINGS); each side counts only what it moves (single writer each).
    """

    def __init__(
        self, max_held_readings: int = MAX_HELD_READINGS, max_block_s: float = MAX_BLOCK_S
    ) -> None:
        self._items: deque[Delivery] = deque()
        self._ready = threading.Event()
        self._waiting = False
        self._room = threading.Event()
        self._blocked = False
        self._put_readings = 0  # paho's thread only
        self._taken_readings = 0  # the writer only
        self.max_held_readings = max_held_readings
        self.max_block_s = max_block_s

    def put(self, delivery: Delivery) -> None:
        """Hand one delivery over (paho's thread); wait while too many readings are held."""
        self._items.append(delivery)
        self._put_readings += _cost(delivery)
        if self._waiting:
            self._ready.set()
        if self.held_readings() > self.max_held_readings:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.max_block_s
        self._room.clear()
        self._blocked = True  # pop() reads this after its count: no wake-up can be lost
        try:
            while self.held_readings() > self.max_held_readings:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # the writer is stuck (a slow write): keep the session alive
                self._room.wait(min(remaining, 0.05))
                self._room.clear()
        finally:
            self._blocked = False

    def pop(self) -> Delivery | None:
        """Return the oldest delivery, or None when there is none (the writer)."""
        try:
            delivery = self._items.popleft()
        except IndexError:
            return None
        self._taken_readings += _cost(delivery)
        if self._blocked:
            self._room.set()
        return delivery

    def wait(self, timeout_s: float) -> bool:
        """Return once a delivery is there (True) or after ``timeout_s`` (False)."""
        if self._items:
            return True
        self._ready.clear()
        self._waiting = True  # put() reads this after its append: no wake-up can be lost
        try:
            return bool(self._items) or self._ready.wait(timeout_s) or bool(self._items)
        finally:
            self._waiting = False

    def qsize(self) -> int:
        """Return how many deliveries wait."""
        return len(self._items)

    def held_readings(self) -> int:
        """Return the readings handed over and not yet taken."""
        return self._put_readings - self._taken_readings
