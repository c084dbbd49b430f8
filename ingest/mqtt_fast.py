"""paho's MQTT receive path at a fraction of its per-message cost (issue 9).

paho-mqtt 2.2.0 spends ~21 µs of the ingester's time per message in its own receive path (issue 9
GIL profile): one ``select()`` per packet (``loop_read`` handles
``max(1, len(_out_messages) + len(_in_messages))`` packets per wake-up), three ``recv()`` calls per
packet (command byte, each remaining-length byte, body: ``_packet_read``), an ``MQTTMessage`` per
message, the MQTT v5 properties parsed into a ``Properties`` object, a debug line formatted and the
topic matched against ``message_callback_add`` filters. :class:`FastClient` keeps paho for
everything else (connect, reconnect, keepalive, subscribe, the outgoing queue, QoS 2) and replaces
only that path:

- :class:`BufferedSocket` wraps the connection's socket (TCP or TLS) and serves reads from a
  user-space buffer refilled by one large ``recv``; its ``pending()`` tells paho's ``_loop`` when
  whole packets are already buffered, so it does not wait in ``select()`` for them;
- ``loop_read`` frames every whole packet in the buffer (refilling until ``recv`` would block, at
  most :data:`MAX_PACKETS_PER_READ` packets, so that PUBACKs queued by another thread still go out),
  and after a wake-up that found only a few it naps :data:`COALESCE_S` before waiting again;
- QoS 0 and 1 PUBLISH packets are decoded by :func:`decode_publish` (v5 properties skipped by their
  length, never parsed) and handed to ONE sink callable ``sink(mid, qos, dup, topic, payload)``;
  every other packet (and QoS 2) goes through paho's own ``_packet_handle``.

If the installed paho lacks an internal this relies on, the client is plain paho (``on_message``)
and says so once at WARNING: :func:`paho_gaps` lists what is missing, and a test asserts it is
empty for the pinned paho, so an upgrade that breaks this fails a test instead of going slow.
"""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

logger = logging.getLogger(__name__)

PublishSink = Callable[[int, int, bool, str, bytes], None]
"""``sink(mid, qos, dup, topic, payload)``: called on paho's network thread for each QoS 0/1
PUBLISH, in the order the broker sent them."""

UNDECODABLE_TOPIC: Final = "<undecodable>"  # what a sink gets for a topic that is not UTF-8
RECV_BYTES: Final = 256 * 1024  # one refill: a 256 KiB payload (CONTRACT §4) in one or two reads
MAX_PACKETS_PER_READ: Final = 2000  # then back to paho's _loop: writes (PUBACKs) are not starved
PUBLISH: Final = 0x30  # MQTT §2.1.2: packet type 3 in the high nibble of the fixed header
# After a wake-up that found fewer packets than this, the network thread naps before it waits
# again, so that the next wake-up finds several: below saturation a wake-up (select, paho's
# loop, the interpreter lock changing hands) cost more than the packets it served. Measured on
# bench/ingest.py at 7,200 messages/s: 47 -> 31 µs of CPU per reading (one process), 56 -> 38
# (two); unchanged at full speed, where every wake-up finds more. It delays a message by at most
# the nap, next to a 0.1 s write linger.
COALESCE_BELOW: Final = 64
COALESCE_S: Final = 0.002

_warned = False  # the fallback is logged once per process


