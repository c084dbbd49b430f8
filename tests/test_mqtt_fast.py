"""The ingester's fast MQTT receive path (issue 9, ingest/mqtt_fast.py).

The decoder is held against paho's own ``_packet.decode_publish`` on generated packets; the
buffered socket, the packet loop and the PUBACKs against a real Mosquitto (plain and TLS), with
exact payloads in order and nothing redelivered after a reconnect; the fallback guard both ways.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqtt_fast
from ingest.delivery import Delivery, Handoff
from ingest.metrics import IngestStats
from ingest.mqtt import MqttIntake
from ingest.mqtt_fast import (
    BufferedSocket,
    FastClient,
    decode_publish,
    frame,
    paho_gaps,
)
from meltemi.services import Mosquitto, free_port
from sensors.registry import StationRegistry
from sensors.settings import Settings
from tests.helpers import wait_for
from tests.mqtt_clients import Probe, make_ca, openssl, remaining_length, wait_pubacks

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


# ---- the decoder, against paho's -----------------------------------------------------------
def _publish_body(topic: bytes, qos: int, mid: int, props: bytes | None, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:
        body += props
    return body + payload


def _ours(header: int, body: bytes, v5: bool) -> tuple[int, int, bool, bool, bytes, bytes]:
    """Frame and decode the packet as FastClient does; return paho's fields."""
    packet = bytes([header]) + remaining_length(len(body)) + body
    framed = frame(packet, 0)
    assert framed == (len(packet) - len(body), len(packet))
    mid, topic, payload = decode_publish(header, packet, framed[0], framed[1], v5)
    return (mid, (header & 6) >> 1, bool(header & 8), bool(header & 1), topic, payload)


def _paho(header: int, body: bytes, v5: bool) -> tuple[int, int, bool, bool, bytes, bytes]:
    result = _packet.decode_publish(header, bytearray(body), V5 if v5 else V311)
    return (result.mid, result.qos, result.dup, result.retain, result.topic, bytes(result.payload))


def _decoded(header: int, body: bytes, v5: bool, which: str) -> object:
    """Return the decoded fields, or "malformed"."""
    try:
        return (_ours if which == "ours" else _paho)(header, body, v5)
    except MalformedPacket:
        return "malformed"


# paho refuses U+0000 and U+FEFF inside property strings [MQTT-1.5.4-2/3]; the fast decoder skips
# property contents unread (test_property_contents_are_not_judged)
_mqtt_text = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\ufeff")


@st.composite
def _properties(draw: st.DrawFn) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if draw(st.booleans()):
        props.MessageExpiryInterval = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        props.ContentType = draw(st.text(_mqtt_text, max_size=20))
    if draw(st.booleans()):
        props.CorrelationData = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        props.PayloadFormatIndicator = draw(st.integers(0, 1))
    if draw(st.booleans()):
        props.SubscriptionIdentifier = [draw(st.integers(1, 268_435_455))]
    for _ in range(draw(st.integers(0, 3))):
        props.UserProperty = (
            draw(st.text(_mqtt_text, max_size=10)),
            draw(st.text(_mqtt_text, max_size=300)),
        )
    return bytes(props.pack())  # type: ignore[no-untyped-call]


_topics = st.one_of(
    st.text(min_size=0, max_size=60).map(str.encode),
    st.binary(min_size=0, max_size=30),  # mostly invalid UTF-8
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=_topics,
    qos=st.integers(0, 2),
    dup=st.booleans(),
    retain=st.booleans(),
    mid=st.integers(1, 65535),
    v5=st.booleans(),
    props=_properties(),
    payload=st.one_of(st.binary(max_size=400), st.sampled_from([b"", bytes(256 * 1024)])),
    cut=st.one_of(st.none(), st.integers(0, 500)),
)
def test_decoder_matches_paho(topic, qos, dup, retain, mid, v5, props, payload, cut):
    header = 0x30 | dup << 3 | qos << 1 | retain
    body = _publish_body(topic, qos, mid, props if v5 else None, payload)
    if cut is not None:  # a truncated packet whose remaining length says so
        body = body[: min(cut, len(body))]
    expected = _decoded(header, body, v5, "paho")
    ours = _decoded(header, body, v5, "ours")
    if ours != expected:
        # Only a truncated v5 packet: paho reads properties past the end (its slices come back
        # short) and returns an empty payload; a properties length past the end is malformed.
        assert (v5, cut is not None, ours) == (True, True, "malformed")
        assert isinstance(expected, tuple)
        assert expected[5] == b""
    if cut is None and (v5 or topic):
        assert expected == (mid if qos else 0, qos, dup, retain, topic, payload)


