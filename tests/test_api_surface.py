"""Issue 8 part 8 and the API side of RELIABILITY S12: an honest health and surface.

Against real processes: InfluxDB with authentication on (and a read-only user), Mosquitto with
a password file and an ACL, the API under uvicorn (in a thread, or as ``meltemi api``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr

from api.metrics import METHOD_LABELS, OTHER_METHOD, UNMATCHED_ROUTE
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, free_port
from sensors.settings import Settings
from tests.api_fixtures import LIVE, ApiThread, api_settings, base_settings, serve
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, prometheus_value, settings_env, wait_for

ADMIN = ("admin", "admin-pw-8f3k")
READER_PASSWORD = "reader-pw-J7x2q"
WRONG_PASSWORD = "wrong-pw-Zq81"
LIVE_USER = "api-live"
LIVE_PASSWORD = "live-pw-Hh4m9"
LIVE_WRONG = "live-wrong-Pp0v"
DASHBOARD_ORIGIN = "https://meltemi.example"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """An InfluxDB of this module's own with authentication on, through influxd's environment
    (``INFLUXDB_HTTP_AUTH_ENABLED`` overrides the config file), an admin, a database and a
    read-only user ``reader``."""
    server = InfluxDB(tmp_path_factory.mktemp("auth-influx"), free_port())
    server.env = {**os.environ, "INFLUXDB_HTTP_AUTH_ENABLED": "true"}
    server.start_and_wait()
    try:
        for q in (
            f"CREATE USER admin WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES",
            "CREATE DATABASE surface",
            f"CREATE USER reader WITH PASSWORD '{READER_PASSWORD}'",
            "GRANT READ ON surface TO reader",
        ):
            response = httpx.post(f"{server.url}/query", data={"q": q}, auth=ADMIN)
            assert response.status_code == 200, response.text
            assert "error" not in response.json()["results"][0], response.text
        # Auth is really on: an anonymous query is refused (while /ping still answers).
        assert httpx.get(f"{server.url}/query", params={"q": "SHOW DATABASES"}).status_code == 401
        assert httpx.get(f"{server.url}/ping").status_code == 204
        yield server
    finally:
        server.stop()


DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
BROKER_ADMIN = ("broker-admin", "broker-admin-pw-Rt5")


def _dynsec(broker: Mosquitto, *command: str) -> None:
    done = subprocess.run(
        [
            *("mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(broker.port)),
            *("-u", BROKER_ADMIN[0], "-P", BROKER_ADMIN[1], "dynsec", *command),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def locked_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of this module's own with Debian's dynamic-security plugin: no anonymous
    clients; ``api-live`` may subscribe to the accepted readings and the statuses, ``api-half``
    to the statuses only, so the broker refuses one of its two subscriptions in the SUBACK
    (with dynsec, unlike ``acl_file``, Mosquitto 2.0.11 checks subscriptions)."""
    root = tmp_path_factory.mktemp("locked-broker")
    config = root / "dynsec.json"
    init = subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), *BROKER_ADMIN],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    extra = f"\nallow_anonymous false\nplugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {config}\n"
    server = Mosquitto(root / "data", free_port(), extra_conf=extra)
    server.start_and_wait()
    try:
        for user, filters in (
            (LIVE_USER, ["meltemi/accepted/+", "stations/+/status"]),
            ("api-half", ["stations/+/status"]),
        ):
            _dynsec(server, "createClient", user, "-p", LIVE_PASSWORD)
            _dynsec(server, "createRole", f"{user}-role")
            for topic_filter in filters:
                _dynsec(
                    server, "addRoleACL", f"{user}-role", "subscribePattern", topic_filter, "allow"
                )
            _dynsec(server, "addClientRole", user, f"{user}-role")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def surface_settings(
    influx: InfluxDB, broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The session's services, the API tests' registry, a dashboard origin for CORS."""
    tmp = tmp_path_factory.mktemp("api-surface")
    return api_settings(
        base_settings(influx, broker.port, tmp), tmp, api_cors_origins=[DASHBOARD_ORIGIN]
    )


@pytest.fixture(scope="module")
def api(surface_settings: Settings) -> Iterator[ApiThread]:
    """The API on the session's services, its live feed subscribed."""
    with serve(surface_settings, wait_feed=True) as server:
        yield server


def _auth_settings(base: Settings, influx: InfluxDB, password: str, **extra: Any) -> Settings:
    return base.model_copy(
        update={
            "influx_url": influx.url,
            "influx_db": "surface",
            "influx_username": "reader",
            "influx_password": SecretStr(password),
            **extra,
        }
    )


# --- 3. /health exercises the real paths --------------------------------------------------


def test_health_queries_influxdb_with_the_apis_own_credentials(surface_settings, auth_influx):
    good = _auth_settings(surface_settings, auth_influx, READER_PASSWORD)
    with serve(good, wait_feed=True) as api:
        response = api.get("/health")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "mqtt": True,
            "influxdb": True,
            "broker_dropped": None,
        }
    wrong = _auth_settings(surface_settings, auth_influx, WRONG_PASSWORD)
    with serve(wrong, wait_feed=True) as api:
        response = api.get("/health")
        # /ping answers 204 without credentials; the API's own query is refused (401).
        assert httpx.get(f"{auth_influx.url}/ping").status_code == 204
        assert response.status_code == 503
        assert response.json() == {
            "status": "degraded",
            "mqtt": True,
            "influxdb": False,
            "broker_dropped": None,
        }
        assert response.headers["cache-control"] == "no-store"
    missing_db = _auth_settings(
        surface_settings, auth_influx, READER_PASSWORD, influx_db="no_such_db"
    )
    with serve(missing_db, wait_feed=True) as api:
        assert api.get("/health").json()["influxdb"] is False


