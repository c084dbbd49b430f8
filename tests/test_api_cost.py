"""Issue 8 part 6, RELIABILITY S9/S10: a bounded cost for every HTTP request (real InfluxDB).

Each test first states the attack the finding describes, then asserts the fixed outcome with
exact counts: the work refused before any row is fetched (InfluxDB's own query log as the
witness), ranges clipped to the station's data, per-client token buckets with Retry-After
and RateLimit headers, X-Forwarded-For believed only from a trusted proxy (rate limits and
the per-address stream cap), heavy-request slots (429/503, never a queue), a disconnect
cancelling the InfluxDB query (``SHOW QUERIES``), /health answered while heavy requests run,
and the dashboard's queries shared for the cache TTL.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client_address import ClientAddresses
from api.cost import DataSpan, clip, judge
from api.limits import TokenBuckets
from api.queries import circular_series
from api.series import NS, SeriesQuery, SeriesRequestError, plan_series
from meltemi.services import InfluxDB, Mosquitto
from sensors.catalog import PARAMETERS
from sensors.models import format_ts
from sensors.registry import load_registry
from sensors.settings import Settings
from tests.api_fixtures import generate, serve
from tests.helpers import PassThroughProxy, influx_query, influx_rows, wait_for, write_lines

FULL = "cost-full"  # every parameter, 4 days of 2-minute readings
DENSE = "cost-dense"  # wind direction every second: queries that keep InfluxDB busy
EMPTY = "cost-empty"  # registered, never reported
ALL = [spec.id for spec in PARAMETERS]
FULL_START_S = 1792713600  # 2026-10-23T00:00:00Z
FULL_END_S = FULL_START_S + 4 * 86400
DENSE_START_S = 1790000000  # 2026-09-21T14:13:20Z
DENSE_ROWS = 800_000  # about 9 days at 1 s
FULL_SERIES = f"/v1/stations/{FULL}/series"


def _registry(path: Path) -> Path:
    tables = []
    for station_id, params in ((FULL, ALL), (DENSE, ["wind_direction"]), (EMPTY, ALL)):
        listed = ", ".join(f'"{p}"' for p in params)
        tables.append(
            f'[[station]]\nid = "{station_id}"\nname = "{station_id}"\n'
            'municipality = "Elefsina"\nlat = 38.04\nlon = 23.54\nelevation_m = 12\n'
            f"parameters = [{listed}]\n"
        )
    path.write_text("\n".join(tables))
    return path


@pytest.fixture(scope="module")
def cost_db(influx: InfluxDB, broker: Mosquitto, tmp_path_factory) -> Settings:
    """Settings of this module: its own database and registry, the FULL station's readings."""
    tmp = tmp_path_factory.mktemp("api-cost")
    db = "tcost_" + uuid.uuid4().hex[:8]
    influx.create_database(db)
    write_lines(influx.url, db, generate(ALL, FULL_START_S, FULL_END_S, 120, seed=8).lines(FULL))
    return Settings(
        mqtt_port=broker.port,
        influx_url=influx.url,
        influx_db=db,
        data_dir=tmp / "var",
        stations_file=_registry(tmp / "stations.toml"),
    )


@pytest.fixture(scope="module")
def dense(cost_db: Settings) -> Settings:
    """The DENSE station's 800,000 readings (written once, in 100,000-line requests)."""
    for begin in range(0, DENSE_ROWS, 100_000):
        lines = [
            f'readings,station={DENSE} wind_direction={(k * 7) % 360},wind_direction_qc="good" '
            f"{(DENSE_START_S + k) * NS}"
            for k in range(begin, min(begin + 100_000, DENSE_ROWS))
        ]
        write_lines(cost_db.influx_url, cost_db.influx_db, lines)
    return cost_db


