"""One MQTT connection per station, all driven by one selector loop on one thread.

A real station holds its own connection, so each simulated station has its own paho client,
with its station id as client id and username, its last will, and its own buffer. paho runs in
"external loop" mode: no thread per client; the shared ``selectors`` loop calls ``loop_read``/
``loop_write`` when a socket is ready, paho's socket callbacks tell it which sockets to watch,
and ``loop_misc`` runs once a second per client for keep-alive. A thousand clients then cost
a thousand idle sockets, not a thousand threads.

A station's readings leave in order: first the batches that were in flight when a connection
dropped, then the back-fill history, then the ring buffer; a batch of more than one reading is
a JSON array of at most 500 (CONTRACT §4). Each new connection uses a fresh paho client, so paho
never re-sends behind the buffer's back: what was unacknowledged is re-sent from the buffer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.errors import SimulatorError
from firmware_sim.state import SpooledItem
from sensors.models import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE, format_ts
from sensors.settings import Settings
from sensors.topics import readings_topic, status_topic

logger = logging.getLogger(__name__)

MAX_INFLIGHT_MESSAGES: Final = 8  # per station: enough to fill the pipe on loopback
BATCH_BYTES: Final = MAX_PAYLOAD_BYTES - 16 * 1024  # headroom below the contract's limit
BACKOFF_BASE_S: Final = 1.0

HistorySource = Iterator[list[SpooledItem]]


class StationLink:
    """A station's connection, its outgoing queue and its ring buffer."""

    def __init__(
        self,
        net: Network,
        station_id: str,
        capacity: int,
        history: HistorySource | None = None,
    ) -> None:
        self.net = net
        self.station_id = station_id
        self.topic = readings_topic(station_id)
        self.buffer: deque[SpooledItem] = deque()
        self.capacity = capacity
        self.retry: deque[list[SpooledItem]] = deque()
        self.history = history
        self._history_head: list[SpooledItem] | None = None
        self.inflight: dict[int, list[SpooledItem]] = {}
        self.client: mqtt.Client | None = None
        self.sock: socket.socket | None = None
        self.connected = False
        self.silent = False
        self.failures = 0
        self.next_attempt = 0.0
        self.dropped = 0
        self.published_readings = 0
        self.last_acked_seq: int | None = None

    # ---- the queue ----------------------------------------------------------------------

    def enqueue(self, item: SpooledItem) -> None:
        """Add a sampled reading to the ring buffer, dropping the oldest when it is full."""
        self.buffer.append(item)
        if len(self.buffer) > self.capacity:
            lost = self.buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "station %s: buffer full (%d), oldest reading seq=%d dropped (%d so far)",
                    self.station_id,
                    self.capacity,
                    lost.seq,
                    self.dropped,
                )
        self.net.dirty.add(self)

    def pending(self) -> int:
        """Return how many readings wait to be acknowledged (history not yet generated aside)."""
        waiting = sum(len(batch) for batch in self.retry) + len(self.buffer)
        return waiting + sum(len(batch) for batch in self.inflight.values())

    def idle(self) -> bool:
        """Return True when nothing waits: every reading has been acknowledged."""
        return self.pending() == 0 and self._next_history() is None

    def unsent(self) -> list[SpooledItem]:
        """Return every unacknowledged reading in send order (for the spool at a stop)."""
        items = [item for batch in self.inflight.values() for item in batch]
        items += [item for batch in self.retry for item in batch]
        if self._history_head:
            items += self._history_head
        return items + list(self.buffer)

    def _next_history(self) -> list[SpooledItem] | None:
        if self._history_head is None and self.history is not None:
            self._history_head = next(self.history, None)
            if self._history_head is None:
                self.history = None
        return self._history_head

    def _next_batch(self) -> list[SpooledItem] | None:
        if self.retry:
            return self.retry.popleft()
        history = self._next_history()
        if history is not None:
            self._history_head = None
            return history
        if not self.buffer:
            return None
        if self.buffer[0].alone:
            return [self.buffer.popleft()]
        batch: list[SpooledItem] = []
        size = 2
        while self.buffer and len(batch) < MAX_READINGS_PER_MESSAGE:
            item = self.buffer[0]
            if item.alone or size + len(item.text) + 1 > BATCH_BYTES:
                break
            batch.append(self.buffer.popleft())
            size += len(item.text) + 1
        return batch

    def pump(self) -> None:
        """Publish queued batches while connected and the in-flight window allows."""
        client = self.client
        while self.connected and not self.silent and client is not None:
            if len(self.inflight) >= MAX_INFLIGHT_MESSAGES:
                return
            batch = self._next_batch()
            if batch is None:
                return
            if len(batch) == 1:
                payload = batch[0].text
            else:
                payload = "[" + ",".join(item.text for item in batch) + "]"
            info = client.publish(self.topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.retry.appendleft(batch)
                return
            self.inflight[info.mid] = batch

    # ---- the connection -----------------------------------------------------------------

    def connect(self) -> None:
        """Open a new connection (a fresh paho client); on failure schedule a retry."""
        self._discard_client()
        net = self.net
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.station_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
            userdata=self,
        )
        client.username_pw_set(self.station_id, net.secrets.get(self.station_id))
        client.will_set(
            status_topic(self.station_id), net.status_payload("offline"), qos=1, retain=True
        )
        if net.settings.mqtt_tls:
            ca = net.settings.mqtt_ca_file
            client.tls_set(ca_certs=str(ca) if ca is not None else None)
        client.max_inflight_messages_set(MAX_INFLIGHT_MESSAGES + 2)
        client.max_queued_messages_set(0)
        client.on_connect = _on_connect
        client.on_disconnect = _on_disconnect
        client.on_publish = _on_publish
        client.on_socket_open = _on_socket_open
        client.on_socket_close = _on_socket_close
        client.on_socket_register_write = _on_register_write
        client.on_socket_unregister_write = _on_unregister_write
        self.client = client
        try:
            client.connect(net.settings.mqtt_host, net.settings.mqtt_port, net.keepalive_s)
        except (OSError, ValueError) as exc:
            logger.debug("station %s: connect failed: %s", self.station_id, exc)
            self._discard_client()
            self.schedule_reconnect()

    def schedule_reconnect(self) -> None:
        """Plan the next attempt: exponential backoff with jitter (half fixed, half random)."""
        delay = min(self.net.max_backoff_s, BACKOFF_BASE_S * 2.0 ** min(self.failures, 16))
        self.failures += 1
        self.next_attempt = time.monotonic() + delay * (0.5 + 0.5 * self.net.rng.random())
        self.net.waiting.add(self)

    def connection_lost(self) -> None:
        """Put what was in flight back at the front, in order, and plan a reconnect."""
        self.connected = False
        if self.inflight:
            self.retry.extendleft(reversed(list(self.inflight.values())))
            self.inflight.clear()
        self._discard_client()
        self.schedule_reconnect()

    def _discard_client(self) -> None:
        if self.sock is not None:
            self.net.unwatch(self.sock)
        client, self.client, self.sock = self.client, None, None
        if client is not None:
            client.on_socket_close = None
            sock = client.socket()
            if sock is not None:
                sock.close()

    def go_silent(self) -> None:
        """Hang: stop all MQTT traffic but leave the socket open (no DISCONNECT, no FIN)."""
        self.silent = True
        if self.sock is not None:
            self.net.unwatch(self.sock)
        self.net.waiting.discard(self)

    def reboot(self) -> None:
        """Come back from a hang: drop the dead connection without a word and reconnect."""
        self.silent = False
        self.connected = False
        if self.inflight:
            self.retry.extendleft(reversed(list(self.inflight.values())))
            self.inflight.clear()
        self._discard_client()
        self.failures = 0
        self.connect()

    def publish_status(self, state: str) -> int | None:
        """Publish the retained status; return its mid (None when not connected)."""
        if self.client is None or not self.connected:
            return None
        info = self.client.publish(
            status_topic(self.station_id), self.net.status_payload(state), qos=1, retain=True
        )
        return info.mid if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS else None


