"""deploy/influxdb.conf AS SHIPPED (only ports and paths substituted) with its provisioning script:
auth on, least privilege (RELIABILITY S12), query limits (S9), loopback listeners, private files,
idempotent provisioning. Witnesses: the ``influx`` CLI, ``ss``, raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meltemi.influxdb_users import API_USER, INGEST_USER
from meltemi.services import InfluxDB, ManagedProcess, free_port

REPO = Path(__file__).resolve().parent.parent
DB = "meltemi"


def _provision(influx: InfluxDB, secrets: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    environment.update({"MELTEMI_INFLUX_URL": influx.url, "MELTEMI_INFLUX_DB": DB, **env})
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "provision_influxdb.py"), "--secrets", str(secrets)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """InfluxDB with deploy/influxdb.conf, provisioned twice by deploy/provision_influxdb.py."""
    root = tmp_path_factory.mktemp("shipped-influx")
    server = InfluxDB(root / "influxdb", free_port(), shipped=True)
    server.start_and_wait()
    try:
        secrets = root / "etc" / "influxdb.json"
        runs = [_provision(server, secrets), _provision(server, secrets)]
        document = json.loads(secrets.read_text())
        creds = {role: (c["username"], c["password"]) for role, c in document.items()}
        yield {"server": server, "runs": runs, "secrets": secrets, "creds": creds, "root": root}
    finally:
        server.stop()


def _query(server: InfluxDB, q: str, auth: tuple[str, str] | None, **params: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/query", params={"db": DB, **params}, data={"q": q}, auth=auth, timeout=60
    )


def _write(server: InfluxDB, body: bytes, auth: tuple[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/write", params={"db": DB}, content=body, auth=auth, timeout=60)


def _influx_cli(
    server: InfluxDB, user: tuple[str, str], q: str
) -> subprocess.CompletedProcess[str]:
    """The ``influx`` CLI from Debian's influxdb-client, a client we did not write."""
    return subprocess.run(
        [
            "influx",
            "-host",
            "127.0.0.1",
            "-port",
            str(server.port),
            "-database",
            DB,
            "-username",
            user[0],
            "-password",
            user[1],
            "-execute",
            q,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_provisioning_runs_twice_creates_users_rp_and_never_prints_secrets(shipped):
    server, creds = shipped["server"], shipped["creds"]
    assert [r.returncode for r in shipped["runs"]] == [0, 0], [r.stderr for r in shipped["runs"]]
    users = _query(server, "SHOW USERS", creds["admin"]).json()["results"][0]["series"][0]
    assert sorted(map(tuple, users["values"])) == sorted(
        [(creds["admin"][0], True), (INGEST_USER, False), (API_USER, False)]
    )
    rps = _query(server, f"SHOW RETENTION POLICIES ON {DB}", creds["admin"]).json()
    durations = {row[0]: row[1] for row in rps["results"][0]["series"][0]["values"]}
    assert durations["quarantine"] == "2160h0m0s"  # 90 days, the default
    # a third run with another duration alters the RP in place (still one RP of that name)
    third = _provision(server, shipped["secrets"], MELTEMI_QUARANTINE_RETENTION_DAYS="30")
    assert third.returncode == 0, third.stderr
    rps = _query(server, f"SHOW RETENTION POLICIES ON {DB}", creds["admin"]).json()
    names = [row[0] for row in rps["results"][0]["series"][0]["values"]]
    assert names.count("quarantine") == 1
    durations = {row[0]: row[1] for row in rps["results"][0]["series"][0]["values"]}
    assert durations["quarantine"] == "720h0m0s"
    # the passwords were never printed, nor logged by InfluxDB (query and HTTP logs)
    printed = "".join(r.stdout + r.stderr for r in [*shipped["runs"], third])
    logged = server.log_text()
    for _user, password in creds.values():
        assert password not in printed
        assert password not in logged
    assert "POST /query" in logged  # the HTTP access log is on (and so would show a leak)


def test_anonymous_refused_api_user_read_only_ingester_not_admin(shipped):
    server, creds = shipped["server"], shipped["creds"]
    assert _query(server, "SHOW DATABASES", None).status_code == 401
    assert _write(server, b"probe,station=a v=1 1", creds["ingest"]).status_code == 204
    read = _query(server, "SELECT v FROM probe", creds["ingest"]).json()["results"][0]
    assert read["series"][0]["values"] == [["1970-01-01T00:00:00.000000001Z", 1]]
    read = _query(server, "SELECT v FROM probe", creds["api"]).json()["results"][0]
    assert read["series"][0]["values"] == [["1970-01-01T00:00:00.000000001Z", 1]]
    # the API's credential: a write and a DROP are refused with 403 (S8/S12 backstop)
    assert _write(server, b"probe,station=a v=2 2", creds["api"]).status_code == 403
    assert _query(server, "DROP MEASUREMENT probe", creds["api"]).status_code == 403
    cli = _influx_cli(server, creds["api"], "DROP MEASUREMENT probe")
    assert "not authorized" in cli.stdout + cli.stderr
    # the ingester's credential writes and reads but cannot create users or drop the database
    assert _query(server, "CREATE USER evil WITH PASSWORD 'x1'", creds["ingest"]).status_code == 403
    assert _query(server, f"DROP DATABASE {DB}", creds["ingest"]).status_code == 403
    # the admin can
    assert _query(server, "CREATE USER extra WITH PASSWORD 'x1'", creds["admin"]).status_code == 200
    assert _query(server, "DROP USER extra", creds["admin"]).status_code == 200
    count = _query(server, "SELECT count(v) FROM probe", creds["admin"]).json()
    assert count["results"][0]["series"][0]["values"][0][1] == 1  # the refused write left nothing


def test_query_limits_refuse_too_many_series_and_points(shipped):
    server, creds = shipped["server"], shipped["creds"]
    # max-select-series = 10000: a SELECT over 10,001 series is refused before it runs
    lines = "\n".join(f"wide,station=s{k} v=1 1" for k in range(10_001)).encode()
    assert _write(server, lines, creds["ingest"]).status_code == 204
    result = _query(server, "SELECT v FROM wide", creds["api"]).json()["results"][0]
    assert result.get("error") == "max-select-series limit exceeded: (10001/10000)"
    # max-select-point = 2,000,000 (checked every second): 10M points, a query that scans them
    fields = ",".join(f"f{j}={j}" for j in range(100))
    for batch in range(20):
        base = batch * 5_000
        body = "\n".join(f"deep,station=a {fields} {(base + k) * 10**9}" for k in range(5_000))
        assert _write(server, body.encode(), creds["ingest"]).status_code == 204
    answer = _query(server, "SELECT moving_average(*, 2) FROM deep", creds["api"], chunked="true")
    assert answer.status_code == 200
    last = json.loads(answer.text.strip().splitlines()[-1])
    assert "max-select-point limit" in last["results"][0]["error"]


def test_pprof_off_listeners_loopback_only_and_files_private(shipped):
    server, creds = shipped["server"], shipped["creds"]
    for path in ("/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine"):
        assert httpx.get(server.url + path, auth=creds["admin"], timeout=10).status_code == 404
    # every socket influxd listens on (by its PID) is on 127.0.0.1: HTTP and RPC, nothing else
    ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in ss.splitlines() if f"pid={server.pid}," in line]
    assert sorted(mine) == sorted([f"127.0.0.1:{server.port}", f"127.0.0.1:{server.rpc_port}"])
    # data, meta, wal, logs and secrets: directories 0700, files 0600
    paths = [*(shipped["root"] / "influxdb").rglob("*"), *(shipped["root"] / "etc").rglob("*")]
    assert any(p.name == "meta.db" for p in paths)
    assert any(p.suffix == ".env" for p in paths)
    wrong = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}
    env = (shipped["root"] / "etc" / "influxdb-api.env").read_text()
    assert env == f"MELTEMI_INFLUX_USERNAME={API_USER}\nMELTEMI_INFLUX_PASSWORD={creds['api'][1]}\n"


