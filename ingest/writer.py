"""The writer thread: QC, line protocol, batched writes, the spool, and in-order acknowledgement.

For each batch taken from the queue (in receive order): judge QC, build the lines, write them
to InfluxDB or, if it cannot take them, append them to the fsynced spool; only then acknowledge
every message of the batch, in receive order [MQTT-4.6.0-2]. A partial rejection is bisected so
that only the refused lines are quarantined and the write attempts stay logarithmic
(RELIABILITY §0.6, R8).

Bounded cost (issue 8): batches are budgeted by the lines they will produce; a station over its
rate (ingest.ratelimit) is acknowledged and counted in one ``rate_exceeded`` record per
interval; one message yields at most MAX_REFUSALS_PER_MESSAGE quarantine records plus one
``too_many_refusals`` count, its raw payload on the first only. A value that differs from the
stored one at its (station, ts) is quarantined as ``conflict`` (ingest.history).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ingest.delivery import Delivery
from ingest.errors import StorageRejected, StorageUnavailable
from ingest.history import StationHistories, write_once
from ingest.influx import InfluxWriter
from ingest.metrics import IngestStats
from ingest.points import (
    UniqueClock,
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
from sensors import schema
from sensors.models import format_ts
from sensors.outbound import LatestEntryData, encode_entries
from sensors.qc import (
    GOOD,
    HISTORY_NS,
    QcResult,
    StationHistory,
    judge_values,
)
from sensors.quoting import influxql_identifier, influxql_string
from sensors.registry import StationRegistry
from sensors.schema import QcFlag, QuarantineReason
from sensors.validation import MAX_REFUSALS_PER_MESSAGE, AcceptedReading, Refusal

logger = logging.getLogger(__name__)

STATS_INTERVAL_S: Final = 5.0
RETRY_MIN_S: Final = 0.5
RETRY_MAX_S: Final = 5.0  # /ping probes are cheap; recover within seconds
DRAIN_RECORDS_PER_TURN: Final = 8
# Accepted readings re-published per message: ~300 B each, so a message stays far below the
# broker's max_packet_size (a larger one would get the ingester disconnected).
ENTRIES_PER_MESSAGE: Final = 200
# A redelivered (DUP) message is looked for among the quarantine records of this last period.
REDELIVERY_LOOKBACK: Final = "1d"
REDELIVERY_KEYS_PER_QUERY: Final = 200


Acker = Callable[[int, int], None]
Publisher = Callable[[str, bytes], None]
ClearSky = Callable[[float, float, float, int], float]


@dataclass(slots=True)
class _Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    entries: dict[str, list[LatestEntryData]] = field(default_factory=dict)

    readings: int = 0
    values: int = 0
    # Keys of redelivered messages whose quarantine records are stored already.
    quarantined_before: set[str] = field(default_factory=set)
    # Readings older than what memory holds: judged against their stored neighbours, loaded
    # from InfluxDB once per station per batch.
    backdated: set[tuple[str, int]] = field(default_factory=set)
    stored: dict[str, StationHistory] = field(default_factory=dict)
    rate_limited: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _RateWindow:
    """One station's rate_exceeded record for one interval, rewritten as its count grows."""

    time_ns: int
    until_s: float
    first: Delivery
    count: int = 0


def _lines_of(delivery: Delivery) -> int:
    """Return the lines a delivery will produce (batches are budgeted by lines, issue 8)."""
    verdict = delivery.verdict
    if verdict is None:
        return 1
    lines = len(verdict.refusals) + (1 if verdict.refusals_over_cap else 0) + 1
    for reading in verdict.readings:
        lines += 2 if reading.diag else 1
    return lines


