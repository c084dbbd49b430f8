"""Faults on demand: a plan (TOML ``[[fault]]`` tables or ``--fault`` flags) and its log.

Kinds and what each promises (times are seconds after the simulation start, in simulated time;
a window is [start_s, start_s + duration_s), and a duration of 0 means the first reading at or
after start_s):
- ``spike``: one reading's value of ``parameter`` is offset by ``magnitude``;
- ``stick``: ``parameter`` repeats the value it had at the window's first reading (flat line);
- ``drift``: ``parameter`` drifts by ``magnitude`` units per hour from the window's start;
- ``dropout``: readings are sampled (seq advances) but lost: a seq and ts gap;
- ``out_of_range``: ``parameter`` is its catalogue maximum + ``magnitude``;
- ``non_finite``: ``parameter`` is NaN (sent as the bare token ``NaN``);
- ``malformed_json``: each reading's message is cut in half (invalid JSON), sent on its own;
- ``clock_offset``: ``ts`` is ``magnitude`` hours off (positive: ahead);
- ``silent``: the firmware hangs: no sampling, no MQTT traffic (not even PINGREQ), the socket
  left open, so the broker fires the last will after 1.5 keep-alives; afterwards it reboots.
Every reading a fault touches is logged (JSON line + WARNING) with station, ts, seq and kind.
"""

from __future__ import annotations

import json
import logging
import math
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from firmware_sim.errors import FaultPlanError
from sensors.catalog import CATALOG, PARAMETER_IDS
from sensors.models import format_ts

logger = logging.getLogger(__name__)

FaultKind = Literal[
    "spike",
    "stick",
    "drift",
    "dropout",
    "out_of_range",
    "non_finite",
    "malformed_json",
    "clock_offset",
    "silent",
]
FAULT_KINDS: Final[tuple[str, ...]] = get_args(FaultKind)
VALUE_KINDS: Final = frozenset({"spike", "stick", "drift", "out_of_range", "non_finite"})
DEFAULT_MAGNITUDE: Final[dict[str, float]] = {
    "spike": 15.0,
    "drift": 5.0,
    "out_of_range": 10.0,
    "clock_offset": 3.0,
}


class FaultIn(BaseModel):
    """One ``[[fault]]`` table or ``--fault`` flag as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    station: str = Field(min_length=2, max_length=63)
    kind: FaultKind
    parameter: str | None = None
    start_s: float = Field(0.0, ge=0)
    duration_s: float = Field(0.0, ge=0)
    magnitude: float | None = None


@dataclass(slots=True)
class Fault:
    """A planned fault and its progress (first reading seen, value held for ``stick``)."""

    station: str
    kind: FaultKind
    parameter: str | None
    start_s: float
    duration_s: float
    magnitude: float
    fired: bool = False
    held: float | None = None

    def active(self, elapsed_s: float) -> bool:
        """Return True when a reading sampled ``elapsed_s`` after the start is affected."""
        if elapsed_s < self.start_s:
            return False
        if self.duration_s > 0:
            return elapsed_s < self.start_s + self.duration_s
        return not self.fired


@dataclass(slots=True)
class FaultPlan:
    """All planned faults, by station."""

    faults: list[Fault] = field(default_factory=list)

    def for_station(self, station_id: str) -> list[Fault]:
        """Return the station's faults (empty for a healthy station)."""
        return [fault for fault in self.faults if fault.station == station_id]

    @property
    def stations(self) -> set[str]:
        """Return the ids of every station with a planned fault."""
        return {fault.station for fault in self.faults}


def _build(model: FaultIn, parameters_of: dict[str, tuple[str, ...]], where: str) -> Fault:
    if model.station not in parameters_of:
        raise FaultPlanError(f"{where}: station {model.station!r} is not simulated")
    parameter = model.parameter
    if model.kind in VALUE_KINDS:
        measured = parameters_of[model.station]
        parameter = parameter or measured[0]
        if parameter not in PARAMETER_IDS or parameter not in measured:
            raise FaultPlanError(f"{where}: {model.station} does not measure {parameter!r}")
    magnitude = (
        model.magnitude if model.magnitude is not None else DEFAULT_MAGNITUDE.get(model.kind)
    )
    return Fault(
        model.station,
        model.kind,
        parameter,
        model.start_s,
        model.duration_s,
        0.0 if magnitude is None else magnitude,
    )


def load_plan(
    path: Path | None, flags: Sequence[str], parameters_of: dict[str, tuple[str, ...]]
) -> FaultPlan:
    """Return the plan from a TOML file and ``key=value,...`` flags; raise FaultPlanError."""
    entries: list[tuple[str, object]] = []
    if path is not None:
        try:
            document = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise FaultPlanError(f"{path}: {exc}") from exc
        tables = document.get("fault", [])
        if set(document) - {"fault"} or not isinstance(tables, list):
            raise FaultPlanError(f"{path}: expected only [[fault]] tables")
        entries += [(f"{path}: fault #{k}", table) for k, table in enumerate(tables, start=1)]
    for flag in flags:
        pairs = [item.partition("=") for item in flag.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise FaultPlanError(f"--fault {flag!r}: expected key=value,key=value")
        entries.append((f"--fault {flag!r}", {k.strip(): v.strip() for k, _, v in pairs}))
    plan = FaultPlan()
    for where, raw in entries:
        try:
            model = FaultIn.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in error["loc"]) or "entry"
            raise FaultPlanError(f"{where}: {loc}: {error['msg']}") from exc
        plan.faults.append(_build(model, parameters_of, where))
    return plan


def apply_value_fault(fault: Fault, value: float, elapsed_s: float) -> float:
    """Return the faulty value of ``fault.parameter`` for a reading in the fault's window."""
    if fault.kind == "spike":
        return value + fault.magnitude
    if fault.kind == "stick":
        if fault.held is None:
            fault.held = value
        return fault.held
    if fault.kind == "drift":
        return value + fault.magnitude * (elapsed_s - fault.start_s) / 3600.0
    if fault.kind == "out_of_range":
        assert fault.parameter is not None
        return CATALOG[fault.parameter].max + abs(fault.magnitude)
    if fault.kind == "non_finite":
        return math.nan
    return value


class FaultLog:
    """Appends one JSON line per faulty reading (or silent period) and logs a WARNING."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def record(
        self,
        station_id: str,
        kind: str,
        ts_ns: int,
        seq: int | None,
        parameter: str | None = None,
        detail: str = "",
    ) -> None:
        """Log one injected fault."""
        entry = {
            "logged_at": format_ts(time.time_ns() // 1000 * 1000),
            "station": station_id,
            "kind": kind,
            "ts": format_ts(ts_ns),
            "seq": seq,
            "parameter": parameter,
            "detail": detail,
        }
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        logger.warning(
            "fault injected station=%s kind=%s ts=%s seq=%s parameter=%s %s",
            station_id,
            kind,
            entry["ts"],
            seq,
            parameter,
            detail,
        )

    def close(self) -> None:
        """Close the log file."""
        self._file.close()


def read_fault_log(path: Path) -> list[dict[str, object]]:
    """Return the entries of a fault log (for tests and tools)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
