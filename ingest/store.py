"""Storing lines durably: write, bisect a rejection, quarantine refused lines, spool, drain.

A batch of lines goes to InfluxDB; if InfluxDB cannot take it (StorageUnavailable) it is
appended to the fsynced spool, and InfluxDB is left alone until a prober thread sees ``/ping``
answer again (reachability); the spool then drains, oldest first, in full-size writes. A partial
rejection is bisected so that only the refused lines are quarantined and the write attempts stay
logarithmic (RELIABILITY §0.6, R8).

Lines are ``Line`` values: their text and what they stand for (station, readings, values), so a
refused line is quarantined and uncounted without parsing its text back (issue 9). Lines
drained from the spool are text only (the spool keeps line protocol); a refused one is
quarantined under the ``_unknown`` station.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from ingest.errors import StorageRejected, StorageUnavailable
from ingest.influx import InfluxWriter
from ingest.metrics import IngestStats
from ingest.points import Line, UniqueClock, quarantine_line
from ingest.spool import Spool
from sensors.schema import QuarantineReason

logger = logging.getLogger(__name__)

RETRY_MIN_S: Final = 0.5
RETRY_MAX_S: Final = 5.0  # /ping probes are cheap; recover within seconds
DRAIN_RECORDS_PER_TURN: Final = 8


class Store:
    """InfluxDB when it answers, the spool when it does not; refused lines to the quarantine."""

    def __init__(
        self,
        *,
        influx: InfluxWriter,
        spool: Spool,
        stats: IngestStats,
        clock: UniqueClock,
        stop_event: threading.Event,
        batch_max: int,
        on_reachable: Callable[[], None] | None = None,
    ) -> None:
        self.influx = influx
        self.spool = spool
        self.stats = stats
        self.clock = clock
        self.stop_event = stop_event
        self.batch_max = batch_max
        # Called when InfluxDB answers again, before anything is written (storage set-up
        # that could not run at start, e.g. the quarantine retention policy).
        self.on_reachable = on_reachable
        # Cleared while InfluxDB is away; the prober thread sets it when /ping answers again.
        self._reachable = threading.Event()
        self._reachable.set()
        self._prober: threading.Thread | None = None
        self.stats.spool_depth = spool.depth_lines
        self.stats.spool_torn_records = spool.torn_records

    # -- state ---------------------------------------------------------------------------------
    def can_query(self) -> bool:
        """Return whether InfluxDB may be asked now (reachable, and nothing waits in the spool:
        a query would miss what the spool holds)."""
        return not self.spool and self._reachable.is_set()

    def draining(self) -> bool:
        """Return whether the spool holds lines and InfluxDB is reachable to take them."""
        return bool(self.spool) and self._reachable.is_set()

    # -- storing -------------------------------------------------------------------------------
    def store(self, lines: list[Line]) -> None:
        """Store lines durably: in InfluxDB (refused ones quarantined) or in the spool."""
        if self.spool or not self._reachable.is_set():
            self._spool(lines)
            return
        try:
            self._write_isolating(lines)
        except StorageUnavailable as exc:
            self._spool(lines)
            self.lost_influx(str(exc))

    def _spool(self, lines: list[Line]) -> None:
        self.spool.append([line.text for line in lines])
        self.stats.spooled_lines += len(lines)
        self.stats.spool_depth = self.spool.depth_lines

    def drain_some(self) -> None:
        """Write a few spooled batches to InfluxDB, when it answers."""
        if not self.draining():
            return  # never wait on a hung InfluxDB here: the prober thread tells us
        for _ in range(DRAIN_RECORDS_PER_TURN):
            if not self.spool:
                break
            # Coalesce small records (spooled during the outage) into full-size writes.
            texts, records = self.spool.peek_many(self.batch_max)
            try:
                self._write_isolating([Line(text) for text in texts])
            except StorageUnavailable as exc:
                self.lost_influx(str(exc))
                return
            for _ in range(records):
                self.spool.pop()
            self.stats.spool_depth = self.spool.depth_lines
        if not self.spool:
            logger.info("spool drained")

    # -- reachability --------------------------------------------------------------------------
    def lost_influx(self, why: str) -> None:
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

    # -- writing and bisecting -----------------------------------------------------------------
    def _write(self, lines: list[Line]) -> None:
        self.stats.write_attempts += 1
        started = time.perf_counter()
        self.influx.write([line.text for line in lines])
        self.stats.write_latency_sum_s += time.perf_counter() - started
        self.stats.write_latency_count += 1
        self.stats.write_batches += 1

    def _write_isolating(self, lines: list[Line]) -> None:
        """Write lines; quarantine exactly the lines InfluxDB refuses (raise StorageUnavailable)."""
        attempts_before = self.stats.write_attempts
        try:
            self._write(lines)
        except StorageRejected as exc:
            refused = self._bisect(lines, exc.dropped, exc.message, exc.too_large)
            logger.error(
                "InfluxDB refused %d of %d lines (%d write attempts): %s",
                len(refused),
                len(lines),
                self.stats.write_attempts - attempts_before,
                exc.message,
            )
            self._quarantine_refused(refused)

    def _bisect(
        self, lines: list[Line], dropped: int | None, message: str, too_large: bool = False
    ) -> list[tuple[Line, str]]:
        """Bisect a rejected write down to the refused lines; return (line, server message).

        After a 1.x ``partial write … dropped=N`` the other lines are already stored, and the
        count tells which half holds the refused ones: only left halves are written again, so
        one bad line in n costs 1 + ⌈log2 n⌉ writes in all (RELIABILITY R8). Without a count
        (2.x 400/422, 413) both halves are written. Every rewrite is idempotent.
        """
        if len(lines) == 1:
            return [(lines[0], "line larger than the server accepts" if too_large else message)]
        middle = len(lines) // 2
        left, right = lines[:middle], lines[middle:]
        refused: list[tuple[Line, str]] = []
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

    def _quarantine_refused(self, refused: list[tuple[Line, str]]) -> None:
        records = []
        for line, message in refused:
            records.append(
                Line(
                    quarantine_line(
                        reason=QuarantineReason.WRITE_REJECTED,
                        detail=message,
                        station_id=line.station_id,
                        topic="",
                        payload=line.text.encode("utf-8"),
                        received_ns=time.time_ns(),
                        time_ns=self.clock.now_ns(),
                        slot="r",
                    ),
                    line.station_id,
                )
            )
            self.stats.quarantined[QuarantineReason.WRITE_REJECTED.value] += 1
            self.stats.readings_stored -= line.readings
            self.stats.values_stored -= line.values
        try:
            self._write(records)
        except StorageRejected as exc:
            logger.error(
                "quarantine records refused too (%s); %d lines lost: %s",
                exc.message,
                len(records),
                [line.text for line in records[:3]],
            )
