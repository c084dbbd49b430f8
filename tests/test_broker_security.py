"""Broker security (issue 8, RELIABILITY S1-S5): identities, takeover, limits, on real Mosquitto.

The first test is the one that chose the mechanism (meltemi/broker_admin.py): on Debian's
Mosquitto 2.0.11 with the shipped mosquitto.conf, the dynamic-security plugin gives client id =
username, an immediate kick on revoke and rotate, changes without a restart, exact topics and
ingester-only writes to meltemi/accepted/. The others start deploy/mosquitto-production.conf as
shipped (ports and paths substituted, a throw-away CA made with openssl).
"""

from __future__ import annotations

import pytest

from meltemi.broker_admin import check_station_id, generate_secret
from tests.helpers import wait_for
from tests.mqtt_clients import Probe, connack, wait_pubacks

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
