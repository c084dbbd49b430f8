"""``GET /v1/stream``: Server-Sent Events of accepted readings and station status (CONTRACT §5).

Events (each with an ``id:`` for ``Last-Event-ID`` resumption):

- ``reading``: data = the ``/v1/latest`` entry shape, plus the derived parameters (CONTRACT §4)
  its values allow, each flagged with the worst QC flag of its inputs;
- ``status``: ``{"station", "state": "online"|"offline", "ts", "firmware"}`` when a station's
  retained status changes (and once per station when the API connects to the broker);
- ``reset`` (no id): sent first when ``Last-Event-ID`` is older than the replay window, so the
  client knows it missed events and should re-read ``/v1/latest``.

A ``: heartbeat`` comment follows every ``heartbeat_s`` of silence; ``retry:`` is sent first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.client_address import client_address
from api.live import LiveFeed, StreamLimitReached, Subscription
from sensors.topics import is_station_id

router = APIRouter(tags=["stream"])

RETRY_AFTER_S = 5  # when every stream slot is taken


def get_live_feed(request: Request) -> LiveFeed:
    """Return the app's LiveFeed (set on ``app.state.live_feed`` by create_app)."""
    feed: LiveFeed = request.app.state.live_feed
    return feed


LiveFeedDep = Annotated[LiveFeed, Depends(get_live_feed)]


def parse_station_filter(raw: str | None, feed: LiveFeed) -> frozenset[str] | None:
    """Return the requested station ids, validated against the registry (400 / 404)."""
    if raw is None:
        return None
    ids = [part.strip() for part in raw.split(",")]
    if not any(ids):
        raise HTTPException(400, detail="stations: give one or more comma-separated station ids")
    for station_id in ids:
        if not is_station_id(station_id):
            shown = json.dumps(station_id[:70])
            raise HTTPException(400, detail=f"stations: {shown} is not a valid station id")
    unknown = sorted({station_id for station_id in ids if station_id not in feed.registry})
    if unknown:
        raise HTTPException(404, detail=f"unknown station(s): {', '.join(unknown)}")
    return frozenset(ids)


def _parse_last_event_id(raw: str | None) -> int | None:
    # The browser sends back whatever id we gave; anything else just means "no resumption".
    if raw is None or not raw.strip().isdigit() or len(raw.strip()) > 20:
        return None
    return int(raw.strip())


class _StreamResponse(StreamingResponse):
    """A streaming response that always releases its subscription, even if never iterated."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-store",  # the live state: never from a cache
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            },
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _frames(
    request: Request, feed: LiveFeed, subscription: Subscription
) -> AsyncIterator[bytes]:
    yield f"retry: {feed.retry_ms}\n: meltemi live stream\n\n".encode()
    if subscription.gap:
        yield b'event: reset\ndata: {"reason":"events since Last-Event-ID are gone"}\n\n'
    if not subscription.resumed:
        # A fresh stream starts with every station's current status (no id: a snapshot is not
        # part of the numbered sequence a client resumes from).
        for station, data in list(feed.statuses.items()):
            if subscription.wants(station):
                yield f"event: status\ndata: {data}\n\n".encode()
    for missed in subscription.backlog:
        yield missed.frame
    subscription.backlog = []
    while True:
        try:
            async with asyncio.timeout(feed.heartbeat_s):
                event = await subscription.queue.get()
        except TimeoutError:
            if await request.is_disconnected():
                return
            yield b": heartbeat\n\n"
            continue
        if event is None:  # dropped as too slow, or the API is shutting down
            return
        yield event.frame


@router.get(
    "/v1/stream",
    response_class=StreamingResponse,
    summary="Live readings and station status as Server-Sent Events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the event stream"},
        400: {"description": "malformed station filter"},
        404: {"description": "unknown station in the filter"},
        503: {"description": "too many concurrent streams"},
    },
)
async def stream(
    request: Request,
    feed: LiveFeedDep,
    stations: Annotated[
        str | None,
        Query(description="comma-separated station ids (default: every station)", max_length=8192),
    ] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this event")] = None,
) -> StreamingResponse:
    """Stream ``reading`` and ``status`` events, optionally for some stations only."""
    wanted = parse_station_filter(stations, feed)
    try:
        subscription = feed.hub.subscribe(
            wanted,
            _parse_last_event_id(last_event_id),
            client_address(request),  # X-Forwarded-For only from a trusted proxy
        )
    except StreamLimitReached as exc:
        raise HTTPException(
            503,
            detail=f"{exc} (MELTEMI_API_MAX_STREAMS); retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return _StreamResponse(
        _frames(request, feed, subscription), lambda: feed.hub.unsubscribe(subscription)
    )
