"""Shared helpers of the alert-engine tests: a rule set, a station and observation series."""

from __future__ import annotations

import datetime as dt

from alerts.engine import AlertEngine, Observation
from alerts.rules import parse_rules
from sensors.registry import Station
from sensors.topics import StationId

T0 = dt.datetime(2026, 7, 20, 6, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)

RULES = """\
[[rule]]
id = "t"
parameter = "air_temperature"
hold = "30m"
quiet = "1h"
hysteresis = 2.0
category = "Met"
event = { el = "Ζέστη", en = "Heat" }
[[rule.level]]
above = 35.0
severity = "Moderate"
name = "hot"
headline = { el = "ζέστη {value}", en = "hot {value} at {area}" }
description = { el = "δ", en = "d" }
[[rule.level]]
above = 40.0
severity = "Severe"
name = "very_hot"
headline = { el = "πολύ", en = "very hot {value}" }
description = { el = "δ", en = "d" }

[[rule]]
id = "silent"
kind = "silent"
after = "30m"
category = "Infra"
event = { el = "σιωπή", en = "silent" }
[[rule.level]]
above = 0.0
severity = "Minor"
name = "silent"
headline = { el = "σ", en = "s" }
description = { el = "σ", en = "s" }

[[rule]]
id = "stuck"
kind = "stuck"
parameter = "relative_humidity"
after = "2h"
category = "Infra"
event = { el = "κολλημένο", en = "stuck" }
[[rule.level]]
above = 0.0
severity = "Minor"
name = "stuck"
headline = { el = "κ", en = "k" }
description = { el = "κ", en = "k" }
"""


def station(station_id: str, municipality: str = "Elefsina") -> Station:
    """Return a test station with temperature and humidity."""
    return Station(
        id=StationId(station_id),
        name=station_id.title(),
        municipality=municipality,
        lat=38.04,
        lon=23.54,
        elevation_m=10.0,
        parameters=("air_temperature", "relative_humidity"),
    )


def make_engine(rules: str = RULES) -> AlertEngine:
    """Return an engine of the rules over one station, st-a."""
    return AlertEngine(parse_rules(rules, "test"), [station("st-a")])


def temps(
    values: list[float], start: dt.datetime = T0, step: dt.timedelta = 10 * MIN
) -> list[Observation]:
    """Return st-a's observations of these temperatures, one per step."""
    return [
        Observation(start + k * step, "st-a", {"air_temperature": v, "relative_humidity": 20.0 + k})
        for k, v in enumerate(values)
    ]
