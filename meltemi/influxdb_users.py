"""InfluxDB 1.x provisioning: the admin, the database, least-privilege users, the quarantine RP.

One code path for ``meltemi up`` (embedded InfluxDB) and ``deploy/provision_influxdb.py``
(a production server run with ``deploy/influxdb.conf``). Idempotent: a second run reads the
secrets file, resets each password to the one on file and re-applies the grants.

    admin    meltemi_admin   ALL PRIVILEGES (used only here, by the operator)
    ingester meltemi_ingest  GRANT ALL on the database: it writes readings and quarantine
                             records, and reads them back (QC history, stored neighbours)
    API      meltemi_api     GRANT READ on the database: a write or DROP gets 403 (S12)

Secrets are generated with ``secrets.token_urlsafe``, written to a JSON file with mode 0600 in
a 0700 directory (plus one ``.env`` file per service), sent to InfluxDB only in POST bodies and
Basic-auth headers, and never logged. InfluxDB 1.x allows exactly one unauthenticated
statement on a server with auth on and no users: creating the first admin.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from sensors.quoting import influxql_identifier, influxql_string

logger = logging.getLogger(__name__)

ADMIN_USER: Final = "meltemi_admin"
INGEST_USER: Final = "meltemi_ingest"
API_USER: Final = "meltemi_api"
QUARANTINE_RP: Final = "quarantine"  # the ingester writes quarantine records into this RP
SECRET_BYTES: Final = 32  # token_urlsafe(32): 43 characters, 256 bits
TIMEOUT_S: Final = 15.0


class ProvisioningError(Exception):
    """InfluxDB refused a provisioning step, or the secrets file does not match the server."""


class Credential(BaseModel):
    """One InfluxDB user and its password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: SecretStr


class InfluxSecrets(BaseModel):
    """The three credentials Meltemi uses on its InfluxDB."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin: Credential
    ingest: Credential
    api: Credential


def _new(username: str) -> Credential:
    return Credential(username=username, password=SecretStr(secrets.token_urlsafe(SECRET_BYTES)))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (no world-readable window)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left by an earlier crash
    os.replace(tmp, path)


def _env_file(credential: Credential) -> str:
    password = credential.password.get_secret_value()
    return f"MELTEMI_INFLUX_USERNAME={credential.username}\nMELTEMI_INFLUX_PASSWORD={password}\n"


def load_or_create_secrets(path: Path) -> InfluxSecrets:
    """Return the secrets on file, generating (and writing, 0600) any that are missing.

    Next to the JSON file, ``influxdb-ingest.env`` and ``influxdb-api.env`` hold each
    service's MELTEMI_INFLUX_USERNAME/PASSWORD (for a systemd ``EnvironmentFile=``).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    stored: dict[str, Any] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text("utf-8"))
        except ValueError as exc:
            raise ProvisioningError(f"{path} is not valid JSON") from exc
    defaults = {"admin": ADMIN_USER, "ingest": INGEST_USER, "api": API_USER}
    try:
        values = {
            role: Credential.model_validate(stored[role]) if role in stored else _new(user)
            for role, user in defaults.items()
        }
        loaded = InfluxSecrets(**values)
    except ValidationError as exc:
        raise ProvisioningError(f"{path}: {exc.error_count()} invalid entries") from exc
    document = {
        role: {"username": c.username, "password": c.password.get_secret_value()}
        for role, c in (("admin", loaded.admin), ("ingest", loaded.ingest), ("api", loaded.api))
    }
    _write_private(path, json.dumps(document, indent=2) + "\n")
    _write_private(path.parent / "influxdb-ingest.env", _env_file(loaded.ingest))
    _write_private(path.parent / "influxdb-api.env", _env_file(loaded.api))
    return loaded


