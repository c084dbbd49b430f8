"""The alerts topic on a broker with the production shape: only the alert engine writes it.

``meltemi/alerts/+`` is published by the ``meltemi-alerts`` role alone (dynamic security, as
``meltemi up`` provisions it); a station, the ingester and the API are refused (MQTT v5 PUBACK
135, not authorised); the API role reads it. A rules file with a mistake stops
``meltemi alerts`` with exit code 2 and a message naming the line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meltemi.broker_admin import generate_secret
from sensors.alerting import alerts_topic
from tests.conftest import SecureBroker
from tests.helpers import wait_for
from tests.mqtt_clients import Probe, wait_pubacks

NOT_AUTHORISED = 135


def test_only_the_alert_engine_publishes_alerts(secure_broker: SecureBroker) -> None:
    s = secure_broker.secrets
    alerts_secret = generate_secret()
    station_secret = generate_secret()
    with secure_broker.admin() as admin:
        admin.add_service(s.ingest_username, "ingester", s.ingest_password)
        admin.add_service(s.api_username, "api", s.api_password)
        admin.add_service("meltemi-alerts", "alerts", alerts_secret)
        admin.add_station("elefsina-01", station_secret)
    topic = alerts_topic("elefsina-01")
    reader = Probe(secure_broker.port, s.api_username, s.api_password.get_secret_value())
    assert reader.start() == 0
    assert reader.subscribe("meltemi/alerts/+") == 1  # granted, QoS 1
    writers = {
        "meltemi-alerts": alerts_secret.get_secret_value(),
        "elefsina-01": station_secret.get_secret_value(),
        s.ingest_username: s.ingest_password.get_secret_value(),
        s.api_username: s.api_password.get_secret_value(),
    }
    codes: dict[str, int] = {}
    for username, secret in writers.items():
        probe = Probe(secure_broker.port, username, secret, v5=True)
        assert probe.start() == 0
        mid = probe.publish(topic, f'{{"from": "{username}"}}')
        codes[username] = wait_pubacks(probe, 1)[mid]
        probe.stop()
    assert codes == {
        "meltemi-alerts": 0,
        "elefsina-01": NOT_AUTHORISED,
        s.ingest_username: NOT_AUTHORISED,
        s.api_username: NOT_AUTHORISED,
    }
    wait_for(lambda: len(reader.messages) >= 1, message="the engine's message")
    assert reader.messages == [(topic, b'{"from": "meltemi-alerts"}')]
    reader.stop()


def test_a_broken_rules_file_stops_the_engine_naming_the_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "x"\nkind = "silent"\nafter = "soon"\n')
    done = subprocess.run(
        [sys.executable, "-m", "meltemi.cli", "alerts"],
        env={"MELTEMI_ALERTS_RULES_FILE": str(rules), "MELTEMI_DATA_DIR": str(tmp_path),
             "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"meltemi: {rules}, line 4: rule.0.after" in done.stderr
    assert "not a duration" in done.stderr
