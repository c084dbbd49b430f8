"""Alert rules: a TOML file of ``[[rule]]`` tables, validated at start with errors naming the line.

A rule watches one quantity at every station it applies to (``kind = "threshold"``), or the
readings themselves (``kind = "silent"``: no reading for ``after``; ``kind = "stuck"``: the same
value for ``after``). A threshold rule has one or more ``[[rule.level]]`` tables, lowest first,
each with ``above`` (the value at or above which the level is met) and a CAP ``severity``:

    [[rule]]
    id = "heat-di"                       # ^[a-z0-9][a-z0-9_-]{0,62}$, unique
    kind = "threshold"
    parameter = "discomfort_index"       # a stored parameter or an index (WATCHABLE)
    hold = "30m"                         # a level is met for this long before it fires
    quiet = "1h"                         # ... and not met for this long before it clears
    hysteresis = 1.0                     # "not met" means below `above - hysteresis`
    area = "station"                     # station | municipality | network
    category = "Health"                  # CAP category
    awareness_type = "5; high-temperature"
    event = { el = "…", en = "Heat stress" }
    [[rule.level]]
    above = 27.0
    severity = "Moderate"                # Minor | Moderate | Severe | Extreme
    name = "most_discomfort"
    headline = { el = "…", en = "…" }
    description = { el = "…", en = "…" }

Durations are ``<n>s``, ``<n>m``, ``<n>h`` or ``<n>d``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sensors.alerting import RULE_ID_RE, AreaKind, Category, Severity, Texts
from sensors.catalog import CATALOG

# Indices the engine computes from the stored parameters (sensors/heat.py, sensors/derived.py).
INDICES: Final[dict[str, tuple[str, ...]]] = {
    "discomfort_index": ("air_temperature", "relative_humidity"),
    "heat_index": ("air_temperature", "relative_humidity"),
    "utci_shade": ("air_temperature", "relative_humidity", "wind_speed"),
    # Daily, at 10:00 UTC (noon standard time): the engine computes it once a day per station.
    "fwi": ("air_temperature", "relative_humidity", "wind_speed", "precipitation"),
}
WATCHABLE: Final = frozenset(CATALOG) | frozenset(INDICES)
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_RULES: Final = "default_rules.toml"


class RulesError(Exception):
    """The rules file cannot be used; the message names the file and line."""


def parse_duration(text: str) -> dt.timedelta:
    """Return ``"30m"`` as a timedelta (units s, m, h, d); ValueError otherwise."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


class LevelIn(BaseModel):
    """A ``[[rule.level]]`` table as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    above: float
    severity: Severity
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    headline: Texts
    description: Texts
    instruction: Texts | None = None


class RuleIn(BaseModel):
    """A ``[[rule]]`` table as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(pattern="^" + RULE_ID_RE.pattern + "$")
    kind: Literal["threshold", "silent", "stuck"] = "threshold"
    parameter: str | None = None
    hold: str = "0s"
    quiet: str = "30m"
    after: str | None = None
    hysteresis: float = Field(0.0, ge=0)
    area: AreaKind = "station"
    stations: list[str] | None = None
    category: Category
    awareness_type: str | None = Field(None, max_length=64)
    event: Texts
    level: list[LevelIn] = []

    @field_validator("hold", "quiet", "after")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("parameter")
    @classmethod
    def _watchable(cls, value: str | None) -> str | None:
        if value is not None and value not in WATCHABLE:
            raise ValueError(f"unknown parameter {value!r}; one of {', '.join(sorted(WATCHABLE))}")
        return value