def load_station_secrets(path: Path | None) -> dict[str, str]:
    """Return {station_id: broker secret} from the simulator's credentials file (0600 JSON).

    `meltemi up` writes it (each simulated station is a broker identity of its own); None
    means the stations connect with their id and no password (the tests' anonymous brokers).
    """
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"{path}: cannot read the station credentials: {exc}") from exc
    if not isinstance(document, dict):
        raise SimulatorError(f"{path}: expected an object of station id -> secret")
    return {str(k): str(v) for k, v in document.items()}


class Network:
    """The selector loop shared by every station's connection."""

    def __init__(
        self, settings: Settings, firmware: str, keepalive_s: int, max_backoff_s: float, seed: int
    ) -> None:
        self.settings = settings
        self.secrets = load_station_secrets(settings.sim_credentials_file)
        self.firmware = firmware
        self.keepalive_s = keepalive_s
        self.max_backoff_s = max_backoff_s
        self.selector = selectors.DefaultSelector()
        self.rng = random.Random(seed)
        self.dirty: set[StationLink] = set()
        self.waiting: set[StationLink] = set()
        self.links: list[StationLink] = []
        self.status_mids: dict[StationLink, int] = {}
        self.closing = False  # set at shutdown: disconnects are ours, not losses

    def status_payload(self, state: str) -> str:
        """Return a status message body (CONTRACT §4)."""
        return json.dumps(
            {
                "state": state,
                "ts": format_ts(time.time_ns() // 1000 * 1000),
                "firmware": self.firmware,
            }
        )

    def watch(self, sock: socket.socket, link: StationLink) -> None:
        """Start watching a socket for reads."""
        link.sock = sock
        self.selector.register(sock, selectors.EVENT_READ, link)

    def unwatch(self, sock: socket.socket) -> None:
        """Stop watching a socket."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def set_write(self, sock: socket.socket, link: StationLink, want: bool) -> None:
        """Watch (or stop watching) a socket for writability."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, events, link)

    def poll(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for socket events and service them."""
        if not self.selector.get_map():
            time.sleep(timeout_s)
            return
        for key, mask in self.selector.select(timeout_s):
            link: StationLink = key.data
            client = link.client
            if client is None or link.silent:
                continue
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and link.client is client:
                client.loop_write()

    def housekeeping(self, now: float) -> None:
        """Keep-alives of every connection and due reconnects (call about once a second)."""
        for link in self.links:
            client = link.client
            if client is None or link.silent:
                continue
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS and link.connected:
                link.connection_lost()
        for link in [link for link in self.waiting if link.next_attempt <= now]:
            self.waiting.discard(link)
            if not link.silent:
                link.connect()

    def pump_dirty(self) -> None:
        """Publish what stations have queued since the last call."""
        dirty, self.dirty = self.dirty, set()
        for link in dirty:
            link.pump()


def _link(userdata: Any) -> StationLink:
    assert isinstance(userdata, StationLink)
    return userdata


def _on_connect(
    client: mqtt.Client, userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
) -> None:
    link = _link(userdata)
    if link.client is not client:
        return
    if reason.is_failure:
        logger.warning("station %s: broker refused the connection: %s", link.station_id, reason)
        link.connection_lost()
        return
    link.connected = True
    if link.failures:
        logger.info("station %s: reconnected after %d attempt(s)", link.station_id, link.failures)
    link.failures = 0
    link.publish_status("online")
    link.net.dirty.add(link)


def _on_disconnect(
    client: mqtt.Client, userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
) -> None:
    link = _link(userdata)
    if link.client is not client or link.net.closing:
        return
    if link.connected:
        logger.info("station %s: connection lost (%s)", link.station_id, reason)
    link.connection_lost()


def _on_publish(
    client: mqtt.Client, userdata: Any, mid: int, _reason: ReasonCode, _properties: Any
) -> None:
    link = _link(userdata)
    if link.client is not client:
        return
    batch = link.inflight.pop(mid, None)
    if batch is not None:
        link.published_readings += len(batch)
        link.last_acked_seq = batch[-1].seq
        link.net.dirty.add(link)
    elif link.net.status_mids.get(link) == mid:
        del link.net.status_mids[link]


def _on_socket_open(_client: mqtt.Client, userdata: Any, sock: Any) -> None:
    _link(userdata).net.watch(sock, _link(userdata))


def _on_socket_close(_client: mqtt.Client, userdata: Any, sock: Any) -> None:
    link = _link(userdata)
    link.net.unwatch(sock)
    if link.sock is sock:
        link.sock = None


def _on_register_write(_client: mqtt.Client, userdata: Any, sock: Any) -> None:
    _link(userdata).net.set_write(sock, _link(userdata), True)


def _on_unregister_write(_client: mqtt.Client, userdata: Any, sock: Any) -> None:
    _link(userdata).net.set_write(sock, _link(userdata), False)


OnIdle = Callable[[], None]
