"""What every HTTP answer carries, whatever route made it (issue 8 part 8).

Two pure ASGI middlewares (no buffering, so Server-Sent Events pass straight through):

- ``HeadAsGet`` answers HEAD on every GET route as GET answers it, same status and headers,
  no body (CONTRACT §6: "Every route answers HEAD as it answers GET"). FastAPI routes declare
  GET only, and Starlette answers their HEAD with 405; converting here covers every route,
  including the static files and the endless live stream (stopped after its headers).
- ``SurfaceMiddleware`` gives each request an id (``X-Request-ID``), adds
  ``X-Content-Type-Options: nosniff``, a ``Cache-Control`` fitting the route (the route's own
  wins), HSTS when a trusted proxy says the client came over TLS (``X-Forwarded-Proto:
  https``) or when ``MELTEMI_API_HSTS`` says the API is only reachable through TLS,
  and turns an unexpected exception into a generic 500 ``{"detail": "internal error",
  "request_id": …}``: the traceback goes to the log under that id, never to the client.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from typing import Final, Protocol

import anyio
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

HEAD_SCOPE_KEY: Final = "meltemi.head"  # set in the GET scope a HEAD request was turned into
REQUEST_ID_KEY: Final = "request_id"  # in scope["state"], i.e. request.state.request_id
HSTS_VALUE: Final = "max-age=31536000"  # one year (RFC 6797 §6.1.1); no includeSubDomains
NO_STORE: Final = "no-store"
# Paths whose answers must never be cached: they are the current state of the service.
_NO_STORE_PATHS: Final = ("/health", "/metrics", "/v1/stream")
_STATIC_MAX_AGE_S: Final = 3600  # the dashboard's files change only with a release
_OPENAPI_MAX_AGE_S: Final = 300


# A client that disconnects mid-answer is no server error: no traceback per dropped client
# (issue 8: 20,200 idle connections grew the API's log by 29.6 MB in 25 s).
_GONE: Final = (ClientDisconnect, anyio.BrokenResourceError, anyio.ClosedResourceError)


class _HeadDone(Exception):
    """The headers of a HEAD answer are sent; stop the GET handler behind it."""


class HeadAsGet:
    """Serve HEAD as GET without the body (Content-Length and every other header kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def head_send(message: Message) -> None:
            nonlocal finished
            if finished:
                raise _HeadDone
            if message["type"] != "http.response.body":
                await send(message)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True
            if message.get("more_body", False):
                raise _HeadDone  # a stream (e.g. /v1/stream): its headers are the answer

        # A copy: the server's own scope keeps saying HEAD, so it expects no body.
        inner: Scope = {**scope, "method": "GET", HEAD_SCOPE_KEY: True}
        try:
            await self.app(inner, receive, head_send)
        except _HeadDone:
            pass
        except BaseExceptionGroup as group:  # a task group around a streaming response
            if group.subgroup(lambda exc: not isinstance(exc, _HeadDone)) is not None:
                raise


def cache_control(path: str, status: int, data_max_age_s: int) -> str:
    """Return the Cache-Control of an answer that did not set its own."""
    if status >= 400 or path.startswith(_NO_STORE_PATHS):
        return NO_STORE
    if path.startswith("/static/"):
        return f"public, max-age={_STATIC_MAX_AGE_S}"
    if path == "/openapi.json":
        return f"public, max-age={_OPENAPI_MAX_AGE_S}"
    if path.startswith("/v1/"):
        return f"public, max-age={data_max_age_s}"
    return "no-cache"  # pages (/, /docs): revalidate, so a release shows at once


class SurfaceMiddleware:
    """Request id, nosniff, Cache-Control and HSTS on every answer; generic 500 bodies."""

    def __init__(self, app: ASGIApp, *, hsts: bool, data_max_age_s: int) -> None:
        self.app = app
        self.hsts = hsts
        self.data_max_age_s = data_max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        started = False

        async def surface_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                self._decorate(headers, scope, int(message["status"]), request_id)
            await send(message)

        try:
            await self.app(scope, receive, surface_send)
        except _GONE as exc:  # the client left mid-answer: routine, one quiet line at most
            logger.debug("request %s: client gone (%s)", request_id, type(exc).__name__)
            return
        except Exception:  # the boundary of every request: details to the log, not the client
            logger.exception("request %s: %s %s failed", request_id, scope["method"], scope["path"])
            if started:
                return  # too late for a status: the server closes the connection
            body = json.dumps({"detail": "internal error", "request_id": request_id}).encode()
            start: Message = {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await surface_send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

    def _decorate(self, headers: MutableHeaders, scope: Scope, status: int, rid: str) -> None:
        headers["X-Request-ID"] = rid
        headers["X-Content-Type-Options"] = "nosniff"
        if "cache-control" not in headers or status >= 500:
            headers["Cache-Control"] = cache_control(scope["path"], status, self.data_max_age_s)
        # Not scope["scheme"]: uvicorn's own proxy_headers rewrites it from X-Forwarded-Proto
        # for any loopback peer, and `meltemi api` never terminates TLS itself.
        if self.hsts or forwarded_https(scope):
            headers["Strict-Transport-Security"] = HSTS_VALUE


class TrustedProxies(Protocol):
    """The trusted-proxy check of api.client_address (``app.state.client_addresses``)."""

    def is_trusted(self, address: Address) -> bool:
        """Return True when ``address`` is one of the configured proxies."""
        ...


def forwarded_https(scope: Scope) -> bool:
    """Return True when a trusted proxy says the client connected over TLS.

    ``X-Forwarded-Proto: https`` counts only from a peer in ``MELTEMI_API_TRUSTED_PROXIES``
    (``app.state.client_addresses``, the one place that decides whom to believe); without it,
    or from any other peer, the header is ignored.
    """
    app = scope.get("app")
    proxies: TrustedProxies | None = getattr(getattr(app, "state", None), "client_addresses", None)
    client = scope.get("client")
    if proxies is None or not client:
        return False
    try:
        peer = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if not proxies.is_trusted(peer):
        return False
    values = [v for k, v in scope.get("headers", []) if k == b"x-forwarded-proto"]
    # The proxy nearest to us appends last: its word is the one that counts.
    return bool(values) and values[-1].split(b",")[-1].strip().lower() == b"https"
