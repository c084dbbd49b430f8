"""Test helpers: witnesses we did not write (mosquitto_pub, raw /query) and polling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    message: str = "condition",
) -> T:
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
    response = httpx.post(
        f"{url}/query", params={"db": db, "epoch": "ns", **params}, data={"q": q}, timeout=30.0
    )
    assert response.status_code == 200, f"{q}: {response.status_code} {response.text}"
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
    response = httpx.post(
        f"{url}/write",
        params={"db": db, "precision": precision},
        content="\n".join(lines).encode(),
        timeout=60.0,
    )
    assert response.status_code == 204, response.text


def mosquitto_pub(
    port: int, topic: str, payload: bytes | str, qos: int = 1, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    """Publish one message with the mosquitto_pub CLI (stdin as payload); assert it succeeded."""
    data = payload.encode() if isinstance(payload, str) else payload
    done = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            topic,
            "-q",
            str(qos),
            "-s",
            *extra,
        ],
        input=data,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done


def settings_env(settings: Any, **extra: str) -> dict[str, str]:
    """Return os.environ plus MELTEMI_* variables that reproduce ``settings`` in a subprocess."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            import json

            value = json.dumps(value)
        env[f"MELTEMI_{name.upper()}"] = str(value)
    env.update(extra)
    return env


def prometheus_value(text: str, name: str, labels: str = "") -> float:
    """Return the value of one sample in Prometheus text (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


def publish_all(
    port: int,
    messages: list[tuple[str, bytes]],
    qos: int = 1,
    client_id: str = "",
    rate_per_s: float | None = None,
    stop_after: Callable[[int], bool] | None = None,
    durable: bool = False,
    timeout_s: float = 60,
) -> int:
    """Publish messages with paho (QoS 1: wait for every PUBACK); return how many were acked.

    ``durable``: a fixed client id with a persistent session, so that paho resends what the
    broker had not acknowledged when it reconnects (a station's firmware does the same).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=not durable,
    )
    client.reconnect_delay_set(1, 2)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    # Count PUBACKs in on_publish: MQTTMessageInfo.is_published() raises for a message that
    # was queued while the connection was down, even after paho resends it successfully.
    acked: set[int] = set()
    client.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(mid)
    client.connect("127.0.0.1", port)
    client.loop_start()
    mids = []
    started = time.monotonic()
    try:
        for index, (topic, payload) in enumerate(messages):
            if stop_after is not None and stop_after(index):
                break
            mids.append(client.publish(topic, payload, qos=qos).mid)
            if rate_per_s:
                ahead = started + (index + 1) / rate_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        deadline = time.monotonic() + timeout_s
        while len(acked) < len(set(mids)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(mids) if len(acked) >= len(set(mids)) else len(acked)

    finally:
        client.disconnect()
        client.loop_stop()


def reading_messages(
    station_ids: Sequence[str], per_station: int, end_s: int, step_s: int = 1, seq_start: int = 0
) -> list[tuple[str, bytes]]:
    """Return single-reading messages, interleaved across stations, each with a unique ts and
    seq, and values that pass QC (a slow ramp)."""
    import json

    messages = []
    for k in range(per_station):
        for index, station in enumerate(station_ids):
            ts = end_s - (per_station - k) * step_s
            body = {
                "ts": ts,
                "seq": seq_start + k,
                "values": {
                    "air_temperature": round(15 + index + k * 0.001, 3),
                    "relative_humidity": 50.0 + (k % 7),
                },
            }
            messages.append((f"stations/{station}/readings", json.dumps(body).encode()))
    return messages


ALL = (
    '["air_temperature", "relative_humidity", "air_pressure", "wind_speed", "wind_gust", '
    '"wind_direction", "precipitation", "solar_radiation", "uv_index", "pm1", "pm2_5", "pm10"]'
)


def write_registry(path: Path, ids: list[str]) -> Path:
    """Write a registry of test stations with every parameter; return its path."""
    tables = [
        f'[[station]]\nid = "{sid}"\nname = "Test {k}"\nmunicipality = "Elefsina"\n'
        f"lat = {38.04 + k * 0.003:.4f}\nlon = 23.54\nelevation_m = 10\nparameters = {ALL}\n"
        for k, sid in enumerate(ids)
    ]
    path.write_text("\n".join(tables))
    return path
