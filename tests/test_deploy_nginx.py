"""deploy/nginx-meltemi.conf AS SHIPPED (only ports and paths substituted) in front of the API:
slow clients and large bodies (RELIABILITY S11), rate and connection limits (S10), TLS >= 1.2,
SSE unbuffered, X-Forwarded-For overwritten. A throw-away CA is made with openssl here.

Every client binds its own loopback source address (127.0.0.x, all on the loopback interface)
so that nginx's per-address limits see an abuser and a normal client as different clients;
all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from api.live import LiveFeed
from meltemi.services import InfluxDB, ManagedProcess, Mosquitto, find_binary, free_port, port_open
from sensors.topics import accepted_topic
from tests.api_fixtures import LIVE, ApiThread, api_settings, base_settings
from tests.helpers import mosquitto_pub

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "deploy" / "nginx-meltemi.conf"
HEARTBEAT_S = 0.5


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(directory: Path) -> Path:
    """Write a throw-away CA and a server certificate for 127.0.0.1; return the CA's path."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "2",
        "-subj",
        "/CN=meltemi test CA",
    )
    key, csr = directory / "privkey.pem", directory / "server.csr"
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(directory / "fullchain.pem"),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    key.chmod(0o600)
    return ca_crt


def shipped_nginx_config(root: Path, http_port: int, https_port: int, api_port: int) -> str:
    """Return the shipped file with only its ports and paths pointed at ``root``."""
    text = SHIPPED.read_text()
    replacements = {
        "listen 80 ": f"listen {http_port} ",
        "listen 443 ": f"listen {https_port} ",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{api_port};",
        "/etc/meltemi/tls/": f"{root}/tls/",
        "/var/log/nginx/": f"{root}/log/",
        "/var/lib/nginx/": f"{root}/lib/",
        "/run/nginx.pid": f"{root}/nginx.pid",
    }
    for old, new in replacements.items():
        assert text.count(old) >= 1, old
        text = text.replace(old, new)
    return text


class HeaderRecorder:
    """ASGI middleware inside the API: the raw forwarding headers of every request it got."""

    seen: ClassVar[list[dict[str, str]]] = []

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            HeaderRecorder.seen.append(
                {
                    "path": scope["path"],
                    "method": scope["method"],
                    "client": str(scope["client"][0]) if scope.get("client") else "",
                    **{
                        k: headers.get(k, "")
                        for k in (
                            "x-forwarded-for",
                            "x-forwarded-proto",
                            "x-forwarded-host",
                            "forwarded",
                        )
                    },
                }
            )
        await self.app(scope, receive, send)


