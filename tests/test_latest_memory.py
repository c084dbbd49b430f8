"""``/v1/latest`` from memory: seeded from InfluxDB, fed by the live feed through the real
ingester, right by observation time, equal to InfluxDB's answer, and without queries."""

from __future__ import annotations

import json
import time
from typing import Any

from api.latest_memory import LatestStore, entry_row
from ingest.lineproto import format_point
from sensors import schema
from sensors.outbound import LatestEntry
from sensors.schema import QcFlag
from tests.api_fixtures import NS, query_log_count, serve
from tests.helpers import influx_rows, publish_all, wait_for, write_lines

SEEDED = "elefsina-02"  # has only old readings, written straight to InfluxDB
FED = "elefsina-01"  # old readings, then new ones (and a late one) through the ingester
NEW = "aspropyrgos-01"  # no reading before the API started
LATEST_MARKER = "ORDER BY time DESC LIMIT 1"


def _old_lines(station_id: str, ts_ns: int, temperature: float) -> list[str]:
    fields: dict[str, float | int | str] = {
        schema.SEQ_FIELD: 1,
        "air_temperature": temperature,
        schema.qc_field("air_temperature"): "good",
        schema.check_field("air_temperature"): "",
        "relative_humidity": 55.0,
        schema.qc_field("relative_humidity"): "good",
        schema.check_field("relative_humidity"): "",
    }
    return [format_point(schema.READINGS, {schema.STATION_TAG: station_id}, fields, ts_ns)]


def _reading(station_id: str, ts_s: int, seq: int, temperature: float) -> tuple[str, bytes]:
    body = {
        "ts": ts_s,
        "seq": seq,
        "values": {"air_temperature": temperature, "relative_humidity": 48.0},
    }
    return f"stations/{station_id}/readings", json.dumps(body).encode()


def _by_station(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["station"]: entry for entry in body["stations"]}


def test_latest_from_memory_equals_influxdb(settings, influx, broker, ingester_factory):
    now_s = int(time.time())
    write_lines(
        influx.url,
        settings.influx_db,
        _old_lines(SEEDED, (now_s - 7200) * NS, 11.5) + _old_lines(FED, (now_s - 7200) * NS, 9.25),
    )
    ingester_factory(settings)
    reference_settings = settings.model_copy(update={"api_latest_from_memory": False})
    with serve(settings, wait_feed=True) as api:
        store: LatestStore = api.app.state.latest_store
        wait_for(
            lambda: store.ready(api.app.state.registry, api.feed.gaps, True), 20, message="seeded"
        )
        seeded = _by_station(api.get("/v1/latest").json())
        assert set(seeded) == {SEEDED, FED}
        assert seeded[FED]["values"]["air_temperature"] == 9.25

        messages = [_reading(FED, now_s - 50 + k * 10, 10 + k, 20.0 + k) for k in range(5)]
        messages += [_reading(NEW, now_s - 30, 1, 17.5)]
        messages += [_reading(FED, now_s - 45, 99, 35.0)]  # late: older than FED's newest
        assert publish_all(broker.port, messages) == len(messages)

        def fed() -> bool:
            body = _by_station(api.get("/v1/latest").json())
            return NEW in body and body[FED]["seq"] == 14 and store.offered >= 7

        wait_for(fed, 20, message="the new readings reached memory")
        before = query_log_count(influx, LATEST_MARKER)
        answers = [api.get("/v1/latest").json() for _ in range(20)]
        one = api.get(f"/v1/stations/{FED}/latest").json()
        # Served from memory: InfluxDB saw no newest-row query for these 21 requests.
        assert query_log_count(influx, LATEST_MARKER) == before
        memory = answers[-1]
        assert all(answer == memory for answer in answers)

    entries = _by_station(memory)
    assert entries[FED]["values"]["air_temperature"] == 24.0  # the newest, not the late 35.0
    assert entries[FED]["seq"] == 14
    assert entries[NEW]["values"]["air_temperature"] == 17.5
    assert entries[SEEDED]["values"]["air_temperature"] == 11.5
    assert "dew_point" in entries[FED]["values"]
    assert one == entries[FED]
    # InfluxDB's own newest rows, read by a witness query.
    rows = influx_rows(
        influx.url,
        settings.influx_db,
        'SELECT * FROM "readings" GROUP BY "station" ORDER BY time DESC LIMIT 1',
    )
    newest = {row["station"]: row for row in rows}
    for station_id, entry in entries.items():
        assert entry["values"]["air_temperature"] == newest[station_id]["air_temperature"]
        assert entry["seq"] == newest[station_id]["seq"]
    # The API reading InfluxDB gives the very same answer.
    with serve(reference_settings) as reference:
        assert getattr(reference.app.state, "latest_store", None) is None
        assert reference.get("/v1/latest").json() == memory
        assert reference.get(f"/v1/stations/{FED}/latest").json() == one


def _entry(ts: str, temperature: float, seq: int) -> LatestEntry:
    return LatestEntry(
        station=FED,
        ts=ts,
        values={"air_temperature": temperature},
        qc={"air_temperature": QcFlag.GOOD},
        seq=seq,
    )


def test_store_keeps_the_newest_by_observation_time_in_any_order():
    newer = _entry("2026-11-30T10:00:10Z", 21.0, 2)
    older = _entry("2026-11-30T10:00:00Z", 20.0, 1)
    for order in ((older, newer), (newer, older)):
        store = LatestStore()
        kept = [store.offer_entry(entry) for entry in order]
        assert kept == ([True, True] if order[0] is older else [True, False])
        entry = store.entry(FED)
        assert entry is not None
        assert entry.values["air_temperature"] == 21.0
        assert entry.seq == 2
    assert entry_row(newer) == {
        "time": 1_796_032_810 * NS,
        "air_temperature": 21.0,
        "air_temperature_qc": "good",
        "air_temperature_check": "",
        "seq": 2,
    }
