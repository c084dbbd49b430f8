"""Fuzz over every query and path parameter of every /v1 route (issue 8, hypothesis).

The API runs under uvicorn over a real InfluxDB holding a day of readings; hypothesis sends
10,000 requests in all (``CASES`` per route family, derandomised so a failure reproduces).
Every answer must be 200, 400, 404, 422 or 429, with a JSON ``detail`` on every error and
never a 5xx; and a refused request must not have reached InfluxDB: the query log (the
database's own witness) gains no executed query while it is answered.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meltemi.services import InfluxDB, Mosquitto
from sensors.settings import Settings
from tests.api_fixtures import (
    FULL,
    FULL_PARAMS,
    LIVE,
    QUIET,
    THIN,
    ApiThread,
    api_settings,
    base_settings,
    generate,
    serve,
)
from tests.helpers import write_lines

DAY_S = 1792713600  # 2026-10-23T00:00:00Z: the seeded day
ALLOWED = {200, 400, 404, 422, 429}
# FastAPI redirects a trailing slash to the route without it (``/v1/stations/`` with an empty
# id): a redirect to our own path, answered before any handler runs.
REDIRECT = 307
# Requests per route family: 10,000 in all. Each hypothesis example is a batch of BATCH
# requests (hypothesis' per-example overhead is larger than a request's own cost here); a
# failing batch is shrunk like any list, down to the one request that fails.
# bench/api_fuzz.py runs this module with API_FUZZ_SCALE=10 (100,000 requests).
SCALE = int(os.environ.get("API_FUZZ_SCALE", "1"))
CASES = {
    name: SCALE * count
    for name, count in {
        "series": 5000,
        "station": 1500,
        "stream": 1500,
        "plain": 1500,
        "language": 500,
        "health": 300,
    }.items()
}
BATCH = 10
STATIONS = [FULL, LIVE, QUIET, THIN]
ROUTES = {
    "/v1/parameters",
    "/v1/levels",
    "/v1/stations",
    "/v1/stations/{station_id}",
    "/v1/latest",
    "/v1/stations/{station_id}/latest",
    "/v1/stations/{station_id}/series",
    "/v1/stream",
    "/v1/stations/{station_id}/health",
    "/v1/health/stations",
}

# Any text a URL can carry (no surrogates: they cannot be encoded at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def _rfc3339(moment: datetime, style: int) -> str:
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+03:00"
    return moment.strftime("%Y-%m-%d %H:%M:%S")  # not RFC 3339: refused


TIMES = st.one_of(
    st.builds(
        _rfc3339,
        st.datetimes(
            min_value=datetime(2026, 10, 22),  # noqa: DTZ001 (hypothesis wants naive bounds)
            max_value=datetime(2026, 10, 25),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        st.integers(0, 2),
    ),
    st.builds(
        _rfc3339,
        st.datetimes(
            min_value=datetime(1800, 1, 1),  # noqa: DTZ001
            max_value=datetime(2300, 1, 1),  # noqa: DTZ001
        ),
        st.integers(0, 1),
    ),
    ASCII,
)
NEAR_DATA = st.builds(
    _rfc3339,
    st.datetimes(
        min_value=datetime(2026, 10, 22),  # noqa: DTZ001
        max_value=datetime(2026, 10, 25),  # noqa: DTZ001
    ),
    st.just(0),
)


def _maybe(values: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    # Absent, valid (twice as likely) or any text: a fair share of requests is fully valid.
    return st.one_of(st.none(), values, values, values, values, TEXT)


SERIES_PARAMS = st.fixed_dictionaries(
    {
        "parameters": _maybe(
            st.sampled_from(
                [
                    "air_temperature",
                    "air_temperature,relative_humidity",
                    "wind_direction",
                    "dew_point",
                    "precipitation",
                    "pm10",
                    "air_temperature,",
                    ",".join(FULL_PARAMS),
                ]
            )
        ),
        "start": st.one_of(st.none(), NEAR_DATA, NEAR_DATA, TIMES),
        "end": st.one_of(st.none(), NEAR_DATA, NEAR_DATA, TIMES),
        "interval": _maybe(
            st.sampled_from(["raw", "1m", "5m", "10m", "15m", "30m", "1h", "3h", "6h", "1d", "2h"])
        ),
        "agg": _maybe(st.sampled_from(["mean", "min,max", "sum", "count", "mean,sum", "median"])),
        "tz": _maybe(st.sampled_from(["UTC", "Europe/Athens", "America/New_York", "Mars/Base"])),
        "include_suspect": _maybe(st.sampled_from(["true", "false", "1", "0", "yes", "maybe"])),
        "format": _maybe(st.sampled_from(["json", "csv", "xml"])),
    }
)
VALID_IDS = st.sampled_from([*STATIONS, "apitest-ghost", "nope"])
STATION_IDS = st.one_of(VALID_IDS, VALID_IDS, TEXT)


@pytest.fixture(scope="module")
def fuzz_api(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Iterator[ApiThread]:
    """The API over a day of FULL readings and a few hours of THIN ones."""
    tmp: Path = tmp_path_factory.mktemp("api-fuzz")
    base: Settings = api_settings(base_settings(influx, broker.port, tmp), tmp)
    write_lines(
        influx.url, base.influx_db, generate(FULL_PARAMS, DAY_S, DAY_S + 86400, 300, 4).lines(FULL)
    )
    thin = generate(["air_temperature"], DAY_S, DAY_S + 6 * 3600, 60, 5)
    write_lines(influx.url, base.influx_db, thin.lines(THIN))
    with serve(base) as api:
        yield api


class Witness:
    """InfluxDB's query log, read from where the previous answer left it."""

    def __init__(self, influx: InfluxDB) -> None:
        assert influx.log_path is not None
        self.log = influx.log_path.open("rb")
        self.log.seek(0, 2)

    def executed(self) -> int:
        """Return how many queries InfluxDB logged since the previous call."""
        return self.log.read().count(b'msg="Executing query"')


