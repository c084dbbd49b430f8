"""Issue 9: the pieces the ingester's hot path was rebuilt from keep what they promise.

- The hand-over from paho's thread to the writer loses no message and no wake-up, in order.
- A write leaves nothing behind (httpx keeps each response in a reference cycle holding the
  request's body; with the ingester's raised collector threshold those piled up: 90 MB per
  200k readings in the ingest bench).
- The judge's accepted readings hold what the message said, with the parsed object reused.
"""

from __future__ import annotations

import gc
import json
import random
import threading
import time

import httpx

from ingest.delivery import Delivery, Handoff, judge_delivery
from ingest.influx import InfluxWriter
from sensors.catalog import CATALOG
from sensors.registry import load_registry
from sensors.settings import Settings
from sensors.topics import StationId
from sensors.validation import Limits, Verdict
from tests.helpers import influx_count

N_MESSAGES = 20_000


def _delivery(index: int) -> Delivery:
    return Delivery(index, 1, "stations/x/readings", b"{}", index, StationId("x"))


def test_handoff_delivers_every_message_in_order_and_never_sleeps_through_one():
    """A producer puts 20,000 deliveries in bursts and pauses; the consumer, waiting with a
    long timeout whenever it finds nothing, receives all of them in order. A lost wake-up would
    leave it asleep for the whole timeout with a message waiting: counted, and must be 0."""
    handoff = Handoff()
    rng = random.Random(9)

    def produce() -> None:
        for index in range(N_MESSAGES):
            handoff.put(_delivery(index))
            if rng.random() < 0.002:
                time.sleep(rng.choice([0.0, 0.001, 0.005]))

    producer = threading.Thread(target=produce)
    producer.start()
    received: list[int] = []
    slept_through = 0
    while len(received) < N_MESSAGES:
        item = handoff.pop()
        if item is not None:
            received.append(item.mid)
            continue
        started = time.monotonic()
        woke = handoff.wait(10.0)
        if not woke:
            break
        if time.monotonic() - started >= 10.0:
            slept_through += 1
    producer.join()
    assert received == list(range(N_MESSAGES))
    assert slept_through == 0
    assert handoff.qsize() == 0
    assert handoff.wait(0.01) is False  # nothing left: a short wait times out


def test_handoff_holds_a_bounded_number_of_readings():
    """Arrays of 100 readings handed over faster than they are taken: paho's thread waits, so
    the hand-over never holds more than its bound in readings (the broker's window is counted
    in messages: 5,000 arrays of 500 readings would be gigabytes), and nothing is lost."""
    handoff = Handoff(max_held_readings=1_000, max_block_s=30.0)
    held_after_put: list[int] = []

    def produce() -> None:
        for index in range(200):
            delivery = _delivery(index)
            delivery.verdict = Verdict(readings_received=100)
            handoff.put(delivery)
            held_after_put.append(handoff.held_readings())

    producer = threading.Thread(target=produce)
    producer.start()
    received: list[int] = []
    while len(received) < 200:
        if not handoff.wait(10.0):
            break
        item = handoff.pop()
        if item is not None:
            received.append(item.mid)
            time.sleep(0.001)  # a writer slower than the network
    producer.join()
    assert received == list(range(200))
    assert max(held_after_put) == 1_000  # the bound reached, never passed
    assert handoff.held_readings() == 0


def test_a_write_leaves_no_request_behind_under_the_ingesters_collector_settings(
    settings: Settings,
):
    """Twenty writes with the ingester's collector threshold: no request (nor its body) is
    alive afterwards; the reference cycle used to keep every one until a collection."""
    writer = InfluxWriter(settings)
    writer.ensure_database()
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(50_000, threshold[1], threshold[2])  # what ingest.service sets
    try:
        base_ns = 1_795_000_000 * 10**9
        for batch in range(20):
            lines = [
                f"readings,station=hotpath air_temperature={20.0 + k % 7},seq={k}i "
                f"{base_ns + (batch * 100 + k) * 10**9}"
                for k in range(100)
            ]
            writer.write(lines)
        alive = sum(1 for o in gc.get_objects() if isinstance(o, httpx.Request))
    finally:
        gc.set_threshold(*threshold)
        writer.close()
    assert alive == 0, f"{alive} httpx requests (and their bodies) still alive"
    assert (
        influx_count(settings.influx_url, settings.influx_db, "SELECT count(seq) FROM readings")
        == 2000
    )


def test_accepted_values_are_the_messages_own_with_nothing_added_or_lost():
    """The fast path accepts a message's parsed values object as it is: same keys, same order,
    same floats; one refused value makes a copy without it, the message untouched."""
    registry = load_registry()
    station = next(iter(registry))
    parameters = list(station.parameters)
    now_s = int(time.time())
    values = {p: (CATALOG[p].min + CATALOG[p].max) / 2 + k / 100 for k, p in enumerate(parameters)}
    payload = json.dumps({"ts": now_s, "seq": 4, "values": values}).encode()
    topic = f"stations/{station.id}/readings"
    delivery = judge_delivery(1, 1, topic, payload, now_s * 10**9, registry, Limits())
    assert delivery.verdict is not None
    (accepted,) = delivery.verdict.readings
    assert list(accepted.values.items()) == list(values.items())
    assert (accepted.ts_ns, accepted.seq) == (now_s * 10**9, 4)

    bad = dict(values, **{parameters[0]: 1e9})
    payload = json.dumps({"ts": now_s, "values": bad}).encode()
    delivery = judge_delivery(2, 1, topic, payload, now_s * 10**9, registry, Limits())
    assert delivery.verdict is not None
    (accepted,) = delivery.verdict.readings
    assert list(accepted.values) == parameters[1:]
    assert [r.reason.value for r in delivery.verdict.refusals] == ["out_of_range"]
