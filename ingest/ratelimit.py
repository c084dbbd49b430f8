"""Per-station delivery rate limit: a token bucket counted in readings (issue 8).

Each station has a bucket of ``burst`` tokens refilled at ``rate_per_s``; a message costs one
token per reading it holds (at least one, so that a flood of unparsable messages is bounded
too). A message that finds too few tokens is not stored: it is acknowledged and counted, and
the station gets ONE ``rate_exceeded`` quarantine record per interval carrying the count, so
that "stored + quarantined (with counts) = sent" still holds.

Pure: the caller passes the monotonic time, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


@dataclass(slots=True)
class RateLimiter:
    """Token buckets by station id; ``burst`` 0 lets everything through."""

    burst: int
    rate_per_s: float
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, station_id: str, cost: int, now_s: float) -> bool:
        """Return True and take ``cost`` tokens when the station's bucket holds them."""
        if self.burst <= 0:
            return True
        bucket = self._buckets.get(station_id)
        if bucket is None:
            bucket = self._buckets[station_id] = _Bucket(float(self.burst), now_s)
        elapsed = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        bucket.updated_s = now_s
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return True
        return False
