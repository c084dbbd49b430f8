"""Rollups (sensors.rollups, meltemi.rollup, api.rollups) against a real InfluxDB.

Seeded: three days of 2-minute readings ending at last UTC midnight, with absent values and
~10 % suspect flags. ``meltemi rollup rebuild`` builds the rollups; the API then answers every
aggregated interval from them, and the answers equal the API's raw path and numpy over the
seeded values. ``meltemi rollup run`` then keeps them right under late and replayed readings.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meltemi.services import InfluxDB, ManagedProcess, Mosquitto
from sensors import schema
from sensors.derived import compute_derived
from sensors.models import format_ts
from sensors.settings import Settings
from sensors.topics import accepted_topic
from tests.api_fixtures import (
    FULL,
    NS,
    ApiThread,
    StationData,
    api_settings,
    base_settings,
    generate,
    query_log_count,
    serve,
)
from tests.helpers import mosquitto_pub, settings_env, wait_for, write_lines

PARAMS = ["air_temperature", "relative_humidity", "wind_direction", "pm2_5"]
DAY_S = 86400
END_S = int(time.time()) // DAY_S * DAY_S
START_S = END_S - 3 * DAY_S
START, END = format_ts(START_S * NS), format_ts(END_S * NS)
FLOATS_REL = 1e-12  # a sum of sums differs from one sum only by the order of additions


@pytest.fixture(scope="module")
def data() -> StationData:
    """The seeded readings."""
    return generate(PARAMS, START_S, END_S, 120, seed=31)


@pytest.fixture(scope="module")
def settings_rollups(influx: InfluxDB, broker: Mosquitto, data, tmp_path_factory) -> Settings:
    """Settings over a database holding ``data`` (shared caching off)."""
    tmp = tmp_path_factory.mktemp("rollups")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp, api_cache_ttl_s=0.0)
    write_lines(influx.url, settings.influx_db, data.lines(FULL))
    return settings


@pytest.fixture(scope="module")
def apis(settings_rollups: Settings) -> Iterator[tuple[ApiThread, ApiThread]]:
    """Two APIs: one reading rollups, one never (their state is always stale for it)."""
    raw_only = settings_rollups.model_copy(update={"api_rollup_stale_s": 1e-6})
    # The live feed subscribed before any rollup pass: no arrival it missed can be stale.
    with serve(settings_rollups, wait_feed=True) as rolled, serve(raw_only) as raw:
        yield rolled, raw


def _rollup_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "meltemi.cli", "rollup", *args],
        env=settings_env(settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stderr.decode()


def _close(served: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(served, dict)
            and served.keys() == expected.keys()
            and all(_close(served[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return len(served) == len(expected) and all(
            _close(a, b) for a, b in zip(served, expected, strict=True)
        )
    if isinstance(expected, float) and isinstance(served, float):
        return math.isclose(served, expected, rel_tol=FLOATS_REL, abs_tol=1e-12)
    return served == expected and type(served) is type(expected)


def _numpy_windows(ts: np.ndarray, values: np.ndarray, step_s: int, agg: str) -> dict[str, float]:
    windows = ts // (step_s * NS) * step_s * NS
    keep = np.isfinite(values)
    out = {}
    for window in np.unique(windows[keep]):
        chosen = values[keep & (windows == window)]
        out[format_ts(int(window))] = {
            "mean": float(np.mean(chosen)),
            "min": float(np.min(chosen)),
            "max": float(np.max(chosen)),
            "sum": float(np.sum(chosen)),
            "count": float(len(chosen)),
        }[agg]
    return out


def _served(body: dict[str, Any], parameter: str, agg: str) -> dict[str, float]:
    return {
        p["time"]: p["values"][parameter][agg] for p in body["points"] if parameter in p["values"]
    }


CASES = [
    {"interval": "1h", "agg": "mean,min,max,count"},
    {"interval": "1h", "agg": "sum,count", "parameters": "air_temperature,pm2_5,dew_point"},
    {"interval": "3h", "agg": "mean,min,max,count", "include_suspect": "true"},
    {"interval": "6h"},
    {"interval": "6h", "start": format_ts((START_S + 5400) * NS)},  # first window raw
    {"interval": "1d", "agg": "mean,max,count"},
    {  # local days: from an Athens midnight (UTC+2 in winter)
        "interval": "1d",
        "tz": "Europe/Athens",
        "agg": "mean,min,count",
        "start": format_ts((START_S - 7200) * NS),
        "end": format_ts((END_S - 7200) * NS),
    },
]


def test_rebuild_then_every_interval_from_rollups_equals_raw(apis, settings_rollups, influx, data):
    log = _rollup_cli(settings_rollups, "rebuild", "--days", "5")
    assert "rollups rebuilt: " in log
    rolled, raw = apis
    for case in CASES:
        params = {"parameters": ",".join([*PARAMS, "dew_point"]), "start": START, "end": END}
        params |= case  # a case may name its own parameters
        marker = f"FROM {settings_rollups.influx_db}.autogen.rollup_1"  # the log's spelling
        before = query_log_count(influx, marker)
        fast = rolled.get(f"/v1/stations/{FULL}/series", **params)
        assert fast.status_code == 200, fast.text
        assert query_log_count(influx, marker) == before + 1, case  # one statement
        slow = raw.get(f"/v1/stations/{FULL}/series", **params)
        assert slow.status_code == 200, slow.text
        assert len(fast.json()["points"]) >= 3
        assert _close(fast.json()["points"], slow.json()["points"]), case
    # Independently of the API's raw path: numpy over the seeded values.
    good_t = np.where(data.good["air_temperature"], data.values["air_temperature"], np.nan)
    body = rolled.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature,dew_point",
        start=START,
        end=END,
        interval="6h",
        agg="mean,min,max,sum,count",
    ).json()
    for agg in ("min", "max", "count"):  # exact
        assert _served(body, "air_temperature", agg) == _numpy_windows(
            data.ts_ns, good_t, 6 * 3600, agg
        )
    for agg in ("mean", "sum"):
        expected = _numpy_windows(data.ts_ns, good_t, 6 * 3600, agg)
        served = _served(body, "air_temperature", agg)
        assert served.keys() == expected.keys()
        for label, value in expected.items():
            assert math.isclose(served[label], value, rel_tol=FLOATS_REL), label
    inputs = {
        p: np.where(data.good[p], data.values[p], np.nan)
        for p in ("air_temperature", "relative_humidity")
    }
    dew = compute_derived(inputs)["dew_point"]
    expected_dew = _numpy_windows(data.ts_ns, dew, 6 * 3600, "mean")
    served_dew = _served(body, "dew_point", "mean")
    assert served_dew.keys() == expected_dew.keys()
    for label, value in expected_dew.items():
        assert math.isclose(served_dew[label], value, rel_tol=1e-9), label


def test_vector_mean_of_wind_direction_from_rollups(apis):
    rolled, _ = apis
    body = rolled.get(
        f"/v1/stations/{FULL}/series",
        parameters="wind_direction",
        start=START,
        end=END,
        interval="1d",
    ).json()
    means = [p["values"]["wind_direction"]["mean"] for p in body["points"]]
    assert len(means) == 3
    # Seeded around north (350 and 10 degrees): the vector mean is near 0/360, never ~180.
    assert all(min(m, 360 - m) < 15 for m in means)


def test_an_arrival_no_pass_has_seen_is_read_raw(apis, settings_rollups, influx, broker):
    # No worker runs: the rollups stay as they are. A late reading stored for an old hour and
    # seen on the API's live feed makes that hour (and what follows) raw, so it is served.
    rolled, raw = apis
    _rollup_cli(settings_rollups, "rebuild", "--days", "5")
    hour_s = START_S + 2 * DAY_S + 10 * 3600
    window = {
        "parameters": "air_temperature",
        "start": START,
        "end": END,
        "interval": "3h",
        "agg": "max,count",
    }
    label = format_ts((hour_s - 3600) * NS)  # the 3-hour window holding that hour
    ts = (hour_s + 30) * NS
    write_lines(
        influx.url,
        settings_rollups.influx_db,
        [
            f"{schema.READINGS},{schema.STATION_TAG}={FULL} air_temperature=44.25,"
            f'air_temperature_qc="good",air_temperature_check="" {ts}'
        ],
    )
    stale = _served(
        rolled.get(f"/v1/stations/{FULL}/series", **window).json(), "air_temperature", "max"
    )
    assert stale[label] < 44.25  # stored, but not in the rollups, and the API did not see it
    entry = {
        "station": FULL,
        "ts": format_ts(ts),
        "values": {"air_temperature": 44.25},
        "qc": {"air_temperature": "good"},
    }
    mosquitto_pub(broker.port, accepted_topic(FULL), json.dumps([entry]).encode(), 0)

    def served() -> dict[str, float]:
        body = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
        return _served(body, "air_temperature", "max")

    wait_for(lambda: served().get(label) == 44.25, 20, message="the hour read raw")
    marker = f"FROM {settings_rollups.influx_db}.autogen.rollup_1"
    before = query_log_count(influx, marker)
    fast = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
    assert query_log_count(influx, marker) == before + 1  # the earlier windows: rollups
    slow = raw.get(f"/v1/stations/{FULL}/series", **window).json()
    assert _close(fast["points"], slow["points"])
    # A pass over the whole horizon sees it: rollups again, with the late value in them.
    _rollup_cli(settings_rollups, "rebuild", "--days", "5")
    again = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
    assert _close(again["points"], slow["points"])


def _late_lines(hour_s: int, temperature: float, count: int) -> list[str]:
    lines = []
    for k in range(count):
        ts = (hour_s + 61 + 120 * k) * NS  # between the seeded 2-minute readings
        lines.append(
            f"{schema.READINGS},{schema.STATION_TAG}={FULL} air_temperature={temperature + k},"
            f'air_temperature_qc="good",air_temperature_check="" {ts}'
        )
    return lines


def test_worker_keeps_rollups_right_under_late_and_replayed_data(
    apis, settings_rollups, influx, data, tmp_path: Path
):
    rolled, raw = apis
    _rollup_cli(settings_rollups, "rebuild", "--days", "5")
    worker_settings = settings_rollups.model_copy(
        update={"rollup_interval_s": 0.3, "rollup_deep_interval_s": 0.6}
    )
    worker = ManagedProcess(
        "rollup",
        [sys.executable, "-m", "meltemi.cli", "rollup", "run"],
        tmp_path / "rollup.log",
        env=settings_env(worker_settings),
    )
    worker.start()
    hour_s = START_S + DAY_S + 5 * 3600
    window = {
        "parameters": "air_temperature",
        "start": START,
        "end": END,
        "interval": "1h",
        "agg": "max,count,mean",
    }
    label = format_ts(hour_s * NS)
    try:
        before = _served(
            rolled.get(f"/v1/stations/{FULL}/series", **window).json(), "air_temperature", "count"
        )[label]
        late = _late_lines(hour_s, 39.5, 3)
        write_lines(influx.url, settings_rollups.influx_db, late)

        def caught_up() -> bool:
            body = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
            return _served(body, "air_temperature", "max").get(label) == 41.5

        wait_for(caught_up, 30, message="the late readings reached the rollups")
        fast = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
        assert _served(fast, "air_temperature", "count")[label] == before + 3
        slow = raw.get(f"/v1/stations/{FULL}/series", **window).json()
        assert _close(fast["points"], slow["points"])

        # Replayed: the same readings again change nothing, and nothing is rebuilt.
        passes = worker.log_text().count("rollup pass")
        write_lines(influx.url, settings_rollups.influx_db, late)
        wait_for(
            lambda: worker.log_text().count("rollup pass") >= passes + 3,
            30,
            message="three more passes",
        )
        tail = worker.log_text().splitlines()[-2:]
        assert all("0 station-days rebuilt" in line for line in tail), tail
        again = rolled.get(f"/v1/stations/{FULL}/series", **window).json()
        assert again == fast
    finally:
        assert worker.stop() == 0
