"""Fixtures: real Mosquitto and InfluxDB on free ports in temporary directories, stopped by PID."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from meltemi.broker_admin import DynsecAdmin, generate_secret
from meltemi.credentials import BrokerSecrets, save_broker_secrets
from meltemi.services import (
    InfluxDB,
    ManagedProcess,
    Mosquitto,
    find_binary,
    free_port,
    port_open,
    raise_nofile_limit,
)
from sensors.settings import Settings
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, prometheus_value, settings_env, wait_for
from tests.mqtt_clients import make_ca, openssl


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MELTEMI_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("MELTEMI_"):
            monkeypatch.delenv(name)


def _start_broker(root: Path) -> Mosquitto:
    broker = Mosquitto(root, free_port())
    broker.start_and_wait()
    return broker


def _start_influx(root: Path) -> InfluxDB:
    influx = InfluxDB(root, free_port(), query_log=True)
    influx.start_and_wait()
    return influx


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One Mosquitto for the session (tests use their own station ids and client ids)."""
    server = _start_broker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One InfluxDB for the session (tests use their own database)."""
    server = _start_influx(tmp_path_factory.mktemp("influxdb"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own, for tests that stop, kill or hang it."""
    server = _start_broker(tmp_path / "mosquitto")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_influx(tmp_path: Path) -> Iterator[InfluxDB]:
    """An InfluxDB of this test's own, for tests that stop, kill or hang it."""
    server = _start_influx(tmp_path / "influxdb")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_name() -> str:
    """A database name no other test uses."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def settings(broker: Mosquitto, influx: InfluxDB, db_name: str, tmp_path: Path) -> Settings:
    """Settings pointing at the session's services, with this test's database and client id."""
    influx.create_database(db_name)
    return Settings(
        mqtt_port=broker.port,
        influx_url=influx.url,
        influx_db=db_name,
        data_dir=tmp_path / "var",
        mqtt_client_id="ingest-" + uuid.uuid4().hex[:8],
        mqtt_session_expiry_s=600,
    )


# TEST_INGEST_LOG_LEVEL=DEBUG shows each paho packet in the ingester logs of a failing test.
INGEST_LOG_LEVEL = os.environ.get("TEST_INGEST_LOG_LEVEL", "INFO")


class IngesterProcess:
    """``meltemi ingest`` as a subprocess (a real crash needs a real process), with its metrics."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "ingester") -> None:
        self.settings = settings
        self.metrics_port = settings.ingest_metrics_port or free_port()
        env = settings_env(settings, MELTEMI_INGEST_METRICS_PORT=str(self.metrics_port))
        self.process = ManagedProcess(
            name,
            [sys.executable, "-m", "meltemi.cli", "--log-level", INGEST_LOG_LEVEL, "ingest"],
            log_dir / f"{name}.log",
            env=env,
        )
        self.connects_seen = 0

    def start(self, wait_connected: bool = True) -> IngesterProcess:
        """Start it and wait until it has subscribed (its log says so)."""
        before = self.process.log_text().count("subscribed to ")
        self.process.start()
        if wait_connected:
            self.process.wait_until(
                lambda: self.process.log_text().count("subscribed to ") > before
            )

        return self

    def metrics(self) -> str:
        """Return its Prometheus text."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def metric(self, name: str, labels: str = "") -> float:
        """Return one of its metrics."""
        return prometheus_value(self.metrics(), name, labels)

    def wait_idle(self, timeout_s: float = 30) -> None:
        """Wait until nothing is in flight and no message arrived between two looks at /metrics."""
        seen: list[float] = []

        def idle() -> bool:
            received = self.metric("meltemi_ingest_messages_received_total")
            quiet = self.metric("meltemi_ingest_in_flight") == 0 and seen[-1:] == [received]
            seen.append(received)
            return quiet

        wait_for(idle, timeout_s=timeout_s, interval_s=0.25, message=f"{self.process.name} idle")

    def kill(self) -> None:
        """SIGKILL: a crash at an arbitrary moment."""
        self.process.signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (a clean stop drains and acknowledges)."""
        return self.process.stop()

    def sessions_present(self) -> list[bool]:
        """Return the session_present flag of every connection it logged."""
        return [
            line.endswith("(session present: True)")
            for line in self.process.log_text().splitlines()
            if "connected to " in line
        ]


