"""What the platform says about a reading: the ``latest`` entry of CONTRACT §5.

The ingester re-publishes each accepted reading in this shape on ``meltemi/accepted/{id}``
(see sensors.topics), and the API serves the same shape from ``/v1/latest`` and ``/v1/stream``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

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
