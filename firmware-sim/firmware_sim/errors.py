"""Errors of the simulator.

SimulatorError
 ├── FaultPlanError   the fault plan (TOML or --fault) cannot be used; names the entry
 └── StateError       the persisted state under data_dir/sim cannot be read or written
"""

from __future__ import annotations


class SimulatorError(Exception):
    """The simulator cannot run as asked; the message says why."""


class FaultPlanError(SimulatorError):
    """The fault plan is invalid; the message names the entry at fault."""


class StateError(SimulatorError):
    """The persisted simulator state cannot be read or written."""
