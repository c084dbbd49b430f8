"""``/v1/latest`` from memory: each station's newest reading, fed by the live feed.

The API already receives every reading the ingester stored, re-checked (api.live: the accepted
topic, ``api.live_check``). ``LatestStore`` keeps, per station, the newest of them *by
observation time*: an entry replaces the kept one only when its ``ts`` is not older, so a late
or replayed batch never replaces a newer value (CONTRACT §5), whatever order it arrives in.

Seeded from InfluxDB (api.station_state, the statements the route used before) once the feed
is subscribed; entries arriving meanwhile go through the same newest-wins rule, so seed and
feed commute. Memory is trusted only while nothing can have been missed: the feed must be
subscribed, with no (re)subscription or intake overflow since the seed (``LiveFeed.gaps``);
otherwise the route answers from InfluxDB as before and the store is seeded again. Stations
added to the registry after the seed are looked up in InfluxDB on first use.

Entries are kept as InfluxDB would return the row (``time``, values, ``_qc``, ``_check``,
``seq``), and the answer is built by the very function the InfluxDB path uses
(``api.latest.latest_entries``, derived values included), so both answers are equal by
construction (tests/test_latest_memory.py checks it against InfluxDB). The rendered
``/v1/latest`` body is kept until the next change: most requests are a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import ApiStorageError
from api.influx import Cell, InfluxReader
from api.latest import latest_entries
from api.live import LiveFeed
from api.models import LatestOut
from api.station_state import read_rows
from sensors import schema
from sensors.models import parse_ts_ns
from sensors.outbound import LatestEntry
from sensors.registry import StationRegistry

logger = logging.getLogger(__name__)

SEED_POLL_S = 0.2  # how often the start-up seeding looks whether the feed has subscribed
SEED_RETRY_S = 5.0  # after InfluxDB failed to answer the seed

Row = dict[str, Cell]


def entry_row(entry: LatestEntry) -> Row:
    """Return an accepted entry as the ``SELECT *`` row InfluxDB holds for it."""
    row: Row = {"time": parse_ts_ns(entry.ts)}
    for parameter, value in entry.values.items():
        row[parameter] = value
        flag = entry.qc.get(parameter)
        row[schema.qc_field(parameter)] = flag.value if flag is not None else None
        row[schema.check_field(parameter)] = entry.checks.get(parameter, "")
    if entry.seq is not None:
        row[schema.SEQ_FIELD] = entry.seq
    return row


class LatestStore:
    """Each registered station's newest reading row, by observation time."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._seeded_ids: set[str] = set()
        self._seeded_gaps: int | None = None  # LiveFeed.gaps when the seed was taken
        self._version = 0
        self._rendered: tuple[int, tuple[str, ...], bytes] | None = None
        self._lock = asyncio.Lock()
        self.offered = 0

    def offer_station(self, station_id: str, row: Row) -> bool:
        """Keep ``row`` as the station's newest unless a newer one is kept; return if kept."""
        self.offered += 1
        ts = row.get("time")
        if not isinstance(ts, int):
            return False
        kept = self._rows.get(station_id)
        if kept is not None:
            kept_ts = kept.get("time")
            if isinstance(kept_ts, int) and kept_ts > ts:
                return False  # a late reading never replaces a newer one
        self._rows[station_id] = row
        self._version += 1
        return True

    def offer_entry(self, entry: LatestEntry) -> bool:
        """Keep an accepted, re-checked entry of the live feed (newest by ``ts`` wins)."""
        return self.offer_station(entry.station, entry_row(entry))

    def usable(self, gaps: int, connected: bool) -> bool:
        """Return True when memory holds everything stored since the seed."""
        return connected and self._seeded_gaps == gaps

    async def seed(
        self, reader: InfluxReader, registry: StationRegistry, gaps: int, connected: bool
    ) -> None:
        """Read every registered station's newest row from InfluxDB (once per gap)."""
        async with self._lock:
            if self.usable(gaps, connected) and set(registry.ids) <= self._seeded_ids:
                return
            if not self.usable(gaps, connected):
                wanted: Iterable[str] = list(registry.ids)
                self._seeded_ids = set()
            else:
                wanted = [s for s in registry.ids if s not in self._seeded_ids]
            rows = await read_rows(reader, registry)
            for station_id in wanted:
                row = rows.get(station_id)
                if row is not None:
                    self.offer_station(station_id, dict(row))
            self._seeded_ids |= set(wanted)
            if connected:
                self._seeded_gaps = gaps
            logger.info("latest: %d stations seeded from InfluxDB", len(rows))

    def ready(self, registry: StationRegistry, gaps: int, connected: bool) -> bool:
        """Return True when the answer may come from memory alone."""
        return self.usable(gaps, connected) and all(s in self._seeded_ids for s in registry.ids)

    def rows(self, registry: StationRegistry) -> list[tuple[str, Row]]:
        """Return the kept rows of the registered stations, in registry order."""
        return [(s.id, self._rows[s.id]) for s in registry if s.id in self._rows]

    def entry(self, station_id: str) -> LatestEntry | None:
        """Return one station's newest entry (with derived values), or None."""
        row = self._rows.get(station_id)
        if row is None:
            return None
        entries = latest_entries([(station_id, row)])
        return entries[0] if entries else None

    def body(self, registry: StationRegistry) -> bytes:
        """Return the ``/v1/latest`` JSON, rendered again only after a change."""
        ids = tuple(registry.ids)
        cached = self._rendered
        if cached is not None and cached[0] == self._version and cached[1] == ids:
            return cached[2]
        answer = LatestOut(stations=latest_entries(self.rows(registry)))
        body = answer.model_dump_json(exclude_none=True).encode()
        self._rendered = (self._version, ids, body)
        return body


async def _seed_when_subscribed(store: LatestStore, app: FastAPI) -> None:
    feed: LiveFeed = app.state.live_feed
    registry: StationRegistry = app.state.registry
    while True:
        if feed.connected:
            try:
                await store.seed(app.state.influx, registry, feed.gaps, feed.connected)
                return
            except ApiStorageError as exc:
                logger.warning("latest: seeding from InfluxDB failed (%s); retrying", exc)
                await asyncio.sleep(SEED_RETRY_S)
        await asyncio.sleep(SEED_POLL_S)


@asynccontextmanager
async def latest_store_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Feed ``app.state.latest_store`` from the live feed; seed it once the feed subscribed.

    An api.app lifespan hook, entered after the live feed's. Requests before the seed is done
    are answered from InfluxDB (and may seed it themselves).
    """
    store: LatestStore = app.state.latest_store
    feed: LiveFeed = app.state.live_feed
    feed.listeners.append(store.offer_entry)
    task = asyncio.create_task(_seed_when_subscribed(store, app), name="latest-seed")
    try:
        yield
    finally:
        feed.listeners.remove(store.offer_entry)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