class WithoutAccelBuffering:
    """ASGI middleware: drops the API's ``X-Accel-Buffering: no`` from responses, so that the
    SSE test proves the shipped nginx config alone streams unbuffered (any API, any version)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def strip(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, v) for k, v in message["headers"] if k.lower() != b"x-accel-buffering"
                    ],
                }
            await send(message)

        await self.app(scope, receive, strip)


@dataclass
class AccessLog(logging.Handler):
    """Collects uvicorn's access-log lines (what an operator would read)."""

    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self)

    def __hash__(self) -> int:
        return id(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Edge:
    """nginx (shipped config) on https_port/http_port, proxying to the API on api.port."""

    nginx: ManagedProcess
    api: ApiThread
    root: Path
    ca: Path
    https_port: int
    http_port: int
    access: AccessLog

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def client(self, source: str, **kwargs: Any) -> httpx.Client:
        """An HTTPS client from its own loopback address, verifying the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        transport = httpx.HTTPTransport(local_address=source, verify=context)
        return httpx.Client(base_url=self.url, transport=transport, timeout=20.0, **kwargs)

    def tls_socket(self, source: str) -> ssl.SSLSocket:
        """A raw TLS connection from ``source`` (for hand-written requests)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        raw = socket.create_connection(
            ("127.0.0.1", self.https_port), timeout=10, source_address=(source, 0)
        )
        return context.wrap_socket(raw, server_hostname="127.0.0.1")

    def nginx_log(self) -> str:
        return (self.root / "log" / "meltemi-access.log").read_text()


@pytest.fixture(scope="module")
def edge(
    influx: InfluxDB, broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    """The API (test fixtures) behind nginx started from the shipped file."""
    settings = api_settings(
        base_settings(influx, broker.port, tmp_path_factory.mktemp("edge-api")),
        tmp_path_factory.mktemp("edge-registry"),
    )

    def configure(feed: LiveFeed) -> None:
        feed.heartbeat_s = HEARTBEAT_S

    api = ApiThread(settings, configure)
    api.app.add_middleware(HeaderRecorder)
    api.app.add_middleware(WithoutAccelBuffering)
    # The witness: uvicorn's own proxy-header handling, trusting nginx's address only, whatever
    # the fixture's default (read by uvicorn.Config.load() when the server starts).
    api.server.config.proxy_headers = True
    api.server.config.forwarded_allow_ips = "127.0.0.1"
    access = AccessLog()
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(access)
    uvicorn_access.setLevel(logging.INFO)
    api.start(wait_feed=True)
    # nginx's workers run as www-data (as shipped): they must traverse to their temp dirs,
    # so the root is a world-searchable directory of our own, not pytest's 0700 tmp tree.
    root = Path(tempfile.mkdtemp(prefix="meltemi-nginx-"))
    root.chmod(0o711)
    for sub in ("tls", "log", "lib"):
        (root / sub).mkdir()
    ca = make_ca_and_server_cert(root / "tls")
    http_port, https_port = free_port(), free_port()
    conf = root / "nginx.conf"
    conf.write_text(shipped_nginx_config(root, http_port, https_port, api.port))
    binary = find_binary("nginx", "/usr/sbin/nginx")
    check = subprocess.run(
        [binary, "-t", "-c", str(conf), "-p", str(root), "-e", str(root / "log" / "startup.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    # daemon off keeps the master in the foreground, so that it is stopped by its PID
    # (Debian's nginx.service passes the same kind of -g directives).
    nginx = ManagedProcess(
        "nginx",
        [
            binary,
            "-c",
            str(conf),
            "-p",
            str(root),
            "-e",
            str(root / "log" / "startup.log"),
            "-g",
            "daemon off;",
        ],
        root / "log" / "stdout.log",
    )
    nginx.start()
    try:
        nginx.wait_until(lambda: port_open(https_port) and port_open(http_port))
        yield Edge(nginx, api, root, ca, https_port, http_port, access)
    finally:
        nginx.stop()
        api.close()
        uvicorn_access.removeHandler(access)
        shutil.rmtree(root, ignore_errors=True)


def _paced_gets(edge: Edge, source: str, n: int, per_s: float, path: str) -> list[int]:
    """A well-behaved client: ``n`` GETs at ``per_s`` requests per second; return the codes."""
    codes: list[int] = []
    with edge.client(source) as client:
        start = time.monotonic()
        for k in range(n):
            # pacing is the client's behaviour under test (its request rate), not a wait
            delay = start + k / per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            codes.append(client.get(path).status_code)
    return codes


def test_slowloris_connections_are_closed_while_a_normal_client_gets_100_of_100(edge):
    slow: list[ssl.SSLSocket] = []
    try:
        for _ in range(200):
            sock = edge.tls_socket("127.0.0.2")
            sock.sendall(b"G")
            slow.append(sock)
        result: dict[str, list[int]] = {}
        normal = threading.Thread(
            target=lambda: result.setdefault(
                "codes", _paced_gets(edge, "127.0.0.3", 100, 8.0, "/v1/parameters")
            )
        )
        normal.start()
        header = b"ET /v1/parameters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n\r\n"
        closed: set[int] = set()
        deadline = time.monotonic() + 40
        step = 0
        while len(closed) < len(slow) and time.monotonic() < deadline:
            step += 1
            for k, sock in enumerate(slow):  # one more header byte per connection per round
                if k in closed:
                    continue
                try:
                    sock.sendall(header[step : step + 1])
                    sock.settimeout(0.001)
                    if sock.recv(1024) == b"":
                        closed.add(k)
                except TimeoutError:
                    pass
                except (ssl.SSLError, OSError):
                    closed.add(k)
                finally:
                    sock.settimeout(10)
            time.sleep(3.0)  # a slowloris client sends one byte every 3 s
        normal.join(60)
    finally:
        for sock in slow:
            sock.close()
    assert result["codes"] == [200] * 100
    assert len(closed) == 200  # nginx closed every slow connection (header timeout 10 s) ...
    assert step < len(header)  # ... before any of them had sent its whole header
    # none of them reached the API
    assert not [h for h in HeaderRecorder.seen if h["x-forwarded-for"] == "127.0.0.2"]


def test_large_body_refused_from_the_header_without_reading_it(edge):
    size = 10 * 1024 * 1024
    for method, expected in (("POST", 405), ("GET", 413)):
        sock = edge.tls_socket("127.0.0.6")
        try:
            sock.sendall(
                f"{method} /v1/stations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            sock.sendall(b"x" * 65536)  # 64 KiB of the 10 MiB, then wait for the answer
            answer = sock.recv(4096).decode("latin-1")
        finally:
            sock.close()
        assert answer.startswith(f"HTTP/1.1 {expected} "), answer[:200]
    assert not [h for h in HeaderRecorder.seen if h["x-forwarded-for"] == "127.0.0.6"]
    with edge.client("127.0.0.6") as client:
        for method in ("PUT", "DELETE", "PATCH", "TRACE"):
            response = client.request(method, "/v1/stations")
            assert response.status_code == 405, method
            assert response.headers["allow"] == "GET, HEAD, OPTIONS"
        head = client.head("/v1/parameters")
        assert head.status_code in (200, 405)  # HEAD is passed to the API (issue 8 part 8)
        assert [
            h["method"] for h in HeaderRecorder.seen if h["x-forwarded-for"] == "127.0.0.6"
        ] == ["HEAD"]


def test_rate_limit_429_with_retry_after_for_the_abuser_only(edge):
    result: dict[str, list[int]] = {}
    normal = threading.Thread(
        target=lambda: result.setdefault(
            "codes", _paced_gets(edge, "127.0.0.7", 30, 5.0, "/v1/parameters")
        )
    )
    normal.start()
    codes: list[int] = []
    retry_after: list[str | None] = []
    with edge.client("127.0.0.4") as abuser:
        start = time.monotonic()
        for _ in range(200):
            response = abuser.get("/v1/parameters")
            codes.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(response.headers.get("retry-after"))
                assert response.json() == {
                    "detail": "too many requests: slow down (Retry-After seconds)"
                }
        elapsed = time.monotonic() - start
    normal.join(30)
    assert result["codes"] == [200] * 30  # the normal-rate client: 0 429s
    assert set(codes) == {200, 429}
    # burst 40 (+1) and 10 r/s: everything beyond what the zone allows in ``elapsed`` is refused
    allowed = 41 + int(10 * elapsed) + 1
    assert codes.count(429) >= 0.9 * (200 - allowed) > 0
    assert retry_after == ["1"] * codes.count(429)
    assert "127.0.0.4 [" in edge.nginx_log()


def test_tls_below_1_2_refused_1_2_and_1_3_accepted(edge):
    def s_client(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{edge.https_port}",
                "-CAfile",
                str(edge.ca),
                "-verify_return_error",
                *args,
            ],
            input="",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    for version in ("-tls1", "-tls1_1"):
        # SECLEVEL=0: our client offers the old version, so the refusal is the server's
        refused = s_client(version, "-cipher", "DEFAULT@SECLEVEL=0")
        assert refused.returncode != 0
        assert "alert protocol version" in refused.stdout + refused.stderr, refused.stderr
    for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        accepted = s_client(version)
        assert accepted.returncode == 0, accepted.stderr
        assert f"Protocol  : {name}" in accepted.stdout or f"New, {name}," in accepted.stdout
        assert "Verify return code: 0 (ok)" in accepted.stdout
    plain = httpx.get(f"http://127.0.0.1:{edge.http_port}/v1/latest", timeout=10)
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/v1/latest"


def test_forged_forwarding_headers_are_overwritten(edge):
    with edge.client("127.0.0.5") as client:
        response = client.get(
            "/v1/parameters",
            headers={
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Host": "evil.example",
                "Forwarded": "for=203.0.113.9;proto=https",
            },
        )
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    seen = [
        h
        for h in HeaderRecorder.seen
        if h["path"] == "/v1/parameters" and h["x-forwarded-for"] == "127.0.0.5"
    ]
    assert len(seen) == 1
    assert seen[0]["x-forwarded-proto"] == "https"
    assert seen[0]["x-forwarded-host"] == ""
    assert seen[0]["forwarded"] == ""
    # uvicorn (proxy headers trusted from 127.0.0.1, nginx's address) sees the real peer
    assert seen[0]["client"] == "127.0.0.5"
    mine = [line for line in edge.access.lines if line.startswith("127.0.0.5:")]
    assert len(mine) == 1
    assert '"GET /v1/parameters HTTP/1.1" 200' in mine[0]
    assert not [line for line in edge.access.lines if "203.0.113.9" in line]
    assert not [h for h in HeaderRecorder.seen if "203.0.113.9" in json.dumps(h)]


def test_sse_passes_through_unbuffered(edge, broker):
    context = ssl.create_default_context(cafile=str(edge.ca))
    transport = httpx.HTTPTransport(local_address="127.0.0.8", verify=context)
    with (
        httpx.Client(transport=transport, timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", f"{edge.url}/v1/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        # the opening retry: block and then heartbeats arrive while the stream stays open
        seen: list[str] = []
        while sum(1 for line in seen if line.startswith(":")) < 2:
            seen.append(next(lines))
        assert any(line.startswith("retry:") for line in seen)
        now = datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = {
            "station": LIVE,
            "ts": now,
            "values": {"air_temperature": 21.5},
            "qc": {"air_temperature": "good"},
            "seq": 1,
        }
        mosquitto_pub(broker.port, accepted_topic(LIVE), json.dumps([entry]), 0)
        # heartbeats keep coming; the event must come too, within a deadline
        deadline = time.monotonic() + 10
        data = ""
        for line in lines:
            if line.startswith("data: {"):
                data = line
                break
            assert time.monotonic() < deadline, "no reading event through nginx within 10 s"
    event = json.loads(data[len("data: ") :])
    assert event["station"] == LIVE
    assert event["values"]["air_temperature"] == 21.5


def test_live_streams_capped_per_address(edge):
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(edge.client("127.0.0.9"))
        other = stack.enter_context(edge.client("127.0.0.10"))
        codes = []
        for _ in range(4):
            response = stack.enter_context(client.stream("GET", "/v1/stream"))
            codes.append(response.status_code)
        fifth = client.get("/v1/stream")
        # another address is not affected by the first one's streams
        elsewhere = stack.enter_context(other.stream("GET", "/v1/stream"))
        assert elsewhere.status_code == 200
    assert codes == [200] * 4
    assert fifth.status_code == 429
    assert fifth.headers["retry-after"] == "1"
