"""`meltemi stations` end to end (CONTRACT §6) against a running broker with the shipped config:
add -> the new station publishes, only to its own topics, and a running ingester stores it
without a restart; rotate -> the old secret refused; revoke -> kicked and refused, data kept."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from meltemi.services import ManagedProcess
from sensors.registry import open_registry, parse_registry, save_registry
from sensors.settings import Settings
from tests.helpers import influx_count, settings_env, wait_for
from tests.mqtt_clients import Probe, connack, wait_pubacks

NOT_AUTHORIZED_V311 = 5
NOT_AUTHORIZED_V5 = 0x87


def meltemi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meltemi.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _secret(stdout: str) -> str:
    lines = dict(line.split(": ", 1) for line in stdout.strip().splitlines())
    return lines["secret"]


def test_add_refuses_ids_that_fail_the_pattern(secure_broker):
    env = secure_broker.cli_env()
    for bad in ("a/b", "A-upper", "x", "-lead", "st+", "st#", "a" * 64):
        done = meltemi(
            env, "stations", "add", "--name", "N", "--lat", "38", "--lon", "23", "--", bad
        )
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        assert "must match ^[a-z0-9][a-z0-9-]{1,62}$" in done.stderr
        assert "secret" not in done.stdout
    assert not (secure_broker.data_dir / "stations.toml").exists()
    with secure_broker.admin() as admin:
        assert set(admin.clients()) == {"meltemi-admin"}


def test_add_rotate_revoke_list_end_to_end(secure_broker, influx, db_name, tmp_path):
    env = secure_broker.cli_env()
    port = secure_broker.port
    # an ingester with its own identity, running before the station exists
    ingest_secret = secure_broker.secrets.ingest_password
    with secure_broker.admin() as admin:
        admin.add_service("meltemi-ingest", "ingester", ingest_secret)
    influx.create_database(db_name)
    settings = Settings(
        mqtt_port=port,
        mqtt_username="meltemi-ingest",
        mqtt_password=ingest_secret,
        mqtt_client_id="meltemi-ingest",
        mqtt_session_expiry_s=600,
        influx_url=influx.url,
        influx_db=db_name,
        data_dir=secure_broker.data_dir,
    )
    ingester = ManagedProcess(
        "ingester",
        [sys.executable, "-m", "meltemi.cli", "ingest"],
        tmp_path / "ingester.log",
        env=settings_env(settings),
    )
    ingester.start()
    try:
        ingester.wait_until(lambda: "subscribed to " in ingester.log_text())
        running_registry = open_registry(settings)  # what a running API holds
        assert running_registry.get("pylos-07") is None

        done = meltemi(
            env,
            *("stations", "add", "pylos-07", "--name", "Pylos, Harbour", "--lat", "36.91"),
            *("--lon", "21.69", "--municipality", "Pylos-Nestor", "--elevation-m", "4"),
            *("--parameters", "air_temperature,relative_humidity"),
        )
        assert done.returncode == 0, done.stderr
        secret = _secret(done.stdout)
        assert len(secret) >= 40
        registry = parse_registry((secure_broker.data_dir / "stations.toml").read_text())
        assert len(registry) == 14  # seeded with the packaged 13, plus the new one
        station = registry.get("pylos-07")
        assert station is not None
        assert (station.name, station.municipality, station.elevation_m) == (
            "Pylos, Harbour",
            "Pylos-Nestor",
            4.0,
        )
        assert station.parameters == ("air_temperature", "relative_humidity")
        # the secret is shown once: in no file under the data dir and in no log
        for path in secure_broker.data_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        assert secret not in done.stderr
        assert secret not in ingester.log_text()

        # the new station publishes to its topics only; the running ingester stores it
        wait_for(lambda: running_registry.get("pylos-07") is not None, timeout_s=5)
        probe = Probe(port, "pylos-07", secret, v5=True)
        assert probe.start() == 0
        reading = {"ts": int(time.time()) - 5, "seq": 1, "values": {"air_temperature": 21.5}}
        mine = probe.publish("stations/pylos-07/readings", json.dumps(reading))
        other = probe.publish("stations/elefsina-01/readings", json.dumps(reading))
        codes = wait_pubacks(probe, 2)
        assert (codes[mine], codes[other]) == (0, NOT_AUTHORIZED_V5)
        count = 'SELECT count("air_temperature") FROM readings GROUP BY "station"'
        wait_for(lambda: influx_count(influx.url, db_name, count) == 1, message="1 stored")
        stored = influx_count(
            influx.url,
            db_name,
            'SELECT count("air_temperature") FROM readings WHERE "station" = \'pylos-07\'',
        )
        assert stored == 1

        # rotate: a new secret, the old one refused at once, the live connection closed
        done = meltemi(env, "stations", "rotate", "pylos-07")
        assert done.returncode == 0, done.stderr
        rotated = _secret(done.stdout)
        assert rotated != secret
        wait_for(lambda: probe.disconnects == 1, timeout_s=5, message="old session closed")
        assert connack(port, "pylos-07", secret) == NOT_AUTHORIZED_V311
        live = Probe(port, "pylos-07", rotated)
        assert live.start() == 0

        # revoke: the connected station is kicked, refused after; its entry and data are kept
        done = meltemi(env, "stations", "revoke", "pylos-07")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: live.disconnects == 1, timeout_s=5, message="revoked station kicked")
        assert connack(port, "pylos-07", rotated) == NOT_AUTHORIZED_V311
        kept = parse_registry((secure_broker.data_dir / "stations.toml").read_text())
        revoked = kept.get("pylos-07")
        assert revoked is not None
        assert revoked.revoked
        assert influx_count(influx.url, db_name, count) == 1

        listed = meltemi(env, "stations", "list")
        assert listed.returncode == 0, listed.stderr
        rows = {line.split("\t")[0]: line.split("\t")[1:3] for line in listed.stdout.splitlines()}
        assert len(rows) == 14
        assert rows["pylos-07"] == ["revoked", "broker=disabled"]
        assert rows["elefsina-01"] == ["registered", "broker=missing"]

        # rotate reinstates a revoked station with a fresh secret
        done = meltemi(env, "stations", "rotate", "pylos-07")
        assert done.returncode == 0, done.stderr
        assert connack(port, "pylos-07", _secret(done.stdout)) == 0
        again = parse_registry((secure_broker.data_dir / "stations.toml").read_text())
        reinstated = again.get("pylos-07")
        assert reinstated is not None
        assert not reinstated.revoked
    finally:
        ingester.stop()


def test_accounts_two_api_replicas_never_kick_each_other(secure_broker):
    env = secure_broker.cli_env()
    secrets = {}
    for name in ("meltemi-api", "meltemi-api-2"):
        done = meltemi(env, "accounts", "add", name, "--role", "api")
        assert done.returncode == 0, done.stderr
        secrets[name] = _secret(done.stdout)
    refused = meltemi(env, "accounts", "add", "api-3", "--role", "api")
    assert refused.returncode == 2
    replicas = [
        Probe(secure_broker.port, n, s, client_id="meltemi-api-live") for n, s in secrets.items()
    ]
    assert [r.start() for r in replicas] == [0, 0]
    assert [r.subscribe("meltemi/accepted/+") for r in replicas] == [1, 1]
    # same client id asked for, but the broker uses each username: neither kicks the other
    assert [r.disconnects for r in replicas] == [0, 0]
    listed = meltemi(env, "accounts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "meltemi-api-2\tmeltemi-api\tactive" in listed.stdout.splitlines()
    for replica in replicas:
        replica.stop()


def test_registry_follows_its_file_and_keeps_the_last_good_one(tmp_path):
    settings = Settings(data_dir=tmp_path)
    registry = open_registry(settings)  # no file yet: the packaged registry, watching the path
    assert len(registry) == 13
    stations = list(registry)
    save_registry(tmp_path / "stations.toml", stations[:2])
    registry.refresh(force=True)
    assert registry.ids == [stations[0].id, stations[1].id]
    (tmp_path / "stations.toml").write_text("[[station]]\nid = 'half-written")
    assert not registry.refresh(force=True)
    assert len(registry) == 2  # a broken file never empties a running registry
    save_registry(tmp_path / "stations.toml", stations[:3])
    assert not registry.refresh()  # the file is stat'ed at most once a second
    assert len(registry.ids) == 2
    assert registry.refresh(force=True)
    assert len(registry) == 3
