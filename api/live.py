"""The live feed behind ``GET /v1/stream``: the broker's accepted readings, fanned out to clients.

How a reading reaches a browser::

    station --stations/{id}/readings--> Mosquitto --> ingester (validate, QC, store)
        --meltemi/accepted/{id} (QoS 0, LatestEntry JSON)--> Mosquitto --> LiveFeed (paho thread)
        --loop.call_soon_threadsafe--> StreamHub (event loop) --per-client queue--> SSE response

The ingester re-publishes only what it accepted, and the API needs no access to the ingester's
process. The broker does not prove who wrote a message, though, so the feed trusts nothing on
the accepted topic by itself (issue 8 part 7): a retained message there is ignored (a newly
started API must not replay one), and every entry is judged again by ``api.live_check`` (the
station's registered parameters, the catalogue ranges, the ``ts`` window, no extra keys) before
it is numbered, kept for resumption or streamed; what fails is dropped and counted by reason
(``meltemi_api_live_dropped_total``). Station status (``stations/{id}/status``,
retained, set offline by the station's last will) comes straight from the broker.

paho runs its own network thread (``loop_start``); its callbacks only decode and validate, then
hand the event to the event loop with ``loop.call_soon_threadsafe`` (the bridge Home Assistant's
MQTT client uses). On the loop, the hub numbers each event, keeps it in a short ring buffer for
``Last-Event-ID`` resumption and puts it on every matching client's bounded queue; a client whose
queue is full is dropped (its stream ends and EventSource reconnects, resuming from the ring)
instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

import paho.mqtt.client as mqtt
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from api.live_check import LiveDrop, TimeWindow, check_entry
from sensors.alerting import ALERTS_FILTER, ALERTS_TOPIC_PREFIX, AlertMessage
from sensors.derived import derive_readings
from sensors.models import MAX_PAYLOAD_BYTES, PayloadRefused, format_ts, parse_status, parse_ts_ns
from sensors.outbound import LatestEntry, decode_entries
from sensors.registry import StationRegistry
from sensors.settings import Settings
from sensors.topics import (
    ACCEPTED_FILTER,
    ACCEPTED_PREFIX,
    STATUS_FILTER,
    StationId,
    is_station_id,
    parse_station_topic,
)

logger = logging.getLogger(__name__)

EventKind = Literal["reading", "status", "alert"]

RING_SIZE: Final = 2000  # events kept for resumption: ~3 min of a 12-station network at 1 Hz
REPLAY_WINDOW_S: Final = 300.0  # ... and never older than 5 minutes (issue 5: "a short window")
MAX_STREAMS_PER_CLIENT: Final = 10  # RELIABILITY S10: one address cannot take every slot
CLIENT_QUEUE_SIZE: Final = 500  # events a client may lag behind before it is dropped
INTAKE_QUEUE_SIZE: Final = 10_000  # paho -> loop hand-over; full only if the loop is stalled
HEARTBEAT_S: Final = 15.0  # issue 5: a heartbeat comment every 15 s keeps proxies from timing out
RETRY_MS: Final = 3000  # SSE `retry:` advice to EventSource
RECONNECT_DELAY_S: Final = (1, 30)  # paho's reconnect back-off, min and max


class StreamLimitReached(Exception):
    """Every stream slot is taken (settings.api_max_streams)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One numbered event as sent to clients; ``frame`` is its complete SSE text."""

    id: int
    kind: EventKind
    station: StationId
    frame: bytes
    created_s: float  # time.monotonic() when it was numbered


@dataclass(eq=False, slots=True)
class Subscription:
    """One client's view of the hub: its filter, its bounded queue and what it missed."""

    stations: frozenset[str] | None
    queue: asyncio.Queue[StreamEvent | None]
    client: str | None = None  # the client's address, for the per-client cap
    backlog: list[StreamEvent] = field(default_factory=list)
    # True when Last-Event-ID asked for events no longer in the ring: the client should re-read
    # /v1/latest instead of trusting that it saw everything.
    gap: bool = False
    resumed: bool = False  # the client sent a Last-Event-ID
    dropped: bool = False

    def wants(self, station: str) -> bool:
        """Return True when this client's filter lets ``station`` through."""
        return self.stations is None or station in self.stations