@settings(max_examples=400, deadline=None)
@given(header=st.integers(0x30, 0x3F), body=st.binary(max_size=60), v5=st.booleans())
def test_decoder_on_garbage(header, body, v5):
    ours = _decoded(header, body, v5, "ours")
    paho = _decoded(header, body, v5, "paho")
    if not v5:  # no properties: exactly paho's outcome
        assert ours == paho
    elif ours == "malformed":  # v5 properties are skipped unparsed: never stricter than paho
        assert paho == "malformed"
    elif paho != "malformed":
        assert ours == paho


def test_property_contents_are_not_judged():
    # A user property with U+0000: paho calls the packet malformed and drops the connection,
    # so the broker redelivers it forever; skipped unread, the payload reaches the sink.
    props = b"\x06\x26\x00\x00\x00\x01\x00"
    body = _publish_body(b"stations/a/readings", 1, 7, props, b"{}")
    assert _decoded(0x32, body, True, "paho") == "malformed"
    assert _decoded(0x32, body, True, "ours") == (7, 1, False, False, b"stations/a/readings", b"{}")


def test_malformed_and_partial_frames():
    # qos 1 PUBLISH whose packet id is missing; a 3.1.1 PUBLISH with an empty topic
    with pytest.raises(MalformedPacket):
        decode_publish(0x32, b"\x00\x01a", 0, 3, True)
    with pytest.raises(MalformedPacket):
        decode_publish(0x30, b"\x00\x00xyz", 0, 5, False)
    # a properties length of five bytes, and one past the end
    with pytest.raises(MalformedPacket, match="more than four"):
        decode_publish(0x30, b"\x00\x01a\xff\xff\xff\xff\x01", 0, 8, True)
    with pytest.raises(MalformedPacket, match="past the packet"):
        decode_publish(0x30, b"\x00\x01a\x05ab", 0, 6, True)
    # frames: whole, partial, and a remaining length of five bytes
    assert frame(b"\x30\x03\x00\x01a", 0) == (2, 5)
    assert frame(b"\x30\x03\x00\x01", 0) is None
    assert frame(b"\x30\x80", 0) is None
    assert frame(b"xx\x30\x80\x01" + bytes(128), 2) == (5, 133)
    with pytest.raises(mqtt_fast._FrameTooLong):
        frame(b"\x30\xff\xff\xff\xff\x01", 0)


# ---- the buffered socket -------------------------------------------------------------------
def test_buffered_socket_keeps_socket_semantics():
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        wrapped = BufferedSocket(left)
        assert wrapped.fileno() == left.fileno()
        assert wrapped.getsockname() == left.getsockname()  # delegated
        with pytest.raises(BlockingIOError):
            wrapped.recv(1)
        assert wrapped.pending() == 0
        whole, partial = b"\x30\x03\x00\x01a", b"\x30\x05\x00\x01b\x00z"
        right.sendall(whole + partial[:3])
        assert wrapped.refill() == 8  # one recv took everything
        assert (wrapped.refills, wrapped.buffered()) == (1, 8)
        assert wrapped.pending() == 8  # a whole packet buffered: no select() wait
        assert wrapped.recv(1) == b"\x30"  # served from the buffer
        assert wrapped.recv(4) == b"\x03\x00\x01a"
        assert wrapped.pending() == 0  # only part of a packet buffered: wait in select()
        right.sendall(partial[3:])
        assert wrapped.recv(2) == b"\x30\x05"  # the buffer first, no recv
        assert wrapped.refills == 1
        assert wrapped.recv(100) == b"\x00"
        assert wrapped.recv(100) == b"\x01b\x00z"  # empty buffer: one refill
        assert wrapped.refills == 2
        right.close()
        assert wrapped.recv(1) == b""  # end of stream


