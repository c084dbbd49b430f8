"""``meltemi up``: the whole platform in one foreground process group (CONTRACT §1).

Embedded Mosquitto and InfluxDB under ``MELTEMI_DATA_DIR``, then the ingester, the rollup
keeper (``meltemi rollup run``), the API and the simulated station network as child processes.
SIGINT or SIGTERM stops them in the order that loses nothing: stations first (they flush and
say offline), then the API, the rollups, the ingester (it drains, writes and acknowledges), and
last the services themselves.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Final
from urllib.parse import urlsplit

from ingest.mqtt import end_session, provision_session
from meltemi.broker_admin import (
    ROLE_PREFIX,
    BrokerAdminError,
    DynsecAdmin,
    generate_secret,
    service_acls,
)
from meltemi.credentials import (
    BROKER_FILE,
    BrokerSecrets,
    CredentialsError,
    load_broker_secrets,
    load_station_secrets,
    save_broker_secrets,
    save_station_secrets,
    secrets_dir,
)
from meltemi.identities import simulator_secrets_path
from meltemi.influxdb_users import (
    Credential,
    ProvisioningError,
    load_or_create_secrets,
    provision,
)
from meltemi.services import (
    DYNSEC_FILE,
    InfluxDB,
    ManagedProcess,
    Mosquitto,
    ServiceError,
    port_open,
)
from meltemi.workers import DEFAULT_GROUP, worker_name
from sensors.registry import open_registry
from sensors.settings import Settings

logger = logging.getLogger(__name__)

RESTART_LIMIT: Final = 5
# The embedded platform's own broker users (shared naming: meltemi-ingest…, meltemi-api…).
INGEST_USER: Final = "meltemi-ingest"
API_USER: Final = "meltemi-api"
ALERTS_USER: Final = "meltemi-alerts"
SIMULATOR_ARGS: Final = ("--backfill", "48h")
# Ingest workers `meltemi up` runs (issue 9) unless MELTEMI_INGEST_WORKERS says otherwise: two
# processes use both cores of the smallest machine the platform is measured on.
UP_INGEST_WORKERS: Final = 2
WORKERS_FILE: Final = "ingest-workers.json"


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


def _broker_secrets(settings: Settings, data_dir: Path) -> BrokerSecrets:
    """Return the platform's own broker secrets, generated on the first run and then reused."""
    try:
        stored = load_broker_secrets(data_dir)
    except CredentialsError as exc:
        raise ServiceError(str(exc)) from exc
    if stored is not None:
        if stored.alerts_password is None:  # written before the alert engine existed
            stored = stored.model_copy(
                update={"alerts_username": ALERTS_USER, "alerts_password": generate_secret()}
            )
            save_broker_secrets(data_dir, stored)
        return stored
    if (data_dir / "mosquitto" / DYNSEC_FILE).exists():
        raise ServiceError(
            f"{data_dir}/secrets/{BROKER_FILE} is missing but the broker already has identities "
            f"({data_dir}/mosquitto/{DYNSEC_FILE}); restore the secrets file or remove both"
        )
    secrets = BrokerSecrets(
        admin_username=settings.broker_admin_username,
        admin_password=generate_secret(),
        ingest_username=INGEST_USER,
        ingest_password=generate_secret(),
        api_username=API_USER,
        api_password=generate_secret(),
        alerts_username=ALERTS_USER,
        alerts_password=generate_secret(),
    )
    path = save_broker_secrets(data_dir, secrets)
    logger.info("generated the platform's broker credentials in %s (mode 0600)", path)
    return secrets


def _provision(
    settings: Settings,
    secrets: BrokerSecrets,
    sim_file: Path,
    workers_file: Path,
    workers: int,
) -> int:
    """Create the ingesters', the API's and every simulated station's identity if missing.

    Each ingest worker has an account of its own, ``meltemi-ingest-{i}`` (the broker enforces
    client id = username), its secret kept in ``workers_file`` (0600). The ingester role is
    brought up to date on every start (issue 9 added the $SYS counters to it).

    A registered station the broker already knows but whose secret we do not hold is a real
    station added with `meltemi stations add`: the simulator leaves it alone. Returns the
    number of simulated stations.
    """
    stations = load_station_secrets(sim_file)
    admin = DynsecAdmin(
        "127.0.0.1", settings.mqtt_port, secrets.admin_username, secrets.admin_password
    )
    worker_secrets = load_station_secrets(workers_file)
    with admin:
        known = admin.clients()
        admin.ensure_service_role("ingester")
        if secrets.ingest_username not in known:
            admin.add_service(secrets.ingest_username, "ingester", secrets.ingest_password)
        for index in range(1, workers + 1):
            name = worker_name(secrets.ingest_username, index)
            if name not in worker_secrets:
                worker_secrets[name] = generate_secret()
                if name in known:  # the secret was lost: replace it
                    admin.set_secret(name, worker_secrets[name])
            if name not in known:
                admin.add_service(name, "ingester", worker_secrets[name])
        if secrets.api_username not in known:
            admin.add_service(secrets.api_username, "api", secrets.api_password)
        else:  # a broker provisioned before issue 10: the API role gains the alerts topic
            admin.ensure_role(ROLE_PREFIX["api"], service_acls("api"))
        if secrets.alerts_password is not None and secrets.alerts_username not in known:
            admin.add_service(secrets.alerts_username, "alerts", secrets.alerts_password)
        for station in open_registry(settings):
            if station.revoked:
                continue
            secret = stations.get(station.id)
            if secret is None and station.id in known:
                continue  # someone else's station
            if secret is None:
                secret = stations[station.id] = generate_secret()
            if station.id not in known:
                admin.add_station(station.id, secret)
    save_station_secrets(sim_file, stations)
    save_station_secrets(workers_file, worker_secrets)
    return len(stations)


