"""Per-station ``seq`` accounting: gaps (readings that never arrived) and duplicates.

A gap that a late reading fills later (an offline buffer replayed) is taken back, so the
``missing`` gauge counts only readings still unaccounted for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MAX_TRACKED_MISSING: Final = 100_000  # per station; beyond it gaps are counted, not remembered


@dataclass(slots=True)
class _StationSeq:
    last: int
    missing: set[int] = field(default_factory=set)


class SeqTracker:
    """Counts seq gaps and duplicates across all stations (in memory, per ingester process)."""

    def __init__(self) -> None:
        self._stations: dict[str, _StationSeq] = {}
        self.gaps_total = 0
        self.duplicates = 0
        self.missing = 0  # seq numbers still missing across all stations (tracked ones)

    def observe(self, station_id: str, seq: int) -> None:
        """Account for one reading's seq."""
        state = self._stations.get(station_id)
        if state is None:
            self._stations[station_id] = _StationSeq(seq)
            return
        if seq > state.last:
            jump = seq - state.last - 1
            if jump:
                self.gaps_total += jump
                if len(state.missing) + jump <= MAX_TRACKED_MISSING:
                    state.missing.update(range(state.last + 1, seq))
                    self.missing += jump
            state.last = seq
        elif seq in state.missing:
            state.missing.discard(seq)
            self.missing -= 1
        else:
            self.duplicates += 1
