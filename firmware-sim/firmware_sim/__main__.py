"""``python -m firmware_sim ARGS``: the same as ``meltemi simulate ARGS``."""

from __future__ import annotations

import logging
import sys

from firmware_sim.cli import main
from sensors.registry import RegistryError
from sensors.settings import SettingsError, load_settings

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        sys.exit(main(sys.argv[1:], load_settings()))
    except (SettingsError, RegistryError) as exc:
        print(f"meltemi simulate: {exc}", file=sys.stderr)  # noqa: T201  # the user's sentence
        sys.exit(2)
