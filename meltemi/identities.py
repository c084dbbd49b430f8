"""``meltemi stations`` and ``meltemi accounts``: the registry and broker identities (CONTRACT §6).

Every change goes to the running broker first (through its dynamic-security admin client, see
meltemi/broker_admin.py) and to the registry file second, so a refused broker change leaves the
registry untouched. A new or rotated secret is returned to the caller to print once; it is never
logged and, for real stations, never stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import SecretStr, ValidationError

from meltemi.broker_admin import (
    SERVICE_NAME_RE,
    BrokerAdminError,
    DynsecAdmin,
    Role,
    check_station_id,
    generate_secret,
    initial_config,
)
from meltemi.credentials import (
    SECRETS_DIR,
    SIMULATOR_FILE,
    CredentialsError,
    load_broker_secrets,
    load_station_secrets,
    save_station_secrets,
    write_private,
)
from sensors.catalog import PARAMETERS
from sensors.registry import (
    RegistryError,
    Station,
    StationIn,
    open_registry,
    registry_file,
    save_registry,
    station_from_model,
)
from sensors.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PARAMETERS: tuple[str, ...] = tuple(spec.id for spec in PARAMETERS)


class IdentityError(Exception):
    """A `meltemi stations`/`meltemi accounts` command cannot be carried out (the sentence why)."""


@dataclass(frozen=True, slots=True)
class StationLine:
    """One row of `meltemi stations list`."""

    station: Station
    broker: str  # "active", "disabled", "missing" or "unknown" (broker unreachable)


def admin_connection(settings: Settings) -> DynsecAdmin:
    """Return an admin connection (not yet open) with the configured or the stored credential."""
    password = settings.broker_admin_password
    username = settings.broker_admin_username
    if password is None:
        try:
            stored = load_broker_secrets(settings.data_dir)
        except CredentialsError as exc:
            raise IdentityError(str(exc)) from exc
        if stored is None:
            raise IdentityError(
                "no broker admin credential: set MELTEMI_BROKER_ADMIN_PASSWORD (production) or "
                f"run `meltemi up` once with MELTEMI_DATA_DIR={settings.data_dir}"
            )
        username, password = stored.admin_username, stored.admin_password
    return DynsecAdmin(
        settings.mqtt_host,
        settings.mqtt_port,
        username,
        password,
        tls=settings.mqtt_tls,
        ca_file=settings.mqtt_ca_file,
    )


def _stations(settings: Settings) -> list[Station]:
    return list(open_registry(settings))


def _save(settings: Settings, stations: list[Station]) -> None:
    try:
        save_registry(registry_file(settings), stations)
    except (RegistryError, OSError) as exc:
        raise IdentityError(f"cannot write the registry: {exc}") from exc


def add_station(
    settings: Settings,
    station_id: str,
    *,
    name: str,
    lat: float,
    lon: float,
    municipality: str,
    elevation_m: float,
    parameters: tuple[str, ...] = DEFAULT_PARAMETERS,
) -> SecretStr:
    """Register a station and create its broker identity; return its new secret."""
    try:
        check_station_id(station_id)
        model = StationIn(
            id=station_id,
            name=name,
            municipality=municipality,
            lat=lat,
            lon=lon,
            elevation_m=elevation_m,
            parameters=parameters,
        )
    except (ValueError, ValidationError) as exc:
        raise IdentityError(str(exc)) from exc
    stations = _stations(settings)
    if any(s.id == station_id for s in stations):
        raise IdentityError(f"station {station_id!r} is already registered (see `rotate`)")
    secret = generate_secret()
    with admin_connection(settings) as admin:
        admin.add_station(station_id, secret)
        try:
            _save(settings, [*stations, station_from_model(model)])
        except IdentityError:
            admin.execute([{"command": "deleteClient", "username": station_id}])
            raise
    logger.info("station %s added and its broker identity created", station_id)
    return secret


def _find(stations: list[Station], station_id: str) -> int:
    for index, station in enumerate(stations):
        if station.id == station_id:
            return index
    raise IdentityError(f"station {station_id!r} is not registered")


def rotate_station(settings: Settings, station_id: str) -> SecretStr:
    """Give a station a new secret (the old one is refused at once); reinstate a revoked one."""
    stations = _stations(settings)
    index = _find(stations, station_id)
    secret = generate_secret()
    with admin_connection(settings) as admin:
        if station_id in admin.clients():
            admin.set_secret(station_id, secret)
        else:  # registered before identities existed (e.g. the packaged registry)
            admin.add_station(station_id, secret)
    if stations[index].revoked:
        stations[index] = replace(stations[index], revoked=False)
        _save(settings, stations)
    _update_simulator_secret(settings, station_id, secret)
    logger.info("station %s: broker secret rotated", station_id)
    return secret


def revoke_station(settings: Settings, station_id: str) -> None:
    """Refuse a station from now on (its connection is closed); keep its entry and data."""
    stations = _stations(settings)
    index = _find(stations, station_id)
    with admin_connection(settings) as admin:
        if station_id in admin.clients():
            admin.disable(station_id)
    stations[index] = replace(stations[index], revoked=True)
    _save(settings, stations)
    logger.info("station %s revoked", station_id)


def list_stations(settings: Settings) -> list[StationLine]:
    """Return every registered station with its broker identity's state."""
    stations = _stations(settings)
    try:
        with admin_connection(settings) as admin:
            clients = admin.clients()
    except (BrokerAdminError, IdentityError) as exc:
        logger.warning("broker state unknown: %s", exc)
        return [StationLine(s, "unknown") for s in stations]
    lines = []
    for station in stations:
        client = clients.get(station.id)
        state = "missing" if client is None else "disabled" if client.disabled else "active"
        lines.append(StationLine(station, state))
    return lines