# ---- the packet loop, against paho's, on the same bytes -----------------------------------------
def _feed(client: mqtt.Client, wrap: bool, chunks: list[bytes]) -> list[int]:
    """Send ``chunks`` into a socket the client reads (loop_read between chunks), then EOF;
    return loop_read's non-zero return codes."""
    left, right = socket.socketpair()
    left.setblocking(False)
    client._sock = BufferedSocket(left) if wrap else left
    codes: list[int] = []
    with right:
        for k, chunk in enumerate([*chunks, b""]):
            if codes:  # the client closed the connection
                break
            if chunk:
                right.sendall(chunk)
            elif k == len(chunks):
                right.shutdown(socket.SHUT_WR)
            for _ in range(200):  # plain paho reads one packet per call
                if client._sock is None:
                    break
                rc = client.loop_read()
                if rc:
                    codes.append(int(rc))
                    break
                if isinstance(client._sock, BufferedSocket) and client._sock.pending() == 0:
                    break
    left.close()
    return codes


def _outcome(
    fast: bool, chunks: list[bytes]
) -> tuple[list[tuple[object, ...]], list[str], list[int]]:
    """Return what a client made of the byte stream: messages, disconnect reasons, return codes."""
    messages: list[tuple[object, ...]] = []
    reasons: list[str] = []

    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        try:
            topic = m.topic
        except UnicodeDecodeError:
            topic = mqtt_fast.UNDECODABLE_TOPIC
        messages.append((m.mid, m.qos, m.dup, topic, bytes(m.payload)))

    client = (
        FastClient(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            publish_sink=lambda *a: messages.append(a),
        )
        if fast
        else mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    )
    client.on_message = on_message
    client.on_disconnect = lambda _c, _u, _f, rc, _p: reasons.append(str(rc))
    codes = _feed(client, fast, chunks)
    return messages, reasons, codes