class RulesFileIn(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: list[RuleIn] = []


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a threshold rule (``index`` 1 is the lowest)."""

    index: int
    above: float
    severity: Severity
    name: str
    headline: Texts
    description: Texts
    instruction: Texts | None


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule."""

    id: str
    kind: Literal["threshold", "silent", "stuck"]
    parameter: str | None
    hold: dt.timedelta
    quiet: dt.timedelta
    after: dt.timedelta | None
    hysteresis: float
    area: AreaKind
    stations: tuple[str, ...] | None
    category: Category
    awareness_type: str | None
    event: Texts
    levels: tuple[Level, ...]

    def inputs(self) -> tuple[str, ...]:
        """Return the stored parameters the rule reads."""
        if self.parameter is None:
            return ()
        return INDICES.get(self.parameter, (self.parameter,))


def _table_lines(lines: Sequence[str], header: str) -> list[int]:
    pattern = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
    return [k for k, line in enumerate(lines) if pattern.match(line)]


def _error_line(text: str, loc: tuple[int | str, ...]) -> int:
    """Return the 1-based line of the value at pydantic location ``loc`` (best effort)."""
    lines = text.splitlines()
    rules = _table_lines(lines, "rule")
    if len(loc) < 2 or loc[0] != "rule" or not isinstance(loc[1], int) or loc[1] >= len(rules):
        return 1
    start = rules[loc[1]]
    end = rules[loc[1] + 1] if loc[1] + 1 < len(rules) else len(lines)
    rest = loc[2:]
    if len(rest) >= 2 and rest[0] == "level" and isinstance(rest[1], int):
        levels = [k for k in _table_lines(lines, "rule.level") if start < k < end]
        if rest[1] < len(levels):
            start = levels[rest[1]]
            following = [k for k in levels if k > start]
            end = following[0] if following else end
        rest = rest[2:]
    if rest and isinstance(rest[0], str):
        key = re.compile(r"^\s*" + re.escape(rest[0]) + r"\s*=")
        for k in range(start, end):
            if key.match(lines[k]):
                return k + 1
    return start + 1


def _check(rule: RuleIn) -> list[tuple[str, str]]:
    """Return (field, message) problems that pydantic's per-field checks cannot see."""
    problems: list[tuple[str, str]] = []
    if rule.kind == "threshold":
        if rule.parameter is None:
            problems.append(("parameter", "a threshold rule needs a parameter"))
        if not rule.level:
            problems.append(("kind", "a threshold rule needs at least one [[rule.level]]"))
        bounds = [level.above for level in rule.level]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            problems.append(("level", "levels must be listed lowest first, `above` increasing"))
    else:
        if rule.after is None:
            problems.append(("kind", f"a {rule.kind} rule needs `after`"))
        if rule.kind == "stuck" and rule.parameter is None:
            problems.append(("kind", "a stuck rule needs a parameter"))
        if rule.kind == "stuck" and rule.parameter in INDICES:
            problems.append(("parameter", "a stuck rule watches a stored parameter"))
        if len(rule.level) != 1:
            problems.append(("kind", f"a {rule.kind} rule has exactly one [[rule.level]]"))
    return problems


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Return the rules of a TOML text; RulesError naming ``source`` and the line otherwise."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: {exc}") from exc  # tomllib names the line and column
    try:
        parsed = RulesFileIn.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(part) for part in loc)
        line = _error_line(text, loc)
        raise RulesError(f"{source}, line {line}: {where}: {first['msg']}") from exc
    rules: list[Rule] = []
    seen: set[str] = set()
    for k, rule in enumerate(parsed.rule):
        if rule.id in seen:
            raise RulesError(
                f"{source}, line {_error_line(text, ('rule', k, 'id'))}: "
                f"rule id {rule.id!r} is repeated"
            )
        seen.add(rule.id)
        for field, message in _check(rule):
            line = _error_line(text, ("rule", k, field))
            raise RulesError(f"{source}, line {line}: rule {rule.id!r}: {message}")
        rules.append(
            Rule(
                id=rule.id,
                kind=rule.kind,
                parameter=rule.parameter,
                hold=parse_duration(rule.hold),
                quiet=parse_duration(rule.quiet),
                after=parse_duration(rule.after) if rule.after is not None else None,
                hysteresis=rule.hysteresis,
                area=rule.area,
                stations=tuple(rule.stations) if rule.stations is not None else None,
                category=rule.category,
                awareness_type=rule.awareness_type,
                event=rule.event,
                levels=tuple(
                    Level(
                        index=j + 1,
                        above=level.above,
                        severity=level.severity,
                        name=level.name,
                        headline=level.headline,
                        description=level.description,
                        instruction=level.instruction,
                    )
                    for j, level in enumerate(rule.level)
                ),
            )
        )
    return rules


def load_rules(path: Path | None) -> list[Rule]:
    """Return the rules of ``path``, or the packaged defaults when ``path`` is None."""
    if path is None:
        text = resources.files("alerts").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return parse_rules(text, f"alerts/{DEFAULT_RULES}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file: {exc.strerror}") from exc
    return parse_rules(text, str(path))
