"""Test helpers: witnesses we did not write (mosquitto_pub, raw /query) and polling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.05,
             message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {message}")
        time.sleep(interval_s)
        last = predicate()
    return last


def influx_query(url: str, db: str, q: str, **params: str) -> list[dict[str, Any]]:
    """Run InfluxQL straight against InfluxDB's /query; return the series of the first result."""
    response = httpx.post(f"{url}/query", params={"db": db, "epoch": "ns", **params},
                          data={"q": q}, timeout=30.0)
    response.raise_for_status()
    result = response.json()["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxQL error: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def influx_rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Return the rows of every series of a query as dicts (tags merged in)."""
    rows: list[dict[str, Any]] = []
    for serie in influx_query(url, db, q):
        for values in serie["values"]:
            row = dict(zip(serie["columns"], values, strict=True))
            row.update(serie.get("tags", {}))
            rows.append(row)
    return rows


def influx_count(url: str, db: str, q: str) -> int:
    """Return the single number of a ``SELECT count(...)`` query (0 when there are no points)."""
    series = influx_query(url, db, q)
    if not series:
        return 0
    return int(sum(row[1] for serie in series for row in serie["values"]))


def write_lines(url: str, db: str, lines: list[str], precision: str = "ns") -> None:
    """Write line protocol straight to InfluxDB (test data seeding)."""
    response = httpx.post(f"{url}/write", params={"db": db, "precision": precision},
                          content="\n".join(lines).encode(), timeout=60.0)
    assert response.status_code == 204, response.text


def mosquitto_pub(port: int, topic: str, payload: bytes | str, qos: int = 1,
                  *extra: str) -> subprocess.CompletedProcess[bytes]:
    """Publish one message with the mosquitto_pub CLI (stdin as payload); assert it succeeded."""
    data = payload.encode() if isinstance(payload, str) else payload
    done = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos),
         "-s", *extra],
        input=data, capture_output=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done
