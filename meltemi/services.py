"""A small supervisor for the embedded Mosquitto and InfluxDB (and any child process).

Used by ``meltemi up`` and by the test fixtures: start on a given port with data under a
directory, wait until the service answers, stop by PID (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Final

import httpx
from pydantic import SecretStr

from meltemi.broker_admin import initial_config
from meltemi.credentials import write_private
from sensors.quoting import influxql_identifier

logger = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 30.0
STOP_GRACE_S: Final = 15.0


class ServiceError(Exception):
    """A service could not be started or did not become ready."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, *fallbacks: str) -> str:
    """Return the path of an executable, looking in PATH and then in the sbin fallbacks."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(f"{name} is not installed (Debian package: see `make deps`)")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class ManagedProcess:
    """One child process in its own process group, with a log file and a stop that never hangs."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        umask: int = -1,
    ) -> None:
        self.name = name
        self.umask = umask  # -1 keeps ours (subprocess.Popen's default)
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """Return the PID of the running process."""
        if self.process is None:
            raise ServiceError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        """Start the process, appending its output to the log file (or to ours when None)."""
        if self._log is not None:  # a restart of the same service
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # argv is ours, never from input
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            umask=self.umask,
        )
        logger.info("started %s pid=%d", self.name, self.process.pid)

    def running(self) -> bool:
        """Return True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send a signal to the process (by PID)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the exit; return the exit code or None on time-out."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; return the exit code."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a SIGSTOPped test victim
                self.process.terminate()
            code = self.wait(grace_s)
            if code is None:
                logger.warning("%s did not stop in %.0f s; killing it", self.name, grace_s)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                code = self.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        logger.info("stopped %s (exit %s)", self.name, code)
        return code

    def log_text(self) -> str:
        """Return what the process has logged so far."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_until(self, ready: Callable[[], object], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``ready()`` until true; raise ServiceError (with the log tail) if it never is."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise ServiceError(f"{self.name} exited: {self.log_text()[-2000:]}")
            if ready():
                return
            time.sleep(0.05)
        raise ServiceError(f"{self.name} not ready in {timeout_s:.0f} s: {self.log_text()[-2000:]}")


def mosquitto_config(template: str, port: int, data_dir: Path, *, anonymous: bool = False) -> str:
    """Return the repo's mosquitto.conf with its port and paths pointed at ``data_dir``.

    ``anonymous`` (tests only) turns it into the pre-2026-12 loopback broker the existing test
    fixtures use: no dynamic-security plugin, anonymous clients, client ids kept.
    """
    text = re.sub(r"(?m)^listener \d+ 127\.0\.0\.1$", f"listener {port} 127.0.0.1", template)
    text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {data_dir}/", text)
    text = re.sub(r"(?m)^log_dest file .*$", f"log_dest file {data_dir}/mosquitto.log", text)
    text = re.sub(
        r"(?m)^plugin_opt_config_file .*$",
        f"plugin_opt_config_file {data_dir / DYNSEC_FILE}",
        text,
    )
    if anonymous:
        text = re.sub(r"(?m)^(plugin|plugin_opt_config_file) .*$", "", text)
        text = re.sub(r"(?m)^allow_anonymous false$", "allow_anonymous true", text)
        text = re.sub(r"(?m)^use_username_as_clientid true$", "", text)
    # Started as root, Mosquitto drops to the `mosquitto` user, which cannot write to a private
    # data directory; keep the current user (ignored when not root).
    return text + f"\nuser {getpass.getuser()}\n"


def repo_mosquitto_conf() -> str:
    """Return the text of the repo's mosquitto.conf (next to the package, or packaged)."""
    beside = Path(__file__).resolve().parent.parent / "mosquitto.conf"
    if beside.exists():
        return beside.read_text("utf-8")
    return resources.files("meltemi").joinpath("mosquitto.conf").read_text("utf-8")


DYNSEC_FILE: Final = "dynamic-security.json"
# Each connection is a file descriptor; Debian's default soft limit (1024) made 55 of 61 new
# CONNECTs fail under a flood of idle sockets (issue 8). Raised for the broker child only.
BROKER_NOFILE: Final = 65536


