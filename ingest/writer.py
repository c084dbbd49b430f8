"""The writer thread: collect a batch, judge QC, build lines, store, acknowledge, re-publish.

For each batch taken from the queue (in receive order): judge QC (against ingest.history),
build the lines, hand them to ingest.store (InfluxDB, or the fsynced spool when it cannot take
them; refused lines bisected and quarantined there); only then acknowledge every message of the
batch, in receive order [MQTT-4.6.0-2], with one write to the broker for the whole batch, and
re-publish the accepted readings, one message per station per batch.

Bounded cost (issue 8): batches are budgeted by the lines they will produce; a station over its
rate (ingest.ratelimit) is acknowledged and counted in one ``rate_exceeded`` record per
interval; one message yields at most MAX_REFUSALS_PER_MESSAGE quarantine records plus one
``too_many_refusals`` count, its raw payload on the first only. A value that differs from the
stored one at its (station, ts) is quarantined as ``conflict`` (ingest.history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.delivery import Delivery, Handoff
from ingest.errors import StorageUnavailable
from ingest.history import StationHistories, write_once
from ingest.influx import InfluxWriter
from ingest.metrics import IngestStats
from ingest.points import (
    Line,
    UniqueClock,
    all_good,
    diagnostics_line,
    message_key,
    quarantine_line,
    reading_line,
    stats_line,
    status_line,
)
from ingest.ratelimit import RateLimiter
from ingest.seqtrack import SeqTracker
from ingest.spool import Spool
from ingest.store import Store
from sensors import schema
from sensors.models import format_ts
from sensors.outbound import LatestEntryData, encode_entries
from sensors.qc import (
    GOOD,
    HISTORY_NS,
    QcResult,
    StationHistory,
    judge_and_record,
)
from sensors.quoting import influxql_identifier, influxql_string
from sensors.registry import StationRegistry
from sensors.schema import QcFlag, QuarantineReason
from sensors.validation import MAX_REFUSALS_PER_MESSAGE, AcceptedReading, Refusal

logger = logging.getLogger(__name__)

STATS_INTERVAL_S: Final = 5.0
# The writer lingers for more messages in naps of at most this (it checks the budget between).
LINGER_NAP_S: Final = 0.02
_GOOD_FLAG: Final = QcFlag.GOOD.value
# Accepted readings re-published per message: ~300 B each, so a message stays far below the
# broker's max_packet_size (a larger one would get the ingester disconnected).
ENTRIES_PER_MESSAGE: Final = 200
# A redelivered (DUP) message is looked for among the quarantine records of this last period.
REDELIVERY_LOOKBACK: Final = "1d"
REDELIVERY_KEYS_PER_QUERY: Final = 200


# Acknowledges a batch's messages, given as (mid, qos) in receive order.
Acker = Callable[[list[tuple[int, int]]], None]
Publisher = Callable[[str, bytes], None]
ClearSky = Callable[[float, float, float, int], float]


@dataclass(slots=True)
class _Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    entries: dict[str, list[LatestEntryData]] = field(default_factory=dict)

    readings: int = 0
    values: int = 0
    # Keys of redelivered messages whose quarantine records are stored already.
    quarantined_before: set[str] = field(default_factory=set)
    # The history each admitted reading is judged against, in batch order (QC on): memory, or
    # for a reading older than what memory holds, its stored neighbours loaded from InfluxDB
    # once per station per batch.
    histories: list[StationHistory] = field(default_factory=list)
    rate_limited: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _RateWindow:
    """One station's rate_exceeded record for one interval, rewritten as its count grows."""

    time_ns: int
    until_s: float
    first: Delivery
    count: int = 0


