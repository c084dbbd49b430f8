"""``meltemi ingest --workers N``: N supervised ingester processes on the shared subscription.

One Python process holds the GIL for nearly all of an ingester's work (issue 9 profile), so
scaling across cores takes processes. Each worker is a plain ``meltemi ingest`` with its own
identity, chosen here and passed in its environment:

- client id ``{MELTEMI_MQTT_CLIENT_ID}-{i}`` (its durable session, and its spool directory,
  which ingest.service derives from the client id);
- broker account: the broker enforces client id = username (``use_username_as_clientid``), so
  worker i logs in as the account of that name, with its secret from
  ``MELTEMI_INGEST_CREDENTIALS_FILE`` (what `meltemi up` writes) or, without that file,
  ``MELTEMI_MQTT_USERNAME``-i with ``MELTEMI_MQTT_PASSWORD``;
- the shared subscription ``$share/{group}/...`` (MELTEMI_INGEST_SHARED_GROUP, default
  ``meltemi``): the broker hands each message to one member;
- its own metrics listener at MELTEMI_INGEST_METRICS_PORT + i - 1, when that is set.

A worker that exits is restarted after a second; one that keeps failing (RESTART_LIMIT times
in RESTART_WINDOW_S) stops the supervisor with an error, so that `meltemi up` (or systemd)
sees it. SIGINT or SIGTERM is passed to every worker at once; each drains, writes and
acknowledges what it holds, and the supervisor waits for all of them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Final

from pydantic import SecretStr

from meltemi.credentials import CredentialsError, load_station_secrets
from meltemi.services import ManagedProcess
from sensors.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_GROUP: Final = "meltemi"
RESTART_LIMIT: Final = 5
RESTART_WINDOW_S: Final = 60.0
RESTART_DELAY_S: Final = 1.0
# A worker drains its queue, writes and acknowledges before it exits: give it time.
STOP_GRACE_S: Final = 60.0


class WorkerConfigError(Exception):
    """The workers' identities cannot be set up (a missing secret, a bad file)."""


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """One worker's broker identity and listener."""

    index: int
    client_id: str
    username: str | None
    password: SecretStr | None
    metrics_port: int


def worker_name(base: str, index: int) -> str:
    """Return worker ``index``'s client id (and account name): ``{base}-{index}``."""
    return f"{base}-{index}"


def identities(settings: Settings, workers: int) -> list[WorkerIdentity]:
    """Return the identities of ``workers`` workers (raise WorkerConfigError)."""
    secrets: dict[str, SecretStr] = {}
    if settings.ingest_credentials_file is not None:
        try:
            secrets = load_station_secrets(settings.ingest_credentials_file)
        except CredentialsError as exc:
            raise WorkerConfigError(str(exc)) from exc
    out = []
    for index in range(1, workers + 1):
        client_id = worker_name(settings.mqtt_client_id, index)
        username: str | None
        password: SecretStr | None
        if settings.ingest_credentials_file is not None:
            if client_id not in secrets:
                raise WorkerConfigError(
                    f"MELTEMI_INGEST_CREDENTIALS_FILE has no secret for {client_id}"
                )
            username, password = client_id, secrets[client_id]
        elif settings.mqtt_username:
            username = worker_name(settings.mqtt_username, index)
            password = settings.mqtt_password
        else:
            username, password = None, None
        port = settings.ingest_metrics_port + index - 1 if settings.ingest_metrics_port else 0
        out.append(WorkerIdentity(index, client_id, username, password, port))
    return out


def worker_env(settings: Settings, identity: WorkerIdentity, group: str) -> dict[str, str]:
    """Return the environment of one worker: ours, with its own identity (secrets included,
    never logged)."""
    env = dict(os.environ)
    env.pop("MELTEMI_MQTT_USERNAME", None)  # the worker's own account, or none
    env.pop("MELTEMI_MQTT_PASSWORD", None)
    env.update(
        {
            "MELTEMI_MQTT_HOST": settings.mqtt_host,
            "MELTEMI_MQTT_PORT": str(settings.mqtt_port),
            "MELTEMI_MQTT_CLIENT_ID": identity.client_id,
            "MELTEMI_INGEST_SHARED_GROUP": group,
            "MELTEMI_INGEST_WORKERS": "1",
            "MELTEMI_INGEST_METRICS_PORT": str(identity.metrics_port),
        }
    )
    if identity.username is not None:
        env["MELTEMI_MQTT_USERNAME"] = identity.username
    if identity.password is not None:
        env["MELTEMI_MQTT_PASSWORD"] = identity.password.get_secret_value()
    return env


def run(settings: Settings, workers: int) -> int:
    """Run ``workers`` ingester processes until SIGINT or SIGTERM; return the exit code."""
    try:
        ids = identities(settings, workers)
    except WorkerConfigError as exc:
        logger.error("%s", exc)
        return 2
    group = settings.ingest_shared_group or DEFAULT_GROUP
    processes = [
        ManagedProcess(
            f"ingest-worker-{identity.index}",
            [sys.executable, "-m", "meltemi.cli", "ingest"],
            None,
            env=worker_env(settings, identity, group),
        )
        for identity in ids
    ]
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping %d workers", signal.Signals(signum).name, workers)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    logger.info(
        "starting %d ingest workers on $share/%s (%s)",
        workers,
        group,
        ", ".join(i.client_id for i in ids),
    )
    failures: list[float] = []
    code = 0
    for process in processes:
        process.start()
    try:
        while not stop.wait(0.5):
            for process in processes:
                if process.running() or stop.is_set():
                    continue
                now = time.monotonic()
                failures = [t for t in failures if now - t < RESTART_WINDOW_S] + [now]
                logger.error("%s exited (%s); restarting", process.name, process.wait(0))
                if len(failures) > RESTART_LIMIT:
                    logger.error("ingest workers keep failing; stopping")
                    stop.set()
                    code = 1
                    break
                time.sleep(RESTART_DELAY_S)
                process.start()
    finally:
        for process in processes:  # all at once: each drains in parallel
            process.signal(signal.SIGTERM)
        for process in processes:
            process.stop(STOP_GRACE_S)
    return code
