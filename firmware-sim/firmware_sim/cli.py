"""``meltemi simulate``: run the simulated station network against the configured broker."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from firmware_sim.errors import SimulatorError
from firmware_sim.faults import FAULT_KINDS, load_plan
from firmware_sim.link import load_station_secrets
from firmware_sim.runner import FIRMWARE_VERSION, RunOptions, StationNetwork
from firmware_sim.scenarios import SCENARIOS, ScenarioOverlay
from firmware_sim.sites import extra_stations, write_registry
from sensors.registry import Station, open_registry
from sensors.settings import Settings

logger = logging.getLogger(__name__)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Return seconds for '90', '90s', '15m', '48h' or '2d'; raise ArgumentTypeError."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number with s, m, h or d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``meltemi simulate``."""
    parser = argparse.ArgumentParser(
        prog="meltemi simulate",
        description="Simulated microclimate stations publishing to MQTT (CONTRACT §4). Broker, "
        "registry and data directory come from MELTEMI_* settings.",
    )
    parser.add_argument(
        "--stations",
        type=int,
        default=None,
        metavar="N",
        help="number of stations (default: the registry's; beyond it, extra "
        "stations are generated around the plain)",
    )
    parser.add_argument(
        "--write-registry",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a registry TOML listing every simulated station, then run",
    )
    parser.add_argument(
        "--interval", type=parse_duration, default=10.0, help="sampling interval (default 10s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weather seed (default 0)")
    parser.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="time acceleration (simulated seconds per second)",
    )
    parser.add_argument(
        "--backfill",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="publish this much history first (e.g. 48h); a re-run back-fills "
        "only after the last reading already published",
    )
    parser.add_argument(
        "--backfill-interval",
        type=parse_duration,
        default=60.0,
        help="spacing of back-filled readings (default 60s)",
    )
    parser.add_argument(
        "--duration",
        type=parse_duration,
        default=None,
        help="stop after this long (default: until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--faults",
        type=Path,
        default=None,
        metavar="FILE",
        help="fault plan TOML ([[fault]] tables)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault: kind=KIND,station=ID[,parameter=P,start_s=S,duration_s=D,"
        f"magnitude=M]; kinds: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--fault-log", type=Path, default=None, help="fault log (default DATA_DIR/sim/faults.jsonl)"
    )
    parser.add_argument(
        "--buffer",
        type=int,
        default=2880,
        help="readings kept per station while offline (default 2880)",
    )
    parser.add_argument("--keepalive", type=int, default=60, help="MQTT keep-alive (s)")
    parser.add_argument(
        "--max-backoff", type=_positive, default=30.0, help="longest reconnect delay (s)"
    )
    parser.add_argument(
        "--flush-timeout",
        type=parse_duration,
        default=10.0,
        help="how long a stop waits for PUBACKs (default 10s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no back-fill progress bar")
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default=None,
        help="lay an episode over the weather (firmware_sim.scenarios documents each shape)",
    )
    parser.add_argument(
        "--scenario-start",
        default=None,
        metavar="TIME",
        help="when the episode starts: RFC 3339 or epoch seconds (default: the back-fill's "
        "start, so `--backfill 4d` replays a whole heat wave as history)",
    )
    return parser


def _scenario_start(text: str | None, backfill_s: float) -> float:
    if text is None:
        return time.time() - backfill_s
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SimulatorError(f"--scenario-start {text!r}: expected RFC 3339 or epoch") from None
    if parsed.tzinfo is None:
        raise SimulatorError("--scenario-start needs an offset (e.g. Z)")
    return parsed.timestamp()


def select_stations(settings: Settings, count: int | None, seed: int) -> list[Station]:
    """Return the registry's stations, truncated or extended with generated ones to ``count``."""
    registry = [s for s in open_registry(settings) if not s.revoked]
    if settings.sim_credentials_file is not None:  # only stations we hold a broker secret for
        secrets = load_station_secrets(settings.sim_credentials_file)
        registry = [s for s in registry if s.id in secrets]
    if count is None or count == len(registry):
        return registry
    if count <= len(registry):
        return registry[:count]
    return registry + extra_stations(count - len(registry), seed, [s.id for s in registry])


def main(argv: list[str], settings: Settings) -> int:
    """Run ``meltemi simulate`` with ``argv``; return the exit code."""
    if argv[:1] == ["--"]:  # `meltemi simulate -- --flag`: the separator is not ours
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        stations = select_stations(settings, args.stations, args.seed)
        if args.write_registry is not None:
            write_registry(args.write_registry, stations)
            logger.info("wrote %d stations to %s", len(stations), args.write_registry)
        plan = load_plan(
            args.faults, args.fault, {station.id: station.parameters for station in stations}
        )
        options = RunOptions(
            interval_s=args.interval,
            seed=args.seed,
            speed=args.speed,
            backfill_s=args.backfill,
            backfill_interval_s=args.backfill_interval,
            duration_s=args.duration,
            buffer_size=max(1, args.buffer),
            keepalive_s=args.keepalive,
            max_backoff_s=args.max_backoff,
            flush_timeout_s=args.flush_timeout,
            firmware=FIRMWARE_VERSION,
            fault_log=args.fault_log,
            progress=not args.no_progress,
        )
        network = StationNetwork(stations, settings, options, plan)
        if args.scenario is not None:
            start_s = _scenario_start(args.scenario_start, args.backfill)
            overlay = ScenarioOverlay(SCENARIOS[args.scenario], start_s)
            network.model.overlay = overlay.apply
            logger.info(
                "scenario %s: %g days from %s", args.scenario, overlay.scenario.days,
                datetime.fromtimestamp(start_s, UTC).isoformat(),
            )  # fmt: skip
    except SimulatorError as exc:
        print(f"meltemi simulate: {exc}", file=sys.stderr)  # noqa: T201  # the user's sentence
        return 2
    logger.info(
        "simulating %d stations every %gs against %s:%d (seed %d)",
        len(stations),
        args.interval,
        settings.mqtt_host,
        settings.mqtt_port,
        args.seed,
    )
    restore = _install_signals(network)
    try:
        return network.run()
    finally:
        restore()


def _install_signals(network: StationNetwork) -> Callable[[], None]:
    """SIGINT/SIGTERM stop the network cleanly (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: flushing and stopping", signal.Signals(signum).name)
        network.stop()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
