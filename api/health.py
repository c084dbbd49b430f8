"""The ``/health`` verdict: the paths the API really uses, with the API's own credentials.

- ``influxdb``: an authenticated, cheap query on the API's database (``SHOW MEASUREMENTS
  LIMIT 1``) through the same client, credentials and database every route uses. ``/ping``
  answers without credentials, so it said "ok" while InfluxDB refused the API's password or the
  database was gone (issue 8: "/health says ok while the API's InfluxDB credential is refused").
- ``broker_dropped`` (issue 9): the messages the broker has dropped since it started, as the
  ingesters last read it from Mosquitto's $SYS counters (``ingest_stats``; null when no
  ingester reported in the last hour). Informational: a loss is shown, never hidden, but the
  verdict stays about the API's own paths.
- ``mqtt``: the live feed's own subscription state, i.e. connected with the API's broker
  credential AND every subscription granted in the SUBACK. An anonymous CONNECT probe answered
  by any CONNACK said "ok" while the live feed was locked out.

Probes are cached for ``HEALTH_CACHE_S`` so that a load balancer polling every second costs
one query every few seconds, and one lock keeps concurrent requests from probing at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Protocol

from api.errors import ApiStorageError
from api.influx import InfluxReader
from api.influxql import InfluxQL
from api.models import HealthOut
from sensors import schema

logger = logging.getLogger(__name__)

HEALTH_CACHE_S: Final = 3.0
# A just-started live feed gets this long to subscribe before a check calls it down; later
# checks answer at once (a slow /health is worse for a load balancer than an honest 503).
FEED_WAIT_S: Final = 2.0
_FEED_POLL_S: Final = 0.05
QUERY_TIMEOUT_S: Final = 2.0  # a hung InfluxDB is down for health, not a hung /health
# READ privilege suffices (the API's InfluxDB user is read-only); an authenticated query on the
# database that reads the newest broker counter of the ingesters' small snapshot measurement.
PROBE_QUERY: Final = InfluxQL(
    f'SELECT last("broker_dropped") FROM "{schema.INGEST_STATS}" WHERE time > now() - 1h'
)


class FeedState(Protocol):
    """What health needs of the live feed (api.live.LiveFeed)."""

    @property
    def connected(self) -> bool:
        """Return True while connected and every subscription is granted."""
        ...

    @property
    def started_at(self) -> float:
        """Return time.monotonic() when the feed started connecting."""
        ...


class HealthProbe:
    """Checks InfluxDB and the live feed, remembering the answer for a few seconds."""

    def __init__(
        self,
        reader: InfluxReader,
        feed: FeedState,
        cache_s: float = HEALTH_CACHE_S,
        feed_wait_s: float = FEED_WAIT_S,
    ) -> None:
        self.reader = reader
        self.feed = feed
        self.cache_s = cache_s
        self.feed_wait_s = feed_wait_s
        self._lock = asyncio.Lock()
        self._cached: HealthOut | None = None
        self._checked_at = 0.0

    async def check(self) -> HealthOut:
        """Return the current verdict (probing again when the cached one is too old)."""
        async with self._lock:
            if self._cached is None or time.monotonic() - self._checked_at > self.cache_s:
                mqtt, (influxdb, dropped) = await asyncio.gather(
                    self._feed_subscribed(), self._query()
                )
                verdict = HealthOut(
                    status="ok" if mqtt and influxdb else "degraded",
                    mqtt=mqtt,
                    influxdb=influxdb,
                    broker_dropped=dropped,
                )
                if verdict != self._cached and verdict.status == "degraded":
                    logger.warning("health degraded: mqtt=%s influxdb=%s", mqtt, influxdb)
                self._cached = verdict
                self._checked_at = time.monotonic()
            return self._cached

    async def _feed_subscribed(self) -> bool:
        deadline = self.feed.started_at + self.feed_wait_s
        while not self.feed.connected:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_FEED_POLL_S)
        return True

    async def _query(self) -> tuple[bool, int | None]:
        """Return whether the query worked, and the broker's dropped count it read."""
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                (result,) = await self.reader.query([PROBE_QUERY])
        except TimeoutError:
            logger.warning("health: InfluxDB did not answer in %.0f s", QUERY_TIMEOUT_S)
            return False, None
        except ApiStorageError as exc:
            logger.warning("health: InfluxDB query as the API failed: %s", exc)
            return False, None
        dropped: int | None = None
        for serie in result.series:
            for row in serie.values:
                value = row[1] if len(row) > 1 else None
                if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                    dropped = int(value)
        return True, dropped
