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
from sensors import schema
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


_SPENT: Final = httpx.ByteStream(b"")  # what a read answer's stream becomes (see _send)


class InfluxWriter:
    """Synchronous writes and queries over one keep-alive ``httpx.Client``."""

    def __init__(self, settings: Settings) -> None:
        self.db = settings.influx_db
        self.is_v1_server = settings.influx_token is None
        # The retention policy quarantine lines are written to; None: the database's default
        # (set by ensure_quarantine_rp once the policy is known to exist).
        self.quarantine_rp: str | None = None
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
        """Write lines (quarantine lines to their retention policy); raise StorageUnavailable or
        StorageRejected (``dropped`` then counts the refused lines over both requests)."""
        if self.quarantine_rp is None:
            self._post(lines, None)
            return
        prefix = schema.QUARANTINE + ","
        quarantined = [line for line in lines if line.startswith(prefix)]
        if not quarantined:
            self._post(lines, None)
            return
        groups = (
            ([line for line in lines if not line.startswith(prefix)], None),
            (quarantined, self.quarantine_rp),
        )
        rejections: list[StorageRejected] = []
        for group, rp in groups:
            if not group:
                continue
            try:
                self._post(group, rp)
            except StorageRejected as exc:
                rejections.append(exc)
        if not rejections:
            return
        counts = [exc.dropped for exc in rejections]
        raise StorageRejected(
            rejections[0].status,
            "; ".join(exc.message for exc in rejections),
            None if None in counts else sum(c for c in counts if c is not None),
            any(exc.too_large for exc in rejections),
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request and read its answer; raise StorageUnavailable when none came.

        httpx leaves each response in a reference cycle (the response and its stream point at
        each other) that holds the request and its body until the collector runs: with the
        ingester's raised collector threshold, 900 KB write bodies piled up, 90 MB per 200k
        readings (issue 9). The answer is read whole, so its spent stream is replaced, and
        reference counting frees everything when the caller lets go.
        """
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        response.stream = _SPENT
        return response

    def _post(self, lines: list[str], rp: str | None) -> None:
        body = "\n".join(lines).encode("utf-8")
        params = {"db": self.db, "precision": PRECISION}
        if rp is not None:
            params["rp"] = rp
        response = self._send("POST", "/write", params=params, content=body)
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
        response = self._send("GET", "/query", params={"db": self.db, "q": q, "epoch": "ns"})
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
        response = self._send("POST", "/query", data={"q": f"CREATE DATABASE {name}"})
        if response.status_code == 403:
            logger.info("not allowed to create database %s; assuming it exists", self.db)
        elif response.status_code != 200:
            raise StorageUnavailable(f"CREATE DATABASE: HTTP {response.status_code}")

    def ensure_quarantine_rp(self, retention_days: int) -> None:
        """Write quarantine lines to the ``quarantine`` retention policy: create it when allowed
        (InfluxDB 1.x), use it when provisioned, else fall back to the default one; log which."""
        if not self.is_v1_server:
            logger.info("quarantine goes to the bucket's retention (InfluxDB 2.x/3.x)")
            return
        rp = schema.QUARANTINE_RP
        existing = self._retention_policies()
        duration = f"{retention_days}d"
        if rp in existing:
            self.quarantine_rp = rp
            logger.info("quarantine retention policy %s exists (duration %s)", rp, existing[rp])
            return
        statement = (
            f"CREATE RETENTION POLICY {influxql_identifier(rp)} ON "
            f"{influxql_identifier(self.db)} DURATION {duration} REPLICATION 1"
        )
        error = self._admin(statement)
        if error is None:
            self.quarantine_rp = rp
            logger.info("created quarantine retention policy %s (duration %s)", rp, duration)
        else:
            logger.warning(
                "quarantine retention policy %s not provisioned and not allowed to create it "
                "(%s): quarantine records go to the default retention policy",
                rp,
                error,
            )

    def count_quarantine(self) -> int:
        """Return the number of quarantine records (one count over the quarantine's field)."""
        source = (
            schema.QUARANTINE_FROM
            if self.quarantine_rp is not None
            else influxql_identifier(schema.QUARANTINE)
        )
        series = self.query(f'SELECT count("detail") FROM {source}')
        return sum(int(row[1]) for serie in series for row in serie["values"])

    def _retention_policies(self) -> dict[str, str]:
        try:
            series = self.query(f"SHOW RETENTION POLICIES ON {influxql_identifier(self.db)}")
        except StorageUnavailable as exc:
            logger.info("retention policies not readable (%s)", exc)
            return {}
        policies: dict[str, str] = {}
        for serie in series:
            columns = serie["columns"]
            for row in serie["values"]:
                entry = dict(zip(columns, row, strict=True))
                policies[str(entry["name"])] = str(entry.get("duration"))
        return policies

    def _admin(self, statement: str) -> str | None:
        """Run one administrative statement; return None on success, else why it failed."""
        try:
            response = self._send("POST", "/query", data={"q": statement})
        except StorageUnavailable as exc:
            return str(exc)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {_error_message(response)}"
        result = response.json().get("results", [{}])[0]
        return str(result["error"])[:300] if "error" in result else None


def _error_message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(document, dict):
        return str(document.get("error") or document.get("message") or document)[:500]
    return str(document)[:500]
