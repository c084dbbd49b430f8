"""The InfluxDB adapter of the ingester: the v1-compatible ``/write`` and ``/query`` (CONTRACT §3).

One code path for InfluxDB 1.x (native), 2.x (DBRP mapping) and 3.x (compatibility API).
Credentials travel only in headers: Basic for 1.x users, ``Token`` for 2.x/3.x tokens
(RELIABILITY §0.8: 1.6 answers ``Token user:pass`` with 401).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import httpx

from ingest.errors import StorageRejected, StorageUnavailable
from sensors.quoting import influxql_identifier
from sensors.settings import Settings

logger = logging.getLogger(__name__)

_DROPPED_RE: Final = re.compile(r"dropped=(\d+)")
PRECISION: Final = (
    "ns"  # always sent: InfluxDB 3 guesses the precision otherwise (RELIABILITY §0.2)
)


def auth_headers(settings: Settings) -> dict[str, str]:
    """Return the Authorization header for the configured credentials (none when unset)."""
    if settings.influx_token is not None:
        return {"Authorization": f"Token {settings.influx_token.get_secret_value()}"}
    return {}


def basic_auth(settings: Settings) -> httpx.BasicAuth | None:
    """Return Basic credentials for InfluxDB 1.x users, or None."""
    if settings.influx_username and settings.influx_token is None:
        password = settings.influx_password.get_secret_value() if settings.influx_password else ""
        return httpx.BasicAuth(settings.influx_username, password)
    return None


class InfluxWriter:
    """Synchronous writes and queries over one keep-alive ``httpx.Client``."""

    def __init__(self, settings: Settings) -> None:
        self.db = settings.influx_db
        self.is_v1_server = settings.influx_token is None
        self._base_url = settings.influx_url.rstrip("/")
        self._client = httpx.Client(
            base_url=settings.influx_url.rstrip("/"),
            headers=auth_headers(settings),
            auth=basic_auth(settings),
            timeout=httpx.Timeout(
                settings.influx_timeout_s, connect=min(5.0, settings.influx_timeout_s)
            ),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def probe(self, timeout_s: float = 2.0) -> bool:
        """Return True when InfluxDB answers ``/ping`` quickly (on a connection of its own, so
        another thread may probe while the writer's client is in use)."""
        try:
            return httpx.get(f"{self._base_url}/ping", timeout=timeout_s).status_code == 204
        except httpx.HTTPError:
            return False

    def write(self, lines: list[str]) -> None:
        """Write lines in one request; raise StorageUnavailable or StorageRejected."""
        body = "\n".join(lines).encode("utf-8")
        try:
            response = self._client.post(
                "/write", params={"db": self.db, "precision": PRECISION}, content=body
            )
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (200, 204):
            return
        message = _error_message(response)
        if response.status_code in (400, 422):
            match = _DROPPED_RE.search(message)
            raise StorageRejected(
                response.status_code, message, int(match.group(1)) if match else None
            )
        if response.status_code == 413:
            raise StorageRejected(413, message, None, too_large=True)
        # 401/403/404 (credentials, missing database) and 5xx: nothing is wrong with the data.
        raise StorageUnavailable(f"HTTP {response.status_code}: {message}")

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one read-only InfluxQL statement; return its series (raise StorageUnavailable)."""
        try:
            response = self._client.get("/query", params={"db": self.db, "q": q, "epoch": "ns"})
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise StorageUnavailable(f"HTTP {response.status_code}: {_error_message(response)}")
        result = response.json()["results"][0]
        if "error" in result:
            raise StorageUnavailable(f"query error: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def ensure_database(self) -> None:
        """Create the database on InfluxDB 1.x (idempotent); 2.x/3.x buckets are provisioned."""
        if not self.is_v1_server:
            return
        name = influxql_identifier(self.db)
        try:
            response = self._client.post("/query", data={"q": f"CREATE DATABASE {name}"})
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 403:
            logger.info("not allowed to create database %s; assuming it exists", self.db)
        elif response.status_code != 200:
            raise StorageUnavailable(f"CREATE DATABASE: HTTP {response.status_code}")


def _error_message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(document, dict):
        return str(document.get("error") or document.get("message") or document)[:500]
    return str(document)[:500]
