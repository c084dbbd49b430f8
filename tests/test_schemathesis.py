"""schemathesis, a client no one here wrote, over every operation of ``/openapi.json``.

It generates requests from the API's own OpenAPI document (valid and invalid ones) and checks
that no answer is a server error and that every answer matches what the document declares
(RELIABILITY S8, issue 11). The API runs under uvicorn on a real InfluxDB with two hours of
minute readings; the live stream (endless by design) is left out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meltemi.services import InfluxDB, Mosquitto
from sensors.settings import Settings
from tests.api_fixtures import ApiThread, api_settings, base_settings, generate, serve
from tests.helpers import write_lines

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
NOW_S = int(time.time()) // 60 * 60
STATION = "elefsina-01"  # in the API tests' registry, with every parameter
EXAMPLES = 50  # per operation and phase: a few thousand requests in all
# Routes schemathesis cannot finish: an endless event stream.
EXCLUDED = r"^/v1/stream$"

pytestmark = pytest.mark.skipif(
    not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None,
    reason="schemathesis is a dev dependency (pyproject.toml)",
)


@pytest.fixture(scope="module")
def api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Iterator[ApiThread]:
    """The API over two hours of one station's minute readings."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    settings: Settings = api_settings(base_settings(influx, broker.port, tmp), tmp)
    data = generate(["air_temperature", "relative_humidity"], NOW_S - 7200, NOW_S, 60, seed=5)
    write_lines(influx.url, settings.influx_db, data.lines(STATION))
    with serve(settings) as server:
        yield server


def test_no_operation_answers_a_server_error_or_off_its_schema(api: ApiThread, tmp_path):
    report = tmp_path / "junit.xml"
    command = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance",
        "--exclude-path-regex",
        EXCLUDED,
        "--max-examples",
        str(EXAMPLES),
        "--generation-deterministic",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    # Its working directory is the test's own: schemathesis keeps a cache (.schemathesis/) there.
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # It really exercised the API: every operation but the stream, with thousands of requests,
    # and every one of them passed.
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert tested is not None, output[-3000:]
    assert cases is not None, output[-3000:]
    operations = len(api.get("/openapi.json").json()["paths"])
    assert int(tested.group(1)) >= operations - 1  # all but /v1/stream
    generated, passed = int(cases.group(1)), int(cases.group(2))
    assert generated == passed >= 1000
    assert report.exists()
