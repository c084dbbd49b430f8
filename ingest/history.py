"""What the writer knows of each station's stored values: QC history and write-once checks.

Memory holds, per station, the values QC compares with (sensors.qc.StationHistory), recovered
from InfluxDB on first sight so that a restarted ingester judges as it did before. It also
records which observation times memory holds *completely* (``_Coverage``): a reading inside
that range is checked against memory; an older one (back-dated) against its stored neighbours,
loaded with one query per station per batch (issue 8: back-dated readings used to pass as
``good`` because memory did not reach that far, and could overwrite stored values).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ingest.errors import StorageUnavailable
from ingest.influx import InfluxWriter
from sensors import schema
from sensors.qc import HISTORY_NS, STEP_WINDOW_NS, StationHistory
from sensors.quoting import influxql_identifier, influxql_string
from sensors.registry import StationRegistry
from sensors.schema import QuarantineReason
from sensors.validation import AcceptedReading, Refusal

logger = logging.getLogger(__name__)

RECOVERY_AHEAD_NS: Final = 3600 * 1_000_000_000
END_OF_TIME_NS: Final = 2**63 - 1


@dataclass(slots=True)
class _Coverage:
    """The observation times whose stored values memory holds for a station (after recovery)."""

    from_ns: int
    to_ns: int  # exclusive; END_OF_TIME_NS when nothing is stored past the recovered window


class StationHistories:
    """Per-station QC histories, recovered from InfluxDB, with the range each holds fully."""

    def __init__(
        self,
        influx: InfluxWriter,
        registry: StationRegistry,
        on_unavailable: Callable[[str], None],
    ) -> None:
        self.influx = influx
        self.registry = registry
        self.on_unavailable = on_unavailable  # the writer stops querying until /ping answers
        self._histories: dict[str, StationHistory] = {}
        self._coverage: dict[str, _Coverage] = {}

    def get(self, station_id: str, ts_ns: int, can_query: Callable[[], bool]) -> StationHistory:
        """Return the station's history, recovering it around ``ts_ns`` on first sight (and
        again past its recovered window) when InfluxDB may be queried (``can_query()``, asked
        only then: a failed recovery makes it False for the readings that follow)."""
        history = self._histories.get(station_id)
        if history is None:  # not setdefault: that built a history per reading (issue 9)
            history = self._histories[station_id] = StationHistory()
        coverage = self._coverage.get(station_id)  # set when, and only when, recovered
        if coverage is not None and ts_ns < coverage.to_ns:
            return history  # recovered, and inside the recovered window: the usual case
        if can_query():
            self._recover(station_id, ts_ns, history)
        return history

    def is_backdated(self, station_id: str, ts_ns: int, history: StationHistory) -> bool:
        """Return whether ``ts_ns`` is older than what memory holds completely (with a step
        window of context before it); False when the history was never recovered."""
        coverage = self._coverage.get(station_id)
        if coverage is None:
            return False  # InfluxDB away at recovery: memory is all there is
        # Memory keeps HISTORY_NS before its newest value (StationHistory trims so).
        covered_from = max(coverage.from_ns, history.latest_ns - HISTORY_NS) + STEP_WINDOW_NS
        return ts_ns < covered_from

    def stored(self, station_id: str, low_ns: int, high_ns: int) -> StationHistory:
        """Return the station's stored values in [low_ns, high_ns) (one query), apart from
        memory: back-dated readings are judged against them."""
        history = StationHistory()
        self._load(station_id, low_ns, high_ns, history)
        return history

    def _recover(self, station_id: str, ts_ns: int, history: StationHistory) -> None:
        """Load the station's stored values around ``ts_ns`` so QC sees what it saw before,
        and note which times memory now holds completely (for write-once and back-dating)."""
        low, high = ts_ns - HISTORY_NS, ts_ns + RECOVERY_AHEAD_NS
        if not self._load(station_id, low, high, history):
            return
        try:
            later = self._stored_since(station_id, high)
        except StorageUnavailable as exc:
            logger.warning("QC history of %s not recovered (%s); will retry", station_id, exc)
            self.on_unavailable(str(exc))
            return
        previous = self._coverage.get(station_id)
        from_ns = previous.from_ns if previous is not None and low <= previous.to_ns else low
        self._coverage[station_id] = _Coverage(from_ns, high if later else END_OF_TIME_NS)

    def _load(self, station_id: str, low_ns: int, high_ns: int, history: StationHistory) -> bool:
        """Add the station's stored values in [low_ns, high_ns) to ``history`` (one query)."""
        station = self.registry.get(station_id)
        if station is None:
            return False
        columns = ", ".join(influxql_identifier(p) for p in station.parameters)
        q = (
            f"SELECT {columns} FROM {influxql_identifier(schema.READINGS)} "
            f"WHERE {influxql_identifier(schema.STATION_TAG)} = {influxql_string(station_id)} "
            f"AND time >= {low_ns} AND time < {high_ns}"
        )
        try:
            series = self.influx.query(q)
        except StorageUnavailable as exc:
            logger.warning("stored values of %s not loaded (%s); will retry", station_id, exc)
            self.on_unavailable(str(exc))
            return False
        loaded = 0
        for serie in series:
            names = serie["columns"]
            for row in serie["values"]:
                values = {
                    name: float(v)
                    for name, v in zip(names[1:], row[1:], strict=True)
                    if v is not None
                }
                history.add(int(row[0]), values)
                loaded += 1
        logger.debug("%s: %d stored readings loaded", station_id, loaded)
        return True

    def _stored_since(self, station_id: str, since_ns: int) -> bool:
        """Return whether the station has any stored reading at or after ``since_ns``."""
        q = (
            f"SELECT * FROM {influxql_identifier(schema.READINGS)} "
            f"WHERE {influxql_identifier(schema.STATION_TAG)} = {influxql_string(station_id)} "
            f"AND time >= {since_ns} LIMIT 1"
        )
        return bool(self.influx.query(q))


def write_once(
    reading: AcceptedReading, history: StationHistory, conflicts: list[Refusal]
) -> AcceptedReading | None:
    """Return the reading without the values that differ from stored ones at its ts (each
    becomes a ``conflict`` refusal in ``conflicts``: the stored value is kept, issue 8); None
    when no value is left. An identical value passes (a redelivery stays idempotent).

    ``history`` must hold every stored value of the station at the reading's ts."""
    if reading.ts_ns > history.latest_ns:
        return reading  # live traffic: nothing is held at or after this ts
    kept: dict[str, float] = {}
    for index, (parameter, value) in enumerate(reading.values.items()):
        stored = history.value_at(parameter, reading.ts_ns)
        if stored is None or stored == value:
            kept[parameter] = value
        else:
            conflicts.append(
                Refusal(
                    QuarantineReason.CONFLICT,
                    f"stored {stored!r}, sent {value!r}: the stored value is kept",
                    parameter,
                    reading.ts_ns,
                    reading.seq,
                    f"v{index}",
                )
            )
    if len(kept) == len(reading.values):
        return reading
    if not kept:
        return None
    return AcceptedReading(reading.station_id, reading.ts_ns, reading.seq, kept, reading.diag)
