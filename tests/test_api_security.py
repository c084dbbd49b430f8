"""RELIABILITY S8, S9, S12 for the API: injection attempts on every parameter, partial answers
never served as complete, and credentials only in headers (real InfluxDB, query log witness)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.errors import StoragePartial, StorageRejected
from api.influx import merge_chunks
from ingest.lineproto import format_point
from meltemi.services import InfluxDB, Mosquitto, free_port
from sensors.settings import Settings
from tests.api_fixtures import (
    FULL,
    FULL_PARAMS,
    LIVE,
    NS,
    THIN,
    ApiThread,
    api_settings,
    base_settings,
    generate,
    serve,
)
from tests.helpers import PassThroughProxy, influx_count, influx_query, write_lines

CORPUS = [
    "'",
    '"',
    "\\'",
    "a\\' OR station=~/.*/ --",
    "'; DROP MEASUREMENT readings",
    "; DROP MEASUREMENT readings",
    "/.*/",
    "$s",
    "--",
    "line\nbreak",
    "\u2018quoted\u2019 \u201cdouble\u201d",
    "x" * 10_000 + "'",
]
QUERY_PARAMETERS = [
    "parameters",
    "start",
    "end",
    "interval",
    "agg",
    "tz",
    "include_suspect",
    "format",
]
THIN_ROWS = 12_000
# Bytes of the corpus that must never appear in a query InfluxDB executed.
ATTACKER_MARKERS = ["DROP", "=~", "--", "$s", "\u2018", "xxxxxxxxxx", "break"]


@pytest.fixture(scope="module")
def settings_sec(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Settings:
    """This module's database, with a day of readings of the FULL station."""
    tmp = tmp_path_factory.mktemp("api-security")
    settings = api_settings(base_settings(influx, broker.port, tmp), tmp)
    data = generate(FULL_PARAMS, 1792713600, 1792713600 + 86400, 300, seed=3)
    write_lines(influx.url, settings.influx_db, data.lines(FULL))
    return settings


@pytest.fixture(scope="module")
def api(settings_sec: Settings) -> Iterator[ApiThread]:
    """The API over this module's database."""
    with serve(settings_sec) as server:
        yield server


def _fingerprint(influx: InfluxDB, db: str) -> tuple[str, str, int, int]:
    """Return what an injection could change: measurements, series, and point counts."""
    measurements = influx_query(influx.url, db, "SHOW MEASUREMENTS")
    series = influx_query(influx.url, db, "SHOW SERIES")
    count = influx_count(influx.url, db, 'SELECT count("air_temperature") FROM "readings"')
    qc = influx_count(influx.url, db, 'SELECT count("wind_direction_qc") FROM "readings"')
    return (str(measurements), str(series), count, qc)


def _executed_queries(influx: InfluxDB) -> list[str]:
    return [line for line in influx.log_text().splitlines() if 'msg="Executing query"' in line]


