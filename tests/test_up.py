"""`meltemi up`, the main job: everything starts, history appears, Ctrl-C stops it cleanly,
and a second run keeps the data."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from meltemi.services import ManagedProcess, free_port, port_open
from tests.helpers import wait_for
from tests.mqtt_clients import connack


def _up(tmp_path, ports: dict[str, int]) -> ManagedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    env.update(
        {
            "MELTEMI_DATA_DIR": str(tmp_path / "var"),
            "MELTEMI_MQTT_PORT": str(ports["mqtt"]),
            "MELTEMI_INFLUX_URL": f"http://127.0.0.1:{ports['influx']}",
            "MELTEMI_API_PORT": str(ports["api"]),
        }
    )
    process = ManagedProcess(
        "meltemi-up", [sys.executable, "-m", "meltemi.cli", "up"], tmp_path / "up.log", env=env
    )
    process.start()
    return process


def _healthy(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = response.json()
    return body if response.status_code == 200 else None


@pytest.mark.timeout(420)
def test_make_up_runs_backfills_stops_cleanly_and_keeps_data(tmp_path):
    ports = {"mqtt": free_port(), "influx": free_port(), "api": free_port()}
    api = f"http://127.0.0.1:{ports['api']}"
    up = _up(tmp_path, ports)
    try:
        health = wait_for(lambda: _healthy(f"{api}/health"), timeout_s=90, message="/health")
        assert health is not None
        assert {k: health[k] for k in ("status", "mqtt", "influxdb")} == {
            "status": "ok",
            "mqtt": True,
            "influxdb": True,
        }
        assert health["broker_dropped"] in (None, 0)  # issue 9: the broker's drops, shown
        stations = httpx.get(f"{api}/v1/stations", timeout=10).json()["stations"]
        assert len(stations) >= 12
        assert f"Meltemi dashboard: {api}/" in up.log_text()
        # the 48-hour back-fill arrives through MQTT: a chart two days wide has history
        start = (datetime.now(UTC) - timedelta(hours=47)).strftime("%Y-%m-%dT%H:00:00Z")
        url = (
            f"{api}/v1/stations/elefsina-01/series?parameters=air_temperature"
            f"&interval=1h&start={start}"
        )
        seen: list[dict[str, Any]] = []

        def history() -> list[dict[str, Any]]:
            seen.append(httpx.get(url, timeout=30).json())
            return seen[-1]["points"] if len(seen[-1]["points"]) >= 40 else []

        try:
            points = wait_for(history, timeout_s=180, interval_s=2, message="47 h of history")
        except AssertionError:
            raise AssertionError(f"{url}: {str(seen[-1:])[:1500]}") from None
        assert all(-50 <= p["values"]["air_temperature"]["mean"] <= 60 for p in points)
        # the broker side of the production shape: nothing anonymous, stations as themselves
        assert connack(ports["mqtt"], None) == 5
        assert connack(ports["mqtt"], None, v5=True) == 0x87
        broker_log = (tmp_path / "var" / "mosquitto" / "mosquitto.log").read_text()
        assert "as elefsina-01 (p2, c1, k" in broker_log
        assert "u'elefsina-01')" in broker_log

        def every_station_latest() -> list[dict[str, Any]]:
            entries: list[dict[str, Any]] = httpx.get(f"{api}/v1/latest", timeout=10).json()[
                "stations"
            ]
            return entries if len(entries) == len(stations) else []

        latest = wait_for(every_station_latest, timeout_s=60, message="every station latest")
        # the alert engine runs under `meltemi up` and persists its state after each step
        state = tmp_path / "var" / "alerts" / "state.json"
        wait_for(state.exists, timeout_s=60, message="the alert engine's state file")
        assert json.loads(state.read_text())["cursor"] is not None
        assert "alert engine: 6 rules, 13 stations" in up.log_text()
        assert "alert publisher connected" in up.log_text()  # its own broker account
        assert {entry["station"] for entry in latest} == {s["id"] for s in stations}
        newest = max(entry["ts"] for entry in latest)
        assert newest >= (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M")

    finally:
        up.signal(signal.SIGINT)  # Ctrl-C
        code = up.wait(90)
        up.stop()  # already exited: closes its log

    assert code == 0, up.log_text()[-3000:]
    assert not any(port_open(p) for p in ports.values())  # every child stopped
    stored_before = len(points)
    credentials = _check_private_secrets(tmp_path)

    again = _up(tmp_path, ports)  # a second run keeps the earlier data
    try:
        wait_for(lambda: _healthy(f"{api}/health"), timeout_s=90, message="/health again")
        kept = httpx.get(url, timeout=30).json()["points"]
        assert len(kept) >= stored_before
        assert _check_private_secrets(tmp_path) == credentials  # the same credentials reused
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait(90) == 0
        again.stop()

    wait_for(lambda: not any(port_open(p) for p in ports.values()), timeout_s=10)


def _check_private_secrets(tmp_path) -> dict[str, str]:
    """Assert the secrets files are 0600 in 0700 dirs and no secret is in any log; return them."""
    data = tmp_path / "var"
    secrets_dir = data / "secrets"
    broker = json.loads((secrets_dir / "broker.json").read_text())
    stations = json.loads((secrets_dir / "simulator-stations.json").read_text())
    assert len(stations) == 13  # every simulated station has an identity of its own
    # issue 9: two ingest workers, each with a broker account and secret of its own
    workers = json.loads((secrets_dir / "ingest-workers.json").read_text())
    assert set(workers) == {"meltemi-ingest-1", "meltemi-ingest-2"}
    for path in (
        secrets_dir / "broker.json",
        secrets_dir / "simulator-stations.json",
        secrets_dir / "ingest-workers.json",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((data / "mosquitto" / "dynamic-security.json").stat().st_mode) == 0o600
    for directory in (data, secrets_dir, data / "mosquitto"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    values = [v for k, v in broker.items() if k.endswith("_password")] + list(stations.values())
    values += list(workers.values())
    assert len(set(values)) == 19  # admin, ingester, API, alert engine, 13 stations, 2 workers
    logs = [tmp_path / "up.log", *data.rglob("*.log")]
    assert len(logs) >= 2
    for log in logs:
        text = log.read_text(errors="replace")
        assert not [v for v in values if v in text], log
    return {**broker, **stations, **workers}
