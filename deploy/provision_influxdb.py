"""Provision a production InfluxDB 1.x run with deploy/influxdb.conf (README "Deploying in public").

    .venv/bin/python deploy/provision_influxdb.py --secrets /etc/meltemi/influxdb.json

Creates (or, run again, updates) the admin, the database, the ingester's user (ALL on the
database), the API's READ-only user and the ``quarantine`` retention policy, with the code
``meltemi up`` uses (meltemi/influxdb_users.py). Secrets are generated on the first run and
written 0600 next to ``--secrets`` (``influxdb-ingest.env``, ``influxdb-api.env`` for the two
services); they are never printed. MELTEMI_INFLUX_URL, MELTEMI_INFLUX_DB and
MELTEMI_QUARANTINE_RETENTION_DAYS are read from the environment as everywhere else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from meltemi.influxdb_users import ProvisioningError, load_or_create_secrets, provision
from sensors.settings import SettingsError, load_settings

logger = logging.getLogger("provision_influxdb")


def main(argv: list[str] | None = None) -> int:
    """Provision the server; return the exit code (1 with a sentence on any refusal)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--secrets",
        type=Path,
        default=Path("/etc/meltemi/influxdb.json"),
        help="the secrets file (0600; created with generated passwords when missing)",
    )
    parser.add_argument(
        "--ca-file", default=None, help="CA bundle for an https:// MELTEMI_INFLUX_URL"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        secrets = load_or_create_secrets(args.secrets)
        provision(
            settings.influx_url,
            settings.influx_db,
            secrets,
            quarantine_days=settings.quarantine_retention_days,
            verify=args.ca_file or True,
        )
    except (SettingsError, ProvisioningError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("secrets are in %s (mode 0600)", args.secrets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
