"""The ``meltemi`` command: the one place that imports several components."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from alerts.errors import AlertsError
from alerts.rules import RulesError
from meltemi.broker_admin import BrokerAdminError
from meltemi.credentials import CredentialsError
from meltemi.identities import IdentityError
from sensors.registry import RegistryError
from sensors.settings import Settings, SettingsError, load_settings

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
    ingest.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="run N supervised ingester processes on the shared subscription, worker i with "
        "client id and broker account CLIENT_ID-i (default MELTEMI_INGEST_WORKERS, 1)",
    )
    sub.add_parser("api", help="run the HTTP API and the dashboard")
    sub.add_parser("alerts", help="run the alert engine: rules over the readings, CAP messages")
    rollup = sub.add_parser("rollup", help="hourly and daily rollups (meltemi.rollup)")
    rverbs = rollup.add_subparsers(dest="verb", required=True, metavar="VERB")
    rverbs.add_parser("run", help="keep the rollups right (reconcile passes) until stopped")
    rebuild = rverbs.add_parser("rebuild", help="recompute the rollups of a range now")
    rebuild.add_argument(
        "--days",
        type=float,
        default=None,
        help="the last DAYS days (default: the whole back-fill horizon)",
    )
    _add_identity_parsers(sub)
    # Everything after `simulate` belongs to the simulator's own parser (see main()).
    sub.add_parser("simulate", help="run the simulated station network", add_help=False)
    return parser


def _add_identity_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stations = sub.add_parser(
        "stations", help="the station registry and each station's broker identity"
    )
    verbs = stations.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register a station; print its new broker secret once")
    add.add_argument("station_id", metavar="ID", help="^[a-z0-9][a-z0-9-]{1,62}$")
    add.add_argument("--name", required=True)
    add.add_argument("--lat", type=float, required=True)
    add.add_argument("--lon", type=float, required=True)
    add.add_argument("--municipality", default="Unassigned")
    add.add_argument("--elevation-m", type=float, default=0.0)
    add.add_argument(
        "--parameters",
        default=None,
        help="comma-separated parameter ids (default: every parameter of the catalogue)",
    )
    for verb, text in (
        ("rotate", "new broker secret (printed once); the old one is refused at once"),
        ("revoke", "refuse the station at once (its data and registry entry are kept)"),
    ):
        verbs.add_parser(verb, help=text).add_argument("station_id", metavar="ID")
    verbs.add_parser("list", help="registered stations and their broker state")

    accounts = sub.add_parser("accounts", help="broker accounts of ingesters and API replicas")
    averbs = accounts.add_subparsers(dest="verb", required=True, metavar="VERB")
    aadd = averbs.add_parser("add", help="create a service account; print its secret once")
    aadd.add_argument("name", help="meltemi-ingest[-x] or meltemi-api[-x]")
    aadd.add_argument("--role", choices=("ingester", "api", "alerts"), required=True)
    for verb in ("rotate", "revoke"):
        averbs.add_parser(verb, help=f"{verb} a service account").add_argument("name")
    averbs.add_parser("list", help="service accounts and their state")
    init = averbs.add_parser(
        "init", help="write a production broker's dynamic-security file; print the admin secret"
    )
    init.add_argument("file", type=Path, help="plugin_opt_config_file of the broker (new)")


def _run_identity(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `stations` or `accounts` verb; secrets go to stdout only, once."""
    from meltemi import identities as ids

    if args.command == "stations":
        if args.verb == "add":
            parameters = (
                tuple(p.strip() for p in args.parameters.split(",") if p.strip())
                if args.parameters
                else ids.DEFAULT_PARAMETERS
            )
            secret = ids.add_station(
                settings,
                args.station_id,
                name=args.name,
                lat=args.lat,
                lon=args.lon,
                municipality=args.municipality,
                elevation_m=args.elevation_m,
                parameters=parameters,
            )
            _print_secret(args.station_id, secret)
        elif args.verb == "rotate":
            _print_secret(args.station_id, ids.rotate_station(settings, args.station_id))
        elif args.verb == "revoke":
            ids.revoke_station(settings, args.station_id)
            print(f"station {args.station_id} revoked (its data and registry entry are kept)")  # noqa: T201
        else:
            for line in ids.list_stations(settings):
                state = "revoked" if line.station.revoked else "registered"
                print(  # noqa: T201  # the command's output
                    f"{line.station.id}\t{state}\tbroker={line.broker}\t{line.station.name}"
                )
        return 0
    if args.verb == "init":
        username = settings.broker_admin_username
        _print_secret(username, ids.init_broker_file(args.file, username))
    elif args.verb == "add":
        _print_secret(args.name, ids.add_account(settings, args.name, args.role))
    elif args.verb == "rotate":
        _print_secret(args.name, ids.rotate_account(settings, args.name))
    elif args.verb == "revoke":
        ids.revoke_account(settings, args.name)
        print(f"account {args.name} revoked")  # noqa: T201
    else:
        for name, roles, state in ids.list_accounts(settings):
            print(f"{name}\t{roles}\t{state}")  # noqa: T201
    return 0


def _print_secret(username: str, secret: SecretStr) -> None:
    # Shown once, on stdout only: never logged, never stored for a real station.
    print(f"username: {username}\nsecret: {secret.get_secret_value()}", flush=True)  # noqa: T201


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
            if args.workers is not None:
                overrides["ingest_workers"] = args.workers
        settings = load_settings(**overrides)
        if args.command in ("stations", "accounts"):
            return _run_identity(args, settings)
        if args.command == "ingest" and settings.ingest_workers > 1:
            from meltemi.workers import run as run_workers

            return run_workers(settings, settings.ingest_workers)
        if args.command == "ingest":
            from ingest.service import run as run_ingest

            return run_ingest(settings)
        if args.command == "api":
            from api.server import run as run_api

            return run_api(settings)
        if args.command == "rollup":
            from meltemi import rollup

            if args.verb == "rebuild":
                return rollup.rebuild(settings, args.days)
            return rollup.run(settings)
        if args.command == "alerts":
            from alerts.service import run as run_alerts

            return run_alerts(settings)
        if args.command == "simulate":
            from firmware_sim.cli import main as run_simulate

            return run_simulate(extra, settings)
        from meltemi.up import run as run_up

        return run_up(settings)
    except (
        SettingsError,
        RegistryError,
        IdentityError,
        BrokerAdminError,
        CredentialsError,
        RulesError,
        AlertsError,
    ) as exc:
        print(f"meltemi: {exc}", file=sys.stderr)  # noqa: T201  # the user's sentence
        return 2


if __name__ == "__main__":
    sys.exit(main())