@pytest.fixture
def ingester_factory(tmp_path: Path) -> Iterator[Callable[..., IngesterProcess]]:
    """Start ingester subprocesses; every one is stopped (by PID) at the end of the test."""
    started: list[IngesterProcess] = []

    def make(settings: Settings, name: str = "ingester", start: bool = True) -> IngesterProcess:
        ingester = IngesterProcess(settings, tmp_path, name)
        started.append(ingester)
        return ingester.start() if start else ingester

    try:
        yield make
    finally:
        for ingester in started:
            ingester.stop()


# ---- Broker identities (issue 8): a broker with the production shape ----------------------------
@dataclass
class SecureBroker:
    """The embedded broker as `meltemi up` runs it: nothing anonymous, dynamic-security clients."""

    broker: Mosquitto
    data_dir: Path
    secrets: BrokerSecrets

    @property
    def port(self) -> int:
        """Return the broker's loopback port."""
        return self.broker.port

    def admin(self) -> DynsecAdmin:
        """Return an (unopened) admin connection."""
        return DynsecAdmin(
            "127.0.0.1", self.port, self.secrets.admin_username, self.secrets.admin_password
        )

    def cli_env(self, **extra: str) -> dict[str, str]:
        """Return the environment of a `meltemi stations` run against this broker."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
        env.update(
            {"MELTEMI_DATA_DIR": str(self.data_dir), "MELTEMI_MQTT_PORT": str(self.port), **extra}
        )
        return env


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """A broker with the shipped mosquitto.conf (auth on), its admin secret stored as `up` does."""
    data_dir = tmp_path / "var"
    secrets = BrokerSecrets(
        admin_username="meltemi-admin",
        admin_password=generate_secret(),
        ingest_username="meltemi-ingest",
        ingest_password=generate_secret(),
        api_username="meltemi-api",
        api_password=generate_secret(),
    )
    save_broker_secrets(data_dir, secrets)
    broker = Mosquitto(
        data_dir / "mosquitto", free_port(), admin=(secrets.admin_username, secrets.admin_password)
    )
    broker.start_and_wait()
    try:
        yield SecureBroker(broker, data_dir, secrets)
    finally:
        broker.stop()


@dataclass
class ProductionBroker:
    """deploy/mosquitto-production.conf as shipped (ports and paths substituted), its CA."""

    process: ManagedProcess
    loopback_port: int
    tls_port: int
    ca_file: Path
    log: Path
    admin_secret: SecretStr

    def admin(self) -> DynsecAdmin:
        """Return an (unopened) admin connection over the loopback listener."""
        return DynsecAdmin("127.0.0.1", self.loopback_port, "meltemi-admin", self.admin_secret)


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """Start deploy/mosquitto-production.conf with a throw-away CA; stopped by PID."""
    certs = tmp_path / "certs"
    ca_cert, ca_key = make_ca(certs)
    key, csr, cert = certs / "broker.key", certs / "broker.csr", certs / "broker.crt"
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ext = certs / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    state = tmp_path / "lib"
    state.mkdir()
    loopback_port, tls_port = free_port(), free_port()
    text = (Path(__file__).resolve().parent.parent / "deploy/mosquitto-production.conf").read_text()
    substituted = (
        text.replace("listener 1883 127.0.0.1", f"listener {loopback_port} 127.0.0.1")
        .replace("listener 8883", f"listener {tls_port}")
        .replace("/etc/mosquitto/certs/", f"{certs}/")
        .replace("/var/lib/mosquitto/", f"{state}/")
        .replace("/var/log/mosquitto/", f"{tmp_path}/")
    )
    assert substituted.count(str(tmp_path)) == 5
    # As root, Mosquitto drops to the `mosquitto` user, who cannot read a private temp dir;
    # debug logging makes every "Denied PUBLISH" visible (RELIABILITY S2 counts them).
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(substituted + f"\nuser {getpass.getuser()}\nlog_type debug\n")
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "meltemi.cli",
            "accounts",
            "init",
            str(state / "dynamic-security.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secret = SecretStr(init.stdout.split("secret: ", 1)[1].strip())
    raise_nofile_limit()  # what deploy/mosquitto.service.d/meltemi.conf does under systemd
    process = ManagedProcess(
        "mosquitto",
        [find_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)],
        tmp_path / "stdout.log",
    )
    process.start()
    try:
        process.wait_until(lambda: port_open(loopback_port) and port_open(tls_port))
        yield ProductionBroker(
            process, loopback_port, tls_port, ca_cert, tmp_path / "mosquitto.log", secret
        )
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the module, driven by Playwright."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    with playwright_sync.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()