def format_frame(event_id: int, kind: str, data: str) -> bytes:
    """Return one SSE event (``data`` is single-line JSON, so one ``data:`` line suffices)."""
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode()


class StreamHub:
    """Numbers events, keeps a short ring for resumption and fans out to bounded client queues.

    Used from the event loop's thread only.
    """

    def __init__(
        self,
        max_streams: int,
        *,
        ring_size: int = RING_SIZE,
        replay_window_s: float = REPLAY_WINDOW_S,
        client_queue_size: int = CLIENT_QUEUE_SIZE,
        max_streams_per_client: int = MAX_STREAMS_PER_CLIENT,
    ) -> None:
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        self.replay_window_s = replay_window_s
        self.client_queue_size = client_queue_size
        self._ring: collections.deque[StreamEvent] = collections.deque(maxlen=ring_size)
        # Ids start at the boot time in microseconds, so they keep increasing across restarts of
        # the API: a Last-Event-ID from an earlier process is always older than this one's ring.
        self._next_id = time.time_ns() // 1000
        self._subscriptions: set[Subscription] = set()
        self.dropped_clients = 0

    @property
    def active(self) -> int:
        """Return the number of open streams."""
        return len(self._subscriptions)

    @property
    def last_id(self) -> int:
        """Return the id of the newest event (one less than the next id)."""
        return self._next_id - 1

    def publish(self, kind: EventKind, station: StationId, data: str) -> StreamEvent:
        """Number an event, keep it in the ring and queue it for every interested client."""
        event = StreamEvent(
            self._next_id, kind, station, format_frame(self._next_id, kind, data), time.monotonic()
        )
        self._next_id += 1
        self._ring.append(event)
        for subscription in list(self._subscriptions):
            if not subscription.wants(station):
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(subscription)
        return event

    def subscribe(
        self,
        stations: frozenset[str] | None,
        last_event_id: int | None = None,
        client: str | None = None,
    ) -> Subscription:
        """Open a stream; with ``last_event_id``, its backlog holds what the client missed.

        Raise StreamLimitReached when ``max_streams`` are open, or ``max_streams_per_client``
        from this client's address.
        """
        if len(self._subscriptions) >= self.max_streams:
            raise StreamLimitReached(f"too many live streams are open (limit {self.max_streams})")
        if client is not None:
            mine = sum(1 for other in self._subscriptions if other.client == client)
            if mine >= self.max_streams_per_client:
                raise StreamLimitReached(
                    f"too many live streams from one address (limit {self.max_streams_per_client})"
                )
        subscription = Subscription(stations, asyncio.Queue(self.client_queue_size), client)
        if last_event_id is not None:
            subscription.resumed = True
            self._prune()
            oldest = self._ring[0].id if self._ring else self._next_id
            if last_event_id > self.last_id:
                subscription.gap = True  # not an id of ours: no way to know what was missed
            else:
                subscription.gap = last_event_id + 1 < oldest
                subscription.backlog = [
                    event
                    for event in self._ring
                    if event.id > last_event_id and subscription.wants(event.station)
                ]
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a stream (idempotent)."""
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every stream (shutdown)."""
        for subscription in list(self._subscriptions):
            self._end(subscription)
        self._subscriptions.clear()

    def _prune(self) -> None:
        horizon = time.monotonic() - self.replay_window_s
        while self._ring and self._ring[0].created_s < horizon:
            self._ring.popleft()

    def _drop(self, subscription: Subscription) -> None:
        logger.warning(
            "dropping a slow stream client (%d events behind)", subscription.queue.qsize()
        )
        self.dropped_clients += 1
        subscription.dropped = True
        self._subscriptions.discard(subscription)
        self._end(subscription)

    @staticmethod
    def _end(subscription: Subscription) -> None:
        # Make room for the end marker: the client is leaving, what it had not read is moot.
        while not subscription.queue.empty():
            subscription.queue.get_nowait()
        subscription.queue.put_nowait(None)


