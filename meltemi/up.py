"""``meltemi up``: the whole platform in one foreground process group (CONTRACT §1).

Embedded Mosquitto and InfluxDB under ``MELTEMI_DATA_DIR``, then the ingester, the API and the
simulated station network as child processes. SIGINT or SIGTERM stops them in the order that
loses nothing: stations first (they flush and say offline), then the ingester (it drains,
writes and acknowledges), the API, and last the services themselves.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Final
from urllib.parse import urlsplit

from ingest.mqtt import provision_session
from meltemi.influxdb_users import (
    Credential,
    ProvisioningError,
    load_or_create_secrets,
    provision,
)
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, ServiceError, port_open
from sensors.settings import Settings

logger = logging.getLogger(__name__)

RESTART_LIMIT: Final = 5
SIMULATOR_ARGS: Final = ("--backfill", "48h")


def _meltemi_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "meltemi.cli", *args]


def _check_free(port: int, what: str) -> None:
    if port_open(port):
        raise ServiceError(
            f"port {port} ({what}) is already in use: is another `meltemi up` running? "
            f"Set MELTEMI_{what.upper()}_PORT (or MELTEMI_INFLUX_URL) to another port."
        )


def _influx_env(env: dict[str, str], credential: Credential) -> dict[str, str]:
    """Return ``env`` with one service's own InfluxDB credential (never the admin's)."""
    return {
        **env,
        "MELTEMI_INFLUX_USERNAME": credential.username,
        "MELTEMI_INFLUX_PASSWORD": credential.password.get_secret_value(),
    }


def run(settings: Settings) -> int:
    """Start everything, print the dashboard URL, and wait for Ctrl-C; return the exit code."""
    data_dir = settings.data_dir.resolve()
    influx_port = urlsplit(settings.influx_url).port or 8086
    _check_free(settings.mqtt_port, "mqtt")
    _check_free(influx_port, "influx")
    _check_free(settings.api_port, "api")
    env = {**os.environ, "MELTEMI_DATA_DIR": str(data_dir)}
    broker = Mosquitto(data_dir / "mosquitto", settings.mqtt_port)
    # InfluxDB runs deploy/influxdb.conf itself (auth on, loopback, production limits); the
    # ingester gets a user with ALL on the database, the API a READ-only one (issue 8 part 2).
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    influx = InfluxDB(data_dir / "influxdb", influx_port, shipped=True)
    try:
        influx_secrets = load_or_create_secrets(data_dir / "secrets" / "influxdb.json")
    except (ProvisioningError, OSError) as exc:
        logger.error("InfluxDB secrets: %s", exc)
        return 1
    children = [
        ManagedProcess(
            "ingester", _meltemi_argv("ingest"), None, env=_influx_env(env, influx_secrets.ingest)
        ),
        ManagedProcess("api", _meltemi_argv("api"), None, env=_influx_env(env, influx_secrets.api)),
        ManagedProcess("simulator", _meltemi_argv("simulate", *SIMULATOR_ARGS), None, env=env),
    ]
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    started: list[ManagedProcess] = []
    try:
        broker.start_and_wait()
        started.append(broker)
        influx.start_and_wait()
        started.append(influx)
        try:
            provision(
                influx.url,
                settings.influx_db,
                influx_secrets,
                quarantine_days=settings.quarantine_retention_days,
            )
        except ProvisioningError as exc:
            raise ServiceError(f"InfluxDB provisioning: {exc}") from exc
        # The ingester's session must exist before any station publishes (the back-fill starts
        # at once); otherwise the broker has no one to queue those readings for.
        if not provision_session(settings):
            raise ServiceError("the broker did not confirm the ingester's subscription")

        for child in children:
            child.start()
            started.append(child)
        api_url = f"http://{settings.api_host}:{settings.api_port}/"
        logger.info("Meltemi is up. Dashboard: %s  (Ctrl-C stops everything)", api_url)
        print(f"\n  Meltemi dashboard: {api_url}\n", flush=True)  # noqa: T201  # the URL for people
        restarts = dict.fromkeys((c.name for c in children), 0)
        while not stop.wait(1.0):
            for child in children:
                if not child.running() and not stop.is_set():
                    restarts[child.name] += 1
                    if restarts[child.name] > RESTART_LIMIT:
                        logger.error("%s keeps failing; stopping the platform", child.name)
                        stop.set()
                        break
                    logger.error("%s exited (%s); restarting", child.name, child.wait(0))
                    time.sleep(1.0)
                    child.start()
    except ServiceError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        for process in reversed(started):  # simulator, api, ingester, influxd, mosquitto
            process.stop()
    return 0