class Writer(threading.Thread):
    """Takes Deliveries from a queue, stores them durably, then acknowledges them in order."""

    def __init__(
        self,
        *,
        deliveries: queue.Queue[Delivery],
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
        self.histories = StationHistories(influx, registry, self._lost_influx)
        self.rate_limiter = rate_limiter
        self.rate_record_interval_s = rate_record_interval_s
        self._rate_windows: dict[str, _RateWindow] = {}
        self.quarantine_count_interval_s = quarantine_count_interval_s
        # Called when InfluxDB answers again, before anything is written (storage set-up
        # that could not run at start, e.g. the quarantine retention policy).
        self.on_reachable = on_reachable
        self._next_quarantine_count = time.monotonic()
        # Cleared while InfluxDB is away; the prober thread sets it when /ping answers again.
        self._reachable = threading.Event()
        self._reachable.set()
        self._prober: threading.Thread | None = None
        self._next_stats = time.monotonic() + STATS_INTERVAL_S
        self.stats.spool_depth = spool.depth_lines
        self.stats.spool_torn_records = spool.torn_records

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
            self._drain_some()
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
        try:
            # While a spool is draining, do not idle between turns.
            draining = bool(self.spool) and self._reachable.is_set()
            first = self.deliveries.get(timeout=0.0 if draining else 0.1)

        except queue.Empty:
            return batch
        batch.deliveries.append(first)
        deadline = time.monotonic() + self.linger_s
        size = _lines_of(first)
        while size < self.batch_max:
            try:
                remaining = deadline - time.monotonic()
                item = (
                    self.deliveries.get(timeout=remaining)
                    if remaining > 0
                    else self.deliveries.get_nowait()
                )
            except queue.Empty:
                break
            batch.deliveries.append(item)
            size += _lines_of(item)
        return batch

    def _handle(self, batch: _Batch) -> None:
        admitted = [self._admit(delivery, batch) for delivery in batch.deliveries]
        self._find_quarantined_before(batch)
        if self.qc_enabled:
            self._load_backdated(batch, admitted)
        for delivery, admit in zip(batch.deliveries, admitted, strict=True):
            if admit:
                self._prepare(delivery, batch)
        self._rate_records(batch)
        if batch.lines:
            self._store(batch.lines)
        for delivery in batch.deliveries:
            self.ack(delivery.mid, delivery.qos)
        self.stats.acked += len(batch.deliveries)
        self.stats.readings_stored += batch.readings
        self.stats.values_stored += batch.values
        if self.publish is not None:  # one message per station per batch, not per reading
            for station_id, entries in batch.entries.items():
                for start in range(0, len(entries), ENTRIES_PER_MESSAGE):
                    chunk = entries[start : start + ENTRIES_PER_MESSAGE]
                    self.publish(station_id, encode_entries(chunk))

    # -- judging -------------------------------------------------------------------------------
    def _prepare(self, delivery: Delivery, batch: _Batch) -> None:
        if delivery.status is not None and delivery.station_id is not None:
            batch.lines.append(
                status_line(
                    delivery.station_id,
                    delivery.status.state,
                    delivery.status.firmware,
                    delivery.received_ns,
                )
            )
            return
        verdict = delivery.verdict
        if verdict is None:
            return
        conflicts: list[Refusal] = []
        for accepted in verdict.readings:
            history = self._history_of(accepted, batch) if self.qc_enabled else None
            reading = accepted if history is None else write_once(accepted, history, conflicts)
            if reading is None:
                continue
            qc = self._judge_qc(reading, history)
            batch.lines.append(reading_line(reading, qc))
            diag = diagnostics_line(reading)
            if diag is not None:
                batch.lines.append(diag)
            batch.readings += 1
            batch.values += len(reading.values)
            if reading.seq is not None:
                self.seq.observe(reading.station_id, reading.seq)
            if self.publish is not None:
                entry: LatestEntryData = {
                    "station": reading.station_id,
                    "ts": format_ts(reading.ts_ns),
                    "values": reading.values,
                    "qc": {p: r.flag.value for p, r in qc.items()},
                    "seq": reading.seq,
                }
                checks = {p: r.check for p, r in qc.items() if r.flag is QcFlag.SUSPECT}
                if checks:
                    entry["checks"] = checks
                batch.entries.setdefault(reading.station_id, []).append(entry)

        self.stats.seq_gaps = self.seq.gaps_total
        self.stats.seq_missing = self.seq.missing
        self.stats.duplicates_seen = self.seq.duplicates
        self._quarantine(delivery, verdict.refusals + conflicts, verdict.refusals_over_cap, batch)

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
                quarantine_line(
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
                quarantine_line(
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

    # -- the per-station rate limit ------------------------------------------------------------
    def _admit(self, delivery: Delivery, batch: _Batch) -> bool:
        """Return whether the delivery's station is within its rate; count it otherwise."""
        if self.rate_limiter is None:
            return True
        station = delivery.station_id
        key = station if station is not None and station in self.registry else "_unknown"
        verdict = delivery.verdict
        cost = max(1, verdict.readings_received) if verdict is not None else 1
        now_s = time.monotonic()
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
                quarantine_line(
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
        if not keys or self.spool or not self._reachable.is_set():
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
    def _history_of(self, reading: AcceptedReading, batch: _Batch) -> StationHistory:
        """Return the history a reading is judged against: memory, or its stored neighbours."""
        if (reading.station_id, reading.ts_ns) in batch.backdated:
            return batch.stored[reading.station_id]
        return self._history(reading.station_id, reading.ts_ns)

    def _history(self, station_id: str, ts_ns: int) -> StationHistory:
        can_query = not self.spool and self._reachable.is_set()
        return self.histories.get(station_id, ts_ns, can_query)

    def _load_backdated(self, batch: _Batch, admitted: list[bool]) -> None:
        """Load, with one query per station, the stored neighbours of readings older than what
        memory holds (a back-dated reading is QC-checked against them, not passed as good)."""
        spans: dict[str, tuple[int, int]] = {}
        for delivery, admit in zip(batch.deliveries, admitted, strict=True):
            if not admit or delivery.verdict is None:
                continue
            for reading in delivery.verdict.readings:
                station, ts_ns = reading.station_id, reading.ts_ns
                # Recovers the station's history on first sight (and past its recovered window).
                history = self._history(station, ts_ns)
                if not self.histories.is_backdated(station, ts_ns, history):
                    continue
                batch.backdated.add((station, ts_ns))
                low, high = spans.get(station, (ts_ns, ts_ns))
                spans[station] = (min(low, ts_ns), max(high, ts_ns))
        for station_id, (low, high) in spans.items():
            batch.stored[station_id] = self.histories.stored(station_id, low - HISTORY_NS, high + 1)

    def _judge_qc(
        self, reading: AcceptedReading, history: StationHistory | None
    ) -> dict[str, QcResult]:
        station_id, ts_ns, values = reading.station_id, reading.ts_ns, reading.values
        if history is None:
            return dict.fromkeys(values, GOOD)
        clear_sky_max = None
        station = self.registry.get(station_id)
        if self.clear_sky is not None and station is not None and "solar_radiation" in values:
            clear_sky_max = self.clear_sky(station.lat, station.lon, station.elevation_m, ts_ns)
        results = judge_values(ts_ns, values, history, clear_sky_max)
        history.add(ts_ns, values)
        return results

    def _count_quarantine(self) -> None:
        """Refresh the quarantine's size figure (one count query, every few tens of seconds)."""
        self._next_quarantine_count = time.monotonic() + self.quarantine_count_interval_s
        if self.spool or not self._reachable.is_set():
            return
        try:
            self.stats.quarantine_records = self.influx.count_quarantine()
        except StorageUnavailable as exc:
            logger.info("quarantine not counted (%s)", exc)

    # -- storing -------------------------------------------------------------------------------
    def _store(self, lines: list[str]) -> None:
        if self.spool or not self._reachable.is_set():
            self._spool(lines)
            return
        try:
            self._write_isolating(lines)
        except StorageUnavailable as exc:
            self._spool(lines)
            self._lost_influx(str(exc))

    def _spool(self, lines: list[str]) -> None:
        self.spool.append(lines)
        self.stats.spooled_lines += len(lines)
        self.stats.spool_depth = self.spool.depth_lines

    def _drain_some(self) -> None:
        if not self.spool or not self._reachable.is_set():
            return  # never wait on a hung InfluxDB here: the prober thread tells us
        for _ in range(DRAIN_RECORDS_PER_TURN):
            if not self.spool:
                break
            # Coalesce small records (spooled during the outage) into full-size writes.
            lines, records = self.spool.peek_many(self.batch_max)
            try:
                self._write_isolating(lines)
            except StorageUnavailable as exc:
                self._lost_influx(str(exc))
                return
            for _ in range(records):
                self.spool.pop()
            self.stats.spool_depth = self.spool.depth_lines
        if not self.spool:
            logger.info("spool drained")

    def _lost_influx(self, why: str) -> None:
        """Stop writing to InfluxDB until the prober thread sees it answer again."""
        self._reachable.clear()
        if self._prober is None or not self._prober.is_alive():
            logger.warning("InfluxDB unavailable (%s): spooling until /ping answers", why)
            self._prober = threading.Thread(
                target=self._probe, name="meltemi-influx-probe", daemon=True
            )
            self._prober.start()

    def _probe(self) -> None:
        """Ping InfluxDB with back-off (on its own connection) until it answers."""
        delay = RETRY_MIN_S
        while not self.stop_event.is_set():
            if self.influx.probe() and self._prepared_on_reachable():
                logger.info(
                    "InfluxDB answers again: draining %d spooled lines", self.spool.depth_lines
                )
                self._reachable.set()
                return
            self.stop_event.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _prepared_on_reachable(self) -> bool:
        """Run the on_reachable set-up; return False (probe again later) when it failed."""
        if self.on_reachable is None:
            return True
        try:
            self.on_reachable()
        except StorageUnavailable as exc:
            logger.warning("InfluxDB answers /ping but its set-up failed (%s); retrying", exc)
            return False
        return True

    def _write(self, lines: list[str]) -> None:
        self.stats.write_attempts += 1
        started = time.perf_counter()
        self.influx.write(lines)
        self.stats.write_latency_sum_s += time.perf_counter() - started
        self.stats.write_latency_count += 1
        self.stats.write_batches += 1

    def _write_isolating(self, lines: list[str]) -> None:
        """Write lines; quarantine exactly the lines InfluxDB refuses (raise StorageUnavailable)."""
        attempts_before = self.stats.write_attempts
        try:
            self._write(lines)
        except StorageRejected as exc:
            refused = self._isolate(lines, exc)
            logger.error(
                "InfluxDB refused %d of %d lines (%d write attempts): %s",
                len(refused),
                len(lines),
                self.stats.write_attempts - attempts_before,
                exc.message,
            )
            self._quarantine_refused(refused)

    def _isolate(self, lines: list[str], exc: StorageRejected) -> list[tuple[str, str]]:
        """Bisect a rejected write down to the refused lines; return (line, server message).

        After a 1.x ``partial write … dropped=N`` the other lines are already stored, and the
        count tells which half holds the refused ones: only left halves are written again, so
        one bad line in n costs 1 + ⌈log2 n⌉ writes in all (RELIABILITY R8). Without a count
        (2.x 400/422, 413) both halves are written. Every rewrite is idempotent.
        """
        return self._bisect(lines, exc.dropped, exc.message, exc.too_large)

    def _bisect(
        self, lines: list[str], dropped: int | None, message: str, too_large: bool = False
    ) -> list[tuple[str, str]]:
        if len(lines) == 1:
            return [(lines[0], "line larger than the server accepts" if too_large else message)]
        middle = len(lines) // 2
        left, right = lines[:middle], lines[middle:]
        refused: list[tuple[str, str]] = []
        left_dropped: int | None = 0
        try:
            self._write(left)
        except StorageRejected as left_exc:
            left_dropped = left_exc.dropped
            refused += self._bisect(left, left_exc.dropped, left_exc.message, left_exc.too_large)
        if dropped is not None and left_dropped is not None:
            if dropped - left_dropped > 0:  # known to hold the rest; its good lines are stored
                refused += self._bisect(right, dropped - left_dropped, message)
            return refused
        try:
            self._write(right)
        except StorageRejected as right_exc:
            refused += self._bisect(
                right, right_exc.dropped, right_exc.message, right_exc.too_large
            )
        return refused

    def _quarantine_refused(self, refused: list[tuple[str, str]]) -> None:
        records = []
        for line, message in refused:
            station = _station_of(line)
            records.append(
                quarantine_line(
                    reason=QuarantineReason.WRITE_REJECTED,
                    detail=message,
                    station_id=station,
                    topic="",
                    payload=line.encode("utf-8"),
                    received_ns=time.time_ns(),
                    time_ns=self._clock.now_ns(),
                    slot="r",
                )
            )
            self.stats.quarantined[QuarantineReason.WRITE_REJECTED.value] += 1
            if line.startswith(schema.READINGS + ","):
                self.stats.readings_stored -= 1
                self.stats.values_stored -= line.count(schema.QC_SUFFIX + '="')
        try:
            self._write(records)
        except StorageRejected as exc:
            logger.error(
                "quarantine records refused too (%s); %d lines lost: %s",
                exc.message,
                len(records),
                records[:3],
            )

    def _write_stats(self) -> None:
        self._next_stats = time.monotonic() + STATS_INTERVAL_S
        line = stats_line(self.ingester_id, self.stats.snapshot(), self._clock.now_ns())
        self._store([line])


def _station_of(line: str) -> str | None:
    """Return the station tag of a line we formatted, when it has one."""
    marker = f",{schema.STATION_TAG}="
    start = line.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = start
    while end < len(line) and line[end] not in ", ":
        end += 2 if line[end] == "\\" else 1
    return line[start:end].replace("\\", "") or None
