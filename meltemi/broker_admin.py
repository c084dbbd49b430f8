"""Broker identities: one Mosquitto dynamic-security client per station and per service.

Why the dynamic-security plugin and not a password file + ACL + SIGHUP (decided by
tests/test_broker_security.py::test_dynsec_mechanism on Debian's Mosquitto 2.0.11):

- it applies at once on a *running* broker through ``$CONTROL/dynamic-security/v1``, which we
  speak with paho over the same (TLS) listener; a password file needs write access to the
  broker's files and a SIGHUP sent to its PID, i.e. the same host and root;
- disabling or deleting a client disconnects its live connection immediately (revoke), and each
  change is one atomic command (no half-written password file for a reload to read);
- each client can be bound to a client id (``clientid``), a second guard against session
  takeover next to ``use_username_as_clientid`` on every listener;
- the plugin stores PBKDF2-SHA512 hashes (salted, never the secret).

Its one gap in 2.0.11: ACL topics have no ``%u`` substitution (added in 2.1, see
eclipse-mosquitto/mosquitto#2222 and #3191), so every station gets a role of its own with the
two exact topics ``stations/<id>/readings`` and ``stations/<id>/status``; ids are checked
against ``^[a-z0-9][a-z0-9-]{1,62}$`` before they reach the broker, so a role topic never holds
a wildcard or an extra level.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import ssl
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from sensors.topics import BROKER_SYS_TOPICS, STATION_ID_RE

logger = logging.getLogger(__name__)

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = CONTROL_TOPIC + "/response"
SECRET_BYTES: Final = 32  # 256 bits: a stolen lamp-post secret is the only way in, not a guess
PBKDF2_ITERATIONS: Final = 101  # what Mosquitto 2.0.11's own `mosquitto_ctrl dynsec init` writes
SALT_BYTES: Final = 12

Role = Literal["ingester", "api", "admin", "alerts"]
ROLE_PREFIX: Final[dict[Role, str]] = {
    "ingester": "meltemi-ingest",
    "api": "meltemi-api",
    "admin": "meltemi-admin",
    "alerts": "meltemi-alerts",  # the alert engine: the only writer of meltemi/alerts/+
}
# Service account names follow the shared naming: meltemi-ingest…, meltemi-api…
SERVICE_NAME_RE: Final = r"^meltemi-(ingest|api|admin|alerts)(-[a-z0-9]{1,32})?$"


class BrokerAdminError(Exception):
    """The broker refused or did not answer an administration command."""


def generate_secret() -> SecretStr:
    """Return a new random broker secret (URL-safe, 43 characters)."""
    return SecretStr(secrets.token_urlsafe(SECRET_BYTES))


def check_station_id(station_id: str) -> str:
    """Return the id when it matches the contract's id pattern; raise ValueError otherwise."""
    if STATION_ID_RE.fullmatch(station_id) is None:
        raise ValueError(
            f"station id {station_id!r} must match ^[a-z0-9][a-z0-9-]{{1,62}}$ "
            "(lower-case letters, digits and '-', 2 to 63 characters)"
        )
    return station_id


def station_role(station_id: str) -> str:
    """Return the name of the role holding one station's two exact topics."""
    return "station-" + check_station_id(station_id)


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True, "priority": 0}


def service_acls(role: Role) -> list[dict[str, Any]]:
    """Return the ACLs of a service role (what deploy/meltemi.acl granted, in dynsec form)."""
    if role == "ingester":
        acls = []
        for kind in ("readings", "status"):
            for topic in (f"stations/+/{kind}", f"$share/+/stations/+/{kind}"):
                acls.append(_acl("subscribePattern", topic))
            acls.append(_acl("publishClientReceive", f"stations/+/{kind}"))
        acls.append(_acl("publishClientSend", "meltemi/accepted/+"))
        # issue 9: the broker's own dropped/stored counters, so that a loss is never silent
        # (receiving is allowed by defaultACLAccess; subscribing must be granted).
        for topic in BROKER_SYS_TOPICS:
            acls.append(_acl("subscribeLiteral", topic))
        return acls
    if role == "api":
        return [
            _acl("subscribePattern", "meltemi/accepted/+"),
            _acl("subscribePattern", "stations/+/status"),
            _acl("publishClientReceive", "meltemi/accepted/+"),
            _acl("publishClientReceive", "stations/+/status"),
            _acl("subscribePattern", "meltemi/alerts/+"),  # issue 10: the `alert` events
            _acl("publishClientReceive", "meltemi/alerts/+"),
        ]
    if role == "alerts":
        return [_acl("publishClientSend", "meltemi/alerts/+")]
    return [
        _acl("publishClientSend", CONTROL_TOPIC),
        _acl("publishClientReceive", RESPONSE_TOPIC),
        _acl("subscribeLiteral", RESPONSE_TOPIC),
        _acl("subscribePattern", "$SYS/#"),
    ]


def _station_acls(station_id: str) -> list[dict[str, Any]]:
    return [
        _acl("publishClientSend", f"stations/{station_id}/readings"),
        _acl("publishClientSend", f"stations/{station_id}/status"),
    ]