def _with(settings: Settings, **changes: Any) -> Settings:
    # Latest from memory seeds itself from InfluxDB once the live feed has subscribed, at a
    # moment of its own: its query would land among the ones these tests count.
    return Settings(**{**settings.model_dump(), "api_latest_from_memory": False, **changes})


class QueryLog:
    """The queries InfluxDB executed since ``mark()`` (its query log, read incrementally)."""

    def __init__(self, influx: InfluxDB) -> None:
        assert influx.log_path is not None
        self.path = influx.log_path
        self.offset = 0

    def mark(self) -> None:
        """Forget everything logged so far."""
        self.offset = self.path.stat().st_size

    def since(self, marker: str) -> list[str]:
        """Return the executed queries logged since the mark that mention ``marker``."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode("utf-8", "replace")
        return [
            line for line in text.splitlines() if 'msg="Executing query"' in line and marker in line
        ]


@pytest.fixture
def query_log(influx: InfluxDB) -> QueryLog:
    """A reader of the session InfluxDB's query log, marked now."""
    log = QueryLog(influx)
    log.mark()
    return log


# --- 1. refused by the work, before fetching ------------------------------------------------


def test_a_costly_series_is_refused_before_any_row_is_fetched(cost_db, query_log):
    # The finding: a 69-day interval=1m series over every parameter passed the 100,000-point
    # rule (99,360 windows) and was refused only after every row had been fetched.
    tight = _with(cost_db, api_max_scan_values=20_000, api_rate_per_s=0)
    with serve(tight) as api:
        response = api.get(
            FULL_SERIES, start="2026-08-19T00:00:00Z", end="2026-10-27T00:00:00Z", interval="1m"
        )
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "MELTEMI_API_MAX_SCAN_VALUES" in detail
        assert "narrow start/end" in detail
        assert "has readings from 2026-10-23T00:00:00Z to 2026-10-26T23:58:00Z" in detail
        executed = query_log.since(FULL)
        # Only the data span (two LIMIT 1 rows) and one count() of one field ran.
        assert len(executed) == 3, executed
        assert sum("count(" in line for line in executed) == 1
        assert sum("LIMIT 1" in line for line in executed) == 2
        assert not [line for line in executed if "GROUP BY time" in line or "LIMIT 3" in line]
        # The same request for one parameter over the station's 4 days is within the budget.
        one = api.get(
            FULL_SERIES,
            parameters="air_temperature",
            start="2026-10-23T00:00:00Z",
            end="2026-10-24T00:00:00Z",
            interval="1h",
        )
        assert one.status_code == 200, one.text
        assert len(one.json()["points"]) == 24


def test_derived_and_raw_rules_are_judged_on_counted_readings(cost_db):
    (station,) = [s for s in load_registry(cost_db.stations_file) if s.id == FULL]
    now = FULL_END_S * NS
    span = DataSpan(FULL_START_S * NS, FULL_END_S * NS - 120 * NS)
    derived = plan_series(station, SeriesQuery(parameters="dew_point", interval="1h"), now_ns=now)
    judge(derived, 300_000, span, 10**12)  # at the cap: fine
    with pytest.raises(SeriesRequestError, match="computed from every reading"):
        judge(derived, 300_001, span, 10**12)
    raw = plan_series(
        station, SeriesQuery(parameters="air_temperature", interval="raw"), now_ns=now
    )
    judge(raw, 100_000, span, 10**12)
    with pytest.raises(SeriesRequestError, match="more than 100,000"):
        judge(raw, 100_001, span, 10**12)
    stored = plan_series(
        station, SeriesQuery(parameters="air_temperature,pm10", interval="1h"), now_ns=now
    )
    judge(stored, 500, span, 1000)  # 500 readings x 2 parameters
    with pytest.raises(SeriesRequestError, match="1,002 stored values"):
        judge(stored, 501, span, 1000)