@asynccontextmanager
async def live_feed_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start ``app.state.live_feed`` for the app's lifetime (an api.app lifespan hook)."""
    feed: LiveFeed = app.state.live_feed
    await feed.start()
    try:
        yield
    finally:
        await feed.stop()


@dataclass(frozen=True, slots=True)
class _Item:
    kind: EventKind
    station: StationId
    data: str


def reading_event_data(entry: LatestEntry) -> str:
    """Return the ``reading`` event's JSON: the latest entry plus its derived parameters.

    A derived value's QC flag is the worst of its inputs' flags.
    """
    values = dict(entry.values)
    qc = dict(entry.qc)
    checks = dict(entry.checks)
    for derived_id, derived in derive_readings([(values, qc)])[0].items():
        values[derived_id] = derived.value
        qc[derived_id] = derived.flag
        if derived.check:
            checks[derived_id] = derived.check
    served = entry.model_copy(update={"values": values, "qc": qc, "checks": checks})
    return served.model_dump_json(exclude_none=True)


def alert_event_data(key: str, payload: bytes, registry: StationRegistry) -> tuple[str, str] | None:
    """Return (key, event JSON) of an alert message, or None when it is not one to stream."""
    try:
        message = AlertMessage.model_validate_json(payload)
    except ValidationError:
        return None
    if message.station != key or message.area.key != key:
        return None
    if message.area.kind == "station" and key not in registry:
        return None
    event = {
        "identifier": message.identifier,
        "episode": message.episode,
        "rule": message.rule,
        "station": key,
        "msg_type": message.msg_type,
        "all_clear": message.all_clear,
        "active": message.active,
        "level": message.level,
        "severity": message.severity,
        "sent": format_ts(int(message.sent.timestamp()) * 1_000_000_000),
        "event": {"el": message.event.el, "en": message.event.en},
        "headline": {"el": message.headline.el, "en": message.headline.en},
        "area": {"el": message.area.description.el, "en": message.area.description.en},
        "cap": f"/v1/alerts/{message.identifier}.cap",
    }
    return key, json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def status_event_data(
    station: StationId, payload: bytes, window: TimeWindow | None = None, now_ns: int = 0
) -> str | LiveDrop:
    """Return the ``status`` event's JSON for a status message, or why it is not shown.

    A status is data about the station (state, ts, firmware), never registry facts: a message
    with any other key (a name, a position, parameters) is not a status (StatusIn forbids extra
    keys) and is dropped, and the event carries exactly these four keys. A retained status may
    be old (a station offline for months), so only a ``ts`` ahead of the window is refused.
    """
    try:
        status = parse_status(payload)
    except PayloadRefused:
        return LiveDrop.STATUS_MALFORMED
    ts: str | None = None
    if status.ts is not None:
        try:
            ts_ns = parse_ts_ns(status.ts)
            ts = format_ts(ts_ns)
        except (ValueError, OverflowError):
            return LiveDrop.STATUS_MALFORMED
        if window is not None and window.judge_ns(ts_ns, now_ns) is LiveDrop.TS_IN_FUTURE:
            return LiveDrop.STATUS_TS_IN_FUTURE
    return json.dumps(
        {"station": station, "state": status.state, "ts": ts, "firmware": status.firmware},
        separators=(",", ":"),
    )