def _hashed(secret: SecretStr) -> dict[str, Any]:
    """Return the dynsec JSON password fields (PBKDF2-HMAC-SHA512, as Mosquitto 2.0 stores)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac(
        "sha512", secret.get_secret_value().encode(), salt, PBKDF2_ITERATIONS
    )
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


def _role_doc(name: str, acls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rolename": name,
        "acls": [{k: v for k, v in a.items() if k != "priority"} for a in acls],
    }


def initial_config(admin_username: str, admin_secret: SecretStr) -> str:
    """Return a dynamic-security JSON file holding only the admin client and the service roles.

    Written before the broker first starts (the plugin refuses to start without a file); every
    other client is created through the running broker. Default access denies everything a role
    does not grant.
    """
    roles = [
        _role_doc(ROLE_PREFIX[r], service_acls(r)) for r in ("admin", "ingester", "api", "alerts")
    ]
    document = {
        "clients": [
            {
                "username": admin_username,
                "textName": "Meltemi broker administration",
                **_hashed(admin_secret),
                "roles": [{"rolename": ROLE_PREFIX["admin"]}],
            }
        ],
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }
    return json.dumps(document, indent=2)


@dataclass(frozen=True, slots=True)
class BrokerClient:
    """One client known to the broker's dynamic-security plugin."""

    username: str
    disabled: bool
    roles: tuple[str, ...]


class DynsecAdmin:
    """A short-lived admin connection speaking the dynamic-security control topic."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: SecretStr,
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._responses: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._refused: str | None = None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password.get_secret_value())
        if tls:
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    def __enter__(self) -> DynsecAdmin:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(
                f"cannot reach the broker at {self.host}:{self.port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._ready.wait(self.timeout_s) or self._refused is not None:
            self._client.loop_stop()
            raise BrokerAdminError(
                f"the broker at {self.host}:{self.port} refused the admin connection"
                f" ({self._refused or 'no answer'})"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            self._refused = "not allowed to read " + RESPONSE_TOPIC
        self._ready.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "unreadable dynamic-security response ignored: %r", message.payload[:200]
            )
            return
        with self._cond:
            for response in responses:
                correlation = response.get("correlationData")
                if isinstance(correlation, str):
                    self._responses[correlation] = response
            self._cond.notify_all()

    def execute(
        self, commands: Sequence[dict[str, Any]], *, tolerate: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Run commands in one message; return their responses in order.

        Raise BrokerAdminError on the first error whose text does not contain one of
        ``tolerate`` (e.g. "already exists" makes creation idempotent). Secrets in the commands
        never appear in the error.
        """
        tagged = []
        for command in commands:
            tagged.append({**command, "correlationData": uuid.uuid4().hex})
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerAdminError(f"cannot send to the broker (rc {info.rc})")
        wanted = [c["correlationData"] for c in tagged]
        with self._cond:
            done = self._cond.wait_for(
                lambda: all(w in self._responses for w in wanted), self.timeout_s
            )
            if not done:
                raise BrokerAdminError("the broker did not answer the administration command")
            responses = [self._responses.pop(w) for w in wanted]
        for command, response in zip(commands, responses, strict=True):
            error = response.get("error")
            if error and not any(t in str(error) for t in tolerate):
                raise BrokerAdminError(f"{command['command']}: {error}")
        return responses

    # -- the operations Meltemi needs --------------------------------------------------------
    def ensure_role(self, name: str, acls: list[dict[str, Any]]) -> None:
        """Create a role with these ACLs (an existing role keeps its ACLs; adding is idempotent)."""
        self.execute([{"command": "createRole", "rolename": name}], tolerate=("already exists",))
        self.execute(
            [{"command": "addRoleACL", "rolename": name, **acl} for acl in acls],
            tolerate=("already exists",),
        )

    def create_client(self, username: str, secret: SecretStr, role: str) -> None:
        """Create a client bound to its own client id (client id = username) with one role."""
        self.execute(
            [
                {
                    "command": "createClient",
                    "username": username,
                    "password": secret.get_secret_value(),
                    "clientid": username,
                    "roles": [{"rolename": role, "priority": 0}],
                }
            ]
        )

    def add_station(self, station_id: str, secret: SecretStr) -> None:
        """Create the station's role (its two exact topics) and its client."""
        role = station_role(station_id)
        self.ensure_role(role, _station_acls(station_id))
        self.create_client(station_id, secret, role)

    def ensure_service_role(self, role: Role) -> None:
        """Create or bring up to date a service role (an upgrade adds the ACLs it lacks)."""
        self.ensure_role(ROLE_PREFIX[role], service_acls(role))

    def add_service(self, username: str, role: Role, secret: SecretStr) -> None:
        """Create a service client (ingester, API replica) with the service role's ACLs."""
        self.ensure_role(ROLE_PREFIX[role], service_acls(role))
        self.create_client(username, secret, ROLE_PREFIX[role])

    def set_secret(self, username: str, secret: SecretStr) -> None:
        """Replace a client's secret; its live connection is dropped, the old secret refused."""
        self.execute(
            [
                {
                    "command": "setClientPassword",
                    "username": username,
                    "password": secret.get_secret_value(),
                },
                # 2.0.11 keeps a live connection made with the old secret: kick it here.
                {"command": "disableClient", "username": username},
                {"command": "enableClient", "username": username},
            ]
        )

    def disable(self, username: str) -> None:
        """Refuse a client from now on and disconnect it if it is connected."""
        self.execute([{"command": "disableClient", "username": username}])

    def enable(self, username: str) -> None:
        """Accept a disabled client again."""
        self.execute([{"command": "enableClient", "username": username}])

    def clients(self) -> dict[str, BrokerClient]:
        """Return every client the plugin knows, by username."""
        (response,) = self.execute(
            [{"command": "listClients", "verbose": True, "count": -1, "offset": 0}]
        )
        found: dict[str, BrokerClient] = {}
        for entry in response.get("data", {}).get("clients", []):
            if isinstance(entry, dict) and isinstance(entry.get("username"), str):
                found[entry["username"]] = BrokerClient(
                    username=entry["username"],
                    disabled=bool(entry.get("disabled", False)),
                    roles=tuple(
                        r.get("rolename", "") for r in entry.get("roles", []) if isinstance(r, dict)
                    ),
                )
        return found
