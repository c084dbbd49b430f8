"""``meltemi ingest``: wiring intake, writer, spool and metrics, and stopping them in order."""

from __future__ import annotations

import functools
import gc
import logging
import re
import signal
import threading
from types import FrameType
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server

from ingest.delivery import Handoff
from ingest.errors import StorageUnavailable
from ingest.influx import InfluxWriter
from ingest.metrics import IngestStats, StatsCollector
from ingest.mqtt import MqttIntake
from ingest.ratelimit import RateLimiter
from ingest.spool import Spool
from ingest.writer import ClearSky, Writer
from sensors.registry import StationRegistry, open_registry
from sensors.settings import Settings
from sensors.solar import clear_sky_ghi

logger = logging.getLogger(__name__)

GC_GEN0_THRESHOLD: Final = 50_000


class Ingester:
    """One ingester: MQTT intake -> writer thread -> InfluxDB (or the spool)."""

    def __init__(self, settings: Settings, registry: StationRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else open_registry(settings)
        self.stats = IngestStats()
        self.influx = InfluxWriter(settings)
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.mqtt_client_id)
        self.spool = Spool(settings.data_dir / "spool" / safe_id)
        # Bounded by what the broker may have in flight to us (Receive Maximum): paho's thread
        # never blocks on it.
        self.deliveries = Handoff()
        self.intake = MqttIntake(settings, self.registry, self.deliveries, self.stats)
        self.writer = Writer(
            deliveries=self.deliveries,
            influx=self.influx,
            spool=self.spool,
            registry=self.registry,
            stats=self.stats,
            ack=self.intake.ack_many,
            publish=self.intake.publish_accepted,
            ingester_id=settings.mqtt_client_id,
            batch_max=settings.ingest_batch_max,
            linger_s=settings.ingest_linger_s,
            qc=settings.ingest_qc,
            clear_sky=_clear_sky(),
            rate_limiter=RateLimiter(settings.ingest_rate_burst, settings.ingest_rate_per_s),
            rate_record_interval_s=settings.ingest_rate_record_interval_s,
            quarantine_count_interval_s=settings.ingest_quarantine_count_interval_s,
            on_reachable=self._prepare_storage,
        )
        self._storage_prepared = False

    def start(self) -> None:
        """Start the writer, then connect to the broker."""
        try:
            self._prepare_storage()
        except StorageUnavailable as exc:
            logger.warning("InfluxDB not reachable at start (%s); readings will be spooled", exc)
        self.writer.start()
        self.intake.start()

    def _prepare_storage(self) -> None:
        """Create the database and the quarantine's retention policy (once, when reachable)."""
        if self._storage_prepared:
            return
        self.influx.ensure_database()
        self.influx.ensure_quarantine_rp(self.settings.quarantine_retention_days)
        self._storage_prepared = True

    def stop(self) -> None:
        """Stop intake, drain the queue, flush and acknowledge, then disconnect."""
        logger.info("stopping: intake closed, draining %d queued messages", self.deliveries.qsize())
        self.intake.stop_intake()
        self.writer.stop()
        self.writer.join()
        self.intake.disconnect()
        self.spool.close()
        self.influx.close()
        logger.info("stopped (spool holds %d lines)", self.spool.depth_lines)


def _clear_sky() -> ClearSky:
    """Return the clear-sky global radiation (W/m²) at a station and time, for the QC check.

    Computed once per station and minute: it changes by a few W/m² a minute at most, well
    inside the check's 50 W/m² margin, and numpy on one scalar per reading cost 14 % of the
    ingester's time.
    """

    @functools.lru_cache(maxsize=16_384)
    def per_minute(lat: float, lon: float, minute: int) -> float:
        return float(clear_sky_ghi(lat, lon, minute * 60.0 + 30.0))

    def clear_sky(lat: float, lon: float, _elevation_m: float, ts_ns: int) -> float:
        return per_minute(lat, lon, ts_ns // 60_000_000_000)

    return clear_sky


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path (issue 9).

    The objects alive at start (modules, the registry, the clients) are frozen out of every
    collection, and the youngest generation is collected every GC_GEN0_THRESHOLD allocations
    instead of 700: a message's objects are freed by reference counting (the hot path builds no
    cycles; InfluxWriter breaks httpx's), so frequent collections only re-walked the messages
    in flight. Measured on bench/ingest.py (100k readings, two runs each): 28 and 30 µs of CPU
    per reading against 32 and 30 µs at 700, a few per cent. Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run(settings: Settings) -> int:
    """Run the ingester until SIGINT or SIGTERM; return the exit code."""
    ingester = Ingester(settings)
    if settings.ingest_metrics_port:
        metrics = CollectorRegistry()
        metrics.register(StatsCollector(ingester.stats))
        start_http_server(settings.ingest_metrics_port, addr="127.0.0.1", registry=metrics)
        logger.info("metrics on http://127.0.0.1:%d/metrics", settings.ingest_metrics_port)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    _tune_gc()
    ingester.start()
    logger.info(
        "ingesting %s into %s/%s",
        ", ".join(ingester.intake.filters),
        settings.influx_url,
        settings.influx_db,
    )
    while not stop.wait(0.5):
        pass
    ingester.stop()
    return 0