def _update_simulator_secret(settings: Settings, station_id: str, secret: SecretStr) -> None:
    """Keep the embedded simulator's copy current for a station it already simulates."""
    path = settings.sim_credentials_file
    if path is None:
        return
    secrets = load_station_secrets(path)
    if station_id in secrets:
        secrets[station_id] = secret
        save_station_secrets(path, secrets)


# -- service accounts ---------------------------------------------------------------------------
def check_service_name(name: str, role: Role) -> str:
    """Return the name when it fits the role's naming (meltemi-ingest…, meltemi-api…)."""
    prefix = {"ingester": "meltemi-ingest", "api": "meltemi-api", "admin": "meltemi-admin"}[role]
    if re.fullmatch(SERVICE_NAME_RE, name) is None or not name.startswith(prefix):
        raise IdentityError(f"account name {name!r} must be {prefix} or {prefix}-<a-z0-9>")
    return name


def add_account(settings: Settings, name: str, role: Role) -> SecretStr:
    """Create a service account (one per ingester process, one per API replica); its secret."""
    check_service_name(name, role)
    secret = generate_secret()
    with admin_connection(settings) as admin:
        admin.add_service(name, role, secret)
    return secret


def rotate_account(settings: Settings, name: str) -> SecretStr:
    """Give a service account a new secret (its live connection is closed)."""
    secret = generate_secret()
    with admin_connection(settings) as admin:
        if name not in admin.clients():
            raise IdentityError(f"no broker account {name!r}")
        admin.set_secret(name, secret)
    return secret


def revoke_account(settings: Settings, name: str) -> None:
    """Disable a service account (its live connection is closed)."""
    with admin_connection(settings) as admin:
        if name not in admin.clients():
            raise IdentityError(f"no broker account {name!r}")
        admin.disable(name)


def list_accounts(settings: Settings) -> list[tuple[str, str, str]]:
    """Return (name, roles, state) of every broker client that is not a station."""
    with admin_connection(settings) as admin:
        clients = admin.clients()
    return [
        (c.username, ",".join(c.roles), "disabled" if c.disabled else "active")
        for c in clients.values()
        if c.username.startswith("meltemi-")
    ]


def init_broker_file(path: Path, admin_username: str) -> SecretStr:
    """Write a new dynamic-security file (0600) holding the admin client; return its secret."""
    if path.exists():
        raise IdentityError(f"{path} exists; the broker's identities are kept (not overwritten)")
    secret = generate_secret()
    write_private(path, initial_config(admin_username, secret))
    return secret


def simulator_secrets_path(data_dir: Path) -> Path:
    """Return where `meltemi up` keeps the simulated stations' secrets."""
    return data_dir / SECRETS_DIR / SIMULATOR_FILE
