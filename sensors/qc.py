"""Quality control of accepted values: each is flagged ``good`` or ``suspect`` (CONTRACT §4).

Checks, per parameter, with the limits and sources in sensors.catalog:
- ``step``: the change since the station's previous value (the nearest earlier observation, at
  most STEP_WINDOW_NS before) exceeds ``max_step_per_min`` per elapsed minute (at least one
  minute is allowed for); a change exactly at the limit is good.
- ``persistence``: the value has not changed for longer than ``persistence_min`` minutes (a run
  exactly as long as the limit is good); values in ``persistence_exempt`` (calm, saturation)
  never fail. A run spans any reporting interval (issue 9: a gap longer than the step window
  used to break it, so a stuck sensor on a 10-min or hourly station was never flagged); it
  looks back at most HISTORY_NS, what a restart recovers.
- consistency: ``dew_point_above_temperature`` (relative humidity giving a dew point above the
  air temperature), ``gust_below_speed``, ``rain_with_dry_air`` (precipitation with relative
  humidity below 40 %), ``above_clear_sky`` (radiation above the clear-sky maximum for the place
  and time, plus a margin for cloud-edge enhancement).

Determinism: every check compares only with observations strictly *earlier* than the judged
one, so judging the same reading again after a restart, with the history recovered from the
database, gives the same flag (RELIABILITY §0.2: a replay must rewrite identical points).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sensors.catalog import CATALOG
from sensors.schema import QcFlag

NS_PER_MIN: Final = 60_000_000_000
STEP_WINDOW_NS: Final = 10 * NS_PER_MIN  # after a longer gap a large change is expected
# History kept per parameter, and how far the persistence test looks back: the longest
# persistence limit (6 h) plus one hourly reporting interval (a run of hourly values longer than
# the limit starts before it) plus a margin.
HISTORY_NS: Final = (360 + 60 + 10) * NS_PER_MIN
TRIM_SLACK_NS: Final = 10 * NS_PER_MIN

RAIN_MIN_RH: Final = 40.0  # issue 4: rain reported with RH below 40 % is doubtful
# Cloud-edge enhancement can push global radiation ~30 % above clear sky for minutes
# (Gueymard 2017, "Cloud and albedo enhancement impacts on solar irradiance"), so the margin is
# generous: 1.3 x clear sky + 50 W/m².
CLEAR_SKY_FACTOR: Final = 1.3
CLEAR_SKY_MARGIN: Final = 50.0


@dataclass(frozen=True, slots=True)
class QcResult:
    """The verdict on one value: its flag and, when suspect, the check that failed."""

    flag: QcFlag
    check: str = ""


GOOD: Final = QcResult(QcFlag.GOOD)


def _ts_array() -> array[int]:
    return array("q")


def _values_array() -> array[float]:
    return array("d")


@dataclass(slots=True)
class _Series:
    # Packed arrays, not lists: 16 bytes per value instead of ~70 (a 6-hour history of 100
    # stations at a 10 s cadence is 2.6 M values; issue 9 measured the ingester's RSS).
    ts: array[int] = field(default_factory=_ts_array)
    values: array[float] = field(default_factory=_values_array)
    # The newest entry, and when the run of values equal to it began (the earliest entry held
    # of that run): what a reading newer than everything held is judged against, in O(1).
    last_ts: int = -(2**63)
    last_value: float = math.nan
    run_from_ns: int = -(2**63)

    def add(self, ts_ns: int, value: float) -> None:
        if ts_ns > self.last_ts:  # live traffic: in time order
            self.append(ts_ns, value)
            return
        index = bisect.bisect_left(self.ts, ts_ns)
        if index < len(self.ts) and self.ts[index] == ts_ns:
            self.values[index] = value
        else:
            self.ts.insert(index, ts_ns)
            self.values.insert(index, value)
        self._rescan()

    def append(self, ts_ns: int, value: float) -> None:
        """Add an entry newer than every held one (the caller checked ``ts_ns > last_ts``)."""
        self.ts.append(ts_ns)
        self.values.append(value)
        if value != self.last_value:
            self.run_from_ns = ts_ns
        self.last_ts = ts_ns
        self.last_value = value

    def _rescan(self) -> None:
        """Recompute the newest entry and its run after an insertion in the past (rare)."""
        ts, values = self.ts, self.values
        self.last_ts, self.last_value = ts[-1], values[-1]
        index = len(values) - 1
        while index > 0 and values[index - 1] == self.last_value:
            index -= 1
        self.run_from_ns = ts[index]

    def record(self, ts_ns: int, value: float) -> None:
        """Add an entry (in any order); forget what is older than HISTORY_NS before the newest."""
        self.add(ts_ns, value)
        self.trim(self.last_ts - HISTORY_NS)

    def trim(self, before_ns: int) -> None:
        # Trim in steps of TRIM_SLACK_NS, not on every add: one comparison per reading.
        if not self.ts or self.ts[0] >= before_ns - TRIM_SLACK_NS:
            return
        cut = bisect.bisect_left(self.ts, before_ns)
        del self.ts[:cut]
        del self.values[:cut]
        if self.ts and self.run_from_ns < self.ts[0]:
            self.run_from_ns = self.ts[0]


@dataclass(slots=True)
class StationHistory:
    """Recent values of one station, per parameter, ordered by observation time."""

    series: dict[str, _Series] = field(default_factory=dict)
    # The newest observation time recorded: nothing is held at a later time (a reading newer
    # than this cannot meet a stored value at its own ts, the write-once fast path).
    latest_ns: int = -(2**63)

    def add(self, ts_ns: int, values: Mapping[str, float]) -> None:
        """Record an observation (replacing one at the same time) and forget old ones."""
        if ts_ns > self.latest_ns:
            self.latest_ns = ts_ns
        series = self.series
        for parameter, value in values.items():
            serie = series.get(parameter)
            if serie is None:  # not setdefault: that built a _Series per value (issue 9 profile)
                serie = series[parameter] = _Series()
            serie.record(ts_ns, value)

    def value_at(self, parameter: str, ts_ns: int) -> float | None:
        """Return the value recorded for ``parameter`` at exactly ``ts_ns``, if any."""
        serie = self.series.get(parameter)
        if serie is None:
            return None
        index = bisect.bisect_left(serie.ts, ts_ns)
        if index < len(serie.ts) and serie.ts[index] == ts_ns:
            return serie.values[index]
        return None

    def earlier(self, parameter: str, ts_ns: int) -> tuple[Sequence[int], Sequence[float], int]:
        """Return (times, values, n): the first n entries are strictly earlier than ts_ns."""
        serie = self.series.get(parameter)
        if serie is None:
            return (), (), 0
        return serie.ts, serie.values, bisect.bisect_left(serie.ts, ts_ns)


@dataclass(frozen=True, slots=True)
class _Limits:
    max_step_per_min: float | None
    persistence_ns: float | None
    persistence_exempt: tuple[float, ...]


# The temporal limits of each catalogue parameter, looked up once per value.
_LIMITS: Final = {
    p: _Limits(
        spec.max_step_per_min,
        None if spec.persistence_min is None else spec.persistence_min * NS_PER_MIN,
        spec.persistence_exempt,
    )
    for p, spec in CATALOG.items()
}
_STEP: Final = QcResult(QcFlag.SUSPECT, "step")
_PERSISTENCE: Final = QcResult(QcFlag.SUSPECT, "persistence")


def judge_and_record(
    ts_ns: int,
    values: Mapping[str, float],
    history: StationHistory,
    clear_sky_max: float | None = None,
) -> dict[str, QcResult]:
    """Return ``judge_values(ts_ns, values, history, clear_sky_max)``, then record the reading
    in ``history`` (``history.add``): the ingester's path, one pass per value.

    A value newer than every one held of its parameter (live traffic) is judged in O(1) from
    the newest entry and the start of its run of equal values; an older one takes the general
    path. Both give what judge_values gives (tests/test_qc.py compares them).
    """
    results: dict[str, QcResult] = {}
    series = history.series
    oldest_ns = ts_ns - HISTORY_NS
    trim_below_ns = oldest_ns - TRIM_SLACK_NS
    good, all_limits = GOOD, _LIMITS  # locals: read once per value (issue 9)
    for parameter, value in values.items():
        serie = series.get(parameter)
        if serie is None:
            serie = series[parameter] = _Series()
            serie.append(ts_ns, value)
            results[parameter] = good
            continue
        last_ts = serie.last_ts
        if ts_ns <= last_ts:
            results[parameter] = _judge_temporal(parameter, value, ts_ns, history)
            serie.record(ts_ns, value)
            continue
        result = good
        last_value = serie.last_value
        limits = all_limits[parameter]
        elapsed_ns = ts_ns - last_ts
        max_step = limits.max_step_per_min
        if max_step is not None and elapsed_ns <= STEP_WINDOW_NS:
            minutes = elapsed_ns / NS_PER_MIN if elapsed_ns > NS_PER_MIN else 1.0
            if abs(value - last_value) > max_step * minutes + 1e-9:
                result = _STEP
        if value == last_value:
            if (
                result is good
                and limits.persistence_ns is not None
                and value not in limits.persistence_exempt
            ):
                run_from_ns = serie.run_from_ns
                if run_from_ns < oldest_ns:  # the run began before what a restart recovers
                    run_from_ns = (
                        serie.ts[bisect.bisect_left(serie.ts, oldest_ns)]
                        if last_ts >= oldest_ns
                        else ts_ns  # nothing of the run is recent enough to count
                    )
                if ts_ns - run_from_ns > limits.persistence_ns:
                    result = _PERSISTENCE
        else:
            serie.run_from_ns = ts_ns
        results[parameter] = result
        times = serie.ts  # serie.append, inlined (issue 9: one call per value)
        times.append(ts_ns)
        serie.values.append(value)
        serie.last_ts = ts_ns
        serie.last_value = value
        if times[0] < trim_below_ns:
            serie.trim(oldest_ns)
    if ts_ns > history.latest_ns:
        history.latest_ns = ts_ns
    for parameter, check in _consistency(values, clear_sky_max):
        if results.get(parameter, GOOD).flag is QcFlag.GOOD:
            results[parameter] = QcResult(QcFlag.SUSPECT, check)
    return results


def judge_values(
    ts_ns: int,
    values: Mapping[str, float],
    history: StationHistory,
    clear_sky_max: float | None = None,
) -> dict[str, QcResult]:
    """Return the QC verdict of each value of one reading, against the station's history.

    ``clear_sky_max`` is the clear-sky global radiation (W/m²) for the station and ``ts_ns``,
    when the caller knows it; the radiation check is skipped otherwise.
    """
    results: dict[str, QcResult] = {}
    for parameter, value in values.items():
        results[parameter] = _judge_temporal(parameter, value, ts_ns, history)
    for parameter, check in _consistency(values, clear_sky_max):
        if results.get(parameter, GOOD).flag is QcFlag.GOOD:
            results[parameter] = QcResult(QcFlag.SUSPECT, check)
    return results


def _judge_temporal(parameter: str, value: float, ts_ns: int, history: StationHistory) -> QcResult:
    spec = CATALOG[parameter]
    times, olds, n = history.earlier(parameter, ts_ns)
    if n == 0:
        return GOOD
    if spec.max_step_per_min is not None and ts_ns - times[n - 1] <= STEP_WINDOW_NS:
        minutes = max((ts_ns - times[n - 1]) / NS_PER_MIN, 1.0)
        if abs(value - olds[n - 1]) > spec.max_step_per_min * minutes + 1e-9:
            return QcResult(QcFlag.SUSPECT, "step")
    if spec.persistence_min is not None and value not in spec.persistence_exempt:
        limit_ns = spec.persistence_min * NS_PER_MIN
        oldest_ns = ts_ns - HISTORY_NS  # never further back than a restart recovers
        for index in range(n - 1, -1, -1):
            if olds[index] != value or times[index] < oldest_ns:
                break
            if ts_ns - times[index] > limit_ns:
                return QcResult(QcFlag.SUSPECT, "persistence")
    return GOOD


def dew_point_c(temperature_c: float, relative_humidity: float) -> float:
    """Return the dew point (°C) by the Magnus formula over water (Alduchov & Eskridge 1996)."""
    if relative_humidity <= 0:
        return -math.inf
    gamma = math.log(relative_humidity / 100.0) + 17.625 * temperature_c / (243.04 + temperature_c)
    return 243.04 * gamma / (17.625 - gamma)


def _consistency(
    values: Mapping[str, float], clear_sky_max: float | None
) -> Iterable[tuple[str, str]]:
    temperature = values.get("air_temperature")
    humidity = values.get("relative_humidity")
    if (
        temperature is not None
        and humidity is not None
        and dew_point_c(temperature, humidity) > temperature + 1e-6
    ):
        yield "relative_humidity", "dew_point_above_temperature"
    speed, gust = values.get("wind_speed"), values.get("wind_gust")
    if speed is not None and gust is not None and gust < speed:
        yield "wind_gust", "gust_below_speed"
    rain = values.get("precipitation")
    if rain is not None and rain > 0 and humidity is not None and humidity < RAIN_MIN_RH:
        yield "precipitation", "rain_with_dry_air"
    radiation = values.get("solar_radiation")
    limit = None if clear_sky_max is None else clear_sky_max * CLEAR_SKY_FACTOR + CLEAR_SKY_MARGIN
    if radiation is not None and limit is not None and radiation > limit:
        yield "solar_radiation", "above_clear_sky"
