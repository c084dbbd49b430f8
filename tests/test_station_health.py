"""Station health (issue 11, CONTRACT §6) against a real InfluxDB: every figure of
``/v1/stations/{id}/health`` and ``/v1/health/stations`` equals what the test wrote."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.lineproto import format_point
from ingest.points import quarantine_line
from meltemi.services import InfluxDB, Mosquitto
from sensors import schema
from sensors.schema import QuarantineReason
from sensors.settings import Settings
from tests.api_fixtures import NS, ApiThread, base_settings, serve, write_status
from tests.helpers import write_lines

DAY_S = 86_400
TODAY_S = int(time.time()) // DAY_S * DAY_S
D0, D1 = TODAY_S - 2 * DAY_S, TODAY_S - DAY_S
STEP_S = 60
A, B = "hl-a", "hl-b"
PARAMS = ["air_temperature", "relative_humidity", "wind_speed", "wind_gust"]
# Which (slot index, parameter) is suspect, and by which check, per day.
SUSPECT = {
    D0: {**{(k, "air_temperature"): "step" for k in range(10, 17)}}
    | {(k, "air_temperature"): "persistence" for k in range(30, 33)}
    | {(k, "relative_humidity"): "dew_point_above_temperature" for k in (40, 41)},
    D1: {(k, "wind_gust"): "gust_below_speed" for k in range(50, 54)}
    | {(719, "wind_speed"): "persistence"},  # the newest reading: wind speed is stuck
}
D0_DROPPED = {100, 101, 102, 103, 104, 500}  # seq never stored: two gaps, six missing
D1_SLOTS = 720  # D1: only its first 12 hours, seq restarting at slot 360 (one reset)


def _readings() -> list[str]:
    lines = []
    for day, slots in ((D0, 1440), (D1, D1_SLOTS)):
        for k in range(slots):
            if day == D0 and k in D0_DROPPED:
                continue
            seq = k if day == D0 else 1440 + k if k < 360 else k - 360
            fields: dict[str, float | int | str] = {schema.SEQ_FIELD: seq}
            for p in PARAMS:
                fields[p] = 10.0 + k % 7
                check = SUSPECT[day].get((k, p))
                fields[schema.qc_field(p)] = "suspect" if check else "good"
                if check:
                    fields[schema.check_field(p)] = check
            if day == D0 and k == 200:  # re-judged good by a replay: a stale check, not counted
                fields[schema.check_field("air_temperature")] = "step"
            lines.append(
                format_point(
                    schema.READINGS, {schema.STATION_TAG: A}, fields, (day + k * STEP_S) * NS
                )
            )
    return lines


def _quarantine(station: str, reason: QuarantineReason, ts_s: int, slot: str) -> str:
    return quarantine_line(
        reason=reason,
        detail="test",
        station_id=station,
        topic=f"meltemi/v1/stations/{station}/readings",
        payload=b"{}",
        received_ns=ts_s * NS,
        time_ns=ts_s * NS,
        slot=slot,
    )


def _post(url: str, path: str, params: dict[str, str], body: str) -> None:
    response = httpx.post(f"{url}{path}", params=params, content=body.encode(), timeout=30)
    assert response.status_code in (200, 204), response.text


@pytest.fixture(scope="module")
def api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Iterator[ApiThread]:
    """The API over station A's two days, its statuses, diagnostics and quarantine records."""
    tmp: Path = tmp_path_factory.mktemp("health")
    base = base_settings(influx, broker.port, tmp)
    registry = tmp / "stations.toml"
    listed = ", ".join(f'"{p}"' for p in PARAMS)
    registry.write_text(
        "".join(
            f'[[station]]\nid = "{s}"\nname = "{s}"\nmunicipality = "Elefsina"\n'
            f"lat = 38.04\nlon = 23.54\nelevation_m = 12\nparameters = [{listed}]\n\n"
            for s in (A, B)
        )
    )
    off = {"stations_file": registry, "api_rate_per_s": 0.0}  # one address, many requests
    settings = Settings(**(base.model_dump() | off))
    db, url = settings.influx_db, influx.url
    write_lines(url, db, _readings())
    _post(
        url,
        "/query",
        {"q": f'CREATE RETENTION POLICY "quarantine" ON "{db}" DURATION 90d REPLICATION 1'},
        "",
    )
    in_rp = [
        _quarantine(A, QuarantineReason.OUT_OF_RANGE, D0 + 3600, "v0"),
        _quarantine(A, QuarantineReason.OUT_OF_RANGE, D0 + 7200, "v1"),
        _quarantine(A, QuarantineReason.TS_TOO_OLD, D1 + 3600, "r"),
        _quarantine(B, QuarantineReason.INVALID_JSON, D1 + 3600, "r"),
    ]
    _post(url, "/write", {"db": db, "rp": "quarantine"}, "\n".join(in_rp))
    # an older ingester wrote into the default retention policy: counted too
    write_lines(url, db, [_quarantine(A, QuarantineReason.NON_FINITE, D1 + 7200, "v2")])
    write_status(url, db, A, "online", (D0 - 3600) * NS)
    write_status(url, db, A, "offline", (D0 + 12 * 3600) * NS)
    write_status(url, db, A, "online", (D0 + 18 * 3600) * NS)
    write_status(url, db, B, "online", (D1 + 6 * 3600) * NS)  # B's first status ever
    diag = [
        format_point(schema.DIAGNOSTICS, {schema.STATION_TAG: A}, {"battery_v": v, "rssi": r}, t)
        for v, r, t in ((3.9, -60.0, (D0 + 60) * NS), (3.71, -71.0, (D1 + 11 * 3600) * NS))
    ]
    write_lines(url, db, diag)
    stats = format_point(
        schema.INGEST_STATS,
        {"ingester": "ing-1"},
        {"readings_received": 2170, "readings_stored": 2154, "duplicates_seen": 3},
        time.time_ns(),
    )
    write_lines(url, db, [stats])
    with serve(settings) as server:
        yield server