@pytest.fixture(scope="module")
def witness(influx: InfluxDB, fuzz_api: ApiThread) -> Iterator[Witness]:
    """The query-log witness of this module."""
    reader = Witness(influx)
    yield reader
    reader.log.close()


class Tally:
    """Status counts of one fuzz run, checked after it."""

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}

    def add(self, response: httpx.Response, witness: Witness) -> None:
        """Check one answer (status, JSON detail, no query when refused) and count it."""
        code = response.status_code
        self.codes[code] = self.codes.get(code, 0) + 1
        queried = witness.executed()
        url = str(response.url)
        if code == REDIRECT:
            path = response.url.path
            assert path.endswith("/")
            assert urllib.parse.urlsplit(response.headers["location"]).path == path.rstrip("/")
            assert queried == 0
            return
        assert code in ALLOWED, (code, url[:200], response.text[:300])
        if code == 200:
            return
        detail = response.json()["detail"]
        assert isinstance(detail, str | list), response.text[:200]
        assert detail, response.text[:200]
        # A refusal never reached InfluxDB. (A registered station's latest is looked up
        # first: its 404 says it has not reported, after the query.)
        if not (code == 404 and "has not reported yet" in str(detail)):
            assert queried == 0, (code, url[:200], detail)


def _check(api: ApiThread, path: str, params: dict[str, Any], tally: Tally, w: Witness) -> None:
    query = {k: v for k, v in params.items() if v is not None}
    tally.add(api.client.get(path, params=query), w)


def _settings(cases: int) -> settings:
    return settings(
        max_examples=cases // BATCH,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def test_fuzz_covers_every_v1_route(fuzz_api):
    served = {path for path in fuzz_api.get("/openapi.json").json()["paths"] if path[:3] == "/v1"}
    assert served == ROUTES  # a new /v1 route needs its parameters fuzzed here


def test_fuzz_series_parameters(fuzz_api, witness):
    tally = Tally()

    @_settings(CASES["series"])
    @given(st.lists(st.tuples(STATION_IDS, SERIES_PARAMS), min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str, dict[str, Any]]]) -> None:
        for station, params in batch:
            path = f"/v1/stations/{urllib.parse.quote(station, safe='')}/series"
            _check(fuzz_api, path, params, tally, witness)

    case()
    assert sum(tally.codes.values()) == CASES["series"]
    # The valid space is really exercised (about 5 % of the generated requests are served, and
    # the share moves with the catalogue: hourly-only derived parameters refuse raw series).
    assert tally.codes.get(200, 0) >= 150
    assert tally.codes.get(400, 0) >= 500
    assert not [code for code in tally.codes if code >= 500]


def test_fuzz_station_paths(fuzz_api, witness):
    tally = Tally()

    one = st.tuples(STATION_IDS, st.booleans(), st.dictionaries(ASCII, TEXT, max_size=2))

    @_settings(CASES["station"])
    @given(st.lists(one, min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str, bool, dict[str, str]]]) -> None:
        for station, latest, junk in batch:
            path = f"/v1/stations/{urllib.parse.quote(station, safe='')}"
            _check(fuzz_api, path + ("/latest" if latest else ""), dict(junk), tally, witness)

    case()
    assert sum(tally.codes.values()) == CASES["station"]
    assert tally.codes.get(200, 0) >= 100
    assert tally.codes.get(404, 0) >= 1000