def test_clipping_never_hides_readings_that_may_still_arrive(cost_db):
    (station,) = [s for s in load_registry(cost_db.stations_file) if s.id == FULL]
    settings = _with(cost_db, backfill_horizon_days=30, future_tolerance_s=300)
    now = (FULL_END_S + 40 * 86400) * NS
    day = 86400 * NS
    plan = plan_series(
        station,
        SeriesQuery(start="1930-01-01T00:00:00Z", end="2200-01-01T00:00:00Z", interval="1d"),
        now_ns=now,
    )
    span = DataSpan(FULL_START_S * NS, FULL_END_S * NS - 120 * NS)
    # From the first reading to now + the future tolerance: nothing newer can be stored.
    assert clip(plan, span, settings, now).query_window == (FULL_START_S * NS, now + 300 * NS)
    # Within the backfill horizon, older readings may still arrive: the horizon bounds.
    soon = FULL_END_S * NS + day
    assert clip(plan, span, settings, soon).query_window[0] == soon - 30 * day
    nothing = DataSpan(None, None)
    assert clip(plan, nothing, settings, now).query_window == (now - 30 * day, now + 300 * NS)
    # A range entirely before the data: nothing to read.
    early = plan_series(
        station, SeriesQuery(start="2025-01-01T00:00:00Z", end="2025-02-01T00:00:00Z"), now_ns=now
    )
    start, end = clip(early, span, settings, now).query_window
    assert start == end


def test_centuries_of_daily_windows_are_grouped_over_the_data_span(cost_db, query_log):
    # The finding: a 1d series over 273 years passed the point rule and ran InfluxDB into its
    # timeout. Now the statements cover the station's data only, and the answer is the same.
    with serve(_with(cost_db, api_rate_per_s=0)) as api:
        wide = api.get(
            FULL_SERIES,
            parameters="air_temperature,wind_direction",
            start="1930-01-01T00:00:00Z",
            end="2200-01-01T00:00:00Z",
            interval="1d",
        )
        assert wide.status_code == 200, wide.text
        executed = [line for line in query_log.since(FULL) if "GROUP BY time(1d)" in line]
        assert len(executed) == 2
        now_ns = time.time_ns()
        for line in executed:
            bounds = [int(n) for n in re.findall(r"time >= (-?\d+)", line)]
            ends = [int(n) for n in re.findall(r"time < (-?\d+)", line)]
            assert bounds
            assert min(bounds) == FULL_START_S * NS
            assert ends
            assert max(ends) <= now_ns + 301 * NS
        exact = api.get(
            FULL_SERIES,
            parameters="air_temperature,wind_direction",
            start="2026-10-23T00:00:00Z",
            end="2026-10-27T00:00:00Z",
            interval="1d",
        )
        assert [p["time"] for p in wide.json()["points"]] == [
            "2026-10-23T00:00:00Z",
            "2026-10-24T00:00:00Z",
            "2026-10-25T00:00:00Z",
            "2026-10-26T00:00:00Z",
        ]
        assert wide.json()["points"] == exact.json()["points"]
        assert wide.json()["start"] == "1930-01-01T00:00:00Z"  # the answer names the request


def test_a_range_without_data_is_answered_without_a_data_statement(cost_db, query_log):
    with serve(_with(cost_db, api_rate_per_s=0)) as api:
        before = api.get(
            FULL_SERIES,
            parameters="air_temperature",
            start="2025-01-01T00:00:00Z",
            end="2025-01-10T00:00:00Z",
            interval="1h",
        )
        assert before.status_code == 200, before.text
        assert before.json()["points"] == []
        executed = query_log.since(FULL)
        assert len(executed) == 2, executed  # the data span's two LIMIT 1 rows, nothing else
        assert all("LIMIT 1" in line and "GROUP BY" not in line for line in executed)
        never = api.get(f"/v1/stations/{EMPTY}/series", interval="1h")
        assert never.status_code == 200, never.text
        assert never.json()["points"] == []


# --- 2./7. rate limits and trusted proxies --------------------------------------------------