@pytest.mark.parametrize(
    ("user", "password", "subscribed"),
    [
        pytest.param(LIVE_USER, LIVE_PASSWORD, True, id="own-credential"),
        pytest.param(LIVE_USER, LIVE_WRONG, False, id="refused-password"),
        pytest.param(None, None, False, id="anonymous-refused"),
        pytest.param("api-half", LIVE_PASSWORD, False, id="suback-refused-by-acl"),
    ],
)
def test_health_follows_the_live_feeds_subscription(
    surface_settings, locked_broker, user, password, subscribed
):
    settings = surface_settings.model_copy(
        update={
            "mqtt_port": locked_broker.port,
            "api_mqtt_username": user,
            "api_mqtt_password": SecretStr(password) if password else None,
        }
    )
    with serve(settings) as api:
        if subscribed:
            wait_for(lambda: api.feed.connected, 10, message="live feed subscribed")
        else:  # the broker answered: a refused CONNACK, or a SUBACK with a failure code
            refusal = wait_for(lambda: api.feed.last_refusal, 10, message="the broker's refusal")
            expected_refusal = "subscription" if user == "api-half" else "connection"
            assert refusal is not None
            assert refusal.startswith(expected_refusal), refusal
        response = api.get("/health")
        expected = "ok" if subscribed else "degraded"
        assert response.json() == {
            "status": expected,
            "mqtt": subscribed,
            "influxdb": True,
            "broker_dropped": None,
        }
        assert response.status_code == (200 if subscribed else 503)
        assert api.feed.connected is subscribed


# --- 4. HEAD for every GET route ----------------------------------------------------------

_VARYING = {"date", "x-request-id", "content-length"}


def _all_routes(routes: list[Any]) -> list[Any]:
    """Return every route of the app (FastAPI wraps included routers; none has a prefix)."""
    flat = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat += _all_routes(included.routes) if included is not None else [route]
    return flat


def _concrete(path: str) -> str:
    return path.replace("{station_id}", LIVE)