def test_fuzz_health_routes(fuzz_api, witness):
    tally = Tally()
    days = st.one_of(st.none(), st.integers(-3, 40).map(str), TEXT)
    one = st.tuples(
        st.one_of(st.none(), STATION_IDS), days, st.dictionaries(ASCII, TEXT, max_size=1)
    )

    @_settings(CASES["health"])
    @given(st.lists(one, min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str | None, str | None, dict[str, str]]]) -> None:
        for station, day_count, junk in batch:
            path = (
                "/v1/health/stations"
                if station is None
                else f"/v1/stations/{urllib.parse.quote(station, safe='')}/health"
            )
            _check(fuzz_api, path, {**junk, "days": day_count}, tally, witness)

    case()
    assert sum(tally.codes.values()) == CASES["health"]
    assert tally.codes.get(200, 0) >= 30
    assert tally.codes.get(422, 0) >= 30


def test_fuzz_stream_filter_and_resume_id(fuzz_api, witness):
    tally = Tally()
    stations = st.one_of(
        st.none(),
        st.lists(st.sampled_from([*STATIONS, "nope", " ", ""]), max_size=4).map(",".join),
        TEXT,
    )

    # Header values as a client can send them (no surrounding blanks, printable ASCII).
    header = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
    last_ids = st.one_of(st.none(), header, st.integers(0, 2**70).map(str))

    @_settings(CASES["stream"])
    @given(st.lists(st.tuples(stations, last_ids), min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str | None, str | None]]) -> None:
        for filter_, last_id in batch:
            params = {} if filter_ is None else {"stations": filter_}
            headers = {} if last_id is None else {"Last-Event-ID": last_id}
            with fuzz_api.client.stream(
                "GET", "/v1/stream", params=params, headers=headers
            ) as answer:
                if answer.status_code != 200:
                    answer.read()
                tally.add(answer, witness)

    case()
    assert sum(tally.codes.values()) == CASES["stream"]
    assert tally.codes.get(200, 0) >= 100
    assert tally.codes.get(400, 0) + tally.codes.get(404, 0) >= 300


def test_fuzz_parameterless_routes_ignore_junk(fuzz_api, witness):
    tally = Tally()

    paths = st.sampled_from(
        ["/v1/parameters", "/v1/levels", "/v1/stations", "/v1/latest", "/v1/nope"]
    )
    one = st.tuples(paths, st.dictionaries(ASCII, TEXT, max_size=3))

    @_settings(CASES["plain"])
    @given(st.lists(one, min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str, dict[str, str]]]) -> None:
        for path, junk in batch:
            _check(fuzz_api, path, dict(junk), tally, witness)

    case()
    assert sum(tally.codes.values()) == CASES["plain"]
    assert set(tally.codes) == {200, 404}


def test_fuzz_language_of_parameters_and_levels(fuzz_api, witness):
    tally = Tally()
    header = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=600).map(
        str.strip
    )
    one = st.tuples(
        st.sampled_from(["/v1/parameters", "/v1/levels"]),
        st.one_of(st.none(), st.sampled_from(["el", "ar", "uk", "xx", ""]), TEXT),
        st.one_of(st.none(), st.sampled_from(["ka-GE,ka;q=0.9", "*", "fa;q=x"]), header),
    )

    @_settings(CASES["language"])
    @given(st.lists(one, min_size=BATCH, max_size=BATCH))
    def case(batch: list[tuple[str, str | None, str | None]]) -> None:
        for path, lang, accept in batch:
            params = {} if lang is None else {"lang": lang}
            headers = {} if not accept else {"Accept-Language": accept}
            tally.add(fuzz_api.client.get(path, params=params, headers=headers), witness)

    case()
    assert sum(tally.codes.values()) == CASES["language"]
    assert tally.codes.get(200, 0) >= 200  # most answers are served, in some language
    assert set(tally.codes) <= {200, 422}


def test_data_day_is_served(fuzz_api):
    # The dataset the fuzz runs against is really there (a fuzz over an empty database
    # would prove little).
    day = datetime.fromtimestamp(DAY_S, UTC)
    response = fuzz_api.get(
        f"/v1/stations/{FULL}/series",
        parameters="air_temperature",
        start=day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=(day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        interval="1h",
    )
    assert response.status_code == 200
    assert len(response.json()["points"]) == 24
