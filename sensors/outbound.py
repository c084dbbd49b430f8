"""What the platform says about a reading: the ``latest`` entry of CONTRACT §5.

The ingester re-publishes accepted readings in this shape on ``meltemi/accepted/{id}`` (see
sensors.topics): after each write, one message per station holding a JSON array of that
station's entries. The API serves the same shape from ``/v1/latest`` and ``/v1/stream``.

"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from sensors.schema import QcFlag


class LatestEntry(BaseModel):
    """A station's reading as served: observation time, values and their QC flags."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    station: str
    ts: str  # RFC 3339 UTC with a Z (sensors.models.format_ts)
    values: dict[str, float]
    qc: dict[str, QcFlag]
    # For suspect values only: the name of the QC check that failed (sensors.qc).
    checks: dict[str, str] = {}
    seq: int | None = None


class LatestEntryData(TypedDict, total=False):
    """A LatestEntry as plain data, built on the ingester's hot path (no model per reading)."""

    station: str
    ts: str
    values: dict[str, float]
    qc: dict[str, str]
    checks: dict[str, str]
    seq: int | None


_ENTRIES: TypeAdapter[list[LatestEntry]] = TypeAdapter(list[LatestEntry])


def encode_entries(entries: list[LatestEntryData]) -> bytes:
    """Return the ``meltemi/accepted/{id}`` payload: a JSON array of one station's entries.

    orjson gives the same compact JSON as ``json.dumps(separators=(",", ":"))`` several times
    faster (issue 9); values are finite floats (sensors.validation), so no NaN reaches it.
    """
    return orjson.dumps(entries)


def decode_entries(payload: bytes) -> list[LatestEntry]:
    """Return the entries of an accepted-readings payload (an array, or a single object);
    raise pydantic.ValidationError when it is not of that shape."""
    if payload.lstrip()[:1] == b"{":
        return [LatestEntry.model_validate_json(payload)]
    return _ENTRIES.validate_json(payload)
