"""The ingester's counters, served as Prometheus text and snapshotted into ``ingest_stats``.

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
)
from prometheus_client.registry import Collector

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

    @property
    def in_flight(self) -> int:
        """Return the messages received and not yet acknowledged (each side single-writer)."""
        return self.messages_received - self.acked

    def snapshot(self) -> dict[str, float | int]:
        """Return the counters as flat fields for an ``ingest_stats`` point."""
        fields: dict[str, float | int] = {
            name: getattr(self, name)
            for name in (
                "started_ns",
                "messages_received",
                "readings_received",
                "readings_stored",
                "values_stored",
                "spooled_lines",
                "spool_depth",
                "write_batches",
                "write_latency_sum_s",
                "write_latency_count",
                "seq_gaps",
                "seq_missing",
                "duplicates_seen",
                "handler_errors",
                "mqtt_connects",
                "mqtt_disconnects",
                "session_takeovers",
                "readings_rate_limited",
                "refusals_over_cap",
                "redeliveries_quarantined_before",
                "quarantine_records",
            )
        }
        fields["write_latency_sum_s"] = float(self.write_latency_sum_s)
        for reason in QuarantineReason:
            fields[f"quarantined_{reason.value}"] = self.quarantined[reason.value]
        return fields


class StatsCollector(Collector):
    """Exposes IngestStats as Prometheus metrics (``meltemi_ingest_*``)."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per counter."""
        s = self.stats
        counters: dict[str, tuple[float, str]] = {
            "messages_received": (s.messages_received, "MQTT messages received"),
            "readings_received": (s.readings_received, "readings parsed from messages"),
            "readings_stored": (s.readings_stored, "readings with at least one stored value"),
            "values_stored": (s.values_stored, "values stored (good or suspect)"),
            "spooled_lines": (s.spooled_lines, "lines written to the local spool"),
            "write_batches": (s.write_batches, "batches written to InfluxDB"),
            "write_attempts": (s.write_attempts, "HTTP /write requests"),
            "seq_gaps": (s.seq_gaps, "seq numbers skipped by stations (readings lost)"),
            "duplicates_seen": (s.duplicates_seen, "readings whose seq was seen before"),
            "handler_errors": (s.handler_errors, "unexpected errors while handling a message"),
            "mqtt_connects": (s.mqtt_connects, "MQTT connections made"),
            "mqtt_disconnects": (s.mqtt_disconnects, "MQTT connections lost"),
            "acked": (s.acked, "messages acknowledged to the broker"),
            "spool_torn_records": (s.spool_torn_records, "torn spool records skipped"),
            "session_takeovers": (
                s.session_takeovers,
                "MQTT sessions taken over by another client with our client id (alarm on > 0)",
            ),
            "readings_rate_limited": (
                s.readings_rate_limited,
                "readings refused by the per-station rate limit (counted in rate_exceeded)",
            ),
            "refusals_over_cap": (
                s.refusals_over_cap,
                "refusals past the per-message cap, counted in too_many_refusals records",
            ),
            "redeliveries_quarantined_before": (
                s.redeliveries_quarantined_before,
                "redelivered messages whose quarantine records were already stored",
            ),
        }
        for name, (value, doc) in counters.items():
            yield CounterMetricFamily(f"meltemi_ingest_{name}", doc, value=value)
        quarantined = CounterMetricFamily(
            "meltemi_ingest_quarantined", "quarantine records by reason", labels=["reason"]
        )
        for reason in QuarantineReason:
            quarantined.add_metric([reason.value], s.quarantined[reason.value])
        yield quarantined
        gauges: dict[str, tuple[float, str]] = {
            "spool_depth": (s.spool_depth, "lines waiting in the spool"),
            "seq_missing": (s.seq_missing, "seq numbers still missing"),
            "in_flight": (s.in_flight, "messages received and not yet acknowledged"),
            "quarantine_records": (
                s.quarantine_records,
                "records in the quarantine retention policy (periodic count; -1 before the first)",
            ),
            "write_latency_seconds_sum": (s.write_latency_sum_s, "total /write latency"),
            "write_latency_seconds_count": (s.write_latency_count, "successful /write calls"),
        }
        for name, (value, doc) in gauges.items():
            yield GaugeMetricFamily(f"meltemi_ingest_{name}", doc, value=value)