def test_injection_corpus_on_every_parameter_is_refused(api, influx, settings_sec):
    before = _fingerprint(influx, settings_sec.influx_db)
    assert before[2] > 200
    logged_before = len(_executed_queries(influx))
    base = {
        "parameters": "air_temperature",
        "start": "2026-10-23T00:00:00Z",
        "end": "2026-10-23T06:00:00Z",
        "interval": "1h",
    }
    answers: list[tuple[str, str, int]] = []
    for payload in CORPUS:
        for name in QUERY_PARAMETERS:
            response = api.client.get(f"/v1/stations/{FULL}/series", params={**base, name: payload})
            answers.append((name, payload[:30], response.status_code))
            assert response.status_code in (400, 404, 422), (name, payload[:30], response.text)
            assert "detail" in response.json()
        quoted = urllib.parse.quote(payload, safe="")
        for path in (
            f"/v1/stations/{quoted}",
            f"/v1/stations/{quoted}/latest",
            f"/v1/stations/{quoted}/series",
        ):
            response = api.client.get(path)
            answers.append((path[:40], payload[:30], response.status_code))
            assert response.status_code in (400, 404, 422), (path[:60], response.text)
            assert "detail" in response.json()
    assert len(answers) == len(CORPUS) * (len(QUERY_PARAMETERS) + 3)
    assert not [a for a in answers if a[2] >= 500]
    # Nothing changed, and no executed query carried attacker bytes.
    assert _fingerprint(influx, settings_sec.influx_db) == before
    executed = _executed_queries(influx)[logged_before:]
    assert not [q for q in executed if any(marker in q for marker in ATTACKER_MARKERS)]
    # A good request still works afterwards.
    assert api.get(f"/v1/stations/{FULL}/series", **base).status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        pytest.param({"parameters": "nope"}, 400, "not a parameter", id="unknown-parameter"),
        pytest.param({"parameters": "pm10"}, 400, "does not measure", id="not-measured"),
        pytest.param({"parameters": "dew_point"}, 400, "needs relative_humidity", id="underived"),
        pytest.param({"parameters": "air_temperature,"}, 400, "empty", id="empty-entry"),
        pytest.param({"start": "2026-10-23"}, 400, "RFC 3339", id="date-only"),
        pytest.param({"start": "2026-10-23T00:00:00"}, 400, "offset", id="no-offset"),
        pytest.param({"end": "2026-13-01T00:00:00Z"}, 400, "RFC 3339", id="bad-month"),
        pytest.param({"start": "1066-10-14T09:00:00Z"}, 400, "year", id="year-too-early"),
        pytest.param(
            {"start": "2026-10-24T00:00:00Z", "end": "2026-10-23T00:00:00Z"},
            400,
            "before end",
            id="start-after-end",
        ),
        pytest.param({"interval": "2h"}, 400, "raw, 1m", id="bad-interval"),
        pytest.param({"interval": "1h", "agg": "median"}, 400, "mean, min", id="bad-agg"),
        pytest.param({"interval": "raw", "agg": "mean"}, 400, "not aggregated", id="agg-raw"),
        pytest.param({"tz": "Mars/Olympus_Mons"}, 400, "IANA", id="unknown-zone"),
        pytest.param({"tz": "../../etc/passwd"}, 400, "IANA", id="zone-path"),
        pytest.param({"format": "xml"}, 400, "json or csv", id="bad-format"),
        pytest.param({"include_suspect": "maybe"}, 422, "bool", id="bad-bool"),
        pytest.param({"parameters": "a," * 1500}, 422, "2000", id="too-long"),
    ],
)
def test_each_4xx_path_answers_json_detail(api, params, status, words):
    base = {"start": "2026-10-23T00:00:00Z", "end": "2026-10-23T06:00:00Z"}
    station = "apitest-thin" if params.get("parameters") in ("pm10", "dew_point") else FULL
    response = api.get(f"/v1/stations/{station}/series", **{**base, **params})
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"])


@pytest.fixture(scope="module")
def strict_influx(tmp_path_factory) -> Iterator[InfluxDB]:
    """An InfluxDB of this module's own: auth on, access log on, ``max-row-limit = 20``.

    Database ``strict``: an hour of minute readings of LIVE and 12,000 of THIN."""
    root = tmp_path_factory.mktemp("strict-influx")
    server = InfluxDB(root, free_port(), auth=True, access_log=True)
    conf = root / "influxdb.conf"
    conf.write_text(conf.read_text().replace("max-row-limit = 1000000", "max-row-limit = 20"))
    server.start_and_wait()
    try:
        admin = ("admin", "admin-secret-1")
        for q in (
            "CREATE USER admin WITH PASSWORD 'admin-secret-1' WITH ALL PRIVILEGES",
            "CREATE DATABASE strict",
            "CREATE USER reader WITH PASSWORD 'reader-secret-2'",
            "GRANT READ ON strict TO reader",
        ):
            response = httpx.post(f"{server.url}/query", data={"q": q}, auth=admin)
            assert response.status_code == 200, response.text
        data = generate(
            ["air_temperature", "relative_humidity"],
            1792713600,
            1792713600 + 3600,
            60,
            5,
            gaps=False,
        )
        # THIN: 12,000 readings 5 s apart, values 0.000, 0.001, ... (over one 10,000-row chunk).
        thin = [
            format_point(
                "readings",
                {"station": THIN},
                {"air_temperature": k / 1000, "air_temperature_qc": "good"},
                (1792713600 + 5 * k) * NS,
            )
            for k in range(THIN_ROWS)
        ]
        response = httpx.post(
            f"{server.url}/write",
            params={"db": "strict", "precision": "ns"},
            content="\n".join(data.lines(LIVE) + thin).encode(),
            auth=admin,
        )
        assert response.status_code == 204, response.text
        yield server
    finally:
        server.stop()