def _entry(reading: AcceptedReading, qc: dict[str, QcResult], good: bool) -> LatestEntryData:
    """Return the accepted-topic entry of a stored reading (sensors.outbound)."""
    entry: LatestEntryData = {
        "station": reading.station_id,
        "ts": format_ts(reading.ts_ns),
        "values": reading.values,
        "qc": dict.fromkeys(reading.values, _GOOD_FLAG),
        "seq": reading.seq,
    }
    if good:
        return entry
    flags: dict[str, str] = {}
    checks: dict[str, str] = {}
    for parameter, result in qc.items():
        flags[parameter] = result.flag.value
        if result.flag is QcFlag.SUSPECT:
            checks[parameter] = result.check
    entry["qc"] = flags
    if checks:
        entry["checks"] = checks
    return entry


def _lines_of(delivery: Delivery) -> int:
    """Return the lines a delivery will produce (batches are budgeted by lines, issue 8)."""
    verdict = delivery.verdict
    if verdict is None:
        return 1
    readings = verdict.readings
    lines = len(verdict.refusals) + (1 if verdict.refusals_over_cap else 0) + 1 + len(readings)
    if len(readings) == 1:
        return lines + 1 if readings[0].diag else lines
    return lines + sum(1 for reading in readings if reading.diag)


