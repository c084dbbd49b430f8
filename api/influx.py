"""The API's InfluxDB adapter: InfluxQL over the v1-compatible ``GET /query`` (CONTRACT §3).

One ``httpx.AsyncClient`` is opened in the app's lifespan (``open_influx_client``). Credentials
travel only in headers (RELIABILITY §0.8): ``Authorization: Token …`` for a 2.x/3.x token,
Basic for 1.x username/password (1.6.7 answers ``Token user:pass`` with 401), never ``?u=&p=``.

Queries are sent with ``chunked=true``: the answer is a stream of JSON objects, one per chunk
of at most ``CHUNK_ROWS`` rows, in which ``"partial": true`` means "more of this series (or
statement) follows". Chunks are merged here, and the answer is complete only when the last
chunk of every series and statement says so. Chunking is not an optimisation: without it,
1.x truncates at ``max-row-limit`` and also flags any series of more than 10,000 rows as
partial even when nothing was cut (influxdata/influxdb#8014, reproduced on 1.6.7), so the flag
of a non-chunked answer cannot tell complete from truncated. A server that ignores
``chunked`` answers with one object, which is read the same way.

Every answer is checked before it is used: an ``error`` anywhere, a series or statement whose
last chunk is still partial, or fewer results than statements (1.6.7 stops a multi-statement
request after a failed one) raise an ``api.errors`` exception, so a truncated answer is never
served as a complete 200 (RELIABILITY S9).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from api.cpu import run_cpu
from api.errors import StoragePartial, StorageRejected, StorageUnavailable
from api.influxql import InfluxQL, join_statements
from sensors.settings import Settings

logger = logging.getLogger(__name__)

# A cell of a result row: InfluxDB's JSON gives numbers, strings, booleans and nulls.
Cell = float | int | str | bool | None

_DETAIL_MAX: Final = 300  # characters of InfluxDB's error text kept in logs and exceptions
# Rows per chunk of a chunked answer (InfluxDB 1.x's default is 10,000). Each chunk is parsed in
# one pydantic call, which holds the GIL from start to end: at 10,000 rows that stopped the
# event loop for ~100 ms under heavy requests (bench/api_cost.py); 2,000 keeps a step short.
CHUNK_ROWS: Final = 2_000
# Answers larger than this are merged in a worker thread, so the event loop keeps serving.
THREAD_MERGE_BYTES: Final = 64 * 1024
CACHE_MAX_ENTRIES: Final = 256  # shared answers kept at most (dashboard queries: a handful)
CACHE_MAX_BYTES: Final = 4 * 1024 * 1024  # a larger answer is never kept
STREAM_CHUNK_ROWS: Final = 5_000  # rows per chunk of a streamed answer (InfluxReader.stream)
STREAM_BATCH_BYTES: Final = 512 * 1024  # whole lines handed on together by a stream


class SeriesOut(BaseModel):
    """One series of a statement's result, as InfluxDB's JSON gives it."""

    model_config = ConfigDict(frozen=True)

    name: str = ""
    tags: dict[str, str] = {}
    columns: list[str]
    values: list[list[Cell]] = []
    partial: bool = False

    def rows(self) -> list[dict[str, Cell]]:
        """Return the rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class StatementResult(BaseModel):
    """The result of one statement."""

    model_config = ConfigDict(frozen=True)

    statement_id: int = 0
    series: list[SeriesOut] = []
    error: str | None = None
    partial: bool = False


class QueryAnswer(BaseModel):
    """The body of a ``/query`` answer."""

    model_config = ConfigDict(frozen=True)

    results: list[StatementResult] = []
    error: str | None = None


def open_influx_client(settings: Settings) -> httpx.AsyncClient:
    """Return the AsyncClient for InfluxDB, authenticated by header as the settings say."""
    headers = {"Accept": "application/json"}
    auth: httpx.Auth | None = None
    if settings.influx_token is not None:
        headers["Authorization"] = "Token " + settings.influx_token.get_secret_value()
    elif settings.influx_username is not None:
        password = settings.influx_password.get_secret_value() if settings.influx_password else ""
        auth = httpx.BasicAuth(settings.influx_username, password)
    return httpx.AsyncClient(
        base_url=settings.influx_url.rstrip("/"),
        headers=headers,
        auth=auth,
        timeout=httpx.Timeout(settings.influx_timeout_s),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )


def query_params(database: str, text: InfluxQL) -> dict[str, str]:
    """Return the ``/query`` parameters the API sends (epoch ns, chunked answers)."""
    return {
        "db": database,
        "q": text,
        "epoch": "ns",
        "chunked": "true",
        "chunk_size": str(CHUNK_ROWS),
    }


@dataclass(slots=True)
class _Flight:
    """One InfluxDB request shared by every caller asking the same cacheable text meanwhile."""

    task: asyncio.Task[list[StatementResult]]
    waiters: int = 0