def _client(source: str, base: str) -> httpx.Client:
    return httpx.Client(
        base_url=base, timeout=30.0, transport=httpx.HTTPTransport(local_address=source)
    )


def test_s10_abuser_gets_429_with_retry_after_and_the_dashboard_none(cost_db):
    # The finding: one client got 104 requests/s with no 429. Defaults: 120 tokens, 2/s,
    # a series costs 5. The abuser also forges a new X-Forwarded-For on every request.
    settings = _with(cost_db, api_cache_ttl_s=5.0)
    assert (settings.api_rate_burst, settings.api_rate_per_s, settings.api_heavy_cost) == (
        120,
        2.0,
        5,
    )
    params = {
        "parameters": "air_temperature",
        "start": "2026-10-24T00:00:00Z",
        "end": "2026-10-25T00:00:00Z",
        "interval": "10m",
    }
    with serve(settings) as api:
        normal_codes: list[int] = []
        stop = threading.Event()

        def dashboard() -> None:
            # What api/static/app.js does: a page load, then it polls (here much faster).
            with _client("127.0.0.2", api.url) as page:
                for path in ("/v1/stations", "/v1/parameters", "/v1/latest"):
                    normal_codes.append(page.get(path).status_code)
                normal_codes.append(page.get(FULL_SERIES, params=params).status_code)
                while not stop.is_set() and len(normal_codes) < 40:
                    normal_codes.append(page.get("/v1/latest").status_code)
                    time.sleep(0.05)

        page_thread = threading.Thread(target=dashboard)
        page_thread.start()
        answers = []
        began = time.monotonic()
        with _client("127.0.0.1", api.url) as abuser:
            for k in range(100):
                forged = {"X-Forwarded-For": f"203.0.113.{k % 250}"}
                answers.append(abuser.get(FULL_SERIES, params=params, headers=forged))
        elapsed = time.monotonic() - began
        stop.set()
        page_thread.join(60)
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}
    served = codes.count(200)
    # The burst (24 series) plus what refilled meanwhile (2 tokens/s, 5 per series).
    assert 24 <= served <= 24 + int(elapsed * 2 / 5) + 1
    excess = len(codes) - 24
    assert codes.count(429) >= 0.9 * excess
    assert codes[:24] == [200] * 24
    for response in answers:
        assert response.headers["RateLimit-Limit"] == "120"
        assert response.headers["RateLimit-Policy"] == "120;w=60"
        assert int(response.headers["RateLimit-Remaining"]) < 120
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert "rate limit" in response.json()["detail"]
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in answers[:24]]
    assert remaining[0] == 115
    assert remaining == sorted(remaining, reverse=True)
    assert len(normal_codes) >= 5
    assert set(normal_codes) == {200}, normal_codes


def test_forwarded_for_counts_only_from_a_trusted_proxy(cost_db):
    small = {"api_rate_burst": 20, "api_rate_per_s": 0.01, "api_heavy_cost": 10}
    params = {"parameters": "air_temperature", "start": "2026-10-24T00:00:00Z", "interval": "1h"}
    via_proxy = _with(cost_db, api_trusted_proxies=["127.0.0.1"], **small)
    with serve(via_proxy) as api:
        for address in ("198.51.100.7", "198.51.100.8"):
            hops = {"X-Forwarded-For": f"10.9.9.9, {address}"}  # the proxy appended the peer
            codes = [
                api.client.get(FULL_SERIES, params=params, headers=hops).status_code
                for _ in range(3)
            ]
            assert codes == [200, 200, 429], (address, codes)
    untrusted = _with(cost_db, **small)
    with serve(untrusted) as api:
        codes = [
            api.client.get(
                FULL_SERIES, params=params, headers={"X-Forwarded-For": f"198.51.100.{k}"}
            ).status_code
            for k in range(3)
        ]
        assert codes == [200, 200, 429]


