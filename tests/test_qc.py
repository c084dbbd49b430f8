"""QC checks at, just below and just above their thresholds, and replay determinism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.catalog import CATALOG
from sensors.qc import (
    CLEAR_SKY_FACTOR,
    CLEAR_SKY_MARGIN,
    HISTORY_NS,
    NS_PER_MIN,
    RAIN_MIN_RH,
    StationHistory,
    dew_point_c,
    judge_and_record,
    judge_values,
)
from sensors.schema import QcFlag

T0 = 1_795_000_000 * 10**9
EPS = 1e-6


def judge_after(
    previous: list[tuple[int, dict[str, float]]],
    ts: int,
    values: dict[str, float],
    clear_sky: float | None = None,
):
    history = StationHistory()
    for when, old in previous:
        history.add(when, old)
    return judge_values(ts, values, history, clear_sky)


@pytest.mark.parametrize(
    ("delta", "minutes", "flag"),
    [
        pytest.param(3.0, 1, QcFlag.GOOD, id="at-limit-1min"),
        pytest.param(3.0 - EPS, 1, QcFlag.GOOD, id="below-limit"),
        pytest.param(3.0 + 1e-3, 1, QcFlag.SUSPECT, id="above-limit"),
        pytest.param(3.0 + 1e-3, 1 / 6, QcFlag.SUSPECT, id="10s-interval-uses-one-minute"),
        pytest.param(6.0, 2, QcFlag.GOOD, id="scaled-by-elapsed-minutes"),
        pytest.param(6.0 + 1e-3, 2, QcFlag.SUSPECT, id="scaled-above"),
        pytest.param(25.0, 11, QcFlag.GOOD, id="after-a-gap-no-step-test"),
    ],
)
def test_step_air_temperature(delta, minutes, flag):
    assert CATALOG["air_temperature"].max_step_per_min == 3.0
    ts = T0 + int(minutes * NS_PER_MIN)
    result = judge_after([(T0, {"air_temperature": 10.0})], ts, {"air_temperature": 10.0 + delta})
    assert result["air_temperature"].flag is flag
    assert result["air_temperature"].check == ("step" if flag is QcFlag.SUSPECT else "")


def test_step_compares_with_the_nearest_earlier_value_not_the_latest_arrival():
    history = [(T0, {"air_temperature": 10.0}), (T0 + 2 * NS_PER_MIN, {"air_temperature": 30.0})]
    result = judge_after(history, T0 + NS_PER_MIN, {"air_temperature": 12.0})
    assert result["air_temperature"].flag is QcFlag.GOOD


def flat_history(parameter: str, value: float, minutes: int, step_s: int = 60):
    return [(T0 + k * step_s * 10**9, {parameter: value}) for k in range(minutes * 60 // step_s)]


@pytest.mark.parametrize(
    ("run_minutes", "flag"),
    [
        pytest.param(59, QcFlag.GOOD, id="below-limit"),
        pytest.param(60, QcFlag.GOOD, id="at-limit"),
        pytest.param(61, QcFlag.SUSPECT, id="above-limit"),
    ],
)
def test_persistence_air_temperature(run_minutes, flag):
    assert CATALOG["air_temperature"].persistence_min == 60
    history = flat_history("air_temperature", 21.5, run_minutes)
    result = judge_after(history, T0 + run_minutes * NS_PER_MIN, {"air_temperature": 21.5})
    assert result["air_temperature"].flag is flag


def test_persistence_broken_by_a_change():
    history = flat_history("air_temperature", 21.5, 90)
    history[45] = (history[45][0], {"air_temperature": 21.6})
    result = judge_after(history, T0 + 90 * NS_PER_MIN, {"air_temperature": 21.5})
    assert result["air_temperature"].flag is QcFlag.GOOD


def test_persistence_run_spans_a_gap_longer_than_the_step_window():
    """Issue 9: a gap used to break the run; the limit is in minutes of unchanged value."""
    gap = [(T0, {"air_temperature": 21.5}), (T0 + 61 * NS_PER_MIN, {"air_temperature": 21.5})]
    result = judge_after(gap, T0 + 62 * NS_PER_MIN, {"air_temperature": 21.5})
    assert result["air_temperature"].check == "persistence"


def test_persistence_looks_back_no_further_than_a_restart_recovers():
    old = [(T0, {"air_temperature": 21.5})]
    result = judge_after(old, T0 + HISTORY_NS + 1, {"air_temperature": 21.5})
    assert result["air_temperature"].flag is QcFlag.GOOD


def stream_flags(parameter: str, value: float, cadence_min: int, count: int) -> list[str]:
    """Judge ``count`` identical values ``cadence_min`` apart, as the writer does; return the
    failed check of each ('' when good)."""
    history = StationHistory()
    checks = []
    for k in range(count):
        ts = T0 + k * cadence_min * NS_PER_MIN
        checks.append(judge_values(ts, {parameter: value}, history)[parameter].check)
        history.add(ts, {parameter: value})
    return checks


@pytest.mark.parametrize(
    ("cadence_min", "count", "suspect"),
    [
        # 60-min limit: good up to 60 min of unchanged value (k = 0..60), suspect after.
        pytest.param(1, 100, 39, id="1-min-cadence"),
        # 10 values 10 min apart span 90 min: readings at 70, 80, 90 min are suspect.
        pytest.param(10, 10, 3, id="10-min-cadence"),
        # issue 9: at 11 min nothing was flagged; 66 min is past the limit at k = 6..9.
        pytest.param(11, 10, 4, id="11-min-cadence"),
        # hourly: the reading 120 min after the first is the first past the limit.
        pytest.param(60, 6, 4, id="hourly-cadence"),
    ],
)
def test_persistence_at_every_reporting_cadence(cadence_min, count, suspect):
    checks = stream_flags("air_temperature", 21.5, cadence_min, count)
    assert checks.count("persistence") == suspect
    assert checks.count("") == count - suspect
    first = checks.index("persistence")
    assert (first - 1) * cadence_min <= 60 < first * cadence_min


def test_persistence_hourly_wind_speed_six_hours():
    """The longest limit (6 h) at an hourly cadence: the 8th identical value (7 h) is suspect."""
    checks = stream_flags("wind_speed", 3.2, 60, 8)
    assert checks == [""] * 7 + ["persistence"]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        pytest.param("wind_speed", 0.0, id="calm-wind"),
        pytest.param("relative_humidity", 100.0, id="saturated-fog"),
    ],
)
def test_persistence_exempt_values(parameter, value):
    history = flat_history(parameter, value, 8 * 60)
    result = judge_after(history, T0 + 8 * 60 * NS_PER_MIN, {parameter: value})
    assert result[parameter].flag is QcFlag.GOOD


def test_persistence_wind_speed_nonzero_six_hours():
    history = flat_history("wind_speed", 3.2, 361)
    result = judge_after(history, T0 + 361 * NS_PER_MIN, {"wind_speed": 3.2})
    assert result["wind_speed"].check == "persistence"


@pytest.mark.parametrize(
    ("speed", "gust", "flag"),
    [
        pytest.param(5.0, 5.0, QcFlag.GOOD, id="gust-equal-speed"),
        pytest.param(5.0, 5.0 - EPS, QcFlag.SUSPECT, id="gust-just-below-speed"),
        pytest.param(5.0, 9.0, QcFlag.GOOD, id="gust-above-speed"),
    ],
)
def test_gust_below_speed(speed, gust, flag):
    result = judge_after([], T0, {"wind_speed": speed, "wind_gust": gust})
    assert result["wind_gust"].flag is flag
    assert result["wind_speed"].flag is QcFlag.GOOD


@pytest.mark.parametrize(
    ("rh", "flag"),
    [
        pytest.param(RAIN_MIN_RH, QcFlag.GOOD, id="at-40"),
        pytest.param(RAIN_MIN_RH - EPS, QcFlag.SUSPECT, id="just-below-40"),
        pytest.param(85.0, QcFlag.GOOD, id="humid"),
    ],
)
def test_rain_with_dry_air(rh, flag):
    result = judge_after([], T0, {"precipitation": 0.4, "relative_humidity": rh})
    assert result["precipitation"].flag is flag


def test_no_rain_with_dry_air_is_good():
    result = judge_after([], T0, {"precipitation": 0.0, "relative_humidity": 10.0})
    assert result["precipitation"].flag is QcFlag.GOOD


@pytest.mark.parametrize(
    ("radiation", "flag"),
    [
        pytest.param(800 * CLEAR_SKY_FACTOR + CLEAR_SKY_MARGIN, QcFlag.GOOD, id="at-limit"),
        pytest.param(800 * CLEAR_SKY_FACTOR + CLEAR_SKY_MARGIN + 0.1, QcFlag.SUSPECT, id="above"),
        pytest.param(0.0, QcFlag.GOOD, id="night-zero"),
    ],
)
def test_radiation_above_clear_sky(radiation, flag):
    result = judge_after([], T0, {"solar_radiation": radiation}, clear_sky=800.0)
    assert result["solar_radiation"].flag is flag


def test_dew_point_equals_temperature_at_saturation_and_is_lower_below():
    assert dew_point_c(25.0, 100.0) == pytest.approx(25.0, abs=1e-9)
    assert dew_point_c(25.0, 50.0) == pytest.approx(13.86, abs=0.05)  # Magnus, Alduchov 1996
    result = judge_after([], T0, {"air_temperature": 25.0, "relative_humidity": 100.0})
    assert result["relative_humidity"].flag is QcFlag.GOOD


def test_replay_with_recovered_history_gives_identical_flags():
    """Judging a stream, then judging it again from a history that already holds all of it
    (what a restart recovers from the database), gives the same flag for every value."""
    stream = []
    temperature = 15.0
    for k in range(300):
        temperature += 0.05 if k % 50 else 4.0  # a spike every 50 readings
        value = 21.0 if 100 <= k < 180 else temperature  # an 80-minute flat line
        stream.append((T0 + k * NS_PER_MIN, {"air_temperature": value, "wind_speed": 2.0}))
    first_pass = StationHistory()
    first = []
    for ts, values in stream:
        first.append(judge_values(ts, values, first_pass))
        first_pass.add(ts, values)
    recovered = StationHistory()
    for ts, values in stream:
        recovered.add(ts, values)
    replay = [judge_values(ts, values, recovered) for ts, values in stream]
    assert replay == first
    flags = [r["air_temperature"].check for r in first]
    assert flags.count("step") >= 5
    # flat from k=100: reading k has run k-100 minutes, suspect when > 60, i.e. k = 161 … 179
    assert flags.count("persistence") == 19


def test_radiation_check_uses_the_clear_sky_value_of_the_place_and_time():
    """Wired as the ingester does it: 900 W/m² at Elefsina is good at a June noon, suspect at
    night (clear sky 0: the limit is the 50 W/m² margin)."""
    from ingest.service import _clear_sky

    clear_sky = _clear_sky()
    june_noon = 1_781_863_200 * 10**9  # 2026-06-19T10:00:00Z, 13:00 local
    night = june_noon + 12 * 3600 * 10**9
    lat, lon = 38.0413, 23.5426
    assert clear_sky(lat, lon, 12, june_noon) > 850
    assert clear_sky(lat, lon, 12, night) == 0
    for ts, flag in ((june_noon, QcFlag.GOOD), (night, QcFlag.SUSPECT)):
        result = judge_values(
            ts, {"solar_radiation": 900.0}, StationHistory(), clear_sky(lat, lon, 12, ts)
        )
        assert result["solar_radiation"].flag is flag


# A stream of readings: time steps from a second to eight hours, some backwards or repeated (a
# back-fill, a redelivery), values from a small set so that runs of equal values form, on a
# parameter with a step and a persistence limit, one exempt at 100 % and one exempt at 0.
_STEPS = st.sampled_from([0, 1, 10, 60, 61, 300, 600, 601, 3600, 7200, 30_000, -1, -60, -3600])
_READING = st.tuples(
    _STEPS,
    st.sampled_from([10.0, 10.5, 12.0, 20.0]),
    st.sampled_from([55.0, 100.0]),
    st.sampled_from([0.0, 0.2]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_READING, min_size=1, max_size=400))
def test_judge_and_record_gives_what_judge_values_then_add_gives(stream):
    """Issue 9: the ingester's one-pass path (O(1) per in-order value) and the general path
    agree on every flag and leave the same history, in order or not."""
    general, fast = StationHistory(), StationHistory()
    ts = T0
    for step_s, temperature, humidity, rain in stream:
        ts += step_s * 10**9
        values = {
            "air_temperature": temperature,
            "relative_humidity": humidity,
            "precipitation": rain,
        }
        expected = judge_values(ts, values, general)
        general.add(ts, values)
        assert judge_and_record(ts, values, fast) == expected
    assert general.latest_ns == fast.latest_ns
    for parameter, serie in general.series.items():
        assert list(fast.series[parameter].ts) == list(serie.ts)
        assert list(fast.series[parameter].values) == list(serie.values)