class InfluxReader:
    """Runs InfluxQL statements built by ``api.queries`` and returns checked results.

    With ``cache=True`` (the dashboard's fixed queries), an identical statement text asked for
    within ``cache_ttl_s`` of a completed answer gets that answer, and callers arriving while it
    is being fetched share the one request (single flight): a crowd costs one InfluxDB query
    per TTL. Entries are aged out by time only (no invalidation: an answer is at most
    ``cache_ttl_s`` old); errors are never kept. The shared request is cancelled only when
    every caller waiting for it has gone away.
    """

    def __init__(self, client: httpx.AsyncClient, database: str, cache_ttl_s: float = 0.0) -> None:
        self.client = client
        self.database = database
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, list[StatementResult]]] = {}
        self._flights: dict[str, _Flight] = {}
        self._too_big: set[str] = set()

    async def query(
        self, statements: Sequence[InfluxQL], *, cache: bool = False
    ) -> list[StatementResult]:
        """Run the statements in one request; return one complete result per statement."""
        if not statements:
            return []
        text = join_statements(list(statements))
        if not cache or self.cache_ttl_s <= 0:
            return await self._fetch(text, len(statements))
        hit = self._cache.get(text)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        flight = self._flights.get(text)
        if flight is None:
            task = asyncio.create_task(self._fetch(text, len(statements), keep=True))
            flight = self._flights[text] = _Flight(task)
            task.add_done_callback(lambda done: self._landed(text, done))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody wants it any more: stop InfluxDB's work too

    def _landed(self, text: str, task: asyncio.Task[list[StatementResult]]) -> None:
        self._flights.pop(text, None)
        if text in self._too_big:
            self._too_big.discard(text)
            return
        if task.cancelled() or task.exception() is not None:
            return
        now = time.monotonic()
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
        self._cache[text] = (now + self.cache_ttl_s, task.result())

    async def _fetch(
        self, text: InfluxQL, expected: int, keep: bool = False
    ) -> list[StatementResult]:
        logger.debug("query: %s", text)
        # The request runs in a task of its own and is cancelled there exactly once: httpx then
        # closes the connection, and InfluxDB 1.x aborts a query whose client went away. (Under
        # an anyio cancel scope, cancellation is re-delivered at every await, which interrupts
        # httpx's own clean-up and leaves the connection, and the query, running.)
        request = asyncio.ensure_future(self._get(text))
        try:
            status, raw, encoding = await asyncio.shield(request)
        except asyncio.CancelledError:
            request.cancel()
            raise
        except httpx.TimeoutException as exc:
            raise StorageUnavailable("InfluxDB did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"InfluxDB is unreachable: {type(exc).__name__}") from exc
        if status >= 500:
            raise StorageUnavailable(f"InfluxDB answered {status}")
        if status in (401, 403):
            raise StorageRejected(f"InfluxDB refused the API's credentials ({status})")
        if status != 200:
            text_out = decode_body(raw, encoding)[:_DETAIL_MAX].decode("utf-8", "replace")
            raise StorageRejected(f"InfluxDB refused the query ({status}): {text_out}")
        if keep and len(raw) > CACHE_MAX_BYTES:
            self._too_big.add(text)  # shared with its waiters, but not kept
        if len(raw) <= THREAD_MERGE_BYTES:
            return merge_chunks(decode_body(raw, encoding), expected)
        return await run_cpu(_decode_and_merge, raw, encoding, expected)

    async def _get(self, text: InfluxQL) -> tuple[int, bytes, str]:
        """Return the status, the body as sent (still compressed) and its content-encoding.

        The body is decompressed and parsed in a worker thread (``_decode_and_merge``), not
        here: inflating a large gzip answer took tens of milliseconds of the event loop.
        """
        params = query_params(self.database, text)
        async with self.client.stream("GET", "/query", params=params) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            return response.status_code, raw, response.headers.get("content-encoding", "")

    async def stream(
        self, statement: InfluxQL, *, chunk_rows: int = STREAM_CHUNK_ROWS
    ) -> AsyncIterator[bytes]:
        """Yield the chunked answer of one statement as batches of whole JSON lines.

        For answers too large to hold (``/v1/export``): at most about ``STREAM_BATCH_BYTES``
        plus one chunk is in memory at a time, and the next bytes are read from InfluxDB only
        when the caller asks for the next batch (so the client's pace sets InfluxDB's). The
        caller parses and checks the lines (``stream_chunk``). Answered uncompressed: the
        bytes travel over loopback, and inflating them would cost the event loop.
        """
        params = query_params(self.database, InfluxQL(statement))
        params["chunk_size"] = str(chunk_rows)
        logger.debug("stream query: %s", statement)
        try:
            async with self.client.stream(
                "GET", "/query", params=params, headers={"Accept-Encoding": "identity"}
            ) as response:
                if response.status_code != 200:
                    raw = await response.aread()
                    _raise_for_status(response.status_code, raw[:_DETAIL_MAX])
                pieces: list[bytes] = []
                size = 0
                async for piece in response.aiter_raw():
                    pieces.append(piece)
                    size += len(piece)
                    if size < STREAM_BATCH_BYTES:
                        continue
                    data = b"".join(pieces)
                    cut = data.rfind(b"\n") + 1
                    pieces = [data[cut:]] if cut < len(data) else []
                    size = len(data) - cut
                    if cut:
                        yield data[:cut]
                if pieces:
                    yield b"".join(pieces)
        except httpx.TimeoutException as exc:
            raise StorageUnavailable("InfluxDB did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise StorageUnavailable(f"InfluxDB is unreachable: {type(exc).__name__}") from exc


class _Statement:
    """The chunks of one statement's result, merged as they arrive."""

    def __init__(self) -> None:
        self.series: list[SeriesOut] = []
        self.rows: list[list[list[Cell]]] = []
        self.series_open = False  # the last series' last chunk said more rows follow
        self.result_open = False  # the last chunk said more of this statement follows

    def add(self, result: StatementResult) -> None:
        for series in result.series:
            last = self.series[-1] if self.series else None
            if (
                self.series_open
                and last is not None
                and (last.name, last.tags, last.columns)
                == (series.name, series.tags, series.columns)
            ):
                self.rows[-1].extend(series.values)
            else:
                self.series.append(series)
                self.rows.append(list(series.values))
            self.series_open = series.partial
        self.result_open = result.partial

    def complete(self, statement_id: int) -> StatementResult:
        if self.series_open or self.result_open:
            raise StoragePartial("InfluxDB returned a partial result (the answer was cut short)")
        merged = [
            SeriesOut.model_construct(
                name=series.name, tags=series.tags, columns=series.columns, values=rows
            )
            for series, rows in zip(self.series, self.rows, strict=True)
        ]
        return StatementResult.model_construct(statement_id=statement_id, series=merged)


def _raise_for_status(status: int, body: bytes) -> None:
    if status >= 500:
        raise StorageUnavailable(f"InfluxDB answered {status}")
    if status in (401, 403):
        raise StorageRejected(f"InfluxDB refused the API's credentials ({status})")
    text = body[:_DETAIL_MAX].decode("utf-8", "replace")
    raise StorageRejected(f"InfluxDB refused the query ({status}): {text}")


class StreamCheck:
    """The completeness check of a streamed answer (see ``merge_chunks``), line by line."""

    def __init__(self) -> None:
        self.open = True  # no chunk yet, or the last chunk said more follows

    def rows(self, line: bytes) -> tuple[list[str], list[list[Cell]]]:
        """Return the columns and rows of one chunk line of a one-statement, one-series answer.

        Raise StorageRejected for an error or an unreadable chunk.
        """
        try:
            answer = json.loads(line)
            results = answer.get("results", [])
        except (ValueError, AttributeError) as exc:
            raise StorageRejected("InfluxDB answered with an unreadable body") from exc
        if answer.get("error") is not None:
            raise StorageRejected(f"InfluxDB: {str(answer['error'])[:_DETAIL_MAX]}")
        columns: list[str] = []
        rows: list[list[Cell]] = []
        self.open = False
        for result in results:
            if result.get("error") is not None:
                raise StorageRejected(f"InfluxDB: {str(result['error'])[:_DETAIL_MAX]}")
            self.open = self.open or bool(result.get("partial", False))
            for series in result.get("series", []):
                columns = series["columns"]
                rows.extend(series.get("values", []))
                self.open = self.open or bool(series.get("partial", False))
        return columns, rows

    def finish(self) -> None:
        """Raise StoragePartial when the last chunk said more was to follow."""
        if self.open:
            raise StoragePartial("InfluxDB's streamed answer was cut short")


def decode_body(raw: bytes, encoding: str) -> bytes:
    """Return a body as InfluxDB meant it: gzip answers inflated (StorageUnavailable when cut)."""
    if encoding.strip().lower() != "gzip":
        return raw
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        body = inflater.decompress(raw) + inflater.flush()
    except zlib.error as exc:
        raise StorageUnavailable("InfluxDB's compressed answer was cut short") from exc
    if not inflater.eof:
        raise StorageUnavailable("InfluxDB's compressed answer was cut short")
    return body


def _decode_and_merge(raw: bytes, encoding: str, expected: int) -> list[StatementResult]:
    return merge_chunks(decode_body(raw, encoding), expected)


def merge_chunks(body: bytes, expected: int) -> list[StatementResult]:
    """Return one complete result per statement from a (chunked) ``/query`` answer body.

    Raise StorageRejected for an error or an unreadable chunk, StoragePartial when a series or
    statement is left unfinished or a statement's result is missing.
    """
    statements: dict[int, _Statement] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            answer = QueryAnswer.model_validate_json(line)
        except ValidationError as exc:
            raise StorageRejected("InfluxDB answered with an unreadable body") from exc
        if answer.error is not None:
            raise StorageRejected(f"InfluxDB: {answer.error[:_DETAIL_MAX]}")
        for result in answer.results:
            if result.error is not None:
                raise StorageRejected(f"InfluxDB: {result.error[:_DETAIL_MAX]}")
            statements.setdefault(result.statement_id, _Statement()).add(result)
    if sorted(statements) != list(range(expected)):
        raise StoragePartial(f"InfluxDB returned {len(statements)} of {expected} statement results")
    return [statements[k].complete(k) for k in range(expected)]