def test_client_addresses_take_the_rightmost_untrusted_hop():
    scope: dict[str, Any] = {
        "client": ("10.0.0.5", 5555),
        "headers": [(b"x-forwarded-for", b"1.2.3.4, 203.0.113.9, 10.0.0.6")],
    }
    assert ClientAddresses([]).of(scope) == "10.0.0.5"
    assert ClientAddresses(["192.0.2.0/24"]).of(scope) == "10.0.0.5"
    assert ClientAddresses(["10.0.0.0/8"]).of(scope) == "203.0.113.9"
    scope["headers"] = [(b"x-forwarded-for", b"garbage, 10.0.0.7")]
    assert ClientAddresses(["10.0.0.0/8"]).of(scope) == "10.0.0.7"
    assert ClientAddresses(["10.0.0.0/8"]).of({"client": None, "headers": []}) == "unknown"


def test_token_bucket_refills_and_says_when():
    buckets = TokenBuckets(rate_per_s=2.0, burst=10)
    assert [buckets.take("a", 4, now_s=0).allowed for _ in range(3)] == [True, True, False]
    refused = buckets.take("a", 4, now_s=0)
    assert (refused.remaining, refused.retry_after_s, refused.reset_s) == (2, 1, 4)
    assert buckets.take("a", 4, now_s=1.0).allowed  # 2 + 2 tokens
    assert buckets.take("b", 10, now_s=1.0).allowed  # another client's own bucket


def test_stream_cap_per_address_ignores_untrusted_forwarded_for(cost_db):
    # The finding: X-Forwarded-For was believed from any loopback client, so one host could
    # open every stream slot by varying the header.
    with serve(_with(cost_db, api_rate_per_s=0)) as api, contextlib.ExitStack() as streams:
        codes = []
        for k in range(11):
            response = streams.enter_context(
                api.client.stream(
                    "GET", "/v1/stream", headers={"X-Forwarded-For": f"203.0.113.{k}"}
                )
            )
            codes.append(response.status_code)
        assert codes == [200] * 10 + [503]
    trusted = _with(cost_db, api_rate_per_s=0, api_trusted_proxies=["127.0.0.1"])
    with serve(trusted) as api, contextlib.ExitStack() as streams:
        codes = []
        for k in range(11):
            response = streams.enter_context(
                api.client.stream(
                    "GET", "/v1/stream", headers={"X-Forwarded-For": f"203.0.113.{k}"}
                )
            )
            codes.append(response.status_code)
        assert codes == [200] * 11  # eleven clients behind the proxy, one stream each


# --- 3. heavy-request slots -----------------------------------------------------------------


class HoldingProxy(PassThroughProxy):
    """A pass-through TCP proxy to InfluxDB that holds every answer while ``hold`` is set."""

    def __init__(self, upstream_port: int) -> None:
        self.hold = threading.Event()
        self.released = threading.Event()
        super().__init__(upstream_port, "holding-proxy")

    def relay_answer(self, chunk: bytes, sent: int) -> tuple[bytes, bool]:  # noqa: ARG002
        """Hold the answer until released while ``hold`` is set."""
        if self.hold.is_set():
            self.released.wait(60)
        return chunk, False

    def close(self) -> None:
        """Release everything and stop accepting."""
        self.released.set()
        super().close()


