"""The ``meltemi`` command: the one place that imports several components."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sensors.registry import RegistryError
from sensors.settings import SettingsError, load_settings

logger = logging.getLogger(__name__)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``meltemi`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="meltemi",
        description="Meltemi climate-telemetry platform. Configuration comes from MELTEMI_* "
        "environment variables (and .env); see README.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="run the whole platform in the foreground (embedded services)")
    ingest = sub.add_parser("ingest", help="run the ingester: MQTT -> validation -> InfluxDB")
    ingest.add_argument(
        "--shared",
        metavar="GROUP",
        default=None,
        help="join the MQTT v5 shared subscription $share/GROUP/... (scale-out)",
    )
    ingest.add_argument(
        "--client-id", default=None, help="fixed MQTT client id (default MELTEMI_MQTT_CLIENT_ID)"
    )
    sub.add_parser("api", help="run the HTTP API and the dashboard")
    # Everything after `simulate` belongs to the simulator's own parser (see main()).
    sub.add_parser("simulate", help="run the simulated station network", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; return the process exit code."""
    parser = build_parser()
    # parse_known_args: `meltemi simulate --backfill 48h` hands its options to the simulator's
    # parser (argparse.REMAINDER refuses a first argument that starts with "--").
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "simulate":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

    _configure_logging(args.log_level)
    # Everything Meltemi and its children create (credentials, spool, broker and database files,
    # logs) is the owner's alone: files 0600, directories 0700 (issue 8: they were world-readable).
    os.umask(0o077)
    try:
        overrides: dict[str, object] = {}
        if args.command == "ingest":
            if args.shared:
                overrides["ingest_shared_group"] = args.shared
            if args.client_id:
                overrides["mqtt_client_id"] = args.client_id
        settings = load_settings(**overrides)
        if args.command == "ingest":
            from ingest.service import run as run_ingest

            return run_ingest(settings)
        if args.command == "api":
            from api.server import run as run_api

            return run_api(settings)
        if args.command == "simulate":
            from firmware_sim.cli import main as run_simulate

            return run_simulate(extra, settings)
        from meltemi.up import run as run_up

        return run_up(settings)
    except (SettingsError, RegistryError) as exc:
        print(f"meltemi: {exc}", file=sys.stderr)  # noqa: T201  # the user's sentence
        return 2


if __name__ == "__main__":
    sys.exit(main())
