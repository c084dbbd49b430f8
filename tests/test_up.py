"""`meltemi up`, the main job: everything starts, history appears, Ctrl-C stops it cleanly,
and a second run keeps the data."""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from meltemi.services import ManagedProcess, free_port, port_open
from tests.helpers import wait_for


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
        assert health == {"status": "ok", "mqtt": True, "influxdb": True}
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

        def every_station_latest() -> list[dict[str, Any]]:
            entries: list[dict[str, Any]] = httpx.get(f"{api}/v1/latest", timeout=10).json()[
                "stations"
            ]
            return entries if len(entries) == len(stations) else []

        latest = wait_for(every_station_latest, timeout_s=60, message="every station latest")
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

    again = _up(tmp_path, ports)  # a second run keeps the earlier data
    try:
        wait_for(lambda: _healthy(f"{api}/health"), timeout_s=90, message="/health again")
        kept = httpx.get(url, timeout=30).json()["points"]
        assert len(kept) >= stored_before
    finally:
        again.signal(signal.SIGTERM)
        assert again.wait(90) == 0
        again.stop()

    wait_for(lambda: not any(port_open(p) for p in ports.values()), timeout_s=10)