def _strict_settings(
    strict_influx: InfluxDB, broker: Mosquitto, tmp: Path, **auth: str
) -> Settings:
    base = Settings(
        mqtt_port=broker.port, influx_url=strict_influx.url, influx_db="strict", data_dir=tmp
    )
    return api_settings(base, tmp, **auth)


def test_server_row_limits_never_truncate_a_served_answer(strict_influx, broker, tmp_path):
    settings = _strict_settings(
        strict_influx, broker, tmp_path, influx_username="reader", influx_password="reader-secret-2"
    )
    window = {
        "start": "2026-10-23T00:00:00Z",
        "end": "2026-10-23T01:00:00Z",
        "include_suspect": "true",
    }
    with serve(settings) as api:
        # 60 rows > max-row-limit 20: a non-chunked answer would be cut; chunked ones are not.
        raw = api.get(f"/v1/stations/{LIVE}/series", interval="raw", **window)
        assert raw.status_code == 200, raw.text
        assert len(raw.json()["points"]) == 60
        minutes = api.get(f"/v1/stations/{LIVE}/series", interval="1m", **window)
        assert minutes.status_code == 200
        assert len(minutes.json()["points"]) == 60
        # More than 10,000 rows: 1.6.7 flags a non-chunked answer "partial" although it is
        # complete (influxdata/influxdb#8014); merged chunks give every reading, exactly.
        big = api.get(
            f"/v1/stations/{THIN}/series",
            parameters="air_temperature",
            start="2026-10-23T00:00:00Z",
            end="2026-10-24T00:00:00Z",
            include_suspect="true",
        )
        assert big.status_code == 200, big.text
        points = big.json()["points"]
        assert len(points) == THIN_ROWS
        assert [p["values"]["air_temperature"] for p in points[:3]] == [0.0, 0.001, 0.002]