def _client_env(secrets: BrokerSecrets, sim_file: Path, workers_file: Path) -> dict[str, str]:
    """Return the children's broker credentials as MELTEMI_* variables (never logged)."""
    return {
        "MELTEMI_MQTT_USERNAME": secrets.ingest_username,
        "MELTEMI_MQTT_PASSWORD": secrets.ingest_password.get_secret_value(),
        "MELTEMI_MQTT_CLIENT_ID": secrets.ingest_username,
        "MELTEMI_INGEST_CREDENTIALS_FILE": str(workers_file),
        "MELTEMI_API_MQTT_USERNAME": secrets.api_username,
        "MELTEMI_API_MQTT_PASSWORD": secrets.api_password.get_secret_value(),
        "MELTEMI_SIM_CREDENTIALS_FILE": str(sim_file),
        "MELTEMI_ALERTS_MQTT_USERNAME": secrets.alerts_username,
        "MELTEMI_ALERTS_MQTT_PASSWORD": (
            secrets.alerts_password.get_secret_value() if secrets.alerts_password else ""
        ),
    }


def _provision_sessions(
    settings: Settings, secrets: BrokerSecrets, workers_file: Path, workers: int
) -> None:
    """Create each ingester's durable session and subscriptions (raise ServiceError)."""
    single = settings.model_copy(
        update={
            "mqtt_username": secrets.ingest_username,
            "mqtt_password": secrets.ingest_password,
            "mqtt_client_id": secrets.ingest_username,
        }
    )
    if workers == 1:
        if not provision_session(single):
            raise ServiceError("the broker did not confirm the ingester's subscription")
        return
    # A single ingester's session from an earlier run would keep queueing every reading for a
    # client that never comes back, until the broker drops them: end it. (The platform stops
    # its stations before its ingester, so that queue is empty.)
    end_session(single)
    worker_secrets = load_station_secrets(workers_file)
    for index in range(1, workers + 1):
        name = worker_name(secrets.ingest_username, index)
        member = settings.model_copy(
            update={
                "mqtt_username": name,
                "mqtt_password": worker_secrets[name],
                "mqtt_client_id": name,
                "ingest_shared_group": settings.ingest_shared_group or DEFAULT_GROUP,
            }
        )
        if not provision_session(member):
            raise ServiceError(f"the broker did not confirm {name}'s subscription")


def run(settings: Settings) -> int:
    """Start everything, print the dashboard URL, and wait for Ctrl-C; return the exit code."""
    data_dir = settings.data_dir.resolve()
    influx_port = urlsplit(settings.influx_url).port or 8086
    _check_free(settings.mqtt_port, "mqtt")
    _check_free(influx_port, "influx")
    _check_free(settings.api_port, "api")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    try:
        secrets = _broker_secrets(settings, data_dir)
    except ServiceError as exc:
        logger.error("%s", exc)
        return 1
    sim_file = simulator_secrets_path(data_dir)
    workers_file = secrets_dir(data_dir) / WORKERS_FILE
    workers = (
        settings.ingest_workers
        if "ingest_workers" in settings.model_fields_set
        else UP_INGEST_WORKERS
    )
    env = {
        **os.environ,
        "MELTEMI_DATA_DIR": str(data_dir),
        **_client_env(secrets, sim_file, workers_file),
    }
    broker = Mosquitto(
        data_dir / "mosquitto",
        settings.mqtt_port,
        admin=(secrets.admin_username, secrets.admin_password),
    )
    # InfluxDB runs deploy/influxdb.conf itself (auth on, loopback, production limits); the
    # ingester gets a user with ALL on the database, the API a READ-only one (issue 8 part 2).
    influx = InfluxDB(data_dir / "influxdb", influx_port, shipped=True)
    try:
        influx_secrets = load_or_create_secrets(data_dir / "secrets" / "influxdb.json")
    except (ProvisioningError, OSError) as exc:
        logger.error("InfluxDB secrets: %s", exc)
        return 1
    children = [
        ManagedProcess(
            "ingester",
            _meltemi_argv("ingest", "--workers", str(workers)),
            None,
            env=_influx_env(env, influx_secrets.ingest),
        ),
        # Rollups (meltemi.rollup) write their own points: the ingester's database user.
        ManagedProcess(
            "rollup",
            _meltemi_argv("rollup", "run"),
            None,
            env=_influx_env(env, influx_secrets.ingest),
        ),
        ManagedProcess("api", _meltemi_argv("api"), None, env=_influx_env(env, influx_secrets.api)),
        ManagedProcess("simulator", _meltemi_argv("simulate", *SIMULATOR_ARGS), None, env=env),
        # The alert engine reads readings and writes alert_messages: the ingester's credential
        # (ALL on the database; the API's is read-only).
        ManagedProcess(
            "alerts", _meltemi_argv("alerts"), None, env=_influx_env(env, influx_secrets.ingest)
        ),
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
        try:
            simulated = _provision(settings, secrets, sim_file, workers_file, workers)
        except (BrokerAdminError, CredentialsError) as exc:
            raise ServiceError(f"cannot provision the broker identities: {exc}") from exc
        logger.info("broker identities ready: ingester, API and %d simulated stations", simulated)
        # The ingesters' sessions must exist before any station publishes (the back-fill starts
        # at once); otherwise the broker has no one to queue those readings for.
        _provision_sessions(settings, secrets, workers_file, workers)

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
        # alerts, simulator, api, rollup, ingester, influxd, mosquitto
        for process in reversed(started):
            process.stop()
    return 0
