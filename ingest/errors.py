"""Errors of the ingester.

IngestError
└── StorageError
    ├── StorageUnavailable   InfluxDB is down, hanging, 5xx, or refuses our credentials:
    │                        spool and retry; the data is not at fault
    └── StorageRejected      InfluxDB refused some lines (400/422/413): find them, quarantine
                             them, never retry them blindly (RELIABILITY §0.6)
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of the ingester's own errors."""


class StorageError(IngestError):
    """A write to InfluxDB did not fully succeed."""


class StorageUnavailable(StorageError):
    """InfluxDB could not take the write now; the same write may succeed later."""


class StorageRejected(StorageError):
    """InfluxDB refused part or all of a write because of its content."""

    def __init__(self, status: int, message: str, dropped: int | None, too_large: bool = False):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.dropped = dropped  # lines the server says it dropped (1.x "partial write … dropped=N")
        self.too_large = too_large
