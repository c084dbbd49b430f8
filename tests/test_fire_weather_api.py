"""The FWI System through the platform: cffdrs' 48 days published at noon, the table from the API.

A station at 40° N publishes ``data/test_fwi.csv``'s weather (the year moved from 1985 to 2026,
months and days kept: the day-length factors depend on them) at 10:00 UTC through the real
broker and ingester; ``GET /v1/stations/{id}/fire-weather`` must give cffdrs' ``fwi_01`` table
(start-up 85/6/15, latitude-adjusted) to 0.01 on every code of every row, as JSON and as CSV.
A second station misses one day: that day has no codes and the next restarts (``after_gap``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sensors.settings import Settings
from tests.api_fixtures import serve
from tests.conftest import IngesterProcess
from tests.helpers import influx_count, publish_all, wait_for

DATA = Path(__file__).parent / "data"
CODES = ("ffmc", "dmc", "dc", "isi", "bui", "fwi", "dsr")
FULL = "fwi-forty"
GAP = "fwi-gap"
GAP_DAY = dt.date(2026, 5, 1)
REGISTRY = """\
[[station]]
id = "{id}"
name = "FWI test {id}"
municipality = "Test"
lat = 40.0
lon = -100.0
elevation_m = 0
parameters = ["air_temperature", "relative_humidity", "wind_speed", "precipitation"]
"""


def _rows(name: str, delimiter: str = ",") -> list[dict[str, str]]:
    lines = (DATA / name).read_text().splitlines()[1:]  # line 1: the source header
    return list(csv.DictReader(lines, delimiter=delimiter))


def _day(row: dict[str, str], upper: bool = False) -> dt.date:
    y, m, d = ("YR", "MON", "DAY") if upper else ("yr", "mon", "day")
    return dt.date(int(row[y]) + 41, int(row[m]), int(row[d]))  # 1985 -> 2026


def _messages() -> list[tuple[str, bytes]]:
    out = []
    for k, row in enumerate(_rows("cffdrs_test_fwi.csv", ";")):
        day = _day(row)
        ts = int(dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC).timestamp())
        body = json.dumps(
            {
                "ts": ts,
                "seq": k,
                "values": {
                    "air_temperature": float(row["temp"]),
                    "relative_humidity": float(row["rh"]),
                    "wind_speed": float(row["ws"]) / 3.6,  # km/h -> m/s (CONTRACT §4)
                    "precipitation": float(row["prec"]),
                },
            }
        ).encode()
        out.append((f"stations/{FULL}/readings", body))
        if day != GAP_DAY:
            out.append((f"stations/{GAP}/readings", body))
    return out


@pytest.fixture
def fed(
    settings: Settings, tmp_path: Path, ingester_factory: Callable[..., IngesterProcess]
) -> Settings:
    registry = tmp_path / "stations.toml"
    registry.write_text(REGISTRY.format(id=FULL) + "\n" + REGISTRY.format(id=GAP))
    fed = settings.model_copy(update={"stations_file": registry, "backfill_horizon_days": 400.0})
    ingester_factory(fed)
    messages = _messages()
    assert publish_all(fed.mqtt_port, messages) == len(messages) == 95
    wait_for(
        lambda: (
            influx_count(
                fed.influx_url, fed.influx_db, 'SELECT count("air_temperature") FROM readings'
            )
            == 95
        ),
        timeout_s=60,
        message="95 readings stored",
    )
    return fed


def test_cffdrs_table_through_the_platform(fed: Settings) -> None:
    expected = _rows("cffdrs_fwi_01.csv")
    assert len(expected) == 48
    with serve(fed) as api:
        answer = api.get(f"/v1/stations/{FULL}/fire-weather", start="2026-04-13", end="2026-06-01")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        days = body["days"]
        assert [d["day"] for d in days] == [
            (dt.date(2026, 4, 13) + dt.timedelta(days=k)).isoformat() for k in range(49)
        ]
        computed = [d for d in days if d["codes"] is not None]
        assert len(computed) == 48
        assert days[-1]["missing"] == "no reading between 09:30 and 10:30 UTC of " + (
            "air_temperature, relative_humidity, wind_speed"
        )
        for row, day in zip(expected, computed, strict=True):
            assert day["day"] == _day(row, upper=True).isoformat()
            for code in CODES:
                assert abs(day["codes"][code] - float(row[code.upper()])) <= 0.01, (day, code)
            assert day["inputs"]["air_temperature"] == float(row["TEMP"])
            assert abs(day["inputs"]["wind_speed_kmh"] - float(row["WS"])) < 1e-9
            assert day["completeness"] == {"noon_readings": 1, "rain_readings": 1}
        assert computed[0]["start"] == "start_up"
        assert {d["start"] for d in computed[1:]} == {"carried"}
        assert computed[0]["effis_class"] == "low"  # FWI 10.04: EFFIS low is 5.2-11.2
        assert body["official_fire_risk_map"].startswith("https://civilprotection.gov.gr")

        csv_answer = api.get(
            f"/v1/stations/{FULL}/fire-weather", start="2026-04-13", end="2026-05-31", format="csv"
        )
        assert csv_answer.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(csv_answer.text)))
        assert len(table) == 48
        for row, line in zip(expected, table, strict=True):
            for code in CODES:
                assert abs(float(line[code]) - float(row[code.upper()])) <= 0.01

        gap = api.get(f"/v1/stations/{GAP}/fire-weather", start="2026-04-28", end="2026-05-04")
        by_day = {d["day"]: d for d in gap.json()["days"]}
        assert by_day["2026-05-01"]["codes"] is None
        assert by_day["2026-05-01"]["missing"].startswith("no reading between 09:30")
        assert by_day["2026-05-02"]["start"] == "after_gap"
        assert by_day["2026-05-02"]["missing_days"] == 1
        assert by_day["2026-05-02"]["codes"]["dmc"] != by_day["2026-04-30"]["codes"]["dmc"]
        # Before the gap the two stations agree to the last digit (the same chain).
        full = api.get(f"/v1/stations/{FULL}/fire-weather", start="2026-04-28", end="2026-05-01")
        assert [d["codes"] for d in full.json()["days"]] == [
            by_day[d]["codes"] for d in ("2026-04-28", "2026-04-29", "2026-04-30")
        ]

        assert (
            api.get(
                f"/v1/stations/{FULL}/fire-weather", start="2026-05-01", end="2026-04-01"
            ).status_code
            == 400
        )
        assert api.get(f"/v1/stations/{FULL}/fire-weather", start="x").status_code == 400
        assert api.get("/v1/stations/nobody/fire-weather").status_code == 404
