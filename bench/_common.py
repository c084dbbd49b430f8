"""Shared pieces of the benchmarks: services in a temp dir, a registry, figures printing."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from sensors.catalog import PARAMETERS

ALL_PARAMETERS = [spec.id for spec in PARAMETERS]


@contextmanager
def services(
    root: Path | None = None, broker_conf: str = ""
) -> Iterator[tuple[Mosquitto, InfluxDB, Path]]:
    """Start a Mosquitto (the repo's config, plus ``broker_conf``) and an InfluxDB of the
    benchmark's own; stop them at the end."""
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-") as tmp:
        base = root or Path(tmp)
        broker = Mosquitto(base / "mosquitto", free_port(), broker_conf)
        influx = InfluxDB(base / "influxdb", free_port())
        broker.start_and_wait()
        try:
            influx.start_and_wait()
            try:
                yield broker, influx, base
            finally:
                influx.stop()
        finally:
            broker.stop()


def write_registry(path: Path, count: int, prefix: str = "bench") -> list[str]:
    """Write a registry of ``count`` stations measuring everything; return their ids."""
    ids = [f"{prefix}-{k:04d}" for k in range(count)]
    tables = []
    for k, station_id in enumerate(ids):
        params = ", ".join(f'"{p}"' for p in ALL_PARAMETERS)
        tables.append(
            f'[[station]]\nid = "{station_id}"\nname = "Bench {k}"\nmunicipality = "Elefsina"\n'
            f"lat = {38.0 + k * 1e-4:.4f}\nlon = 23.5\nelevation_m = 10\nparameters = [{params}]\n"
        )
    path.write_text("\n".join(tables))
    return ids


def median(values: list[float]) -> float:
    """Return the median."""
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Return the 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def figure(name: str, value: float, unit: str) -> None:
    """Print one figure in the `name: value unit` form every bench ends with."""
    print(f"{name}: {value:.4g} {unit}", flush=True)


def ingester(
    name: str,
    log_dir: Path,
    *,
    mqtt_port: int,
    influx_url: str,
    db: str,
    registry: Path,
    data_dir: Path,
    client_id: str,
    **extra: str,
) -> ManagedProcess:
    """Return (not started) a `meltemi ingest` subprocess configured for a benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    env.update(
        {
            "MELTEMI_MQTT_PORT": str(mqtt_port),
            "MELTEMI_INFLUX_URL": influx_url,
            "MELTEMI_INFLUX_DB": db,
            "MELTEMI_STATIONS_FILE": str(registry),
            "MELTEMI_DATA_DIR": str(data_dir),
            "MELTEMI_MQTT_CLIENT_ID": client_id,
            **extra,
        }
    )
    return ManagedProcess(
        name, [sys.executable, "-m", "meltemi.cli", "ingest"], log_dir / f"{name}-{db}.log", env=env
    )


def start_api(root: Path, env: dict[str, str], port: int, timeout_s: float) -> ManagedProcess:
    """Start ``meltemi api`` as a subprocess with ``env``; return once it answers HTTP."""
    api = ManagedProcess(
        "api",
        [sys.executable, "-m", "meltemi.cli", "--log-level", "WARNING", "api"],
        root / "api.log",
        env=env,
    )
    api.start()
    probe = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout_s)

    def answers() -> bool:
        try:
            return probe.get("/health").status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        api.wait_until(answers)
    except BaseException:
        api.stop()
        raise
    finally:
        probe.close()
    return api
