"""PM bands (sensors.airquality): the EEA 2024 EAQI edges, WHO 2021 guidelines, humidity flag.

The edges are the published ones (EEA European Air Quality Index, 2024 revision; WHO global air
quality guidelines 2021, as REFERENCES.md lists them), typed here from the tables rather than
read from our module, so a changed constant fails. Every band edge is tested on both sides:
the edge itself belongs to the lower band (the top band is "> 140" / "> 270"), the next float
above it to the upper band.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensors.airquality import (
    EAQI_LEVELS,
    PM_HUMIDITY_FLAG_LABELS,
    Pollutant,
    assess_pm,
    daily_mean,
    eaqi_level,
    eaqi_level_indices,
    overall_level,
    pm_humidity_flag,
    pm_humidity_flagged,
    who_2021_daily,
)

# EEA EAQI 2024, hourly means, µg/m³: (edge, level at the edge, level just above it).
PUBLISHED_EDGES: dict[str, tuple[tuple[float, str, str], ...]] = {
    "pm2_5": (
        (5.0, "good", "fair"),
        (15.0, "fair", "moderate"),
        (50.0, "moderate", "poor"),
        (90.0, "poor", "very_poor"),
        (140.0, "very_poor", "extremely_poor"),
    ),
    "pm10": (
        (15.0, "good", "fair"),
        (45.0, "fair", "moderate"),
        (120.0, "moderate", "poor"),
        (195.0, "poor", "very_poor"),
        (270.0, "very_poor", "extremely_poor"),
    ),
}
EDGE_CASES = [
    pytest.param(pollutant, edge, at, above, id=f"{pollutant}-{edge:g}")
    for pollutant, edges in PUBLISHED_EDGES.items()
    for edge, at, above in edges
]


@pytest.mark.parametrize(("pollutant", "edge", "at", "above"), EDGE_CASES)
def test_eaqi_band_edges(pollutant: Pollutant, edge: float, at: str, above: str) -> None:
    assert eaqi_level(pollutant, edge) == at
    assert eaqi_level(pollutant, float(np.nextafter(edge, math.inf))) == above
    assert eaqi_level(pollutant, float(np.nextafter(edge, 0.0))) == at


@pytest.mark.parametrize(("pollutant", "edge", "at", "above"), EDGE_CASES)
def test_eaqi_array_edges_agree(pollutant: Pollutant, edge: float, at: str, above: str) -> None:
    values = np.array([np.nextafter(edge, 0.0), edge, np.nextafter(edge, math.inf)])
    got = [EAQI_LEVELS[i] for i in eaqi_level_indices(pollutant, values)]
    assert got == [at, at, above]


@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
def test_eaqi_ends_of_the_scale(pollutant: Pollutant) -> None:
    assert eaqi_level(pollutant, 0.0) == "good"
    assert eaqi_level(pollutant, 5000.0) == "extremely_poor"
    assert eaqi_level(pollutant, math.nan) is None
    with pytest.raises(ValueError, match="negative"):
        eaqi_level(pollutant, -0.1)
    with pytest.raises(ValueError, match="negative"):
        eaqi_level_indices(pollutant, np.array([1.0, -0.1]))


def test_eaqi_array_matches_scalar_over_a_sweep() -> None:
    values = np.concatenate([np.arange(0.0, 400.0, 0.25), [math.nan]])
    for pollutant in ("pm2_5", "pm10"):
        indices = eaqi_level_indices(pollutant, values)
        assert indices[-1] == -1
        scalar = [eaqi_level(pollutant, float(v)) for v in values[:-1]]
        assert [EAQI_LEVELS[i] for i in indices[:-1]] == scalar


def test_not_the_old_24h_table() -> None:
    """The pre-2024 PM2.5 bands (10/20/25/50/75) would call 8 µg/m³ good and 60 very poor."""
    assert eaqi_level("pm2_5", 8.0) == "fair"  # old table: good
    assert eaqi_level("pm2_5", 60.0) == "poor"  # old table: very poor


def test_overall_level_is_the_worst_pollutant() -> None:
    both = overall_level({"pm2_5": "moderate", "pm10": "poor"})
    assert (both.level, both.worst, both.missing) == ("poor", "pm10", ())
    tie = overall_level({"pm2_5": "fair", "pm10": "fair"})
    assert (tie.level, tie.worst) == ("fair", "pm2_5")
    one = overall_level({"pm2_5": "very_poor", "pm10": None})
    assert (one.level, one.worst, one.missing) == ("very_poor", "pm2_5", ("pm10",))
    none = overall_level({"pm2_5": None, "pm10": None})
    assert (none.level, none.worst, none.missing) == (None, None, ("pm2_5", "pm10"))


@pytest.mark.parametrize(
    ("pollutant", "guideline"),
    [pytest.param("pm2_5", 15.0, id="pm2_5-15"), pytest.param("pm10", 45.0, id="pm10-45")],
)
def test_who_2021_daily_guideline_edges(pollutant: Pollutant, guideline: float) -> None:
    at = who_2021_daily(pollutant, guideline)
    assert at is not None
    assert (at.guideline_ug_m3, at.ratio, at.exceeds) == (guideline, 1.0, False)
    above = who_2021_daily(pollutant, float(np.nextafter(guideline, math.inf)))
    assert above is not None
    assert above.exceeds is True
    double = who_2021_daily(pollutant, 2.0 * guideline)
    assert double is not None
    assert double.ratio == 2.0
    assert who_2021_daily(pollutant, math.nan) is None


def test_daily_mean_needs_18_of_24_hours() -> None:
    hours = np.arange(24, dtype=np.float64)
    assert daily_mean(hours) == pytest.approx(11.5)
    eighteen = hours.copy()
    eighteen[:6] = np.nan
    assert daily_mean(eighteen) == pytest.approx(float(np.mean(hours[6:])))
    seventeen = hours.copy()
    seventeen[:7] = np.nan
    assert math.isnan(daily_mean(seventeen))
    with pytest.raises(ValueError, match="24"):
        daily_mean(hours[:23])


@pytest.mark.parametrize(
    ("rh", "fog", "expected"),
    [
        pytest.param(50.0, False, None, id="dry"),
        pytest.param(70.0, False, None, id="70-not-flagged"),
        pytest.param(float(np.nextafter(70.0, 100.0)), False, "humid", id="above-70"),
        pytest.param(95.0, False, "humid", id="95"),
        pytest.param(40.0, True, "fog", id="fog"),
        pytest.param(99.0, True, "fog", id="fog-and-humid"),
        pytest.param(math.nan, False, "humidity_unknown", id="rh-unknown"),
    ],
)
def test_pm_humidity_flag(rh: float, fog: bool, expected: str | None) -> None:
    flag = pm_humidity_flag(rh, fog)
    assert flag == expected
    if flag is not None:
        assert "not corrected" in PM_HUMIDITY_FLAG_LABELS[flag] or flag == "humidity_unknown"
    assert bool(pm_humidity_flagged(np.array([rh]), np.array([fog]))[0]) is (flag is not None)


def test_assessment_flags_and_never_corrects() -> None:
    humid = assess_pm("pm2_5", 52.0, relative_humidity=92.0)
    assert (humid.hourly_mean_ug_m3, humid.level, humid.humidity_flag) == (52.0, "poor", "humid")
    dry = assess_pm("pm10", 52.0, relative_humidity=40.0)
    assert (dry.hourly_mean_ug_m3, dry.level, dry.humidity_flag) == (52.0, "moderate", None)
    foggy = assess_pm("pm10", math.nan, relative_humidity=99.0, fog=True)
    assert (foggy.level, foggy.humidity_flag) == (None, "fog")
