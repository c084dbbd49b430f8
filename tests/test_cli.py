"""The `meltemi` command: sub-commands, configuration errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def meltemi(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    return subprocess.run(
        [sys.executable, "-m", "meltemi.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
        check=False,
    )


def test_help_lists_every_sub_command():
    done = meltemi("--help")
    assert done.returncode == 0
    for command in ("up", "ingest", "api", "simulate"):
        assert f"    {command} " in done.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("MELTEMI_MQTT_PORT", "70000", id="port-out-of-range"),
        pytest.param("MELTEMI_INFLUX_URL", "influx:8086", id="url-without-scheme"),
        pytest.param("MELTEMI_API_PORT", "http", id="not-a-number"),
    ],
)
def test_invalid_setting_fails_naming_the_variable(variable, value):
    done = meltemi("ingest", **{variable: value})
    assert done.returncode == 2
    assert variable in done.stderr
    assert "Traceback" not in done.stderr


def test_secret_values_are_not_echoed_in_errors():
    done = meltemi("ingest", MELTEMI_MQTT_PORT="x", MELTEMI_INFLUX_TOKEN="s3cr3t-token")
    assert done.returncode == 2
    assert "s3cr3t-token" not in done.stderr


def test_bad_registry_stops_start_up_naming_the_station(tmp_path):
    registry = tmp_path / "stations.toml"
    registry.write_text(
        '[[station]]\nid = "ok-01"\nname = "A"\nmunicipality = "M"\nlat = 38\nlon = 23\n'
        'elevation_m = 1\nparameters = ["air_temperature"]\n\n'
        '[[station]]\nid = "bad-02"\nname = "B"\nmunicipality = "M"\nlat = 38\nlon = 23\n'
        'elevation_m = 1\nparameters = ["ozone"]\n'
    )
    done = meltemi("ingest", MELTEMI_STATIONS_FILE=str(registry))
    assert done.returncode == 2
    assert "station #2 ('bad-02')" in done.stderr
    assert "unknown parameter(s) ozone" in done.stderr


def test_registry_parse_error_names_the_line(tmp_path):
    registry = tmp_path / "stations.toml"
    registry.write_text('[[station]]\nid = "ok-01"\nname = \n')
    done = meltemi("api", MELTEMI_STATIONS_FILE=str(registry))
    assert done.returncode == 2
    assert "line 3" in done.stderr


def test_duplicate_station_id_is_refused(tmp_path):
    table = (
        '[[station]]\nid = "twin-01"\nname = "A"\nmunicipality = "M"\nlat = 38\nlon = 23\n'
        'elevation_m = 1\nparameters = ["air_temperature"]\n\n'
    )
    registry = tmp_path / "stations.toml"
    registry.write_text(table * 2)
    done = meltemi("ingest", MELTEMI_STATIONS_FILE=str(registry))
    assert done.returncode == 2
    assert "'twin-01' is listed twice" in done.stderr


def test_simulate_options_reach_the_simulator():
    done = meltemi("simulate", "--help")
    assert done.returncode == 0
    assert "--backfill" in done.stdout
    refused = meltemi("ingest", "--backfill", "48h")
    assert refused.returncode == 2
    assert "unrecognized arguments: --backfill 48h" in refused.stderr
