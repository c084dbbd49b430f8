"""Test MQTT clients and a throw-away CA for the broker-security tests (issue 8).

Each ``Probe`` records its CONNACK codes, forced disconnects, PUBACK reason codes (v5) and
received messages, so a test can assert exact counts. Witness CLIs (mosquitto_pub/sub, openssl,
ss) are used next to them where a plain exit code or log line is the evidence.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.helpers import wait_for


@dataclass
class Probe:
    """One paho client and everything the broker told it."""

    port: int
    username: str | None
    password: str | None = None
    client_id: str = ""
    v5: bool = False
    ca_file: Path | None = None
    clean: bool = True
    connacks: list[int] = field(default_factory=list)
    disconnects: int = 0
    pubacks: dict[int, int] = field(default_factory=dict)
    subacks: list[int] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Connect (no automatic reconnect) and return the CONNACK code (paho's int value)."""
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": protocol}
        if not self.v5:
            kwargs["clean_session"] = self.clean
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.ca_file is not None:
            client.tls_set(ca_certs=str(self.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client
        before = len(self.connacks)
        properties = None
        if self.v5 and not self.clean:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 600
        if self.v5:
            client.connect(
                "127.0.0.1", self.port, keepalive=60, clean_start=self.clean, properties=properties
            )
        else:
            client.connect("127.0.0.1", self.port, keepalive=60)
        client.loop_start()
        wait_for(lambda: len(self.connacks) > before, timeout_s, message="CONNACK")
        code = self.connacks[-1]
        if code != 0:
            self.stop()
        return code

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        """Publish; return the message id (its PUBACK code lands in ``pubacks``)."""
        assert self.client is not None
        return self.client.publish(topic, payload, qos=qos).mid

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe and wait for the SUBACK; return its code (0/1 granted, 128/135 refused)."""
        assert self.client is not None
        before = len(self.subacks)
        self.client.subscribe(topic, qos)
        wait_for(lambda: len(self.subacks) > before, message="SUBACK")
        return self.subacks[-1]

    def _on_connect(self, _c: Any, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        with self.lock:
            self.connacks.append(_connack_value(code, self.v5))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        with self.lock:
            if code.value != 0:  # not our own DISCONNECT
                self.disconnects += 1

    def _on_publish(self, _c: Any, _u: Any, mid: int, code: ReasonCode, _p: Any) -> None:
        with self.lock:
            self.pubacks[mid] = code.value

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        with self.lock:
            self.subacks.append(codes[0].value)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))


def _connack_value(code: ReasonCode, v5: bool) -> int:
    """Return the code as the broker sent it: v3.1.1 return code (5) or v5 reason code (0x87)."""
    if v5:
        return int(code.value)
    # paho maps a v3.1.1 return code onto a v5 reason code; map it back (MQTT 3.1.1 §3.2.2.3)
    return {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}.get(int(code.value), int(code.value))


def connack(port: int, username: str | None, password: str | None = None, **kw: Any) -> int:
    """Connect once, return the CONNACK code, disconnect."""
    probe = Probe(port, username, password, **kw)
    code = probe.start()
    if code == 0:
        probe.stop()
    return code


def wait_pubacks(probe: Probe, count: int, timeout_s: float = 30.0) -> dict[int, int]:
    """Wait until ``count`` PUBACKs arrived; return them."""
    wait_for(lambda: len(probe.pubacks) >= count, timeout_s, message=f"{count} PUBACKs")
    return dict(probe.pubacks)


def remaining_length(n: int) -> bytes:
    """Return the MQTT Variable Byte Integer of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """Return an MQTT 3.1.1 CONNECT with username and password (clean session, keepalive 60)."""
    body = (
        _field(b"MQTT")
        + bytes([4, 0xC2])
        + (60).to_bytes(2, "big")
        + _field(client_id.encode())
        + _field(username.encode())
        + _field(password.encode())
    )
    return b"\x10" + remaining_length(len(body)) + body


def publish_header(topic: str, payload_bytes: int) -> bytes:
    """Return the start of a QoS 0 PUBLISH announcing a payload of ``payload_bytes``."""
    variable = _field(topic.encode())
    return b"\x30" + remaining_length(len(variable) + payload_bytes) + variable


def openssl(*args: str) -> None:
    """Run the openssl CLI; raise if it fails."""
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """Make a throw-away CA with openssl; return (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=Meltemi test {name}",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )
    return cert, key