def _day(body: dict[str, Any], day_s: int) -> dict[str, Any]:
    date = time.strftime("%Y-%m-%d", time.gmtime(day_s))
    found: list[dict[str, Any]] = [d for d in body["days"] if d["date"] == date]
    assert len(found) == 1, date
    return found[0]


def test_station_health_per_day(api: ApiThread) -> None:
    response = api.get(f"/v1/stations/{A}/health", days=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["date"] for d in body["days"]] == [
        time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (D0, D1, TODAY_S)
    ]
    assert body["window"]["start"] == time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(D0))
    assert body["reporting_interval_s"] == 60.0
    assert body["last_seen"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(D1 + (D1_SLOTS - 1) * STEP_S)
    )
    assert body["stuck_parameters"] == ["wind_speed"]
    assert body["status"] == "online"
    assert body["diagnostics"] == {
        "ts": time.strftime("%Y-%m-%dT11:00:00Z", time.gmtime(D1)),
        "values": {"battery_v": 3.71, "rssi": -71.0},
    }
    d0, d1, today = _day(body, D0), _day(body, D1), _day(body, TODAY_S)
    assert (d0["readings"], d0["expected"]) == (1434, 1440)
    assert d0["completeness"] == round(1434 / 1440, 4)
    assert d0["uptime"] == 0.75  # offline 12:00-18:00
    assert d0["seq"] == {"gaps": 2, "missing": 6, "resets": 0}
    assert d0["quarantined"] == {"out_of_range": 2}
    air = d0["parameters"]["air_temperature"]
    assert air == {
        "values": 1434,
        "completeness": round(1434 / 1440, 4),
        "suspect": 10,
        "suspect_share": round(10 / 1434, 4),
        "suspect_by_check": {"persistence": 3, "step": 7},
    }
    assert d0["parameters"]["relative_humidity"]["suspect_by_check"] == {
        "dew_point_above_temperature": 2
    }
    assert d0["parameters"]["wind_gust"]["suspect"] == 0
    assert (d1["readings"], d1["expected"], d1["completeness"]) == (720, 1440, 0.5)
    assert d1["uptime"] == 1.0
    assert d1["seq"] == {"gaps": 0, "missing": 0, "resets": 1}
    assert d1["quarantined"] == {"non_finite": 1, "ts_too_old": 1}
    assert d1["parameters"]["wind_gust"]["suspect_by_check"] == {"gust_below_speed": 4}
    assert today["readings"] == 0
    assert today["uptime"] == 1.0
    assert today["parameters"] == {}
    assert body["suspect_by_check"] == {
        "dew_point_above_temperature": 2,
        "gust_below_speed": 4,
        "persistence": 4,
        "step": 7,
    }
    assert body["suspect_share"] == round(17 / ((1434 + 720) * 4), 4)
    assert body["seq"] == {"gaps": 2, "missing": 6, "resets": 1}
    assert body["ledger"] == {
        "stored": 2154,
        "quarantined": {"non_finite": 1, "out_of_range": 2, "ts_too_old": 1},
        "quarantined_total": 4,
        "received": None,
        "duplicates": None,
    }
    assert set(body["not_derived"]) == {"received", "duplicates"}
    # the second answer comes partly from the day cache and is the same
    again = api.get(f"/v1/stations/{A}/health", days=3).json()
    assert again["days"][:2] == body["days"][:2]


def test_network_health_matches_station_view(api: ApiThread) -> None:
    station = api.get(f"/v1/stations/{A}/health", days=3).json()
    response = api.get("/v1/health/stations", days=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["station"] for s in body["stations"]] == [A, B]
    a, b = body["stations"]
    for key in ("last_seen", "status", "stuck_parameters", "diagnostics", "seq", "ledger"):
        assert a[key] == station[key], key
    assert a["uptime"] == station["uptime"]
    assert a["completeness"] == station["completeness"]
    assert b["last_seen"] is None
    assert b["status"] == "online"
    b_days = api.get(f"/v1/stations/{B}/health", days=3).json()["days"]
    assert [d["uptime"] for d in b_days] == [None, 0.75, 1.0]  # unknown before its first status
    assert [d["readings"] for d in b_days] == [0, 0, 0]
    assert [d["completeness"] for d in b_days] == [None, None, None]  # no interval known
    assert b["ledger"]["quarantined"] == {"invalid_json": 1}
    assert b["ledger"]["stored"] == 0
    assert body["ingesters"] == [
        {
            "ingester": "ing-1",
            "readings_received": 2170,
            "readings_stored": 2154,
            "duplicates_seen": 3,
        }
    ]


def test_health_refusals(api: ApiThread) -> None:
    unknown = api.get("/v1/stations/nope/health")
    assert unknown.status_code == 404
    assert "unknown station" in unknown.json()["detail"]
    for path, days in ((f"/v1/stations/{A}/health", 32), ("/v1/health/stations", 8)):
        refused = api.get(path, days=days)
        assert refused.status_code == 422
        assert refused.json()["detail"]
    head = api.client.head(f"/v1/stations/{A}/health")
    assert head.status_code == 200
    assert head.content == b""