def _children(pid: int) -> dict[str, dict[str, str]]:
    """Return {sub-command: environment} of the direct children of ``pid`` (from /proc)."""
    found: dict[str, dict[str, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat_fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat_fields[1]) != pid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if b"meltemi.cli" in argv:
            command = argv[argv.index(b"meltemi.cli") + 1].decode()
            found[command] = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    return found


@pytest.mark.timeout(300)
def test_meltemi_up_runs_influxdb_with_auth_and_a_credential_per_service(tmp_path):
    influx_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELTEMI_")}
    env.update(
        {
            "MELTEMI_DATA_DIR": str(tmp_path / "var"),
            "MELTEMI_MQTT_PORT": str(free_port()),
            "MELTEMI_INFLUX_URL": f"http://127.0.0.1:{influx_port}",
            "MELTEMI_API_PORT": str(api_port),
        }
    )
    up = ManagedProcess(
        "meltemi-up", [sys.executable, "-m", "meltemi.cli", "up"], tmp_path / "up.log", env=env
    )
    up.start()
    try:

        def healthy() -> bool:
            try:
                return (
                    httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).status_code == 200
                )
            except httpx.HTTPError:
                return False

        up.wait_until(healthy, timeout_s=120)
        secrets = tmp_path / "var" / "secrets" / "influxdb.json"
        creds = {
            role: (c["username"], c["password"])
            for role, c in json.loads(secrets.read_text()).items()
        }
        url = f"http://127.0.0.1:{influx_port}"
        anonymous = httpx.post(f"{url}/query", data={"q": "SHOW DATABASES"}, timeout=10)
        assert anonymous.status_code == 401
        admin = creds["admin"]

        def grants(user: str) -> list[list[str]]:
            response = httpx.post(
                f"{url}/query", data={"q": f'SHOW GRANTS FOR "{user}"'}, auth=admin, timeout=10
            )
            values: list[list[str]] = response.json()["results"][0]["series"][0]["values"]
            return values

        assert grants(INGEST_USER) == [[DB, "ALL PRIVILEGES"]]
        assert grants(API_USER) == [[DB, "READ"]]
        # each child runs with its own credential, the simulator with none, nobody as admin; the
        # alert engine and the rollup worker write, so they run with the ingester's
        children = _children(up.pid)
        assert set(children) == {"ingest", "api", "simulate", "alerts", "rollup"}
        for writer in ("alerts", "rollup"):
            assert children[writer]["MELTEMI_INFLUX_USERNAME"] == INGEST_USER
        assert children["ingest"]["MELTEMI_INFLUX_USERNAME"] == INGEST_USER
        assert children["ingest"]["MELTEMI_INFLUX_PASSWORD"] == creds["ingest"][1]
        assert children["api"]["MELTEMI_INFLUX_USERNAME"] == API_USER
        assert children["api"]["MELTEMI_INFLUX_PASSWORD"] == creds["api"][1]
        assert "MELTEMI_INFLUX_PASSWORD" not in children["simulate"]

        # the ingester stores readings with its credential
        def stored() -> int:
            response = httpx.post(
                f"{url}/query",
                params={"db": DB},
                data={"q": "SELECT count(air_temperature) FROM readings"},
                auth=admin,
                timeout=10,
            )
            series = response.json()["results"][0].get("series", [])
            return int(series[0]["values"][0][1]) if series else 0

        up.wait_until(lambda: stored() > 0, timeout_s=120)
        # data, logs and secrets are owner-only
        private = [
            *(tmp_path / "var" / "influxdb").rglob("*"),
            tmp_path / "var" / "influxdb",
            *(tmp_path / "var" / "secrets").rglob("*"),
            tmp_path / "var" / "secrets",
        ]
        wrong = {
            str(p): oct(stat.S_IMODE(p.stat().st_mode))
            for p in private
            if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
        }
        assert wrong == {}
    finally:
        up.signal(signal.SIGINT)
        code = up.wait(60)
        up.stop()
    assert code == 0
    logs = up.log_text() + (tmp_path / "var" / "influxdb" / "influxd.log").read_text()
    for _user, password in creds.values():
        assert password not in logs