def test_head_answers_every_get_route_like_get(api):
    get_paths = sorted(
        _concrete(route.path)
        for route in _all_routes(api.app.routes)
        if isinstance(route, APIRoute) and "GET" in (route.methods or set())
    )
    assert len(get_paths) >= 9  # every route of the app, documented or not
    get_paths += ["/static/app.js", "/static/vendor/swagger-ui.css"]
    for path in get_paths:
        if path == "/v1/stream":
            with api.client.stream("GET", path) as streamed:
                get_status, get_headers = streamed.status_code, streamed.headers
                get_length = None
        else:
            got = api.client.get(path)
            get_status, get_headers, get_length = got.status_code, got.headers, len(got.content)
            if api.client.get(path).content != got.content:
                get_length = None  # the answer moves with the clock (/metrics, series to now)
        head = api.client.head(path)
        assert head.status_code == get_status, path
        assert head.content == b"", path
        assert {k for k in head.headers if k not in _VARYING} == {
            k for k in get_headers if k not in _VARYING
        }, path
        for name in head.headers:
            # Rate-limit headers (api.limits) count down from one request to the next.
            if name not in _VARYING and not name.startswith("ratelimit"):
                assert head.headers[name] == get_headers[name], (path, name)
        if get_length is not None and "content-length" in get_headers:
            assert head.headers["content-length"] == str(get_length), path
        assert REQUEST_ID.fullmatch(head.headers["x-request-id"]), path
    # The stream's HEAD ended at its headers: no stream slot stays taken.
    wait_for(lambda: api.feed.hub.active == 0, 5, message="HEAD /v1/stream released its slot")


# --- 5. Swagger UI from vendored files ------------------------------------------------------


