"""Test helpers: witnesses we did not write (mosquitto_pub, raw /query) and polling."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
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


def hostile_messages(
    seed: int, n: int, station_ids: Sequence[str], base_ts: int
) -> list[tuple[str, bytes]]:
    """Return n distinct (topic, payload) messages mixing readings with hostile content
    (issue 8, S6): random JSON, deep nesting, 1e400, NaN/±Infinity, duplicate keys, lone
    surrogates, NUL, CR/LF, backslash, quotes, commas, equals signs, spaces, non-UTF-8 bytes,
    huge numbers and unknown names. Reading-shaped messages always hold a valid
    ``air_temperature`` and a ts unique across the whole set (so no two collide on a point)."""
    import json
    import random

    rng = random.Random(seed)
    specials = ["\\", '"', ",", "=", " ", "\n", "\r", "\x00", "é", "\ud800", "\t", "{", "}"]
    parameters = ["air_temperature", "relative_humidity", "wind_speed", "precipitation", "pm10"]

    def text(k: int = 8) -> str:
        return "".join(rng.choice(specials + list("abcXYZ019")) for _ in range(rng.randint(0, k)))

    def scalar() -> object:
        return rng.choice(
            [
                rng.uniform(-1e6, 1e6),
                rng.randint(-(10**30), 10**30),
                float("nan"),
                float("inf"),
                -float("inf"),
                None,
                True,
                text(),
                rng.uniform(0, 50),
            ]
        )

    def junk(depth: int = 0) -> object:
        kind = rng.random()
        if depth > 3 or kind < 0.4:
            return scalar()
        if kind < 0.7:
            return [junk(depth + 1) for _ in range(rng.randint(0, 4))]
        return {"k" + text(4): junk(depth + 1) for _ in range(rng.randint(0, 4))}

    ts_counter = iter(range(base_ts, base_ts - 10 * n - 10, -1))

    def reading() -> dict[str, object]:
        values: dict[str, object] = {"air_temperature": round(rng.uniform(5, 30), 2)}
        for _ in range(rng.randint(0, 3)):
            name = rng.choice([*parameters, text(6), "x" * rng.randint(1, 70)])
            values.setdefault(name, scalar())
        body: dict[str, object] = {"ts": next(ts_counter), "values": values}
        if rng.random() < 0.3:
            body["seq"] = rng.randint(0, 10**6)
        if rng.random() < 0.3:
            body["diag"] = {rng.choice(["battery_v", text(5)]): scalar() for _ in range(2)}
        return body

    def payload() -> bytes:
        kind = rng.randrange(12)
        if kind == 0:
            return json.dumps(junk()).encode("utf-8", "surrogatepass")
        if kind == 1:
            depth = rng.choice([10, 500, 10_000])
            return ("[" * depth + "]" * depth).encode()
        if kind == 2:
            return b'{"ts": 1e400, "values": {"air_temperature": 1e400}}'
        if kind == 3:
            return b'{"ts": 1, "ts": 2, "values": {"air_temperature": NaN}}'
        if kind == 4:
            return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        if kind == 5:
            return (
                '{"ts": ' + "9" * rng.choice([20, 400, 4000]) + ', "values": {"a": 1}}'
            ).encode()
        if kind == 6:
            return json.dumps([reading() for _ in range(rng.randint(1, 20))]).encode(
                "utf-8", "surrogatepass"
            )
        if kind == 7:
            body = json.dumps(reading()).encode("utf-8", "surrogatepass")
            return body + text(3).encode("utf-8", "surrogatepass")  # trailing garbage sometimes
        if kind == 8:
            return ('{"ts": 1, "values": {"' + text(10) + '": -Infinity}}').encode(
                "utf-8", "surrogatepass"
            )
        return json.dumps(reading()).encode("utf-8", "surrogatepass")

    messages: dict[tuple[str, bytes], None] = {}
    while len(messages) < n:
        if rng.random() < 0.03:
            topic = rng.choice(
                ["stations/A!/readings", "stations/x/readings", "stations/-a/status"]
            )
        else:
            kind = "status" if rng.random() < 0.1 else "readings"
            topic = f"stations/{rng.choice(list(station_ids))}/{kind}"
        messages[(topic, payload())] = None
    return list(messages)


class PassThroughProxy:
    """A byte-for-byte TCP relay to a port on 127.0.0.1 (RELIABILITY (c): it relays and never
    answers, so it is not a fake). Subclasses shape the answers in ``relay_answer``."""

    def __init__(self, upstream_port: int, name: str = "pass-through-proxy") -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, name=name, daemon=True)
        self.thread.start()

    def relay_answer(self, chunk: bytes, sent: int) -> tuple[bytes, bool]:  # noqa: ARG002
        """Return what to relay of an answer chunk (``sent`` bytes already relayed on this
        connection) and whether to cut the connection after it."""
        return chunk, False

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                cut = False
                if answers:
                    chunk, cut = self.relay_answer(chunk, sent)
                target.sendall(chunk)
                sent += len(chunk)
                if cut:
                    break
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        """Stop accepting."""
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
