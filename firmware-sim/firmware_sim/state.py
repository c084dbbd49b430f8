"""What the simulator remembers between runs, under ``settings.data_dir / "sim"``.

Per station: the next ``seq`` (reserved ahead while running, so that a crash skips numbers but
never repeats one; exact after a clean stop), the ts of the last reading sampled (a re-run
back-fills only after it), and the readings a clean stop could not deliver (``spool/``),
replayed first on the next run, like firmware keeping its buffer in flash.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_sim.errors import StateError

logger = logging.getLogger(__name__)

SEQ_RESERVE: Final = 10_000  # seq numbers reserved ahead of use: a crash skips at most this many


class StationStateIn(BaseModel):
    """One station's entry in state.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    next_seq: int = Field(0, ge=0)
    last_ts_ns: int | None = None


class StateFileIn(BaseModel):
    """The whole of state.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stations: dict[str, StationStateIn] = {}


@dataclass(frozen=True, slots=True)
class SpooledItem:
    """A reading (or a malformed message) not yet acknowledged by the broker."""

    seq: int
    ts_ns: int
    text: str
    alone: bool = False  # sent as a message of its own, never inside an array


class StateStore:
    """Reads and atomically rewrites ``state.json`` and the per-station spool files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "state.json"
        self.spool_dir = root / "spool"
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{root}: cannot create: {exc.strerror}") from exc

    def load(self) -> dict[str, StationStateIn]:
        """Return the persisted per-station state (empty on a first run)."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            return StateFileIn.model_validate_json(text).stations
        except ValidationError as exc:
            raise StateError(f"{self.path}: invalid: {exc.errors()[0]['msg']}") from exc

    def save(self, stations: dict[str, StationStateIn]) -> None:
        """Write the state atomically (temporary file, fsync, rename)."""
        body = StateFileIn(stations=stations).model_dump_json()
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write: {exc.strerror}") from exc

    def take_spool(self, station_id: str) -> list[SpooledItem]:
        """Return and remove the readings a previous run could not deliver."""
        path = self.spool_dir / f"{station_id}.jsonl"
        if not path.exists():
            return []
        items = []
        for line in path.read_text("utf-8").splitlines():
            raw = json.loads(line)
            items.append(
                SpooledItem(
                    int(raw["seq"]), int(raw["ts_ns"]), str(raw["text"]), bool(raw["alone"])
                )
            )
        path.unlink()
        logger.info(
            "station %s: %d undelivered readings reloaded from the spool", station_id, len(items)
        )
        return items

    def spool(self, station_id: str, items: list[SpooledItem]) -> None:
        """Keep undelivered readings for the next run."""
        if not items:
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{station_id}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for item in items:
                handle.write(
                    json.dumps(
                        {
                            "seq": item.seq,
                            "ts_ns": item.ts_ns,
                            "text": item.text,
                            "alone": item.alone,
                        }
                    )
                    + "\n"
                )
        logger.warning(
            "station %s: %d undelivered readings kept in %s", station_id, len(items), path
        )