def test_heavy_requests_are_capped_per_client_and_overall(cost_db, influx):
    proxy = HoldingProxy(influx.port)
    settings = _with(
        cost_db,
        influx_url=f"http://127.0.0.1:{proxy.port}",
        api_rate_per_s=0,
        api_max_heavy=3,
        api_max_heavy_per_client=2,
        api_heavy_wait_s=0.5,
        api_cache_ttl_s=0,
    )
    params = {"parameters": "air_temperature", "start": "2026-10-24T00:00:00Z", "interval": "1h"}
    try:
        with serve(settings) as api:
            assert api.get(FULL_SERIES, **params).status_code == 200  # the span is now cached
            slots = api.app.state.heavy_slots
            proxy.hold.set()
            results: dict[str, int] = {}

            def fetch(name: str, source: str) -> None:
                with _client(source, api.url) as client:
                    results[name] = client.get(FULL_SERIES, params=params).status_code

            held = [
                threading.Thread(target=fetch, args=("a1", "127.0.0.1")),
                threading.Thread(target=fetch, args=("a2", "127.0.0.1")),
            ]
            for thread in held:
                thread.start()
            wait_for(lambda: slots.active == 2, 20, message="two heavy requests in flight")
            third = api.get(FULL_SERIES, **params)
            assert third.status_code == 429, third.text
            assert third.headers["Retry-After"] == "1"
            assert "at most 2 heavy requests" in third.json()["detail"]
            held.append(threading.Thread(target=fetch, args=("b1", "127.0.0.2")))
            held[-1].start()
            wait_for(lambda: slots.active == 3, 20, message="three heavy requests in flight")
            with _client("127.0.0.3", api.url) as other:
                busy = other.get(FULL_SERIES, params=params)
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"] == "1"
            assert "busy" in busy.json()["detail"]
            assert slots.waiting == 0  # the refused one does not stay queued
            cheap = api.get("/v1/parameters")  # light routes are not held back
            assert cheap.status_code == 200
            proxy.released.set()
            for thread in held:
                thread.join(30)
            assert results == {"a1": 200, "a2": 200, "b1": 200}
            # Slots are given back once each answer is sent (just after the client has it).
            wait_for(lambda: slots.active == 0, 20, message="slots given back")
            assert dict(slots.by_client) == {}
    finally:
        proxy.close()


# --- 4. a disconnect cancels the query -------------------------------------------------------


def _running(influx: InfluxDB, db: str) -> list[str]:
    rows = influx_rows(influx.url, db, "SHOW QUERIES")
    texts = [str(row.get("query", "")) for row in rows]
    return [text for text in texts if "wind_direction" in text and "SHOW" not in text]


