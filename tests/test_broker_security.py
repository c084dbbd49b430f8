"""Broker security (issue 8, RELIABILITY S1-S5): identities, takeover, limits, on real Mosquitto.

The first test is the one that chose the mechanism (meltemi/broker_admin.py): on Debian's
Mosquitto 2.0.11 with the shipped mosquitto.conf, the dynamic-security plugin gives client id =
username, an immediate kick on revoke and rotate, changes without a restart, exact topics and
ingester-only writes to meltemi/accepted/. The others start deploy/mosquitto-production.conf as
shipped (ports and paths substituted, a throw-away CA made with openssl).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from meltemi.broker_admin import check_station_id, generate_secret
from tests.helpers import wait_for
from tests.mqtt_clients import (
    Probe,
    connack,
    connect_packet,
    make_ca,
    publish_header,
    wait_pubacks,
)

NOT_AUTHORIZED_V5 = 0x87  # MQTT 5 reason code 135, CONNACK / PUBACK / SUBACK
NOT_AUTHORIZED_V311 = 5  # MQTT 3.1.1 CONNACK return code


def test_dynsec_mechanism(secure_broker):
    port = secure_broker.port
    pid = secure_broker.broker.pid
    secrets = {name: generate_secret() for name in ("st-a", "st-c")}
    ingest_secret = secure_broker.secrets.ingest_password.get_secret_value()
    api_secret = secure_broker.secrets.api_password.get_secret_value()

    # anonymous refused, v3.1.1 and v5
    assert connack(port, None) == NOT_AUTHORIZED_V311
    assert connack(port, None, v5=True) == NOT_AUTHORIZED_V5
    # identities created on the running broker, no restart
    with secure_broker.admin() as admin:
        admin.add_service("meltemi-ingest", "ingester", secure_broker.secrets.ingest_password)
        admin.add_service("meltemi-api", "api", secure_broker.secrets.api_password)
        for name, secret in secrets.items():
            admin.add_station(name, secret)
    a = Probe(port, "st-a", secrets["st-a"].get_secret_value(), client_id="st-a", v5=True)
    assert a.start() == 0
    ingester = Probe(port, "meltemi-ingest", ingest_secret, client_id="meltemi-ingest", v5=True)
    assert ingester.start() == 0
    assert ingester.subscribe("stations/+/readings") == 1
    assert ingester.subscribe("$share/g/stations/+/status") == 1

    # client id = username: station C connecting with A's and the ingester's client id kicks
    # neither (the broker replaces C's client id by its username)
    for stolen in ("st-a", "meltemi-ingest") * 5:
        assert connack(port, "st-c", secrets["st-c"].get_secret_value(), client_id=stolen) == 0
    assert (a.disconnects, ingester.disconnects) == (0, 0)

    # exact topics: A may write its two topics and nothing else; only ingesters write accepted/
    api = Probe(port, "meltemi-api", api_secret, v5=True)
    assert api.start() == 0
    assert api.subscribe("meltemi/accepted/+") == 1
    assert api.subscribe("stations/+/readings") == NOT_AUTHORIZED_V5
    denied = [
        a.publish("stations/st-a/x/readings", "{}"),
        a.publish("stations/st-c/readings", "{}"),
        a.publish("stations/st-a/readings/x", "{}"),
        a.publish("meltemi/accepted/st-a", "{}"),
    ]
    allowed = [a.publish("stations/st-a/readings", "{}"), a.publish("stations/st-a/status", "{}")]
    codes = wait_pubacks(a, 6)
    assert [codes[m] for m in denied] == [NOT_AUTHORIZED_V5] * 4
    assert [codes[m] for m in allowed] == [0, 0]
    forged = api.publish("meltemi/accepted/st-a", "{}")
    republished = ingester.publish("meltemi/accepted/st-a", "{}")
    assert wait_pubacks(api, 1)[forged] == NOT_AUTHORIZED_V5
    assert wait_pubacks(ingester, 1)[republished] == 0
    wait_for(lambda: api.messages, message="the ingester's re-publication")
    assert api.messages == [("meltemi/accepted/st-a", b"{}")]  # and not the API's own forgery
    assert a.subscribe("stations/+/readings") == NOT_AUTHORIZED_V5
    wait_for(lambda: len(ingester.messages) == 2, message="A's reading and status")
    assert sorted(ingester.messages) == [
        ("stations/st-a/readings", b"{}"),
        ("stations/st-a/status", b"{}"),
    ]
    with pytest.raises(ValueError, match="must match"):
        check_station_id("a/b")  # such a user (and role topic) is never created

    # revoke: the live connection is closed at once and the secret refused afterwards
    with secure_broker.admin() as admin:
        admin.disable("st-a")
    wait_for(lambda: a.disconnects == 1, timeout_s=5, message="A kicked on revoke")
    assert connack(port, "st-a", secrets["st-a"].get_secret_value()) == NOT_AUTHORIZED_V311

    # rotate: C connected with the old secret is closed; old refused, new accepted
    c = Probe(port, "st-c", secrets["st-c"].get_secret_value())
    assert c.start() == 0
    new = generate_secret()
    with secure_broker.admin() as admin:
        admin.set_secret("st-c", new)
    wait_for(lambda: c.disconnects == 1, timeout_s=5, message="C kicked on rotate")
    assert connack(port, "st-c", secrets["st-c"].get_secret_value()) == NOT_AUTHORIZED_V311
    assert connack(port, "st-c", new.get_secret_value()) == 0

    assert ingester.disconnects == 0
    for probe in (ingester, api):
        probe.stop()
    assert secure_broker.broker.pid == pid  # never restarted
    assert secure_broker.broker.running()


# ---- deploy/mosquitto-production.conf as shipped ----------------------------------------------
def _provision(production_broker, stations: list[str]) -> tuple[str, dict[str, str]]:
    """Create the ingester's account and these stations; return their secrets."""
    secrets = {s: generate_secret() for s in stations}
    ingest = generate_secret()
    with production_broker.admin() as admin:
        admin.add_service("meltemi-ingest", "ingester", ingest)
        for station, secret in secrets.items():
            admin.add_station(station, secret)
    return ingest.get_secret_value(), {k: v.get_secret_value() for k, v in secrets.items()}