class CuttingProxy(PassThroughProxy):
    """A pass-through TCP proxy to InfluxDB that closes each connection after ``cut_after``
    bytes of response: it relays, it never answers, so the API sees a really cut answer."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.cut_after = cut_after
        super().__init__(upstream_port, "cutting-proxy")

    def relay_answer(self, chunk: bytes, sent: int) -> tuple[bytes, bool]:
        """Relay up to ``cut_after`` bytes, then cut."""
        if sent + len(chunk) >= self.cut_after:
            return chunk[: self.cut_after - sent], True
        return chunk, False


def test_an_answer_cut_short_is_never_served_as_complete(strict_influx, broker, tmp_path):
    proxy = CuttingProxy(strict_influx.port, cut_after=3000)
    try:
        settings = _strict_settings(
            strict_influx,
            broker,
            tmp_path,
            influx_url=f"http://127.0.0.1:{proxy.port}",
            influx_username="reader",
            influx_password="reader-secret-2",
        )
        with serve(settings) as api:
            small = api.get(f"/v1/stations/{LIVE}/latest")
            assert small.status_code == 200  # under the cut: relayed whole
            for _ in range(3):
                cut = api.get(
                    f"/v1/stations/{THIN}/series",
                    parameters="air_temperature",
                    start="2026-10-23T00:00:00Z",
                    end="2026-10-24T00:00:00Z",
                )
                assert cut.status_code == 503, cut.text[:200]
                assert "storage" in cut.json()["detail"]
    finally:
        proxy.close()


def _chunk(statement_id: int, rows: list[list[object]], partial: bool, tags: str = "s1") -> bytes:
    series: dict[str, object] = {
        "name": "readings",
        "tags": {"station": tags},
        "columns": ["time", "t"],
        "values": rows,
    }
    result: dict[str, object] = {"statement_id": statement_id, "series": [series]}
    if partial:
        series["partial"] = True
        result["partial"] = True
    return json.dumps({"results": [result]}).encode()


@pytest.mark.parametrize(
    ("chunks", "expected", "outcome"),
    [
        pytest.param([_chunk(0, [[1, 1.0]], False)], 1, [1], id="one-chunk"),
        pytest.param(
            [_chunk(0, [[1, 1.0], [2, 2.0]], True), _chunk(0, [[3, 3.0]], False)],
            1,
            [3],
            id="series-over-two-chunks",
        ),
        pytest.param(
            [_chunk(0, [[1, 1.0]], True, "a"), _chunk(0, [[1, 2.0]], False, "b")],
            1,
            [1, 1],
            id="two-series",
        ),
        pytest.param(
            [_chunk(0, [[1, 1.0]], False), _chunk(1, [[1, 1.0]], False)], 2, [1, 1], id="two"
        ),
        pytest.param([_chunk(0, [[1, 1.0]], True)], 1, StoragePartial, id="last-chunk-partial"),
        pytest.param([_chunk(0, [[1, 1.0]], False)], 2, StoragePartial, id="statement-missing"),
        pytest.param(
            [_chunk(0, [[1, 1.0]], True), b'{"results":[{"statement_id":0,"error":"timeout"}]}'],
            1,
            StorageRejected,
            id="error-after-data",
        ),
        pytest.param([b'{"results":[{"statement_id":0,'], 1, StorageRejected, id="torn-json"),
        pytest.param([b'{"error":"bad"}'], 1, StorageRejected, id="top-level-error"),
    ],
)
def test_chunk_merging_serves_only_complete_answers(chunks, expected, outcome):
    body = b"\n".join(chunks) + b"\n"
    if isinstance(outcome, list):
        results = merge_chunks(body, expected)
        assert [len(series.values) for r in results for series in r.series] == outcome
    else:
        with pytest.raises(outcome):
            merge_chunks(body, expected)


def test_credentials_travel_only_in_headers(strict_influx, broker, tmp_path, caplog):
    good = _strict_settings(
        strict_influx, broker, tmp_path, influx_username="reader", influx_password="reader-secret-2"
    )
    with serve(good) as api:
        assert api.get("/v1/stations").status_code == 200
        assert api.get(f"/v1/stations/{LIVE}/latest").status_code == 200
    wrong = _strict_settings(
        strict_influx, broker, tmp_path, influx_username="reader", influx_password="nope-3"
    )
    with serve(wrong) as api:
        refused = api.get("/v1/stations")
        assert refused.status_code == 502
        # The body names no internals (issue 8 part 8); the log says why, under the request id.
        body = refused.json()
        assert body == {"detail": "storage error", "request_id": refused.headers["x-request-id"]}
        assert any(
            body["request_id"] in r.getMessage() and "credentials" in r.getMessage()
            for r in caplog.records
        )
        assert "nope-3" not in refused.text
    # 1.6.7 answers the 2.x/3.x `Token` scheme with 401 (RELIABILITY §0.8): refused, not served.
    token = _strict_settings(strict_influx, broker, tmp_path, influx_token="reader:reader-secret-2")
    with serve(token) as api:
        assert api.get("/v1/latest").status_code == 502
    log = strict_influx.log_text()
    assert "/query?" in log  # the access log records request URLs ...
    for secret in ("reader-secret-2", "nope-3"):
        assert secret not in log  # ... and never a password
    assert "p=" not in "".join(line for line in log.splitlines() if "/query?" in line)
