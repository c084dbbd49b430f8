"""The ingester's counters, served as Prometheus text and snapshotted into ``ingest_stats``.

The fields, their kinds and help texts are declared once, in sensors.ingest_stats.

Each counter is incremented by one thread only (paho's thread for what arrives, the writer
thread for what is stored), so plain integers suffice under the GIL.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from sensors.ingest_stats import LATENCY_COUNT, LATENCY_SUM, QUARANTINED_PREFIX, STAT_FIELDS
from sensors.schema import QuarantineReason


@dataclass(slots=True)
class IngestStats:
    """Cumulative counters since this ingester process started, and current gauges."""

    started_ns: int = field(default_factory=time.time_ns)
    messages_received: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    values_stored: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    spooled_lines: int = 0
    spool_depth: int = 0
    spool_torn_records: int = 0
    write_batches: int = 0
    write_attempts: int = 0
    write_latency_sum_s: float = 0.0
    write_latency_count: int = 0
    seq_gaps: int = 0
    seq_missing: int = 0
    duplicates_seen: int = 0
    handler_errors: int = 0
    mqtt_connects: int = 0
    mqtt_disconnects: int = 0
    acked: int = 0
    # issue 8
    # Another client took our client id: DISCONNECT 0x8E, or (Mosquitto 2.0.x, which just
    # closes the socket) a close by the broker followed by an immediately successful connect.
    session_takeovers: int = 0
    readings_rate_limited: int = 0  # readings (or unparsable messages) over a station's rate
    refusals_over_cap: int = 0  # refusals counted in a too_many_refusals record, not kept
    redeliveries_quarantined_before: int = 0  # DUP messages whose records existed already
    quarantine_records: int = -1  # records in the quarantine (periodic count; -1: not yet)
    # issue 9: the broker's own counters ($SYS), -1 until the broker published them
    broker_dropped: int = -1
    broker_stored: int = -1

    @property
    def in_flight(self) -> int:
        """Return the messages received and not yet acknowledged (each side single-writer)."""
        return self.messages_received - self.acked

    def snapshot(self) -> dict[str, float | int]:
        """Return the counters as flat fields for an ``ingest_stats`` point (every field of
        sensors.ingest_stats.STAT_FIELDS, and one quarantine counter per reason)."""
        fields: dict[str, float | int] = {f.name: getattr(self, f.name) for f in STAT_FIELDS}
        fields[LATENCY_SUM] = float(self.write_latency_sum_s)
        for reason in QuarantineReason:
            fields[QUARANTINED_PREFIX + reason.value] = self.quarantined[reason.value]
        return fields


class StatsCollector(Collector):
    """Exposes IngestStats as Prometheus metrics (``meltemi_ingest_*``), from the same list."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per field, and the quarantine counters by reason."""
        snapshot = self.stats.snapshot()
        for stat in STAT_FIELDS:
            if stat.name in (LATENCY_SUM, LATENCY_COUNT):
                continue  # the summary below, named as the API's /metrics names it
            name = f"meltemi_ingest_{stat.name}"
            value = snapshot[stat.name]
            if stat.kind == "counter":
                yield CounterMetricFamily(name, stat.doc, value=value)
            else:
                yield GaugeMetricFamily(name, stat.doc, value=value)
        quarantined = CounterMetricFamily(
            "meltemi_ingest_quarantined", "quarantine records by reason", labels=["reason"]
        )
        for reason in QuarantineReason:
            quarantined.add_metric([reason.value], snapshot[QUARANTINED_PREFIX + reason.value])
        yield quarantined
        yield SummaryMetricFamily(
            "meltemi_ingest_write_latency_seconds",
            "InfluxDB /write latency of the ingester",
            count_value=int(snapshot[LATENCY_COUNT]),
            sum_value=snapshot[LATENCY_SUM],
        )