class _Admin:
    """InfluxQL statements over ``/query`` (POST body, so nothing lands in an access log URL)."""

    def __init__(self, url: str, admin: Credential, verify: bool | str) -> None:
        self.admin = admin
        self.client = httpx.Client(base_url=url, timeout=TIMEOUT_S, verify=verify)
        self.auth = httpx.BasicAuth(admin.username, admin.password.get_secret_value())

    def close(self) -> None:
        self.client.close()

    def run(self, statement: str, what: str, *, anonymous: bool = False) -> dict[str, Any]:
        """Run one statement; return its result; ProvisioningError naming ``what`` on refusal.

        ``what`` is a description without secrets: the statement itself may hold a password.
        """
        try:
            if anonymous:
                response = self.client.post("/query", data={"q": statement})
            else:
                response = self.client.post("/query", data={"q": statement}, auth=self.auth)
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"{what}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        results = body.get("results", [{}]) if isinstance(body, dict) else [{}]
        result: dict[str, Any] = results[0] if results else {}
        error = error or result.get("error")
        if response.status_code != 200 or error:
            raise ProvisioningError(f"{what}: HTTP {response.status_code}: {error or '?'}")
        return result

    def users(self) -> dict[str, bool] | None:
        """Return {user: is_admin}, or None when the server has no users yet (bootstrap)."""
        try:
            response = self.client.post("/query", data={"q": "SHOW USERS"}, auth=self.auth)
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"SHOW USERS: {type(exc).__name__}: {exc}") from exc
        text = response.text
        if "create admin user first" in text:
            return None
        if response.status_code != 200:
            raise ProvisioningError(
                f"the admin credential of {self.admin.username} was refused "
                f"(HTTP {response.status_code}): the secrets file does not match this server"
            )
        result = response.json()["results"][0]
        rows = [row for serie in result.get("series", []) for row in serie.get("values", [])]
        return {str(row[0]): bool(row[1]) for row in rows}


def _set_user(admin: _Admin, users: dict[str, bool], credential: Credential) -> None:
    name = influxql_identifier(credential.username)
    password = influxql_string(credential.password.get_secret_value())
    if credential.username in users:
        admin.run(f"SET PASSWORD FOR {name} = {password}", f"SET PASSWORD {credential.username}")
        if users[credential.username]:  # never leave a service user with admin rights
            admin.run(f"REVOKE ALL PRIVILEGES FROM {name}", f"REVOKE ADMIN {credential.username}")
    else:
        admin.run(f"CREATE USER {name} WITH PASSWORD {password}", f"CREATE {credential.username}")


def provision(
    url: str,
    db: str,
    secrets_: InfluxSecrets,
    *,
    quarantine_days: int = 90,
    verify: bool | str = True,
) -> None:
    """Create or update the admin, the database, both service users and the quarantine RP."""
    admin = _Admin(url, secrets_.admin, verify)
    try:
        users = admin.users()
        if users is None:
            name = influxql_identifier(secrets_.admin.username)
            password = influxql_string(secrets_.admin.password.get_secret_value())
            admin.run(
                f"CREATE USER {name} WITH PASSWORD {password} WITH ALL PRIVILEGES",
                "CREATE the first admin",
                anonymous=True,
            )
            logger.info("created InfluxDB admin %s", secrets_.admin.username)
            users = admin.users() or {}
        elif secrets_.admin.username in users and not users[secrets_.admin.username]:
            raise ProvisioningError(f"{secrets_.admin.username} exists but is not an admin")
        database = influxql_identifier(db)
        admin.run(f"CREATE DATABASE {database}", f"CREATE DATABASE {db}")
        for credential in (secrets_.ingest, secrets_.api):
            _set_user(admin, users, credential)
        ingest = influxql_identifier(secrets_.ingest.username)
        api = influxql_identifier(secrets_.api.username)
        admin.run(f"GRANT ALL ON {database} TO {ingest}", "GRANT ALL to the ingester")
        admin.run(f"REVOKE ALL ON {database} FROM {api}", "REVOKE from the API")
        admin.run(f"GRANT READ ON {database} TO {api}", "GRANT READ to the API")
        _retention_policy(admin, db, quarantine_days)
    finally:
        admin.close()
    logger.info(
        "InfluxDB provisioned: database %s, users %s (all on db) and %s (read), RP %s %dd",
        db,
        secrets_.ingest.username,
        secrets_.api.username,
        QUARANTINE_RP,
        quarantine_days,
    )


def _retention_policy(admin: _Admin, db: str, days: int) -> None:
    database = influxql_identifier(db)
    rp = influxql_identifier(QUARANTINE_RP)
    result = admin.run(f"SHOW RETENTION POLICIES ON {database}", "SHOW RETENTION POLICIES")
    names = {str(row[0]) for serie in result.get("series", []) for row in serie.get("values", [])}
    verb = "ALTER" if QUARANTINE_RP in names else "CREATE"
    replication = "" if verb == "ALTER" else " REPLICATION 1"
    admin.run(
        f"{verb} RETENTION POLICY {rp} ON {database} DURATION {int(days)}d{replication}",
        f"{verb} RETENTION POLICY {QUARANTINE_RP}",
    )