def raise_nofile_limit() -> None:
    """Raise this process's RLIMIT_NOFILE soft limit (inherited by the broker we start next)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = BROKER_NOFILE if hard == resource.RLIM_INFINITY else min(BROKER_NOFILE, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Mosquitto(ManagedProcess):
    """The embedded broker with the repo's configuration, data under ``data_dir``.

    With ``admin`` (what `meltemi up` passes) the broker is the production shape: nothing
    anonymous, client id = username, identities in the dynamic-security plugin whose file is
    seeded with this admin client on first start. Without it (tests only) the broker is the
    anonymous loopback broker of the existing fixtures.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        extra_conf: str = "",
        *,
        admin: tuple[str, SecretStr] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.secured = admin is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        if admin is not None:
            dynsec = data_dir / DYNSEC_FILE
            if not dynsec.exists():
                write_private(dynsec, initial_config(admin[0], admin[1]))
        conf = data_dir / "mosquitto.conf"
        text = mosquitto_config(repo_mosquitto_conf(), port, data_dir, anonymous=admin is None)
        conf.write_text(text + extra_conf)
        binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
        super().__init__("mosquitto", [binary, "-c", str(conf)], data_dir / "stdout.log")

    @property
    def broker_log(self) -> Path:
        """Return the path of the broker's own log file."""
        return self.data_dir / "mosquitto.log"

    def start(self) -> None:
        """Start the broker with a raised descriptor limit and a private umask (its files 0600)."""
        raise_nofile_limit()
        previous = os.umask(0o077)
        try:
            super().start()
        finally:
            os.umask(previous)

    def start_and_wait(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.start()
        self.wait_until(lambda: port_open(self.port))


INFLUXDB_CONF: Final = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data_dir}/meta"

[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  # fsync every write before answering (InfluxDB docs: wal-fsync-delay 0s is the default)
  wal-fsync-delay = "0s"
  query-log-enabled = {query_log}
  trace-logging-enabled = false

[coordinator]
  # RELIABILITY S9: bounded queries even if the API's own limits were bypassed
  query-timeout = "60s"
  log-queries-after = "10s"
  max-select-point = 0
  max-select-series = 100000

[retention]
  enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = {access_log}
  pprof-enabled = false
  max-row-limit = 1000000
  max-body-size = 26214400

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""


def shipped_influxdb_config(template: str, http_port: int, rpc_port: int, data_dir: Path) -> str:
    """Return deploy/influxdb.conf with only its ports and its data paths substituted."""
    text = template.replace("127.0.0.1:8086", f"127.0.0.1:{http_port}")
    text = text.replace("127.0.0.1:8088", f"127.0.0.1:{rpc_port}")
    return text.replace('"/var/lib/influxdb/', f'"{data_dir}/')


def repo_influxdb_conf() -> str:
    """Return the text of the shipped production config, deploy/influxdb.conf."""
    return (Path(__file__).resolve().parent.parent / "deploy" / "influxdb.conf").read_text("utf-8")


def make_private(root: Path) -> None:
    """Make ``root`` and everything under it owner-only (dirs 0700, files 0600)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


class InfluxDB(ManagedProcess):
    """The embedded InfluxDB 1.x (Debian's package) with a generated config under ``data_dir``.

    ``shipped=True`` runs deploy/influxdb.conf itself (auth on, production limits; ``meltemi
    up`` and the deploy tests); otherwise a test config with auth as asked. Either way influxd
    runs with umask 077 and its data directory is made owner-only before it starts (meta.db
    and the TSM files hold every reading and the user hashes).
    """

    def __init__(
        self,
        data_dir: Path,
        http_port: int,
        *,
        rpc_port: int | None = None,
        auth: bool = False,
        query_log: bool = False,
        access_log: bool = False,
        shipped: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = http_port
        self.rpc_port = rpc_port or free_port()
        self.url = f"http://127.0.0.1:{http_port}"
        self.auth = auth or shipped
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = data_dir / "influxdb.conf"
        if shipped:
            text = shipped_influxdb_config(repo_influxdb_conf(), http_port, self.rpc_port, data_dir)
        else:
            text = INFLUXDB_CONF.format(
                data_dir=data_dir,
                http_port=http_port,
                rpc_port=self.rpc_port,
                auth=str(auth).lower(),
                query_log=str(query_log).lower(),
                access_log=str(access_log).lower(),
            )
        conf.write_text(text)
        binary = find_binary("influxd", "/usr/bin/influxd")
        super().__init__(
            "influxd",
            [binary, "-config", str(conf)],
            data_dir / "influxd.log",
            umask=0o077,
        )

    def start(self) -> None:
        """Make the data directory owner-only (earlier versions left it readable), then start."""
        if self.log_path is not None and not self.log_path.exists():
            os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o600))
        make_private(self.data_dir)
        super().start()

    def _ping(self) -> bool:
        try:  # /ping answers 204 without credentials even with auth on
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False

    def start_and_wait(self) -> None:
        """Start influxd and wait until ``/ping`` answers 204."""
        self.start()
        self.wait_until(self._ping)

    def create_database(self, name: str, auth: tuple[str, str] | None = None) -> None:
        """Create a database (idempotent on 1.x)."""
        quoted = influxql_identifier(name)
        response = httpx.post(
            f"{self.url}/query", data={"q": f"CREATE DATABASE {quoted}"}, auth=auth, timeout=10.0
        )
        if response.status_code != 200 or "error" in response.text:
            raise ServiceError(f"CREATE DATABASE {name}: {response.status_code} {response.text}")
