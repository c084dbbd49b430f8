"""The MQTT side of the ingester: a durable paho-mqtt 2.x session with manual acknowledgement.

Fixed client id, MQTT v5 with ``clean_start=False`` and a session expiry, so that the broker keeps
the subscription and queues QoS 1 messages while the ingester is down (RELIABILITY §0.3: paho's
default ``MQTT_CLEAN_START_FIRST_ONLY`` would discard that queue on every start). ``on_message``
only judges and enqueues; the writer thread acknowledges once the message is durably handled.
"""

from __future__ import annotations

import logging
import ssl
import struct
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.delivery import Delivery, Handoff, judge_delivery
from ingest.metrics import IngestStats
from ingest.mqtt_fast import UNDECODABLE_TOPIC, FastClient
from sensors.registry import StationRegistry
from sensors.schema import QuarantineReason
from sensors.settings import Settings
from sensors.topics import (
    BROKER_SYS_TOPICS,
    READINGS_FILTER,
    STATUS_FILTER,
    SYS_DROPPED,
    SYS_STORED,
    accepted_topic,
)
from sensors.validation import Limits, Refusal, Verdict

logger = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30  # RELIABILITY R10: back-off capped at 30 s
SESSION_TAKEN_OVER = 0x8E  # MQTT v5 §3.14.2.1: another client connected with our client id
PUBACK = 0x40  # MQTT 3.1.1 §3.4, v5 §3.4: fixed header of PUBACK
_PUBACK = struct.Struct("!BBH")  # type, remaining length 2, packet id


def subscription_filters(shared_group: str | None) -> list[str]:
    """Return the topic filters to subscribe to, inside ``$share/GROUP/`` when scaling out."""
    filters = [READINGS_FILTER, STATUS_FILTER]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


