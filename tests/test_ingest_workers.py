"""`meltemi ingest --workers N` (issue 9) and broker drops surfaced, against the broker's
production shape (nothing anonymous, client id = username, dynamic-security accounts).

One broker of the test's own, with the repo's mosquitto.conf plus a small session queue
(``max_queued_messages``) so that it drops, and ``sys_interval 1`` so that its $SYS counters
come every second. Witnesses: mosquitto_pub publishes as the stations, raw /query counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from meltemi.broker_admin import DynsecAdmin, generate_secret
from meltemi.credentials import save_station_secrets
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from tests.helpers import (
    influx_count,
    influx_query,
    prometheus_value,
    wait_for,
    write_registry,
)

STATIONS = [f"wk-{k}" for k in range(4)]
QUEUE_MAX = 40  # per session; the two workers' sessions hold 80 of a burst, the broker drops more
BASE_ID = "meltemi-ingest-t"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    stat = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry))
    return found


def _publish(port: int, station: str, secret: str, seq_start: int, count: int) -> None:
    """Publish ``count`` readings as the station, through mosquitto_pub (one line each)."""
    end_s = int(time.time()) - 30
    lines = [
        f'{{"ts": {end_s - count + k}, "seq": {seq_start + k}, '
        f'"values": {{"air_temperature": {15 + k * 0.01:.2f}}}}}'
        for k in range(count)
    ]
    done = subprocess.run(
        [
            *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-i", station, "-u", station),
            *("-P", secret, "-q", "1", "-t", f"stations/{station}/readings", "-l"),
        ],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def small_queue_broker(tmp_path: Path):
    """The production-shape broker with a small session queue and $SYS every second."""
    admin_secret = generate_secret()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        free_port(),
        f"\nmax_queued_messages {QUEUE_MAX}\nsys_interval 1\n",
        admin=("meltemi-admin", admin_secret),
    )
    broker.start_and_wait()
    try:
        yield broker, DynsecAdmin("127.0.0.1", broker.port, "meltemi-admin", admin_secret)
    finally:
        broker.stop()


def test_workers_share_the_stream_restart_and_surface_broker_drops(
    small_queue_broker, influx: InfluxDB, db_name, tmp_path
):
    broker, admin = small_queue_broker
    influx.create_database(db_name)
    station_secrets = {station: generate_secret() for station in STATIONS}
    worker_secrets = {f"{BASE_ID}-{i}": generate_secret() for i in (1, 2)}
    with admin:
        for station, secret in station_secrets.items():
            admin.add_station(station, secret)
        for name, secret in worker_secrets.items():
            admin.add_service(name, "ingester", secret)
    credentials = tmp_path / "secrets" / "ingest-workers.json"
    save_station_secrets(credentials, worker_secrets)
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    env.update(
        {
            "MELTEMI_MQTT_PORT": str(broker.port),
            "MELTEMI_MQTT_CLIENT_ID": BASE_ID,
            "MELTEMI_INGEST_CREDENTIALS_FILE": str(credentials),
            "MELTEMI_INFLUX_URL": influx.url,
            "MELTEMI_INFLUX_DB": db_name,
            "MELTEMI_DATA_DIR": str(tmp_path / "var"),
            "MELTEMI_STATIONS_FILE": str(write_registry(tmp_path / "st.toml", STATIONS)),
            "MELTEMI_INGEST_METRICS_PORT": str(metrics_port),
            "MELTEMI_MQTT_SESSION_EXPIRY_S": "600",
        }
    )
    supervisor = ManagedProcess(
        "ingest-workers",
        [sys.executable, "-m", "meltemi.cli", "ingest", "--workers", "2"],
        tmp_path / "workers.log",
        env=env,
    )

    def subscribed() -> int:
        return supervisor.log_text().count("subscribed to $share/meltemi/stations/+/readings")

    def stored() -> int:
        return influx_count(influx.url, db_name, 'SELECT count("air_temperature") FROM readings')

    supervisor.start()
    try:
        wait_for(lambda: subscribed() >= 2, 30, 0.1, "both workers subscribed")
        # 1. The stream is shared: every reading stored once, by one worker or the other.
        for station in STATIONS:
            _publish(broker.port, station, station_secrets[station].get_secret_value(), 0, 100)
        sent = len(STATIONS) * 100
        wait_for(lambda: stored() == sent, 30, 0.2, f"{sent} readings stored")
        each = [
            prometheus_value(
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text,
                "meltemi_ingest_readings_stored_total",
            )
            for port in (metrics_port, metrics_port + 1)
        ]
        assert sum(each) == sent
        assert min(each) > 0, each

        # 2. A worker killed is restarted by the supervisor, on its own session.
        workers = _children(supervisor.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: subscribed() >= 3, 30, 0.1, "the killed worker restarted")
        assert "exited (-9); restarting" in supervisor.log_text()
        assert len(_children(supervisor.pid)) == 2

        # 3. SIGTERM stops both cleanly; each wrote its last snapshot under its own id.
        assert supervisor.stop() == 0
        assert _children(supervisor.pid) == []
        series = influx_query(
            influx.url, db_name, 'SELECT last("acked") FROM ingest_stats GROUP BY "ingester"'
        )
        assert {s["tags"]["ingester"] for s in series} == {f"{BASE_ID}-1", f"{BASE_ID}-2"}
        assert {p.name for p in (tmp_path / "var" / "spool").iterdir()} == set(worker_secrets)

        # 4. While both are down the sessions queue at most QUEUE_MAX each; the broker drops
        # the rest, and the restarted workers report exactly what it dropped.
        burst = 200
        first = STATIONS[0]
        _publish(broker.port, first, station_secrets[first].get_secret_value(), 100, burst)
        supervisor.start()
        wait_for(lambda: subscribed() >= 5, 30, 0.1, "workers back")

        def dropped() -> float:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            return prometheus_value(text, "meltemi_ingest_broker_dropped")

        wait_for(
            lambda: dropped() > 0 and stored() + dropped() == sent + burst,
            30,
            0.25,
            "stored + broker dropped = sent",
        )
        assert stored() == sent + 2 * QUEUE_MAX
        assert dropped() == burst - 2 * QUEUE_MAX
        assert "the broker dropped messages" in supervisor.log_text()
    finally:
        supervisor.stop()