def test_docs_are_served_from_this_origin_only(api, surface_settings):
    page = api.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "http" not in csp  # no CDN host is allowed for anything
    assert "script-src 'self';" in csp
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(urls) == [
        "/static/docs.js",
        "/static/favicon.svg",
        "/static/vendor/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui.css",
    ]
    for url in [*urls, "/openapi.json"]:
        assert urlsplit(url).netloc == ""
        served = api.get(url)
        assert served.status_code == 200, url
        assert served.headers["x-content-type-options"] == "nosniff"
    assert "cdn" not in page.text.lower()
    # The licence travels with the vendored files.
    assert "Apache License" in api.get("/static/vendor/swagger-ui.LICENSE").text

    off = surface_settings.model_copy(update={"api_docs": False})
    with serve(off) as without:
        assert without.get("/docs").status_code == 404
        assert without.get("/openapi.json").status_code == 200


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
def test_docs_render_in_a_browser_with_no_request_off_this_origin(api):
    """Swagger UI really starts from the vendored files: every request the page makes goes to
    this origin, nothing violates the CSP, and the API's title is rendered from /openapi.json."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    requested: list[str] = []
    errors: list[str] = []
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(api.url + "/docs")
            title = page.locator(".swagger-ui .info .title")
            playwright_sync.expect(title).to_contain_text("Meltemi", timeout=15_000)
            playwright_sync.expect(page.locator(".opblock-summary-path").first).to_be_visible()
            operations = page.locator(".opblock-summary-path").count()
        finally:
            browser.close()
    assert errors == []
    assert {urlsplit(url).netloc for url in requested} == {urlsplit(api.url).netloc}
    assert {urlsplit(url).path for url in requested} >= {
        "/docs",
        "/static/vendor/swagger-ui-bundle.js",
        "/static/vendor/swagger-ui.css",
        "/static/docs.js",
        "/openapi.json",
    }
    documented = api.get("/openapi.json").json()["paths"]
    assert operations == sum(len(methods) for methods in documented.values())


# --- 6. headers on every response ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "cache"),
    [
        ("GET", "/health", 200, "no-store"),
        ("GET", "/metrics", 200, "no-store"),
        ("GET", "/v1/parameters", 200, "public, max-age=10"),
        ("GET", "/v1/stations", 200, "public, max-age=10"),
        ("GET", f"/v1/stations/{LIVE}", 200, "public, max-age=10"),
        ("GET", "/v1/stations/nowhere-9", 404, "no-store"),
        ("GET", "/", 200, "no-cache"),
        ("GET", "/static/app.js", 200, "public, max-age=3600"),
        ("GET", "/openapi.json", 200, "public, max-age=300"),
        ("GET", "/docs", 200, "no-cache"),
        ("GET", "/no/such/path", 404, "no-store"),
        ("POST", "/v1/latest", 405, "no-store"),
        ("HEAD", "/v1/parameters", 200, "public, max-age=10"),
    ],
)
def test_every_answer_has_nosniff_a_request_id_and_a_cache_policy(api, method, path, status, cache):
    response = api.client.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    assert response.headers["cache-control"] == cache
    assert "strict-transport-security" not in response.headers  # plain http, no setting


def test_stream_is_no_store_and_hsts_follows_the_setting(api, surface_settings):
    with api.client.stream("GET", "/v1/stream") as streamed:
        assert streamed.headers["cache-control"] == "no-store"
        assert streamed.headers["x-content-type-options"] == "nosniff"
    behind_tls = surface_settings.model_copy(update={"api_hsts": True})
    with serve(behind_tls) as other:
        for path in ("/health", "/v1/parameters", "/no/such/path"):
            response = other.get(path)
            assert response.headers["strict-transport-security"] == "max-age=31536000", path


class _Proxies:
    """The ``is_trusted`` interface of api.client_address.ClientAddresses, for one network."""

    def __init__(self, network: str) -> None:
        self.network = ipaddress.ip_network(network)

    def is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address in self.network


@pytest.mark.parametrize(
    ("trusted", "proto", "hsts"),
    [
        pytest.param("127.0.0.0/8", "https", True, id="trusted-proxy-says-https"),
        pytest.param("127.0.0.0/8", "http", False, id="trusted-proxy-says-http"),
        pytest.param("127.0.0.0/8", None, False, id="no-header"),
        pytest.param("10.0.0.0/8", "https", False, id="untrusted-peer-says-https"),
        pytest.param(None, "https", False, id="no-trusted-proxies"),
    ],
)
def test_hsts_behind_a_trusted_tls_proxy_only(surface_settings, trusted, proto, hsts):
    server = ApiThread(surface_settings)
    if trusted is not None:
        server.app.state.client_addresses = _Proxies(trusted)
    server.start()
    try:
        headers = {"X-Forwarded-Proto": proto} if proto else {}
        response = server.client.get("/v1/parameters", headers=headers)
    finally:
        server.close()
    assert response.status_code == 200
    assert ("strict-transport-security" in response.headers) is hsts


# --- 7. generic 5xx bodies with a request id ----------------------------------------------


def test_storage_failure_is_a_generic_5xx_with_a_request_id(surface_settings, fresh_influx, caplog):
    fresh_influx.create_database("stopped")
    settings = surface_settings.model_copy(
        update={
            "influx_url": fresh_influx.url,
            "influx_db": "stopped",
            "influx_timeout_s": 1.0,
            "api_cache_ttl_s": 0,  # the dashboard cache would answer from memory for 5 s
            "api_latest_from_memory": False,  # /v1/latest from memory needs no InfluxDB
        }
    )
    with serve(settings) as api:
        assert api.get("/v1/latest").status_code == 200
        fresh_influx.signal(signal.SIGSTOP)  # InfluxDB hangs under the API
        try:
            hung = api.get("/v1/latest")
        finally:
            fresh_influx.signal(signal.SIGCONT)
        fresh_influx.stop()  # and then it is gone
        gone = api.get("/v1/stations")
    for response in (hung, gone):
        assert response.status_code == 503
        rid = response.headers["x-request-id"]
        assert response.json() == {"detail": "storage unavailable; retry later", "request_id": rid}
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        for internal in ("InfluxDB", "127.0.0.1", str(fresh_influx.port), "Error", "Traceback"):
            assert internal not in response.text
        logged = [r.getMessage() for r in caplog.records if rid in r.getMessage()]
        assert len(logged) == 1
        assert "InfluxDB" in logged[0]


def test_an_unexpected_exception_is_a_generic_500_and_its_traceback_is_logged(
    surface_settings, caplog
):
    server = ApiThread(surface_settings)

    async def broken() -> None:
        raise RuntimeError("internal detail /var/lib/secret-path")

    server.app.add_api_route("/v1/broken", broken, methods=["GET"])
    server.start()
    try:
        response = server.get("/v1/broken")
        head = server.client.head("/v1/broken")
    finally:
        server.close()
    rid = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": rid}
    assert "secret-path" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert (head.status_code, head.content) == (500, b"")
    records = [r for r in caplog.records if rid in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "secret-path" in str(records[0].exc_info[1])
    assert sum(1 for r in caplog.records if "secret-path" in str(r.exc_info)) == 2


# --- 8. /metrics labels from a fixed set ----------------------------------------------------


def test_random_methods_and_paths_give_a_bounded_label_set(api):
    rng = random.Random(8)
    before = api.get("/metrics").text
    sent = 0
    for _ in range(50):
        junk = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 40)))
        method = rng.choice(["GET", "HEAD", "POST", "DELETE", "PROPFIND", "BREW", junk])
        path = "/" + "/".join(
            "".join(rng.choices(string.ascii_lowercase + string.digits + "-_.", k=8))
            for _ in range(rng.randint(1, 4))
        )
        if rng.random() < 0.3:
            path = f"/v1/stations/{rng.randint(0, 10**9)}"
        api.client.request(method, path)
        sent += 1
    after = api.get("/metrics").text
    templates = {r.path for r in _all_routes(api.app.routes)} | {UNMATCHED_ROUTE}
    methods, routes = set(), set()
    total = 0.0
    for line in after.splitlines():
        match = re.fullmatch(r"meltemi_api_requests_total\{(.*)\} ([0-9.e+]+)", line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        methods.add(labels["method"])
        routes.add(labels["route"])
        previous = prometheus_value(before, "meltemi_api_requests_total", match.group(1))
        total += float(match.group(2)) - previous
    assert methods <= METHOD_LABELS | {OTHER_METHOD}
    assert OTHER_METHOD in methods
    assert routes <= templates
    assert total == sent + 1  # the 50 requests and the first /metrics read itself


# --- 9. S12: CORS and no secrets in the API's log -----------------------------------------


def test_cors_preflight_allows_only_the_dashboard_origin_and_get_head(api):
    allowed = api.client.options(
        "/v1/latest",
        headers={"Origin": DASHBOARD_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == DASHBOARD_ORIGIN
    methods = {m.strip() for m in allowed.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "HEAD"}
    assert "access-control-allow-credentials" not in allowed.headers
    evil = api.client.options(
        "/v1/latest",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    for method in ("POST", "DELETE", "PUT"):
        refused = api.client.options(
            "/v1/latest",
            headers={"Origin": DASHBOARD_ORIGIN, "Access-Control-Request-Method": method},
        )
        assert refused.status_code == 400, method
    simple = api.client.head("/v1/parameters", headers={"Origin": DASHBOARD_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == DASHBOARD_ORIGIN


def test_no_secret_reaches_the_apis_log(surface_settings, auth_influx, locked_broker, tmp_path):
    port = free_port()
    log_path = tmp_path / "api.log"
    settings = _auth_settings(
        surface_settings,
        auth_influx,
        WRONG_PASSWORD,
        mqtt_port=locked_broker.port,
        api_mqtt_username=LIVE_USER,
        api_mqtt_password=SecretStr(LIVE_WRONG),
        api_port=port,
    )
    env = settings_env(settings)
    assert env["MELTEMI_INFLUX_PASSWORD"] == WRONG_PASSWORD
    process = ManagedProcess(
        "api",
        [sys.executable, "-m", "meltemi.cli", "--log-level", "DEBUG", "api"],
        log_path,
        env=env,
    )
    process.start()
    try:

        def health() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            except httpx.HTTPError:
                return None

        degraded = wait_for(health, 30, message="the API answers")
        assert degraded is not None
        assert degraded.status_code == 503
        assert degraded.json() == {
            "status": "degraded",
            "mqtt": False,
            "influxdb": False,
            "broker_dropped": None,
        }
        for path in ("/v1/latest", "/v1/stations", f"/v1/stations/{LIVE}/series", "/metrics"):
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    finally:
        assert process.stop() == 0
    log = log_path.read_text("utf-8", errors="replace")
    assert "refused the API's credentials" in log  # the failures were logged ...
    assert "live feed: broker refused the connection" in log
    for secret in (WRONG_PASSWORD, LIVE_WRONG, READER_PASSWORD, LIVE_PASSWORD):
        assert secret not in log  # ... and no secret with them
    assert json.dumps(WRONG_PASSWORD)[1:-1] not in log