class MqttIntake:
    """Receives station messages into a queue of Deliveries and sends the acknowledgements."""

    def __init__(
        self,
        settings: Settings,
        registry: StationRegistry,
        deliveries: Handoff,
        stats: IngestStats,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.deliveries = deliveries
        self.stats = stats
        self.limits = Limits(settings.future_tolerance_s, settings.backfill_horizon_days * 86_400)
        self.filters = subscription_filters(settings.ingest_shared_group)
        self.accepting = True
        # paho with its receive path replaced for QoS 0/1 PUBLISH (ingest.mqtt_fast): each goes
        # straight to _on_publish; on_message stays for QoS 2 and for a paho it cannot patch.
        client = FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            publish_sink=self._on_publish,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            client.username_pw_set(settings.mqtt_username, password)
        if settings.mqtt_tls:
            client.tls_set(
                ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        # The mid of the $SYS subscription: its refusal (an ACL without it) is logged, never
        # taken for a refusal of the station topics.
        self._sys_mid: int | None = None
        # The broker closed our connection and we have not failed to connect since: if the next
        # connect succeeds at once, someone else was using our client id (below).
        self._closed_by_peer = False
        self.subscribed = threading.Event()

        self.client = client

    def start(self) -> None:
        """Connect (retrying in the background) and start paho's network thread."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's hints stop here
        properties.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        properties.ReceiveMaximum = self.settings.mqtt_receive_maximum
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()

    def stop_intake(self) -> None:
        """Stop taking messages: later ones stay unacknowledged for the next session."""
        self.accepting = False

    def disconnect(self) -> None:
        """Send what is queued (acknowledgements), disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge one message (called by the writer thread, in receive order)."""
        if qos > 0:
            self.client.ack(mid, qos)

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge a batch's messages, in receive order, with one write to the broker.

        paho queues each ``ack()`` as its own packet and wakes its network thread for each
        (a socket-pair byte, then one send per PUBACK): 14 % of the ingester's time under load
        (issue 9 profile). A QoS 1 PUBACK with reason code 0 is the same 4 bytes in 3.1.1 and
        5 (MQTT v5 §3.4.2.1: the reason code may be omitted when it is 0, and paho's own
        ``_send_puback`` sends exactly these), so a batch's PUBACKs are queued as one packet
        through paho's own queue, in order [MQTT-4.6.0-2], and written by its network thread.
        """
        blob = bytearray()
        for mid, qos in acks:
            if qos == 1:
                blob += _PUBACK.pack(PUBACK, 2, mid)
            elif qos == 2:  # never subscribed at QoS 2; kept correct anyway
                self._queue_acks(blob)
                blob = bytearray()
                self.client.ack(mid, qos)
        self._queue_acks(blob)

    def _queue_acks(self, blob: bytearray) -> None:
        if not blob:
            return
        queue_packet = getattr(self.client, "_packet_queue", None)
        if queue_packet is None:  # a paho without it (pinned <3, tested with 2.x): one by one
            for offset in range(0, len(blob), _PUBACK.size):
                self.client.ack(_PUBACK.unpack_from(blob, offset)[2], 1)
            return
        # paho's packet queue: the same path its ack() takes, for several packets at once.
        queue_packet(PUBACK, bytes(blob), 0, 0)

    def publish_accepted(self, station_id: str, payload: bytes) -> None:
        """Re-publish an accepted reading for live consumers (QoS 0, never retained)."""
        self.client.publish(accepted_topic(station_id), payload, qos=0)

    # -- paho callbacks (paho's network thread) --------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.error("MQTT connection refused: %s", reason_code)
            return
        self.stats.mqtt_connects += 1
        if self._closed_by_peer:
            # Mosquitto 2.0.11 closes a taken-over connection without DISCONNECT 0x8E (probed:
            # paho sees only a lost connection). A close by the broker followed by a connect
            # that succeeds at the first attempt is counted as a takeover: a broker that went
            # away refuses that attempt instead. A restart within the 1-s back-off counts once.
            self._count_takeover("connection closed by the broker, accepted again at once")
        self._closed_by_peer = False
        logger.info(
            "connected to %s:%d as %s (session present: %s)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.settings.mqtt_client_id,
            flags.session_present,
        )
        client.subscribe([(f, 1) for f in self.filters])
        if self.accepting:  # not for provision_session
            self._sys_mid = client.subscribe([(topic, 0) for topic in BROKER_SYS_TOPICS])[1]

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if mid == self._sys_mid:
            if refused:
                logger.warning(
                    "the broker refused its $SYS counters (%s): broker drops are not watched; "
                    "grant the ingester role subscribe on %s",
                    ", ".join(refused),
                    ", ".join(BROKER_SYS_TOPICS),
                )
            return
        if refused:
            logger.error("subscription refused by the broker: %s", ", ".join(refused))
            return
        logger.info("subscribed to %s", ", ".join(self.filters))
        self.subscribed.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.subscribed.clear()
        if reason_code.value == SESSION_TAKEN_OVER:
            self._count_takeover("DISCONNECT 0x8E session taken over")
        elif self.accepting and not flags.is_disconnect_packet_from_server:
            self._closed_by_peer = True
        if self.accepting:
            self.stats.mqtt_disconnects += 1
            logger.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._closed_by_peer = False  # the broker is away, not taken by someone else

    def _count_takeover(self, how: str) -> None:
        # Someone else holds our client id: while they do, our messages go to them.
        self.stats.session_takeovers += 1
        logger.error(
            "MQTT session taken over (%s): another client connects as %s (%d times so far)",
            how,
            self.settings.mqtt_client_id,
            self.stats.session_takeovers,
        )

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        # plain paho's path: QoS 2, or a paho the fast path does not support (ingest.mqtt_fast)
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker should refuse these; never trust that it did
            topic = UNDECODABLE_TOPIC
        self._on_publish(message.mid, message.qos, message.dup, topic, bytes(message.payload))

    def _on_publish(self, mid: int, qos: int, dup: bool, topic: str, payload: bytes) -> None:
        """Judge one received message and queue it for the writer (paho's network thread)."""
        if not self.accepting:
            return
        received_ns = time.time_ns()
        if topic.startswith("$SYS/"):  # QoS 0, no acknowledgement, never a station's
            self._on_broker_counter(topic, payload)
            return
        try:
            delivery = judge_delivery(
                mid,
                qos,
                topic,
                payload,
                received_ns,
                self.registry,
                self.limits,
                dup,
            )
        except Exception as exc:
            self.stats.handler_errors += 1
            logger.exception("judging mid=%s on %s failed", mid, topic)
            verdict = Verdict(
                refusals=[
                    Refusal(QuarantineReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:300])
                ]
            )
            delivery = Delivery(mid, qos, topic, payload, received_ns, None, verdict, dup=dup)
        self.stats.messages_received += 1
        if delivery.verdict is not None:
            self.stats.readings_received += delivery.verdict.readings_received
        self.deliveries.put(delivery)

    def _on_broker_counter(self, topic: str, payload: bytes) -> None:
        try:
            value = int(payload)
        except ValueError:
            logger.warning("unreadable broker counter on %s: %r", topic, payload[:40])
            return
        if topic == SYS_DROPPED:
            if value > max(self.stats.broker_dropped, 0):  # at start-up, and on every increase
                logger.warning("the broker dropped messages: %d since it started", value)
            self.stats.broker_dropped = value
        elif topic == SYS_STORED:
            self.stats.broker_stored = value


def provision_session(settings: Settings, timeout_s: float = 10.0) -> bool:
    """Create the ingester's durable session and subscriptions at the broker, then leave.

    From then on the broker queues every station message for the ingester, even if stations
    start publishing before the ingester's first connection (``meltemi up`` starts the
    simulator's back-fill right away). Returns whether the broker confirmed the subscription.
    """
    intake = MqttIntake(settings, StationRegistry([]), Handoff(), IngestStats())
    intake.accepting = False  # anything delivered now stays unacknowledged, for the ingester
    intake.start()
    try:
        return intake.subscribed.wait(timeout_s)
    finally:
        intake.disconnect()


def end_session(settings: Settings, timeout_s: float = 10.0) -> bool:
    """End the durable session of ``settings.mqtt_client_id`` at the broker (a clean start with
    session expiry 0, then a disconnect): the broker stops queueing for it. Returns whether the
    broker accepted the connection."""
    intake = MqttIntake(settings, StationRegistry([]), Handoff(), IngestStats())
    intake.accepting = False
    connected = threading.Event()
    intake.client.on_connect = lambda _c, _u, _f, rc, _p: None if rc.is_failure else connected.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's hints stop here
    properties.SessionExpiryInterval = 0
    intake.client.connect_async(
        settings.mqtt_host,
        settings.mqtt_port,
        keepalive=30,
        clean_start=True,
        properties=properties,
    )
    intake.client.loop_start()
    try:
        return connected.wait(timeout_s)
    finally:
        intake.disconnect()
