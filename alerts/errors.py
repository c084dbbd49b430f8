"""Errors of the alert engine, translated once in its adapters.

    AlertsError                  the engine cannot go on with this step
    ├── StoreUnavailable         InfluxDB unreachable, timed out or 5xx: retry on the next tick
    └── StoreRejected            InfluxDB refused a query or write (4xx, an ``error``): a bug or
                                 a credential problem; logged, retried on the next tick
Rule-file mistakes are ``alerts.rules.RulesError`` and stop start-up.
"""

from __future__ import annotations


class AlertsError(Exception):
    """The engine could not complete a step; the state is not advanced."""


class StoreUnavailable(AlertsError):
    """InfluxDB cannot be reached, timed out, or answered 5xx."""


class StoreRejected(AlertsError):
    """InfluxDB refused a query or a write."""
