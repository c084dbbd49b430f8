"""Per-client rate limits, a cap on concurrent heavy requests, and cancel-on-disconnect.

One pure ASGI middleware (``RequestLimits``) in front of every ``/v1/`` route, so the embedded
default is protected without a proxy (issue 8 part 6, RELIABILITY S10):

- **Token buckets per client address** (api.client_address: the peer, or X-Forwarded-For only
  from a trusted proxy). A bucket holds ``api_rate_burst`` tokens and refills at
  ``api_rate_per_s``; a series request takes ``api_heavy_cost`` tokens, any other ``/v1/``
  request one. An empty bucket answers 429 with ``Retry-After`` (whole seconds until enough
  tokens are back). Every ``/v1/`` answer carries ``RateLimit-Limit`` (the capacity),
  ``RateLimit-Remaining`` (tokens left) and ``RateLimit-Reset`` (seconds until the bucket is
  full again), and ``RateLimit-Policy: {burst};w={burst / rate}`` (the IETF draft's fields).
  The dashboard (api/static/app.js) costs 8 tokens per page load (stations, parameters,
  latest, one series), then a series every 5 minutes and one per chart change: far inside
  the defaults (120 tokens, 2/s, a series 5), which stop a client at 24 series at once and
  then one every 2.5 s.
- **Heavy requests** (series): at most ``api_max_heavy_per_client`` at once per client (429
  beyond) and ``api_max_heavy`` overall; a request finding every slot taken waits at most
  ``api_heavy_wait_s``, with at most ``api_max_heavy`` requests waiting, then gets 503 with
  ``Retry-After``: never an unbounded queue.
- **Disconnects cancel the work.** The request runs in a task that is cancelled as soon as
  the server reports ``http.disconnect`` before the answer was sent; the InfluxDB request in
  flight is then closed, and InfluxDB 1.x aborts a query whose HTTP client went away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Final, Literal

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.client_address import ClientAddresses
from sensors.settings import Settings

logger = logging.getLogger(__name__)

# Heavy: series, export, station health (tens of statements per answer) and SensorThings paths
# that read Observations from InfluxDB.
HEAVY_PATHS: Final = re.compile(
    r"^/v1/(?:stations/[^/]+/(?:series|health)|series|export|health/stations)/?$"
    r"|^/sta/v1\.1/.*Observations"
)
LIMITED_PREFIX: Final = ("/v1/", "/sta/")  # the SensorThings facade reads InfluxDB too
STREAM_PATH: Final = "/v1/stream"  # has its own disconnect handling (api.routes.stream)
MAX_TRACKED_CLIENTS: Final = 100_000  # buckets kept; full ones are forgotten beyond this
BUSY_RETRY_S: Final = 1
CLIENT_CLOSED_STATUS: Final = 499  # recorded in metrics for a request its client abandoned


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of taking tokens from a client's bucket."""

    allowed: bool
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until this request's cost is available (0 when allowed)


class TokenBuckets:
    """One token bucket per client address (monotonic clock; no background task)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    @property
    def policy(self) -> str:
        """Return the ``RateLimit-Policy`` value: capacity and the window that refills it."""
        return f"{self.burst};w={math.ceil(self.burst / self.rate_per_s)}"

    def take(self, client: str, cost: int, now_s: float | None = None) -> Decision:
        """Take ``cost`` tokens from the client's bucket if it holds them."""
        now = time.monotonic() if now_s is None else now_s
        cost = min(cost, self.burst)
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_full(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(
            float(self.burst), bucket.tokens + (now - bucket.updated_s) * self.rate_per_s
        )
        bucket.updated_s = now
        allowed = bucket.tokens >= cost
        if allowed:
            bucket.tokens -= cost
        retry = 0 if allowed else math.ceil((cost - bucket.tokens) / self.rate_per_s)
        return Decision(
            allowed=allowed,
            remaining=math.floor(bucket.tokens),
            reset_s=math.ceil((self.burst - bucket.tokens) / self.rate_per_s),
            retry_after_s=max(retry, 0 if allowed else 1),
        )

    def _forget_full(self, now: float) -> None:
        full = [
            client
            for client, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated_s) * self.rate_per_s >= self.burst
        ]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= MAX_TRACKED_CLIENTS:  # all busy: forget the oldest half
            oldest = sorted(self._buckets, key=lambda c: self._buckets[c].updated_s)
            for client in oldest[: len(oldest) // 2]:
                del self._buckets[client]


Refusal = Literal["client", "busy"]


class HeavySlots:
    """Concurrent heavy requests: a cap per client and overall, with a short bounded wait."""

    def __init__(self, total: int, per_client: int, wait_s: float) -> None:
        self.total = total
        self.per_client = per_client
        self.wait_s = wait_s
        self.active = 0
        self.waiting = 0
        self.by_client: Counter[str] = Counter()
        self._freed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._freed is None:  # created on the serving loop
            self._freed = asyncio.Condition()
        return self._freed

    async def acquire(self, client: str) -> Refusal | None:
        """Take a slot for the client, or return why not ('client' or 'busy')."""
        if self.by_client[client] >= self.per_client:
            return "client"
        if self.active >= self.total:
            if self.waiting >= self.total or self.wait_s <= 0:
                return "busy"
            self.waiting += 1
            freed = self._condition()
            try:
                async with freed:
                    await asyncio.wait_for(
                        freed.wait_for(lambda: self.active < self.total), self.wait_s
                    )
            except TimeoutError:
                return "busy"
            finally:
                self.waiting -= 1
            if self.by_client[client] >= self.per_client:
                return "client"
        self.active += 1
        self.by_client[client] += 1
        return None

    async def release(self, client: str) -> None:
        """Give a slot back and wake one waiting request."""
        self.active -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]
        freed = self._condition()
        async with freed:
            freed.notify()


