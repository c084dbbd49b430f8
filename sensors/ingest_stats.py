"""The ``ingest_stats`` snapshot: every counter an ingester keeps, declared once (issue 9).

Each ingester writes its counters into the ``ingest_stats`` measurement every few seconds (tag
``ingester``), serves them on its own ``/metrics`` listener, and the API's ``/metrics`` turns the
newest snapshot of each ingester into ``meltemi_ingest_*`` families. All three read this list,
so a counter added here reaches all three; ``quarantined_{reason}`` adds one counter per
quarantine reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from sensors.schema import QuarantineReason

StatKind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class StatField:
    """One field of the snapshot: its name, Prometheus kind and help text."""

    name: str
    kind: StatKind
    doc: str


QUARANTINED_PREFIX: Final = "quarantined_"
STARTED: Final = "started_ns"
LATENCY_SUM: Final = "write_latency_sum_s"
LATENCY_COUNT: Final = "write_latency_count"

STAT_FIELDS: Final[tuple[StatField, ...]] = (
    StatField(STARTED, "gauge", "when the ingester started (ns since the epoch)"),
    StatField("messages_received", "counter", "MQTT messages received"),
    StatField("readings_received", "counter", "readings parsed from messages"),
    StatField("readings_stored", "counter", "readings with at least one stored value"),
    StatField("values_stored", "counter", "values stored (good or suspect)"),
    StatField("acked", "counter", "messages acknowledged to the broker"),
    StatField("in_flight", "gauge", "messages received and not yet acknowledged"),
    StatField("spooled_lines", "counter", "lines written to the local spool"),
    StatField("spool_depth", "gauge", "lines waiting in the spool"),
    StatField("spool_torn_records", "counter", "torn spool records skipped"),
    StatField("write_batches", "counter", "batches written to InfluxDB"),
    StatField("write_attempts", "counter", "HTTP /write requests (bisection included)"),
    StatField(LATENCY_SUM, "counter", "total /write latency (seconds)"),
    StatField(LATENCY_COUNT, "counter", "successful /write calls"),
    StatField("seq_gaps", "counter", "seq numbers skipped by stations (readings lost)"),
    StatField("seq_missing", "gauge", "seq numbers still missing"),
    StatField("duplicates_seen", "counter", "readings whose seq was seen before"),
    StatField("handler_errors", "counter", "unexpected errors while handling a message"),
    StatField("mqtt_connects", "counter", "MQTT connections made"),
    StatField("mqtt_disconnects", "counter", "MQTT connections lost"),
    StatField(
        "session_takeovers",
        "counter",
        "MQTT sessions taken over by another client with our client id (alarm on > 0)",
    ),
    StatField(
        "readings_rate_limited",
        "counter",
        "readings refused by the per-station rate limit (counted in rate_exceeded)",
    ),
    StatField(
        "refusals_over_cap",
        "counter",
        "refusals past the per-message cap, counted in too_many_refusals records",
    ),
    StatField(
        "redeliveries_quarantined_before",
        "counter",
        "redelivered messages whose quarantine records were already stored",
    ),
    StatField(
        "quarantine_records",
        "gauge",
        "records in the quarantine retention policy (periodic count; -1 before the first)",
    ),
    StatField(
        "broker_dropped",
        "gauge",
        "messages the broker dropped since it started ($SYS; alarm on any increase; -1: unknown)",
    ),
    StatField(
        "broker_stored",
        "gauge",
        "messages the broker holds, queued ones included ($SYS; -1: unknown)",
    ),
)

STAT_KINDS: Final[dict[str, StatKind]] = {f.name: f.kind for f in STAT_FIELDS} | {
    QUARANTINED_PREFIX + reason.value: "counter" for reason in QuarantineReason
}


def stat_names() -> list[str]:
    """Return every field name of a snapshot, the per-reason quarantine counters included."""
    return list(STAT_KINDS)