_endings = {
    "eof": b"",
    "topic past the end": b"\x32\x03\x00\x09a",
    "five-byte remaining length": b"\x30\xff\xff\xff\xff\x01",
    "qos 3": b"\x36\x05\x00\x01a\x00\x01",
    "unknown packet type": b"\xf0\x00",  # AUTH: paho has no handler for it
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packets=st.lists(
        st.tuples(
            _topics,
            st.integers(0, 1),
            st.booleans(),
            st.integers(1, 65535),
            _properties(),
            st.one_of(  # all of it must fit a socketpair's buffer (~200 KB): one thread
                st.binary(max_size=300),
                st.integers(1000, 12_000).map(lambda n: bytes(range(256)) * (n // 256)),
            ),
        ),
        max_size=10,
    ),
    pings=st.sets(st.integers(0, 10)),
    ending=st.sampled_from(sorted(_endings)),
    cuts=st.lists(st.integers(0, 80_000), max_size=6),
)
def test_packet_loop_matches_paho(packets, pings, ending, cuts):
    stream = b""
    for k, (topic, qos, dup, mid, props, payload) in enumerate(packets):
        if k in pings:
            stream += b"\xd0\x00"  # PINGRESP: paho's own handler, in between
        body = _publish_body(topic or b"t", qos, mid, props, payload)
        stream += bytes([0x30 | dup << 3 | qos << 1]) + remaining_length(len(body)) + body
    stream += _endings[ending]
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points) if b > a]
    paho = _outcome(False, chunks)
    assert _outcome(True, chunks) == paho
    expected = [
        (mid if qos else 0, qos, dup, topic.decode("utf-8", "strict"), payload)
        for topic, qos, dup, mid, _p, payload in packets
        if _utf8(topic or b"t")
    ]
    assert [m for m in paho[0] if m[3] != mqtt_fast.UNDECODABLE_TOPIC] == [
        (mid, qos, dup, topic or "t", payload) for mid, qos, dup, topic, payload in expected
    ]
    assert len(paho[1]) == 1  # one disconnect: protocol error, or the lost connection


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---- a real broker ---------------------------------------------------------------------------
def _payloads(n: int, seed: int) -> list[bytes]:
    """Return n payloads from 0 bytes to 256 KiB (a few large, most small), random bytes."""
    rng = random.Random(seed)
    sizes = [0, 1, 2, 17, 127, 128, 300, 1000, 16_383, 16_384, 70_000, 256 * 1024]
    out = []
    for k in range(n):
        size = sizes[(k // 97) % len(sizes)] if k % 97 == 0 else rng.randint(0, 400)
        out.append(rng.randbytes(size))
    return out


def _settings(port: int, client_id: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        mqtt_port=port,
        mqtt_client_id=client_id,
        mqtt_session_expiry_s=600,
        mqtt_receive_maximum=500,
        data_dir=tmp_path / "var",
        **extra,  # type: ignore[arg-type]
    )


def _start(settings_: Settings) -> tuple[MqttIntake, Handoff]:
    deliveries = Handoff()
    intake = MqttIntake(settings_, StationRegistry([]), deliveries, IngestStats())
    intake.start()
    assert intake.subscribed.wait(20)
    return intake, deliveries


def _take(deliveries: Handoff, n: int, topic: str) -> list[Delivery]:
    got: list[Delivery] = []
    while len(got) < n:
        assert deliveries.wait(30), f"{len(got)} of {n} messages on {topic} arrived"
        delivery = deliveries.pop()
        if delivery is not None and delivery.topic == topic:
            got.append(delivery)
    return got


def _round_trip(port: int, tmp_path: Path, n: int, held: int, ca_file: Path | None = None) -> None:
    """n QoS 1 messages through an MqttIntake, all acknowledged by ack_many but the last ``held``;
    then the same client id again: exactly those are redelivered (DUP), then a fresh one."""
    station = "st-" + uuid.uuid4().hex[:8]
    topic = f"stations/{station}/readings"
    extra: dict[str, object] = {"mqtt_tls": True, "mqtt_ca_file": ca_file} if ca_file else {}
    config = _settings(port, "fast-" + station, tmp_path, **extra)
    intake, deliveries = _start(config)
    assert intake.client.fast, paho_gaps(intake.client)
    assert isinstance(intake.client.socket(), BufferedSocket)
    payloads = _payloads(n, seed=n)
    publisher = Probe(port, None, client_id="pub-" + station, ca_file=ca_file)
    assert publisher.start() == 0
    got: list[Delivery] = []
    try:
        for payload in payloads:
            publisher.publish(topic, payload, qos=1)
        while len(got) < n:  # acknowledge as they come (receive maximum 500), in batches
            batch = _take(deliveries, min(100, n - len(got)), topic)
            first = len(got)
            got += batch
            intake.ack_many([(d.mid, d.qos) for k, d in enumerate(batch, first) if k < n - held])
        assert set(wait_pubacks(publisher, n).values()) == {0}
    finally:
        publisher.stop()
    assert [d.payload for d in got] == payloads  # exact, in order, nothing missing
    assert {(d.qos, d.dup) for d in got} == {(1, False)}
    assert all(1 <= d.mid <= 65535 for d in got)
    assert deliveries.qsize() == 0
    intake.disconnect()

    again, redelivered = _start(config)
    try:
        marker = Probe(port, None, client_id="mark-" + station, ca_file=ca_file)
        assert marker.start() == 0
        marker.publish(topic, b"marker", qos=1)
        wait_pubacks(marker, 1)
        marker.stop()
        after = _take(redelivered, held + 1, topic)
        assert [d.payload for d in after] == [*payloads[n - held :], b"marker"]
        assert [d.dup for d in after] == [True] * held + [False]
        again.ack_many([(d.mid, d.qos) for d in after])
    finally:
        again.disconnect()
    assert redelivered.qsize() == 0


def test_messages_through_mosquitto_exact_in_order_and_acknowledged(broker, tmp_path):
    _round_trip(broker.port, tmp_path, n=3000, held=7)


def _tls_broker(tmp_path: Path) -> tuple[Mosquitto, int, Path]:
    """The test broker plus a TLS listener on loopback, with a throw-away CA."""
    certs = tmp_path / "certs"
    ca_cert, ca_key = make_ca(certs)
    key, csr, cert = certs / "broker.key", certs / "broker.csr", certs / "broker.crt"
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    ext = certs / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    tls_port = free_port()
    extra = (
        f"\nlistener {tls_port} 127.0.0.1\ncafile {ca_cert}\ncertfile {cert}\nkeyfile {key}\n"
        "tls_version tlsv1.2\n"
    )
    server = Mosquitto(tmp_path / "mosquitto", free_port(), extra)
    server.start_and_wait()
    return server, tls_port, ca_cert


def test_messages_over_tls_exact_in_order_and_acknowledged(tmp_path):
    server, tls_port, ca_file = _tls_broker(tmp_path)
    try:
        wait_for(lambda: _port_open(tls_port), message="TLS listener")
        _round_trip(tls_port, tmp_path, n=1000, held=3, ca_file=ca_file)
    finally:
        server.stop()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# ---- the guard -------------------------------------------------------------------------------
def test_fast_path_is_active_with_the_pinned_paho(broker):
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert paho_gaps(plain) == []
    received: list[tuple[int, int, bool, str, bytes]] = []
    on_message: list[mqtt.MQTTMessage] = []
    client = FastClient(
        CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,
        publish_sink=lambda *args: received.append(args),
    )
    client.on_message = lambda _c, _u, m: on_message.append(m)
    subacks: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: subacks.append(mid)
    assert client.fast
    topic = "fast/" + uuid.uuid4().hex
    client.connect("127.0.0.1", broker.port)
    assert isinstance(client.socket(), BufferedSocket)
    client.subscribe(topic, 1)
    client.loop_start()
    try:
        wait_for(lambda: len(subacks) == 1, message="SUBACK")
        publisher = Probe(broker.port, None, v5=True)
        assert publisher.start() == 0
        for k in range(20):
            publisher.publish(topic, f"m{k}".encode(), qos=k % 2)
        wait_pubacks(publisher, 10)
        publisher.stop()
        wait_for(lambda: len(received) == 20, message="20 messages at the sink")
    finally:
        client.disconnect()
        client.loop_stop()
    assert on_message == []  # none went through paho's MQTTMessage path
    assert sorted(r[4] for r in received) == sorted(f"m{k}".encode() for k in range(20))
    assert {(r[3], r[2]) for r in received} == {(topic, False)}


def test_missing_paho_internal_falls_back_to_plain_paho(broker, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(mqtt_fast.REQUIRED_METHODS, "_an_internal_paho_dropped", ())
    monkeypatch.setattr(mqtt_fast, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="ingest.mqtt_fast"):
        station = "st-" + uuid.uuid4().hex[:8]
        intake, deliveries = _start(_settings(broker.port, "fallback-" + station, tmp_path))
        second = FastClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    warnings = [r for r in caplog.records if r.name == "ingest.mqtt_fast"]
    assert len(warnings) == 1  # once per process
    assert warnings[0].levelno == logging.WARNING
    assert "_an_internal_paho_dropped missing" in warnings[0].getMessage()
    assert not intake.client.fast
    assert not second.fast
    try:
        assert not isinstance(intake.client.socket(), BufferedSocket)
        topic = f"stations/{station}/readings"
        publisher = Probe(broker.port, None, client_id="pub-" + station)
        assert publisher.start() == 0
        for k in range(5):
            publisher.publish(topic, f"p{k}".encode(), qos=1)
        wait_pubacks(publisher, 5)
        publisher.stop()
        got = _take(deliveries, 5, topic)  # through on_message, into the same _on_publish
        assert [d.payload for d in got] == [f"p{k}".encode() for k in range(5)]
        intake.ack_many([(d.mid, d.qos) for d in got])
    finally:
        intake.disconnect()