def _json(status: int, detail: str, headers: dict[str, str]) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return (
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    )


async def run_until_disconnect(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> tuple[bool, bool]:
    """Run the app; cancel it when the client disconnects before the answer is complete.

    Return (cancelled, started): whether the client went away first, and whether the answer
    had started by then.
    """
    started = False
    finished = False
    disconnected = False
    error: Exception | None = None
    forward, inbox = anyio.create_memory_object_stream[Message](max_buffer_size=16)

    async def tracked_send(message: Message) -> None:
        nonlocal started, finished
        started = True
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished = True
        await send(message)

    async def app_receive() -> Message:
        return await inbox.receive()

    with forward, inbox:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal disconnected
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        if not finished:
                            disconnected = True
                            group.cancel_scope.cancel()
                        forward.send_nowait(message)
                        return
                    await forward.send(message)

            async def run_app() -> None:
                nonlocal error
                try:
                    await app(scope, app_receive, tracked_send)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                finally:
                    group.cancel_scope.cancel()

            group.start_soon(watch)
            group.start_soon(run_app)
    if error is not None:
        raise error
    return disconnected, started


class RequestLimits:
    """Pure ASGI middleware applying the limits above to ``/v1/`` requests."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        addresses: ClientAddresses,
        slots: HeavySlots,
    ) -> None:
        self.app = app
        self.addresses = addresses
        self.heavy_cost = settings.api_heavy_cost
        self.buckets = (
            TokenBuckets(settings.api_rate_per_s, settings.api_rate_burst)
            if settings.api_rate_per_s > 0
            else None
        )
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        client = self.addresses.of(scope)
        heavy = HEAVY_PATHS.match(path) is not None
        headers: dict[str, str] = {}
        if self.buckets is not None:
            decision = self.buckets.take(client, self.heavy_cost if heavy else 1)
            headers = {
                "RateLimit-Limit": str(self.buckets.burst),
                "RateLimit-Remaining": str(decision.remaining),
                "RateLimit-Reset": str(decision.reset_s),
                "RateLimit-Policy": self.buckets.policy,
            }
            if not decision.allowed:
                retry = decision.retry_after_s
                await self._refuse(
                    send,
                    429,
                    f"rate limit: too many requests from {client}; retry after {retry} s "
                    f"(series cost {self.heavy_cost}, other requests 1, of "
                    f"{self.buckets.burst} refilled at {self.buckets.rate_per_s:g}/s)",
                    headers | {"Retry-After": str(retry)},
                )
                return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and headers:
                extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if path == STREAM_PATH:
            await self.app(scope, receive, with_headers)
            return
        if not heavy:
            await self._run(scope, receive, with_headers)
            return
        refusal = await self.slots.acquire(client)
        if refusal is not None:
            busy = {"Retry-After": str(BUSY_RETRY_S)}
            if refusal == "client":
                await self._refuse(
                    send,
                    429,
                    f"at most {self.slots.per_client} heavy requests at once per client; "
                    "wait for the previous ones",
                    headers | busy,
                )
            else:
                await self._refuse(
                    send, 503, "the API is busy with heavy requests; retry shortly", headers | busy
                )
            return
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                await self.slots.release(client)

        async def releasing(message: Message) -> None:
            # The slot goes back before the last byte goes out, so a client that asks again the
            # moment it has read an answer never finds its previous slot still taken.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await release()
            await with_headers(message)

        try:
            await self._run(scope, receive, releasing)
        finally:
            await release()

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        cancelled, started = await run_until_disconnect(self.app, scope, receive, send)
        if cancelled:
            logger.info(
                "%s %s: client went away; request cancelled", scope["method"], scope["path"]
            )
            if not started:  # the server drops it (the client is gone); metrics record 499
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_STATUS})

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
        start, body = _json(status, detail, headers)
        await send(start)
        await send(body)


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the limits middleware and the client-address resolver to the app."""
    app.state.client_addresses = addresses = ClientAddresses(settings.api_trusted_proxies)
    app.state.heavy_slots = slots = HeavySlots(
        settings.api_max_heavy, settings.api_max_heavy_per_client, settings.api_heavy_wait_s
    )
    app.add_middleware(RequestLimits, settings=settings, addresses=addresses, slots=slots)
