"""Counter-based random numbers and band-limited random processes, pure functions of time.

Every random quantity of the simulator is a hash of (seed, stream, keys...), never the state of
a generator, so a value depends only on the seed, the station and the time it describes: a
back-fill and a live run agree, a restarted process continues the same weather, and any time can
be evaluated without stepping through the ones before it. The hash is SplitMix64
(Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators", OOPSLA), applied
with numpy's wrapping uint64 arithmetic.

Slowly varying weather (synoptic anomalies, cloud, local deviations) is a sum of K cosines with
log-uniform periods in a band and random phases ("random Fourier features", Rahimi & Recht
2007): zero mean, unit variance, smooth, and with no energy outside the band, so that a
synoptic process of 2-10 day periods averages out over a month instead of drifting.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)
_TWO_53: Final = float(2**53)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _MIX1
        x = x ^ (x >> np.uint64(27))
        x = x * _MIX2
        return x ^ (x >> np.uint64(31))


def _key(value: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.asarray(value, dtype=np.int64).astype(np.uint64)


def hash64(seed: int, stream: int, *keys: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of (seed, stream, keys...), broadcast over the key arrays."""
    with np.errstate(over="ignore"):
        h = _mix(_key(seed) * _GOLDEN + _key(stream))
        for key in keys:
            h = _mix(h ^ (_key(key) * _GOLDEN))
    return np.asarray(h, dtype=np.uint64)


def uniform(seed: int, stream: int, *keys: npt.ArrayLike) -> FloatArray:
    """Return uniform numbers in the open interval (0, 1), one per broadcast key."""
    h = hash64(seed, stream, *keys)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO_53


def normal(seed: int, stream: int, *keys: npt.ArrayLike) -> FloatArray:
    """Return standard normal numbers (Box-Muller), one per broadcast key."""
    u1 = uniform(seed, stream, *keys)
    u2 = uniform(seed, stream + 0x5BD1E995, *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class BandProcess:
    """A family of independent, smooth, zero-mean, unit-variance processes x_m(t).

    Members (stations, or the single regional member 0) share the K frequencies of the band and
    differ by their phases, so they are independent but have the same time scales.
    """

    def __init__(
        self,
        seed: int,
        stream: int,
        members: int,
        period_min_s: float,
        period_max_s: float,
        components: int = 12,
    ) -> None:
        k = np.arange(components)
        u = uniform(seed, stream, k)
        log_min, log_max = np.log(period_min_s), np.log(period_max_s)
        # stratified log-uniform periods: one per sub-band, so the band is always covered
        periods = np.exp(log_min + (log_max - log_min) * (k + u) / components)
        self.omega: FloatArray = 2.0 * np.pi / periods
        member = np.arange(members)[:, None]
        self.phase: FloatArray = 2.0 * np.pi * uniform(seed, stream + 1, member, k[None, :])
        self.scale = float(np.sqrt(2.0 / components))

    def value(self, member: IntArray | int, ts_s: FloatArray) -> FloatArray:
        """Return x_member(t) for each (member, time) pair, broadcast together."""
        t = np.asarray(ts_s, dtype=np.float64)
        m = np.broadcast_to(np.asarray(member, dtype=np.int64), t.shape)
        # omega * t is ~1e7 rad for epoch times: float64 keeps it to ~1e-9 rad, ample here.
        arg = self.omega * t[..., None] + self.phase[m]
        return np.asarray(self.scale * np.cos(arg).sum(axis=-1), dtype=np.float64)