class _FrameTooLong(Exception):
    """A remaining length of more than four bytes (MQTT §2.2.3): a protocol error."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """Return (value, position after it) of the Variable Byte Integer at ``pos`` (MQTT §1.5.5),
    or None when ``data[:end]`` ends inside it; raise ``_FrameTooLong`` past four bytes."""
    value = 0
    shift = 0
    while True:
        if pos >= end:
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift == 28:
            raise _FrameTooLong


def frame(data: bytes, pos: int) -> tuple[int, int] | None:
    """Return ``(body_start, body_end)`` of the packet whose fixed header starts at ``pos``, or
    None when ``data`` does not hold all of it yet; raise ``_FrameTooLong`` for a remaining length
    of more than four bytes (paho: ``_packet_read`` returns MQTT_ERR_PROTOCOL)."""
    end = len(data)
    remaining = _varint(data, pos + 1, end)
    if remaining is None:
        return None
    length, start = remaining
    if start + length > end:
        return None
    return start, start + length


def decode_publish(
    header: int, data: bytes, start: int, end: int, v5: bool
) -> tuple[int, bytes, bytes]:
    """Return ``(mid, topic, payload)`` of the PUBLISH body ``data[start:end]``.

    The same fields as paho's ``_packet.decode_publish`` (MQTT 3.1.1 §3.3.2, v5 §3.3.2), without
    building ``Properties``: v5 properties are skipped by their Variable Byte Integer length.
    Raises ``MalformedPacket`` where the packet cannot be framed: topic or packet id past the end,
    an empty topic in 3.1.1, a properties length of more than four bytes or past the end.
    """
    pos = start + 2
    if pos > end:
        raise MalformedPacket("PUBLISH shorter than its topic length")
    topic_end = pos + ((data[start] << 8) | data[start + 1])
    if topic_end > end:
        raise MalformedPacket("PUBLISH topic runs past the packet")
    if not v5 and topic_end == pos:
        raise MalformedPacket("topic can't be empty in MQTTv3")
    topic = data[pos:topic_end]
    pos = topic_end
    mid = 0
    if header & 0x06:
        if pos + 2 > end:
            raise MalformedPacket("PUBLISH packet id runs past the packet")
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    if v5:
        try:
            properties = _varint(data, pos, end)
        except _FrameTooLong:
            raise MalformedPacket("Variable Byte Integer is more than four bytes long") from None
        if properties is None:
            raise MalformedPacket("Not enough data to decode Variable Byte Integer")
        length, pos = properties
        pos += length
        if pos > end:
            raise MalformedPacket("PUBLISH properties run past the packet")
    return mid, topic, data[pos:end]


class BufferedSocket:
    """A connected socket (plain or TLS) whose reads come from a user-space buffer.

    Everything but reading is delegated to the socket (``__getattr__``; ``fileno()`` for
    ``select()``). ``recv`` keeps the socket's semantics: ``BlockingIOError``/``SSLWantReadError``
    when nothing is buffered and nothing has arrived, ``b""`` at end of stream.
    """

    __slots__ = ("_sock", "_tls", "data", "pos", "refills")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self.data = b""
        self.pos = 0
        self.refills = 0  # recv calls that returned data (bench: recv calls per packet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def fileno(self) -> int:
        """Return the socket's descriptor (what ``select()`` waits on)."""
        return self._sock.fileno()

    def refill(self) -> int:
        """Read once (up to RECV_BYTES) behind what is buffered; return the bytes read (0: EOF).

        The socket's own exceptions pass through (BlockingIOError, SSLWantReadError, OSError).
        """
        chunk = self._sock.recv(RECV_BYTES)
        if chunk:
            self.data = self.data[self.pos :] + chunk if self.pos < len(self.data) else chunk
            self.pos = 0
            self.refills += 1
        return len(chunk)

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` buffered bytes, refilling once if none are buffered."""
        if self.pos >= len(self.data) and self.refill() == 0:
            return b""
        out = self.data[self.pos : self.pos + bufsize]
        self.pos += len(out)
        return out

    def buffered(self) -> int:
        """Return the bytes read from the socket and not yet consumed."""
        return len(self.data) - self.pos

    def pending(self) -> int:
        """Return the bytes readable without waiting: buffered ones when they hold a whole
        packet (a partial one needs the network: paho's ``_loop`` then waits in ``select()``),
        plus what the TLS layer holds decrypted."""
        whole = 0
        if self.pos < len(self.data):
            try:
                whole = self.buffered() if frame(self.data, self.pos) is not None else 0
            except _FrameTooLong:
                whole = self.buffered()  # let loop_read find the protocol error
        if self._tls:
            whole += self._sock.pending()  # type: ignore[attr-defined]  # an SSLSocket
        return whole


# The paho internals this module calls or replaces, with their parameters (paho-mqtt 2.2.0
# client.py: _create_socket L4560, loop_read L2085, _packet_read L3058, _packet_handle L3802,
# _handle_publish L4099, _loop_rc_handle L3040, _send_puback L3348, _sock_recv L1082, _loop L1627,
# _handle_on_message L4422).
REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    "_create_socket": (),
    "loop_read": ("max_packets",),
    "_packet_handle": (),
    "_handle_publish": (),
    "_loop_rc_handle": ("rc",),
    "_send_puback": ("mid",),
    "_call_socket_register_write": (),
    "_easy_log": ("level", "fmt", "args"),
    "_loop": ("timeout",),
}
REQUIRED_ATTRIBUTES: tuple[str, ...] = (
    "_sock",
    "_in_packet",
    "_protocol",
    "_manual_ack",
    "_msgtime_mutex",
    "_last_bytes_received",
    "_in_callback_mutex",
    "suppress_exceptions",
)
# paho's _loop must skip select() when the socket says bytes are pending, then call loop_read.
REQUIRED_LOOP_NAMES: tuple[str, ...] = ("pending", "loop_read")
IN_PACKET_KEYS: frozenset[str] = frozenset({"command", "packet", "remaining_length"})


def paho_gaps(client: mqtt.Client) -> list[str]:
    """Return what this module needs and the installed paho lacks (empty: the fast path works)."""
    gaps: list[str] = []
    for name, params in REQUIRED_METHODS.items():
        method = getattr(type(client), name, None)
        if not callable(method):
            gaps.append(f"Client.{name} missing")
            continue
        found = tuple(inspect.signature(method).parameters)[1:]
        if found != params:
            gaps.append(f"Client.{name}{found} is not {name}{params}")
    gaps += [f"Client().{a} missing" for a in REQUIRED_ATTRIBUTES if not hasattr(client, a)]
    loop = getattr(mqtt.Client, "_loop", None)
    names = set(getattr(getattr(loop, "__code__", None), "co_names", ()))
    gaps += [f"Client._loop does not use {n}" for n in REQUIRED_LOOP_NAMES if n not in names]
    in_packet = getattr(client, "_in_packet", None)
    if not isinstance(in_packet, dict) or not in_packet.keys() >= IN_PACKET_KEYS:
        gaps.append("Client()._in_packet lacks command/packet/remaining_length")
    return gaps


def _fresh_in_packet() -> Any:
    """Return paho's empty ``_in_packet`` (client.py L3155)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class FastClient(mqtt.Client):
    """A paho ``Client`` whose QoS 0/1 PUBLISH packets go to ``publish_sink`` (see the module)."""

    def __init__(self, *args: Any, publish_sink: PublishSink | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publish_sink = publish_sink
        gaps = paho_gaps(self)
        self.fast = not gaps
        if gaps:
            global _warned
            if not _warned:
                _warned = True
                logger.warning(
                    "paho-mqtt %s lacks what the fast receive path needs (%s): using plain paho "
                    "(on_message), at several times the CPU per message",
                    paho.mqtt.__version__,
                    "; ".join(gaps),
                )

    def _create_socket(self) -> SocketLike:
        sock = super()._create_socket()
        if self.fast and isinstance(sock, socket.socket):  # TCP, Unix or TLS, not websockets
            return BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Handle every whole packet the socket has (at most MAX_PACKETS_PER_READ)."""
        current = self._sock
        if not isinstance(current, BufferedSocket):
            return super().loop_read(max_packets)
        sock: BufferedSocket = current
        handled = 0
        while True:
            while handled < MAX_PACKETS_PER_READ:
                try:
                    framed = frame(sock.data, sock.pos)
                except _FrameTooLong:
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
                if framed is None:
                    break
                handled += 1
                rc = self._handle_packet(sock, *framed)
                if rc:
                    return self._loop_rc_handle(rc)
                if self._sock is not current:  # closed while handling (DISCONNECT, a callback)
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            else:
                return MQTTErrorCode.MQTT_ERR_SUCCESS  # the rest at the next _loop: pending() > 0
            stop = self._refill(sock)
            if stop is not None:
                if handled < COALESCE_BELOW and stop == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    time.sleep(COALESCE_S)  # nothing more now: let a few arrive (above)
                return stop

    def _refill(self, sock: BufferedSocket) -> MQTTErrorCode | None:
        """Read more; return None when bytes came, else what loop_read returns.

        The exception translation is paho's ``_sock_recv`` (client.py L1082-1095) and
        ``_packet_read``'s handling of it (L3072-3145).
        """
        try:
            received = sock.refill()
        except (BlockingIOError, ssl.SSLWantReadError):
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # nothing more now: back to select()
        except ssl.SSLWantWriteError:
            self._call_socket_register_write()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:  # TimeoutError included, as in paho
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if received == 0:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:  # keepalive: paho stamps every read (L3139, L3166)
            self._last_bytes_received = mqtt.time_func()
        return None

    def _handle_packet(self, sock: BufferedSocket, start: int, end: int) -> MQTTErrorCode:
        """Handle the packet whose body is ``sock.data[start:end]``; consume it first."""
        data = sock.data
        header = data[sock.pos]
        sock.pos = end
        sink = self.publish_sink
        if header & 0xF0 == PUBLISH and header & 0x06 != 0x04 and sink is not None:
            qos = (header & 0x06) >> 1
            if qos == 3:  # paho's _handle_publish: neither 0, 1 nor 2
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            try:
                mid, raw_topic, payload = decode_publish(
                    header, data, start, end, self._protocol == mqtt.MQTTv5
                )
            except MalformedPacket as exc:
                self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            try:
                topic = raw_topic.decode("utf-8")
            except UnicodeDecodeError:
                topic = UNDECODABLE_TOPIC
            with self._in_callback_mutex:  # as paho's _handle_on_message (L4454)
                try:
                    sink(mid, qos, bool(header & 0x08), topic, payload)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
            if qos == 1 and not self._manual_ack:
                return self._send_puback(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        # Anything else, and QoS 2: paho's own handlers read paho's _in_packet.
        self._in_packet = _fresh_in_packet()
        self._in_packet["command"] = header
        self._in_packet["remaining_length"] = end - start
        self._in_packet["packet"] = bytearray(data[start:end])
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _fresh_in_packet()
        return rc
