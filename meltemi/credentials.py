"""The embedded set-up's own secrets, under ``<MELTEMI_DATA_DIR>/secrets/`` (0700, files 0600).

Only what Meltemi's own processes need is kept here: the broker admin, the ingester's and the
API's broker secrets (``broker.json``), and the simulated stations' secrets
(``simulator-stations.json``, handed to the simulator by path). A real station's secret from
``meltemi stations add`` is printed once and not kept: the station holds it, nobody else.
Secrets are read into ``SecretStr`` and never logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

SECRETS_DIR: Final = "secrets"
BROKER_FILE: Final = "broker.json"
SIMULATOR_FILE: Final = "simulator-stations.json"


class CredentialsError(Exception):
    """A secrets file exists but cannot be read or used."""


class BrokerSecrets(BaseModel):
    """The broker secrets of the embedded platform's own clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin_username: str
    admin_password: SecretStr
    ingest_username: str
    ingest_password: SecretStr
    api_username: str
    api_password: SecretStr
    # The alert engine's account (issue 10); files written before it existed lack it.
    alerts_username: str = "meltemi-alerts"
    alerts_password: SecretStr | None = None


def secrets_dir(data_dir: Path) -> Path:
    """Return (creating it 0700) the directory of the embedded set-up's secrets."""
    path = data_dir / SECRETS_DIR
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)  # an existing .tmp keeps its mode through O_CREAT
    os.replace(tmp, path)


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def load_broker_secrets(data_dir: Path) -> BrokerSecrets | None:
    """Return the stored broker secrets, or None when the set-up has none yet."""
    path = data_dir / SECRETS_DIR / BROKER_FILE
    try:
        return BrokerSecrets.model_validate_json(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise CredentialsError(f"{path}: unusable broker secrets file") from exc


def save_broker_secrets(data_dir: Path, secrets: BrokerSecrets) -> Path:
    """Store the broker secrets (0600); return the file's path."""
    path = secrets_dir(data_dir) / BROKER_FILE
    document = {name: _plain(value) for name, value in secrets}
    write_private(path, json.dumps(document, indent=2))
    return path


def load_station_secrets(path: Path) -> dict[str, SecretStr]:
    """Return {station_id: secret} from a simulator credentials file (empty when absent)."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"{path}: unusable station secrets file") from exc
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise CredentialsError(f"{path}: expected an object of station id -> secret")
    return {key: SecretStr(value) for key, value in document.items()}


def save_station_secrets(path: Path, secrets: dict[str, SecretStr]) -> None:
    """Store {station_id: secret} (0600, parent 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    write_private(path, json.dumps({k: v.get_secret_value() for k, v in sorted(secrets.items())}))