class Writer(threading.Thread):
    """Takes Deliveries from a queue, stores them durably, then acknowledges them in order."""

    def __init__(
        self,
        *,
        deliveries: Handoff,
        influx: InfluxWriter,
        spool: Spool,
        registry: StationRegistry,
        stats: IngestStats,
        ack: Acker,
        publish: Publisher | None,
        ingester_id: str,
        batch_max: int = 5000,
        linger_s: float = 0.0,
        qc: bool = True,
        clear_sky: ClearSky | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_record_interval_s: float = 60.0,
        quarantine_count_interval_s: float = 60.0,
        on_reachable: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="meltemi-writer", daemon=True)
        self.deliveries = deliveries
        self.influx = influx
        self.spool = spool
        self.registry = registry
        self.stats = stats
        self.ack = ack
        self.publish = publish
        self.ingester_id = ingester_id
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.qc_enabled = qc
        self.clear_sky = clear_sky
        self.stop_event = threading.Event()
        self.seq = SeqTracker()
        self._clock = UniqueClock()
        self.store = Store(
            influx=influx,
            spool=spool,
            stats=stats,
            clock=self._clock,
            stop_event=self.stop_event,
            batch_max=batch_max,
            on_reachable=on_reachable,
        )
        self.histories = StationHistories(influx, registry, self.store.lost_influx)
        self.rate_limiter = rate_limiter
        self.rate_record_interval_s = rate_record_interval_s
        self._rate_windows: dict[str, _RateWindow] = {}
        self.quarantine_count_interval_s = quarantine_count_interval_s
        self._next_quarantine_count = time.monotonic()
        self._next_stats = time.monotonic() + STATS_INTERVAL_S

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Loop until stopped and the queue is empty; each turn stores one batch."""
        logger.info("writer started (spool holds %d lines)", self.spool.depth_lines)
        while True:
            batch = self._collect()
            if batch.deliveries:
                try:
                    self._handle(batch)
                except Exception:
                    # Never reached by bad data (that is quarantined); a bug must not stop the
                    # stream, and the batch stays unacknowledged so the broker redelivers it.
                    self.stats.handler_errors += 1
                    logger.exception(
                        "writer failed on a batch of %d messages", len(batch.deliveries)
                    )
                    time.sleep(1.0)
                    continue
            elif self.stop_event.is_set():
                break
            self.store.drain_some()
            if time.monotonic() >= self._next_quarantine_count:
                self._count_quarantine()
            if time.monotonic() >= self._next_stats:
                self._write_stats()
        self._write_stats()
        logger.info("writer stopped (spool holds %d lines)", self.spool.depth_lines)

    def stop(self) -> None:
        """Ask the loop to finish what is queued and end."""
        self.stop_event.set()

    def _collect(self) -> _Batch:
        batch = _Batch()
        deliveries = self.deliveries
        # While a spool is draining, do not idle between turns.
        if not deliveries.wait(0.0 if self.store.draining() else 0.1):
            return batch
        deadline = time.monotonic() + self.linger_s
        size = 0
        while True:
            item = deliveries.pop()
            while item is not None:
                batch.deliveries.append(item)
                size += _lines_of(item)
                if size >= self.batch_max:
                    return batch
                item = deliveries.pop()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return batch
            # Linger by sleeping, not by waking up for each message that arrives meanwhile.
            time.sleep(min(remaining, LINGER_NAP_S))

    def _handle(self, batch: _Batch) -> None:
        now_s = time.monotonic()
        admitted = [self._admit(delivery, batch, now_s) for delivery in batch.deliveries]
        self._find_quarantined_before(batch)
        if self.qc_enabled:
            self._find_histories(batch, admitted)
        histories = iter(batch.histories)
        for delivery, admit in zip(batch.deliveries, admitted, strict=True):
            if admit:
                self._prepare(delivery, batch, histories)
        self._rate_records(batch)
        self.stats.seq_gaps = self.seq.gaps_total
        self.stats.seq_missing = self.seq.missing
        self.stats.duplicates_seen = self.seq.duplicates
        if batch.lines:
            self.store.store(batch.lines)
        self.ack([(delivery.mid, delivery.qos) for delivery in batch.deliveries])
        self.stats.acked += len(batch.deliveries)
        self.stats.readings_stored += batch.readings
        self.stats.values_stored += batch.values
        if self.publish is not None:  # one message per station per batch, not per reading
            for station_id, entries in batch.entries.items():
                for start in range(0, len(entries), ENTRIES_PER_MESSAGE):
                    chunk = entries[start : start + ENTRIES_PER_MESSAGE]
                    self.publish(station_id, encode_entries(chunk))

    # -- judging -------------------------------------------------------------------------------
    def _prepare(
        self, delivery: Delivery, batch: _Batch, histories: Iterator[StationHistory]
    ) -> None:
        if delivery.status is not None and delivery.station_id is not None:
            line = status_line(
                delivery.station_id,
                delivery.status.state,
                delivery.status.firmware,
                delivery.received_ns,
            )
            batch.lines.append(Line(line, delivery.station_id))
            return
        verdict = delivery.verdict
        if verdict is None:
            return
        conflicts: list[Refusal] = []
        lines = batch.lines
        publish = self.publish is not None
        for accepted in verdict.readings:
            if self.qc_enabled:
                history = next(histories)
                reading = write_once(accepted, history, conflicts)
                if reading is None:
                    continue
                qc = self._judge_qc(reading, history)
            else:
                reading, qc = accepted, dict.fromkeys(accepted.values, GOOD)
            station_id = reading.station_id
            values = reading.values
            good = all_good(qc)
            lines.append(Line(reading_line(reading, qc, good), station_id, 1, len(values)))
            if reading.diag:
                diag = diagnostics_line(reading)
                if diag is not None:
                    lines.append(Line(diag, station_id))
            batch.readings += 1
            batch.values += len(values)
            if reading.seq is not None:
                self.seq.observe(station_id, reading.seq)
            if publish:
                entries = batch.entries.get(station_id)
                if entries is None:
                    entries = batch.entries[station_id] = []
                entries.append(_entry(reading, qc, good))

        if verdict.refusals or verdict.refusals_over_cap or conflicts:
            self._quarantine(
                delivery, verdict.refusals + conflicts, verdict.refusals_over_cap, batch
            )

    def _quarantine(
        self, delivery: Delivery, refusals: list[Refusal], over_cap: int, batch: _Batch
    ) -> None:
        """Add a message's quarantine records: at most MAX_REFUSALS_PER_MESSAGE, the raw payload
        on the first only, then one too_many_refusals record carrying the count of the rest."""
        if not refusals and not over_cap:
            return
        key = message_key(delivery.topic, delivery.payload)
        if key in batch.quarantined_before:
            self.stats.redeliveries_quarantined_before += 1
            return
        over_cap += max(0, len(refusals) - MAX_REFUSALS_PER_MESSAGE)
        kept = refusals[:MAX_REFUSALS_PER_MESSAGE]
        for index, refusal in enumerate(kept):
            batch.lines.append(
                self._quarantine_line(
                    reason=refusal.reason,
                    detail=refusal.detail,
                    station_id=delivery.station_id,
                    topic=delivery.topic,
                    payload=delivery.payload if index == 0 else None,
                    received_ns=delivery.received_ns,
                    time_ns=self._clock.now_ns(),
                    slot=refusal.slot,
                    parameter=refusal.parameter,
                    seq=refusal.seq,
                    msg=key,
                    ts_ns=refusal.ts_ns,
                )
            )
            self.stats.quarantined[refusal.reason.value] += 1
        if over_cap:
            batch.lines.append(
                self._quarantine_line(
                    reason=QuarantineReason.TOO_MANY_REFUSALS,
                    detail=f"{over_cap} more refusals after the first {MAX_REFUSALS_PER_MESSAGE}",
                    station_id=delivery.station_id,
                    topic=delivery.topic,
                    payload=None if kept else delivery.payload,
                    received_ns=delivery.received_ns,
                    time_ns=self._clock.now_ns(),
                    slot="r",
                    msg=key,
                    count=over_cap,
                )
            )
            self.stats.quarantined[QuarantineReason.TOO_MANY_REFUSALS.value] += 1
            self.stats.refusals_over_cap += over_cap

    @staticmethod
    def _quarantine_line(**record: Any) -> Line:
        return Line(quarantine_line(**record), record["station_id"])

    # -- the per-station rate limit ------------------------------------------------------------
    def _admit(self, delivery: Delivery, batch: _Batch, now_s: float) -> bool:
        """Return whether the delivery's station is within its rate (at the batch's time
        ``now_s``); count it otherwise."""
        if self.rate_limiter is None:
            return True
        station = delivery.station_id
        key = station if station is not None and station in self.registry else "_unknown"
        verdict = delivery.verdict
        cost = max(1, verdict.readings_received) if verdict is not None else 1
        if self.rate_limiter.allow(key, cost, now_s):
            return True
        window = self._rate_windows.get(key)
        if window is None or now_s >= window.until_s:
            window = _RateWindow(
                self._clock.now_ns(), now_s + self.rate_record_interval_s, delivery
            )
            self._rate_windows[key] = window
            self.stats.quarantined[QuarantineReason.RATE_EXCEEDED.value] += 1
        window.count += cost
        self.stats.readings_rate_limited += cost
        batch.rate_limited.add(key)
        return False

    def _rate_records(self, batch: _Batch) -> None:
        """(Re)write each limited station's record of this interval with its count so far."""
        limiter = self.rate_limiter
        for key in batch.rate_limited:
            window = self._rate_windows[key]
            first = window.first
            detail = (
                f"{window.count} readings over the station's rate "
                f"({limiter.burst if limiter else 0} burst, "
                f"{limiter.rate_per_s if limiter else 0:g}/s)"
            )
            batch.lines.append(
                self._quarantine_line(
                    reason=QuarantineReason.RATE_EXCEEDED,
                    detail=detail,
                    station_id=first.station_id,
                    topic=first.topic,
                    payload=first.payload,
                    received_ns=first.received_ns,
                    time_ns=window.time_ns,
                    slot="r",
                    msg=message_key(first.topic, first.payload),
                    count=window.count,
                )
            )

    # -- redeliveries ----------------------------------------------------------------------------
    def _find_quarantined_before(self, batch: _Batch) -> None:
        """Find the redelivered (DUP) messages whose quarantine records are stored already.

        Quarantine records are keyed by a unique receive time, so distinct deliveries never
        overwrite each other; a redelivery (only after a lost acknowledgement, flagged DUP by
        the broker) is recognised by its message key instead: one query per batch.
        """
        keys = sorted(
            {
                message_key(d.topic, d.payload)
                for d in batch.deliveries
                # Every readings message: one may also have met a conflict the first time.
                if d.dup and d.verdict is not None
            }
        )
        if not keys or not self.store.can_query():
            return
        source = (
            schema.QUARANTINE_FROM
            if self.influx.quarantine_rp is not None
            else influxql_identifier(schema.QUARANTINE)
        )
        msg = influxql_identifier(schema.MSG_FIELD)
        for start in range(0, len(keys), REDELIVERY_KEYS_PER_QUERY):
            chunk = keys[start : start + REDELIVERY_KEYS_PER_QUERY]
            where = " OR ".join(f"{msg} = {influxql_string(k)}" for k in chunk)
            q = (
                f"SELECT {msg} FROM {source} "
                f"WHERE time >= now() - {REDELIVERY_LOOKBACK} AND ({where})"
            )
            try:
                series = self.influx.query(q)
            except StorageUnavailable as exc:
                logger.warning("redelivered messages not looked up (%s)", exc)
                return
            for serie in series:
                batch.quarantined_before.update(str(row[1]) for row in serie["values"])

    # -- write-once history and back-dated QC ----------------------------------------------------
    def _find_histories(self, batch: _Batch, admitted: list[bool]) -> None:
        """Find the history each admitted reading is judged against (batch.histories, in
        order): memory, recovered from InfluxDB on a station's first sight; for a reading older
        than what memory holds, its stored neighbours, loaded with one query per station (a
        back-dated reading is QC-checked against them, not passed as good)."""
        histories = batch.histories
        get, is_backdated = self.histories.get, self.histories.is_backdated
        can_query = self.store.can_query
        spans: dict[str, tuple[int, int]] = {}
        backdated: dict[str, list[int]] = {}
        for delivery, admit in zip(batch.deliveries, admitted, strict=True):
            if not admit or delivery.verdict is None:
                continue
            for reading in delivery.verdict.readings:
                station, ts_ns = reading.station_id, reading.ts_ns
                history = get(station, ts_ns, can_query)
                if is_backdated(station, ts_ns, history):
                    backdated.setdefault(station, []).append(len(histories))
                    low, high = spans.get(station, (ts_ns, ts_ns))
                    spans[station] = (min(low, ts_ns), max(high, ts_ns))
                histories.append(history)
        for station_id, (low, high) in spans.items():
            stored = self.histories.stored(station_id, low - HISTORY_NS, high + 1)
            for index in backdated[station_id]:
                histories[index] = stored

    def _judge_qc(self, reading: AcceptedReading, history: StationHistory) -> dict[str, QcResult]:
        values = reading.values
        clear_sky_max = None
        if self.clear_sky is not None and "solar_radiation" in values:
            station = self.registry.get(reading.station_id)
            if station is not None:
                clear_sky_max = self.clear_sky(
                    station.lat, station.lon, station.elevation_m, reading.ts_ns
                )
        return judge_and_record(reading.ts_ns, values, history, clear_sky_max)

    def _count_quarantine(self) -> None:
        """Refresh the quarantine's size figure (one count query, every few tens of seconds)."""
        self._next_quarantine_count = time.monotonic() + self.quarantine_count_interval_s
        if not self.store.can_query():
            return
        try:
            self.stats.quarantine_records = self.influx.count_quarantine()
        except StorageUnavailable as exc:
            logger.info("quarantine not counted (%s)", exc)

    def _write_stats(self) -> None:
        self._next_stats = time.monotonic() + STATS_INTERVAL_S
        line = stats_line(self.ingester_id, self.stats.snapshot(), self._clock.now_ns())
        self.store.store([Line(line)])