def test_a_client_that_goes_away_cancels_its_influx_query(dense, influx):
    # The finding: a client that disconnects leaves its query running. The witness is
    # InfluxDB's SHOW QUERIES: a control query with the same work, started *before* the API's,
    # must still be running when the API's query is gone (without cancellation the API's,
    # started later, would end after it).
    settings = _with(dense, api_rate_per_s=0, api_cache_ttl_s=0)
    start_ns, end_ns = DENSE_START_S * NS, (DENSE_START_S + DENSE_ROWS) * NS
    control = circular_series(
        DENSE,
        "wind_direction",
        ["mean"],
        start_ns=start_ns - 1,
        end_ns=end_ns,
        interval="1m",
        tz=None,
        include_suspect=False,
    )
    control_done = threading.Event()

    def run_control() -> None:
        influx_query(influx.url, dense.influx_db, control)
        control_done.set()

    with serve(settings) as api:
        # The span is cached first, so the API's request goes straight to its statement.
        assert api.get(f"/v1/stations/{DENSE}/series", interval="1d").status_code == 200
        control_thread = threading.Thread(target=run_control)
        control_thread.start()
        wait_for(lambda: len(_running(influx, dense.influx_db)) == 1, 20, message="control runs")
        path = (
            f"/v1/stations/{DENSE}/series?interval=1m&start={format_ts(start_ns)}"
            f"&end={format_ts(end_ns)}"
        )
        sock = socket.create_connection(("127.0.0.1", api.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: len(_running(influx, dense.influx_db)) == 2, 20, message="API query runs")
        assert not control_done.is_set()
        sock.close()
        control_marker = f"time >= {start_ns - 1} "

        def api_query_gone() -> bool:
            return not [q for q in _running(influx, dense.influx_db) if control_marker not in q]

        wait_for(api_query_gone, 60, interval_s=0.02, message="the API's query ended")
        still = _running(influx, dense.influx_db)
        assert len(still) == 1, "the control ended first: the API's query ran on"
        assert control_marker in still[0], still
        assert not control_done.is_set()
        control_thread.join(120)
        metrics = api.get("/metrics").text
        assert (
            'meltemi_api_requests_total{method="GET",route="/v1/stations/{station_id}/series",'
            'status="499"} 1.0'
        ) in metrics.splitlines()


# --- 5. nothing CPU-heavy on the event loop --------------------------------------------------


def test_health_answers_while_three_heavy_requests_run(dense):
    settings = _with(dense, api_rate_per_s=0, api_cache_ttl_s=0, api_max_heavy_per_client=3)
    windows = [
        ("2026-09-21T15:00:00Z", "2026-09-22T11:00:00Z"),
        ("2026-09-23T00:00:00Z", "2026-09-23T20:00:00Z"),
        ("2026-09-25T00:00:00Z", "2026-09-25T20:00:00Z"),
    ]
    with serve(settings) as api:
        done: list[int] = []

        def heavy(start: str, end: str) -> None:
            with httpx.Client(base_url=api.url, timeout=120) as client:
                response = client.get(
                    f"/v1/stations/{DENSE}/series",
                    params={"interval": "raw", "start": start, "end": end},
                )
                done.append(len(response.json()["points"]))

        threads = [threading.Thread(target=heavy, args=w) for w in windows]
        for thread in threads:
            thread.start()
        wait_for(lambda: api.app.state.heavy_slots.active == 3, 30, message="3 heavy running")
        answered = 0
        while not done and answered < 5:
            health = api.client.get("/health", timeout=30)
            if not done:  # counted only while all three are still in flight
                answered += "status" in health.json()
        for thread in threads:
            thread.join(120)
    assert done == [72_000] * 3  # 20 hours of 1-second readings each: really heavy
    assert answered == 5


# --- 6. the dashboard's queries are shared ---------------------------------------------------


def test_a_crowd_of_dashboards_costs_one_query_per_ttl(cost_db, query_log):
    ttl = 300.0
    settings = _with(
        cost_db,
        api_rate_per_s=0,
        api_cache_ttl_s=ttl,
        api_max_heavy=20,
        api_max_heavy_per_client=20,
    )
    wait_for(lambda: time.time() % ttl < ttl - 20, 30, message="not at a TTL boundary")
    edge_before = int(time.time() // ttl * ttl)
    with serve(settings) as api:
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def resident(k: int) -> None:
            now = time.time() - k % 7  # each browser's clock and moment differ a little
            end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7 * 86400))
            with httpx.Client(base_url=api.url, timeout=30) as client:
                got = [
                    client.get("/v1/latest"),
                    client.get("/v1/stations"),
                    client.get(
                        FULL_SERIES,
                        params={
                            "parameters": "air_temperature",
                            "start": start,
                            "end": end,
                            "interval": "1h",
                            "agg": "mean,min,max",
                        },
                    ),
                ]
            with lock:
                answers.extend(got)

        crowd = [threading.Thread(target=resident, args=(k,)) for k in range(20)]
        for thread in crowd:
            thread.start()
        for thread in crowd:
            thread.join(60)
    assert int(time.time() // ttl * ttl) == edge_before, "crossed a TTL boundary; rerun"
    assert len(answers) == 60
    assert {r.status_code for r in answers} == {200}
    executed = query_log.since("readings")
    aggregate = [line for line in executed if "GROUP BY time(1h)" in line]
    assert len(aggregate) == 1, aggregate
    latest_recent = [line for line in executed if "now() - 1h" in line]
    assert len(latest_recent) == 2, latest_recent  # /v1/latest's and /v1/stations' statements
    series = [r.json() for r in answers if "points" in r.json()]
    assert len(series) == 20
    assert {s["end"] for s in series} == {
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(edge_before))
    }
    assert all(s == series[0] for s in series)
