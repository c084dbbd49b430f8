"""Alert rules: the packaged defaults parse, and every mistake is refused naming its line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from alerts.rules import RulesError, load_rules, parse_duration, parse_rules

GOOD = """\
[[rule]]
id = "heat"
parameter = "discomfort_index"
hold = "30m"
quiet = "1h"
hysteresis = 1.0
category = "Health"
event = { el = "Ζέστη", en = "Heat" }

[[rule.level]]
above = 27.0
severity = "Moderate"
name = "most"
headline = { el = "α", en = "a" }
description = { el = "β", en = "b" }
"""


def test_defaults_parse() -> None:
    rules = load_rules(None)
    assert [r.id for r in rules] == [
        "heat-di",
        "pm2_5-eaqi",
        "pm10-eaqi",
        "fire-fwi",
        "station-silent",
        "stuck-air-temperature",
    ]
    heat = rules[0]
    assert [level.above for level in heat.levels] == [27.0, 29.0, 32.0]
    assert heat.hold == dt.timedelta(minutes=30)
    assert rules[3].levels[0].above == 21.3  # EFFIS "high" lower bound
    assert rules[4].after == dt.timedelta(minutes=30)


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD, encoding="utf-8")
    (rule,) = load_rules(path)
    assert rule.quiet == dt.timedelta(hours=1)
    assert rule.inputs() == ("air_temperature", "relative_humidity")


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        pytest.param('hold = "30m"', 'hold = "30 minutes"', 4, "not a duration", id="duration"),
        pytest.param(
            'parameter = "discomfort_index"',
            'parameter = "dicomfort"',
            3,
            "unknown parameter",
            id="parameter",
        ),
        pytest.param('severity = "Moderate"', 'severity = "Bad"', 12, "severity", id="severity"),
        pytest.param("above = 27.0", 'above = "hot"', 11, "above", id="level-type"),
        pytest.param('quiet = "1h"', 'quiet = "1h"\ncolour = "red"', 6, "colour", id="extra-key"),
        pytest.param('id = "heat"', 'id = "Heat Rule"', 2, "id", id="bad-id"),
        pytest.param("hysteresis = 1.0", "hysteresis = 1.0 x", 6, "line 6", id="toml-syntax"),
    ],
)
def test_errors_name_the_line(old: str, new: str, line: int, words: str) -> None:
    text = GOOD.replace(old, new)
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.toml")
    message = str(info.value)
    assert message.startswith("rules.toml")
    assert f"line {line}" in message
    assert words in message


def test_repeated_id_and_missing_levels() -> None:
    with pytest.raises(RulesError, match=r"line 18: rule id 'heat' is repeated"):
        parse_rules(GOOD + "\n" + GOOD, "r")
    without_levels = GOOD.split("[[rule.level]]")[0]
    with pytest.raises(RulesError, match=r"line 1: .*at least one \[\[rule.level\]\]"):
        parse_rules(without_levels, "r")
    reversed_levels = GOOD + GOOD[GOOD.index("[[rule.level]]") :].replace("27.0", "20.0")
    with pytest.raises(RulesError, match="lowest first"):
        parse_rules(reversed_levels, "r")


def test_durations() -> None:
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("2h") == dt.timedelta(hours=2)
    assert parse_duration("1d") == dt.timedelta(days=1)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2 hours")
