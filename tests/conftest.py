"""Fixtures: real Mosquitto and InfluxDB on free ports in temporary directories, stopped by PID."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from meltemi.services import InfluxDB, Mosquitto, free_port
from sensors.settings import Settings


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
    )
