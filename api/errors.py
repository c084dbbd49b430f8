"""Errors of the API's storage adapter, translated once from httpx and InfluxDB answers.

    ApiStorageError                  InfluxDB could not give a complete answer
    ├── StorageUnavailable           connection refused, time-out, 5xx: served as 503, retry later
    ├── StorageRejected              InfluxDB refused the query (4xx, an ``error`` in a result):
    │                                a bug or a credential problem on our side, served as 502
    └── StoragePartial               ``"partial": true`` or missing statement results (a server
                                     limit such as ``max-row-limit`` cut it short): never served
                                     as a complete 200 (RELIABILITY S9), served as 502

Client mistakes are not in this hierarchy: they are refused with ``HTTPException(400/404)``
before any query is built (CONTRACT §5).
"""

from __future__ import annotations


class ApiStorageError(Exception):
    """InfluxDB could not give a complete answer to a query."""

    status_code = 502


class StorageUnavailable(ApiStorageError):
    """InfluxDB cannot be reached, timed out, or answered 5xx."""

    status_code = 503


class StorageRejected(ApiStorageError):
    """InfluxDB refused the query (HTTP 4xx or an error in a statement's result)."""


class StoragePartial(ApiStorageError):
    """InfluxDB returned a truncated answer (``partial``, or fewer results than statements)."""