class LiveFeed:
    """The API's own MQTT subscriber: accepted readings and station status, into a StreamHub."""

    def __init__(
        self,
        settings: Settings,
        registry: StationRegistry,
        *,
        hub: StreamHub | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        retry_ms: int = RETRY_MS,
        on_drop: Callable[[LiveDrop], None] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.window = TimeWindow(
            settings.future_tolerance_s, settings.backfill_horizon_days * 86_400.0
        )
        # Messages and entries not streamed, by reason (written on paho's thread only).
        self.dropped: collections.Counter[LiveDrop] = collections.Counter()
        self._on_drop = on_drop
        self.hub = hub or StreamHub(settings.api_max_streams)
        self.heartbeat_s = heartbeat_s
        self.retry_ms = retry_ms
        self.client_id = f"meltemi-api-live-{uuid.uuid4().hex[:12]}"  # unique per process
        self.ignored_messages = 0
        self.statuses: dict[str, str] = {}  # station -> its last status event's JSON
        # The broker's last refusal (CONNACK or SUBACK failure), None once subscribed; /health
        # reports the feed down while it is set, and the log says why.
        self.last_refusal: str | None = None
        self._connected = threading.Event()
        self._alerts_mid: int | None = None  # the alerts subscription (see _on_connect)
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._intake: asyncio.Queue[_Item] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._client: mqtt.Client | None = None

    @property
    def connected(self) -> bool:
        """Return True while subscribed to the broker."""
        return self._connected.is_set()

    @property
    def started_at(self) -> float:
        """Return time.monotonic() when the feed started connecting (for /health's grace)."""
        return self._started_at

    async def start(self) -> None:
        """Connect in the background (the API serves even while the broker is away)."""
        self._started_at = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._intake = asyncio.Queue(INTAKE_QUEUE_SIZE)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="live-feed-dispatch")
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,  # a live view needs no queued backlog after a reconnect
            protocol=mqtt.MQTTv311,
        )
        # The API's own broker user (MELTEMI_API_MQTT_USERNAME), never the ingester's: on a
        # broker with use_username_as_clientid a second login as the ingester's user would
        # take over its session (RELIABILITY S4). Its dynsec role (meltemi/broker_admin.py)
        # gives it read access only.
        if self.settings.api_mqtt_username:
            secret = self.settings.api_mqtt_password
            client.username_pw_set(
                self.settings.api_mqtt_username, secret.get_secret_value() if secret else None
            )
        if self.settings.mqtt_tls:
            ca = self.settings.mqtt_ca_file
            client.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(*RECONNECT_DELAY_S)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        client.loop_start()
        self._client = client
        logger.info(
            "live feed connecting to %s:%d as %s",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.client_id,
        )

    async def stop(self) -> None:
        """Stop intake, disconnect, and end every open stream."""
        client, self._client = self._client, None
        self._connected.clear()  # before disconnect(): a planned disconnection is no warning
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        self._connected.clear()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        self.hub.close()
        logger.info("live feed stopped")

    # --- paho's network thread -------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_refusal = f"connection refused: {reason_code}"
            logger.warning("live feed: broker refused the connection: %s", reason_code)
            return
        client.subscribe([(ACCEPTED_FILTER, 0), (STATUS_FILTER, 0)])
        # Issue 10: the alert engine's messages, on their own subscription so that a broker
        # whose API role predates them refuses only this one and the readings still stream.
        self._alerts_mid = client.subscribe(ALERTS_FILTER, 1)[1]

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if mid == self._alerts_mid:
            if any(code.is_failure for code in reason_codes):
                logger.warning("live feed: no alert events, subscription refused: %s", reason_codes)
            return
        if any(code.is_failure for code in reason_codes):
            # Connected but not subscribed (e.g. an ACL without read access): the stream would
            # stay silent, so the feed is not "connected" for /health.
            self.last_refusal = f"subscription refused: {reason_codes}"
            logger.warning("live feed: subscription refused: %s", reason_codes)
            return
        self.last_refusal = None
        self._connected.set()
        logger.info("live feed subscribed to %s and %s", ACCEPTED_FILTER, STATUS_FILTER)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._connected.is_set():
            logger.warning("live feed disconnected: %s", reason_code)
        self._connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            items = self._decode(msg.topic, bytes(msg.payload), retained=bool(msg.retain))
        except Exception:  # a loop boundary: one bad message must not stop the feed
            logger.exception("live feed: cannot handle a message on %s", msg.topic)
            items = []
        if not items:
            self.ignored_messages += 1
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            for item in items:
                loop.call_soon_threadsafe(self._offer, item)
        except RuntimeError:  # the loop closed between the check and the call (shutdown)
            return

    def _count_drop(self, reason: LiveDrop, topic: str) -> None:
        self.dropped[reason] += 1
        if self._on_drop is not None:
            self._on_drop(reason)
        logger.debug("live feed: not streamed (%s) from %s", reason.value, topic)

    def _decode(self, topic: str, payload: bytes, *, retained: bool = False) -> list[_Item]:
        if not payload or len(payload) > MAX_PAYLOAD_BYTES:
            return []  # an empty retained message clears a status; nothing to show
        now_ns = time.time_ns()
        if topic.startswith(ACCEPTED_PREFIX):
            return self._decode_accepted(topic, payload, retained, now_ns)
        if topic.startswith(ALERTS_TOPIC_PREFIX):
            return self._decode_alert(topic, payload, retained)
        parsed = parse_station_topic(topic)
        if parsed is None or parsed[1] != "status" or parsed[0] not in self.registry:
            return []
        data = status_event_data(parsed[0], payload, self.window, now_ns)
        if isinstance(data, LiveDrop):
            self._count_drop(data, topic)
            return []
        return [_Item("status", parsed[0], data)]

    def _decode_accepted(
        self, topic: str, payload: bytes, retained: bool, now_ns: int
    ) -> list[_Item]:
        # The ingester publishes accepted readings with retain=0; a retained one was left on
        # the broker by someone (or something) earlier and is not what was just stored. The
        # broker sets the flag on delivery only for messages sent from its retained store
        # (MQTT 3.1.1 §3.3.1.3), so live forwarding of a genuine entry is never refused here.
        if retained:
            self._count_drop(LiveDrop.RETAINED, topic)
            return []
        station = topic[len(ACCEPTED_PREFIX) :]
        if not is_station_id(station) or station not in self.registry:
            self._count_drop(LiveDrop.UNKNOWN_STATION, topic)
            return []
        try:  # one station's entries of one write (an array), or a single entry
            entries = decode_entries(payload)
        except ValidationError:
            self._count_drop(LiveDrop.MALFORMED, topic)
            return []
        if not entries:
            self._count_drop(LiveDrop.MALFORMED, topic)
        items = []
        for entry in entries:
            problem = check_entry(entry, station, self.registry, self.window, now_ns)
            if problem is None:
                items.append(_Item("reading", StationId(station), reading_event_data(entry)))
            else:
                self._count_drop(problem, topic)
        return items

    def _decode_alert(self, topic: str, payload: bytes, retained: bool) -> list[_Item]:
        # Only the alert engine's broker role may publish here (meltemi/broker_admin.py); the
        # message is still re-checked: not retained, the engine's own schema, and the topic's
        # key equal to the message's station or area, which must exist.
        data = alert_event_data(topic[len(ALERTS_TOPIC_PREFIX) :], payload, self.registry)
        if retained or data is None:
            self._count_drop(LiveDrop.RETAINED if retained else LiveDrop.MALFORMED, topic)
            return []
        key, text = data
        return [_Item("alert", StationId(key), text)]

    # --- the event loop --------------------------------------------------------------------

    def _offer(self, item: _Item) -> None:
        # Runs on the loop (scheduled by call_soon_threadsafe): Queue.put_nowait, counted when
        # the intake is full instead of raising inside the loop's callback machinery.
        assert self._intake is not None
        try:
            self._intake.put_nowait(item)
        except asyncio.QueueFull:
            self.ignored_messages += 1
            logger.warning("live feed: intake full, an event was not streamed")

    async def _dispatch(self) -> None:
        assert self._intake is not None
        while True:
            item = await self._intake.get()
            try:
                self.hub.publish(item.kind, item.station, item.data)
                if item.kind == "status":
                    self.statuses[item.station] = item.data
            except Exception:  # a loop boundary: keep streaming the next events
                logger.exception("live feed: cannot publish an event")
