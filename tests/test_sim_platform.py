"""Simulated faults through the whole platform: the real ingester flags or quarantines exactly
the readings the simulator's fault log names, and stores every other reading (issues 3 and 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from firmware_sim.faults import load_plan, read_fault_log
from firmware_sim.runner import RunOptions, StationNetwork

from sensors.models import parse_ts_ns
from sensors.registry import load_registry
from tests.helpers import influx_count, influx_rows, wait_for, write_registry

FAULTS = """
[[fault]]
station = "plat-spike"
kind = "spike"
parameter = "air_temperature"
start_s = 3
magnitude = 15

[[fault]]
station = "plat-range"
kind = "out_of_range"
parameter = "wind_speed"
start_s = 2
duration_s = 2

[[fault]]
station = "plat-nan"
kind = "non_finite"
parameter = "pm10"
start_s = 2
duration_s = 2

[[fault]]
station = "plat-json"
kind = "malformed_json"
start_s = 2
duration_s = 2

[[fault]]
station = "plat-clock"
kind = "clock_offset"
start_s = 2
duration_s = 2
magnitude = 3
"""


@pytest.mark.timeout(120)
def test_faults_are_flagged_or_quarantined_exactly_and_the_rest_stored(
    settings, fresh_broker, tmp_path: Path, ingester_factory
):
    ids = ["plat-spike", "plat-range", "plat-nan", "plat-json", "plat-clock", "plat-healthy"]
    registry_path = write_registry(tmp_path / "stations.toml", ids)
    registry = load_registry(registry_path)
    # A broker of its own: the stations' retained statuses stay off the shared one.
    settings = settings.model_copy(
        update={"stations_file": registry_path, "mqtt_port": fresh_broker.port}
    )

    ingester = ingester_factory(settings)
    (tmp_path / "faults.toml").write_text(FAULTS)
    plan = load_plan(tmp_path / "faults.toml", [], {s.id: s.parameters for s in registry})
    options = RunOptions(interval_s=1.0, seed=5, keepalive_s=5, duration_s=8, progress=False)
    StationNetwork(list(registry), settings, options, plan).run()
    log = read_fault_log(settings.data_dir / "sim" / "faults.jsonl")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_kind.setdefault(str(entry["kind"]), []).append(entry)
    assert {"spike", "out_of_range", "non_finite", "malformed_json", "clock_offset"} <= set(by_kind)

    def our_quarantine() -> int:
        # Only this test's stations: the shared broker also delivers other tests' retained
        # status messages, which this registry rightly quarantines as unknown stations.
        return influx_count(
            settings.influx_url,
            settings.influx_db,
            'SELECT count("detail") FROM "quarantine"."quarantine" WHERE station =~ /^plat-/',
        )

    def stored(station: str) -> int:
        return influx_count(
            settings.influx_url,
            settings.influx_db,
            f"SELECT count(air_temperature) FROM readings WHERE station = '{station}'",
        )

    # Every reading the stations sent is stored or quarantined: wait for that, not for a time.

    expected_quarantine = sum(
        len(by_kind[k]) for k in ("out_of_range", "non_finite", "malformed_json", "clock_offset")
    )
    wait_for(
        lambda: (
            ingester.metric("meltemi_ingest_in_flight") == 0
            and our_quarantine() == expected_quarantine
            and stored("plat-spike") >= 6
            and stored("plat-healthy") >= 6
        ),
        timeout_s=30,
        message="the faulty readings quarantined",
    )

    def quarantined(station: str, reason: str) -> list[dict[str, Any]]:
        return influx_rows(
            settings.influx_url,
            settings.influx_db,
            "SELECT * FROM quarantine.quarantine "
            f"WHERE station = '{station}' AND reason = '{reason}'",
        )

    expectations = [
        ("plat-range", "out_of_range", "out_of_range", "wind_speed"),
        ("plat-nan", "non_finite", "non_finite", "pm10"),
        ("plat-json", "invalid_json", "malformed_json", None),
        ("plat-clock", "ts_in_future", "clock_offset", None),
    ]
    for station, reason, kind, parameter in expectations:
        records = quarantined(station, reason)
        assert len(records) == len(by_kind[kind]), (station, reason)
        if parameter is not None:  # the refused value alone; the same seqs the log names
            assert {r["parameter"] for r in records} == {parameter}
            assert {r["seq"] for r in records} == {e["seq"] for e in by_kind[kind]}
    assert our_quarantine() == expected_quarantine
    # the spike is stored, flagged suspect by the step check, and nothing else of it is
    (spike,) = by_kind["spike"]
    rows = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT air_temperature, air_temperature_qc, air_temperature_check "
        "FROM readings WHERE station = 'plat-spike'",
    )
    # CONTRACT §4 compares with the station's previous value, so the spike fails the step test
    # on its way up and the next reading on the way back down; nothing else is suspect.
    spike_ns = parse_ts_ns(str(spike["ts"]))
    after_ns = min(r["time"] for r in rows if r["time"] > spike_ns)
    suspects = [r for r in rows if r["air_temperature_qc"] == "suspect"]
    assert [(r["time"], r["air_temperature_check"]) for r in suspects] == [
        (spike_ns, "step"),
        (after_ns, "step"),
    ]
    healthy = influx_rows(
        settings.influx_url,
        settings.influx_db,
        "SELECT * FROM readings WHERE station = 'plat-healthy'",
    )
    assert len(healthy) >= 6
    assert all(r[k] == "good" for r in healthy for k in r if k.endswith("_qc") and r[k])
