"""The state machine of one rule at one station: pure, deterministic, persisted as JSON.

Every transition's time comes from the data, never from when the engine happened to run:
- a threshold level fires at the reading that completes ``hold`` of readings at or above it;
- it clears (or steps down) at ``last reading still within hysteresis + quiet``, a deadline
  that the engine reaches either through a later reading or through its timer;
- a silence fires at ``last reading + after`` and ends at the next reading;
- a stuck value fires at the reading that completes ``after`` of identical values and ends at
  the first different one.
So replaying the same readings from a persisted state gives the same transitions at the same
times: a restart neither re-fires nor forgets (the engine's persistence relies on this).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from alerts.rules import Rule


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a machine's level at ``ts`` (level 0 is quiet)."""

    ts: dt.datetime
    before: int
    after: int
    value: float | None
    threshold: float | None


class MachineState(BaseModel):
    """What a machine remembers between readings (and across restarts)."""

    model_config = ConfigDict(extra="forbid")

    level: int = 0
    rise_since: list[dt.datetime | None] = []  # per level: start of the run at or above it
    last_at: list[dt.datetime | None] = []  # per level: last reading within its hysteresis
    last_seen: dt.datetime | None = None  # silent rules
    same_value: float | None = None  # stuck rules
    same_since: dt.datetime | None = None
    # The current episode (for the messages): its onset, messages so far, their identifiers.
    onset: dt.datetime | None = None
    sequence: int = -1
    references: list[str] = []
    sent: list[dt.datetime] = []


def _ensure(rule: Rule, state: MachineState) -> None:
    n = len(rule.levels)
    if len(state.rise_since) != n:
        state.rise_since = [None] * n
    if len(state.last_at) != n:
        state.last_at = [None] * n


def expire(rule: Rule, state: MachineState, limit: dt.datetime, strict: bool) -> list[Transition]:
    """Return the transitions whose deadlines fall before ``limit`` (or at it, unless strict)."""
    _ensure(rule, state)
    out: list[Transition] = []
    if rule.kind == "silent":
        assert rule.after is not None
        if state.level == 0 and state.last_seen is not None:
            deadline = state.last_seen + rule.after
            if deadline < limit or (not strict and deadline == limit):
                state.level = 1
                out.append(Transition(deadline, 0, 1, None, rule.after.total_seconds()))
        return out
    if rule.kind != "threshold":
        return out
    while state.level > 0:
        last = state.last_at[state.level - 1]
        if last is None:
            break
        deadline = last + rule.quiet
        if not (deadline < limit or (not strict and deadline == limit)):
            break
        new = 0
        for k in range(state.level - 1, 0, -1):
            seen = state.last_at[k - 1]
            if seen is not None and seen + rule.quiet > deadline:
                new = k
                break
        threshold = rule.levels[state.level - 1].above - rule.hysteresis
        out.append(Transition(deadline, state.level, new, None, threshold))
        state.level = new
    return out


def feed(rule: Rule, state: MachineState, ts: dt.datetime, value: float | None) -> list[Transition]:
    """Return the transitions caused by a reading at ``ts`` (``value`` None: quantity absent).

    Deadlines before ``ts`` are expired first, so the order of transitions is the order of time.
    """
    out = expire(rule, state, ts, strict=True)
    if rule.kind == "silent":
        if state.level == 1:
            out.append(Transition(ts, 1, 0, None, None))
            state.level = 0
        state.last_seen = ts if state.last_seen is None else max(state.last_seen, ts)
        return out
    if value is None:
        return out
    if rule.kind == "stuck":
        assert rule.after is not None
        if state.same_value == value and state.same_since is not None:
            if state.level == 0 and ts - state.same_since >= rule.after:
                state.level = 1
                out.append(Transition(ts, 0, 1, value, rule.after.total_seconds()))
        else:
            if state.level == 1:
                out.append(Transition(ts, 1, 0, value, None))
                state.level = 0
            state.same_value = value
            state.same_since = ts
        return out
    target = 0
    release = 0
    for level in rule.levels:
        if value >= level.above:
            target = level.index
        if value >= level.above - rule.hysteresis:
            release = level.index
    for level in rule.levels:
        k = level.index
        if k <= target:
            if state.rise_since[k - 1] is None:
                state.rise_since[k - 1] = ts
        else:
            state.rise_since[k - 1] = None
        if k <= release:
            state.last_at[k - 1] = ts
    candidate = 0
    for level in rule.levels:
        since = state.rise_since[level.index - 1]
        if level.index > state.level and since is not None and ts - since >= rule.hold:
            candidate = level.index
    if candidate:
        out.append(Transition(ts, state.level, candidate, value, rule.levels[candidate - 1].above))
        state.level = candidate
    return out