def _listening(pid: int) -> set[str]:
    done = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True)
    return {line.split()[3] for line in done.stdout.splitlines() if f"pid={pid}," in line}


def _s_client(port: int, ca_file, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            *flags,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_s1_listeners_anonymous_and_tls(production_broker):
    pb = production_broker
    # exactly one plaintext listener, on loopback, and the TLS listener
    assert _listening(pb.process.pid) == {
        f"127.0.0.1:{pb.loopback_port}",
        f"0.0.0.0:{pb.tls_port}",
        f"[::]:{pb.tls_port}",
    }
    _ingest, secrets = _provision(pb, ["st-a"])
    # anonymous refused on every listener, v3.1.1 (rc 5) and v5 (0x87)
    for kwargs in ({"port": pb.loopback_port}, {"port": pb.tls_port, "ca_file": pb.ca_file}):
        assert connack(username=None, **kwargs) == NOT_AUTHORIZED_V311
        assert connack(username=None, v5=True, **kwargs) == NOT_AUTHORIZED_V5
        assert connack(username="st-a", password="guess", **kwargs) == NOT_AUTHORIZED_V311
    assert connack(pb.tls_port, "st-a", secrets["st-a"], ca_file=pb.ca_file) == 0
    # plaintext MQTT to the TLS port gets no CONNACK
    with socket.create_connection(("127.0.0.1", pb.tls_port), timeout=10) as sock:
        sock.sendall(connect_packet("st-a", "st-a", secrets["st-a"]))
        try:
            answer = sock.recv(4)
        except ConnectionResetError:
            answer = b""
        assert answer[:1] != b"\x20"  # no CONNACK: closed (or a TLS alert)
    # TLS 1.1 refused by the server (client allowed it), 1.2 and 1.3 accepted, cert verified
    old = _s_client(pb.tls_port, pb.ca_file, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert old.returncode != 0
    assert "alert protocol version" in old.stderr or "unsupported protocol" in old.stderr
    for version in ("-tls1_2", "-tls1_3"):
        ok = _s_client(pb.tls_port, pb.ca_file, version)
        assert ok.returncode == 0, ok.stderr
        assert "Verify return code: 0 (ok)" in ok.stdout
    # a client that verifies against another CA refuses the broker (no tls_insecure anywhere)
    other_ca, _key = make_ca(pb.ca_file.parent / "other", "other")
    assert _s_client(pb.tls_port, other_ca, "-tls1_2").returncode != 0
    context = ssl.create_default_context(cafile=str(other_ca))  # what paho's tls_set builds
    with (
        socket.create_connection(("127.0.0.1", pb.tls_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()


def test_s2_s3_cross_station_and_topic_shape_publishes_are_denied(production_broker):
    pb = production_broker
    stations = [f"st-{k:02d}" for k in range(12)]
    ingest, secrets = _provision(pb, stations)
    ingester = Probe(pb.loopback_port, "meltemi-ingest", ingest, v5=True)
    assert ingester.start() == 0
    assert ingester.subscribe("stations/+/readings") == 1
    assert ingester.subscribe("stations/+/status") == 1
    # 1,000 attempts across 12 stations over TLS, every other station on MQTT v5
    plan = {s: 1000 // 12 + (1 if k < 1000 % 12 else 0) for k, s in enumerate(stations)}
    assert sum(plan.values()) == 1000
    probes: list[tuple[Probe, list[int], int]] = []
    for index, station in enumerate(stations):
        probe = Probe(pb.tls_port, station, secrets[station], v5=index % 2 == 1, ca_file=pb.ca_file)
        assert probe.start() == 0
        mids = []
        for k in range(plan[station]):
            victim = stations[(index + 1 + k) % len(stations)]
            topic = (
                f"stations/{victim}/readings",
                f"stations/{victim}/status",
                f"stations/{station}/x/readings",  # S3: an extra level under its own id
                f"stations/{station}/readings/x",
            )[k % 4]
            mids.append(probe.publish(topic, json.dumps({"ts": 1, "seq": k, "values": {}})))
        legit = probe.publish(f"stations/{station}/readings", "legit")  # the barrier: last
        probes.append((probe, mids, legit))
    wait_for(lambda: len(ingester.messages) >= 12, message="the 12 legitimate messages")
    for probe, mids, legit in probes:
        codes = wait_pubacks(probe, len(mids) + 1)
        if probe.v5:  # MQTT 5 tells the publisher: reason code 135 for each denied PUBLISH
            assert [codes[m] for m in mids] == [NOT_AUTHORIZED_V5] * len(mids)
        assert codes[legit] == 0
        probe.stop()
    # 0 of the 1,000 reached a subscriber with ingester rights; only the barriers did
    assert sorted(ingester.messages) == [(f"stations/{s}/readings", b"legit") for s in stations]
    # on 3.1.1 the log is the only evidence [MQTT-3.3.5-2]: one "Denied PUBLISH" per attempt
    assert pb.log.read_text().count("Denied PUBLISH from st-") == 1000
    assert ingester.disconnects == 0
    ingester.stop()


def test_s4_client_id_takeover_is_impossible(production_broker):
    pb = production_broker
    ingest, secrets = _provision(pb, ["st-a", "st-b", "st-c"])
    # the ingester as in the finding: durable session (clean start false), loopback, MQTT v5
    ingester = Probe(
        pb.loopback_port, "meltemi-ingest", ingest, client_id="meltemi-ingest", v5=True, clean=False
    )
    assert ingester.start() == 0
    assert ingester.subscribe("stations/+/readings") == 1
    a = Probe(pb.tls_port, "st-a", secrets["st-a"], client_id="st-a", ca_file=pb.ca_file)
    assert a.start() == 0
    b = Probe(pb.tls_port, "st-b", secrets["st-b"], client_id="st-b", ca_file=pb.ca_file)
    assert b.start() == 0
    thief_codes: list[int] = []

    def thief() -> None:  # station C, its own valid secret, others' client ids, 100 times each
        for stolen in ("st-a", "meltemi-ingest") * 100:
            thief_codes.append(
                connack(
                    pb.tls_port,
                    "st-c",
                    secrets["st-c"],
                    client_id=stolen,
                    ca_file=pb.ca_file,
                    clean=False,
                )
            )

    worker = threading.Thread(target=thief)
    worker.start()
    for seq in range(200):  # meanwhile station B sends 200 readings
        b.publish("stations/st-b/readings", f'{{"seq": {seq}}}')
    worker.join(120)
    assert thief_codes == [0] * 200  # accepted, as st-c: the client id was replaced
    wait_for(lambda: len(ingester.messages) >= 200, message="B's 200 readings")
    assert sorted(p for _t, p in ingester.messages) == sorted(
        f'{{"seq": {seq}}}'.encode() for seq in range(200)
    )
    assert (a.disconnects, ingester.disconnects) == (0, 0)
    assert "already connected, closing old connection" not in pb.log.read_text()
    for probe in (a, b, ingester):
        probe.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _oversized_attempt(port: int, secret: str, payload_bytes: int) -> bytes:
    """Connect as st-a, announce a PUBLISH of ``payload_bytes``, send 64 KiB of it; return
    what the broker answered before closing (b"" when it closed without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connect_packet("st-a", "st-a", secret))
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
        try:
            sock.sendall(publish_header("stations/st-a/readings", payload_bytes))
            sock.sendall(b"x" * min(payload_bytes, 65536))
            return sock.recv(16)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_s5_oversized_packets_are_refused(production_broker):
    pb = production_broker
    ingest, secrets = _provision(pb, ["st-a"])
    ingester = Probe(pb.loopback_port, "meltemi-ingest", ingest, v5=True)
    assert ingester.start() == 0
    assert ingester.subscribe("stations/+/readings") == 1
    rss_before = _rss_kib(pb.process.pid)
    # larger than max_packet_size: the sender is disconnected, nothing is delivered
    sizes = [1024 * 1024, 10 * 1024 * 1024, 266241]
    for attempt in range(1000):
        assert _oversized_attempt(pb.loopback_port, secrets["st-a"], sizes[attempt % 3]) == b""
    rss_growth_kib = _rss_kib(pb.process.pid) - rss_before
    # a 256 KiB payload (the contract's limit) is accepted, over TLS, and is the only delivery
    station = Probe(pb.tls_port, "st-a", secrets["st-a"], ca_file=pb.ca_file)
    assert station.start() == 0
    station.publish("stations/st-a/readings", b"x" * 256 * 1024)
    wait_for(lambda: ingester.messages, message="the 256 KiB message")
    assert [len(p) for _t, p in ingester.messages] == [256 * 1024]
    assert rss_growth_kib < 10 * 1024
    assert ingester.disconnects == 0
    for probe in (station, ingester):
        probe.stop()


def test_connection_flood_leaves_room_for_normal_clients(production_broker):
    pb = production_broker
    ingest, secrets = _provision(pb, ["st-a"])
    flood: list[socket.socket] = []
    try:
        for k in range(2000):  # idle sockets that never start TLS nor send a CONNECT
            flood.append(socket.create_connection(("127.0.0.1", pb.tls_port), timeout=10))
            if k % 500 == 499:
                half = socket.create_connection(("127.0.0.1", pb.tls_port), timeout=10)
                half.sendall(b"\x16\x03\x01")  # half a TLS ClientHello
                flood.append(half)
        wait_for(lambda: _established(pb.tls_port) >= 2000, timeout_s=30, message="flood accepted")
        # normal clients (mosquitto_pub: its own process; paho's select() cannot watch a
        # descriptor above 1024, which this process now holds)
        tls = ["--cafile", str(pb.ca_file), "-p", str(pb.tls_port), "-u", "st-a"]
        local = ["-p", str(pb.loopback_port), "-u", "meltemi-ingest"]
        codes = [
            _pub_exit(*tls, "-P", secrets["st-a"], "-t", "stations/st-a/status") for _ in range(20)
        ] + [_pub_exit(*local, "-P", ingest, "-t", "meltemi/accepted/st-a") for _ in range(20)]
        assert codes == [0] * 40
    finally:
        for sock in flood:
            sock.close()


def _pub_exit(*args: str) -> int:
    done = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-m", "x", *args],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode


def _established(port: int) -> int:
    done = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(done.stdout.splitlines())
