"""A QoS 1 publisher as fast as the broker acknowledges, without a network thread (issue 9).

paho-mqtt (MQTT 3.1.1) driven by hand: ``publish()`` writes the packet at once (no thread), and
``loop()`` reads the PUBACKs; up to ``window`` messages stay unacknowledged, which also keeps
paho's 16-bit packet ids from wrapping into a pending one. Runs in its own process so that its
CPU is not the consumer's. The rate it gets is the rate the broker acknowledges at, on a machine
shared with the consumer under test: the burst the issue measured (~4k msg/s on 2 cores).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def publish_all(
    port: int, messages: list[tuple[str, bytes]], window: int = 1000, client_id: str = "fastpub"
) -> float:
    """Publish every message at QoS 1; return the seconds until the last PUBACK."""
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(timeout=0.1)
    started = time.perf_counter()
    sent = 0
    total = len(messages)
    while acked < total:
        while sent < total and sent - acked < window:
            topic, payload = messages[sent]
            client.publish(topic, payload, qos=1)
            sent += 1
        client.loop(timeout=1.0)
    elapsed = time.perf_counter() - started
    client.disconnect()
    return elapsed


def _run(port: int, messages: list[tuple[str, bytes]], started: Any, elapsed: Any) -> None:
    started.value = time.time()
    elapsed.value = publish_all(port, messages)


def publish_in_process(port: int, messages: list[tuple[str, bytes]]) -> tuple[mp.Process, Any, Any]:
    """Start publishing from a separate process; return it, its start time and its duration."""
    started = mp.Value("d", 0.0)
    elapsed = mp.Value("d", 0.0)
    process = mp.Process(target=_run, args=(port, messages, started, elapsed))
    process.start()
    return process, started, elapsed
