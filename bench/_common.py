"""Shared pieces of the benchmarks: services in a temp dir, a registry, figures printing."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meltemi.services import InfluxDB, Mosquitto, free_port

ALL_PARAMETERS = [
    "air_temperature",
    "relative_humidity",
    "air_pressure",
    "wind_speed",
    "wind_gust",
    "wind_direction",
    "precipitation",
    "solar_radiation",
    "uv_index",
    "pm1",
    "pm2_5",
    "pm10",
]


@contextmanager
def services(root: Path | None = None) -> Iterator[tuple[Mosquitto, InfluxDB, Path]]:
    """Start a Mosquitto and an InfluxDB of the benchmark's own; stop them at the end."""
    with tempfile.TemporaryDirectory(prefix="meltemi-bench-") as tmp:
        base = root or Path(tmp)
        broker = Mosquitto(base / "mosquitto", free_port())
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
