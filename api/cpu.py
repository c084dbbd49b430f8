"""CPU-heavy work of a request, off the event loop and one piece at a time.

Chunk merging (api.influx) and series tables and renderings (api.routes.series) are pure
Python and hold the GIL. Run in the default thread pool side by side, three of them take turns
with the event loop thread every 5 ms switch interval and /health waited its turn behind all of
them. They run here in worker threads limited to ``CPU_WORKERS`` at once per event loop: on a
GIL they would not run faster together anyway, and the event loop then competes with one
thread only, so it keeps answering while heavy requests run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Final, TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CPU_WORKERS: Final = 1
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(CPU_WORKERS)
    return limiter


async def run_cpu(func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run ``func(*args)`` in a worker thread, at most ``CPU_WORKERS`` at once."""
    return await anyio.to_thread.run_sync(func, *args, limiter=_limiter())


SEND_SLICE_BYTES: Final = 256 * 1024


class SlicedResponse(Response):
    """A response whose (large, already rendered) body is sent in slices of 256 KiB.

    One ``send`` of several megabytes is one long step of the event loop (framing, copying
    into the transport's buffer); slices let other requests run in between, and the
    transport's flow control applies per slice.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        """Send the start, then the body slice by slice."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        body = memoryview(self.body)
        for offset in range(0, len(body), SEND_SLICE_BYTES):
            piece = bytes(body[offset : offset + SEND_SLICE_BYTES])
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
