"""The ``/health`` verdict: the broker answers MQTT and InfluxDB answers ``/ping``, cached.

Probes are cached for ``HEALTH_CACHE_S`` so that a load balancer polling every second costs
one broker connection every few seconds, and one lock keeps concurrent requests from probing
at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from api.influx import InfluxReader
from api.models import HealthOut
from api.mqtt_probe import broker_answers
from sensors.settings import Settings

HEALTH_CACHE_S: Final = 3.0


class HealthProbe:
    """Checks the broker and InfluxDB, remembering the answer for a few seconds."""

    def __init__(
        self, settings: Settings, reader: InfluxReader, cache_s: float = HEALTH_CACHE_S
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.cache_s = cache_s
        self._lock = asyncio.Lock()
        self._cached: HealthOut | None = None
        self._checked_at = 0.0

    async def check(self) -> HealthOut:
        """Return the current verdict (probing again when the cached one is too old)."""
        async with self._lock:
            if self._cached is None or time.monotonic() - self._checked_at > self.cache_s:
                mqtt, influxdb = await asyncio.gather(
                    broker_answers(
                        self.settings.mqtt_host,
                        self.settings.mqtt_port,
                        tls=self.settings.mqtt_tls,
                        ca_file=self.settings.mqtt_ca_file,
                    ),
                    self.reader.ping(),
                )
                self._cached = HealthOut(
                    status="ok" if mqtt and influxdb else "degraded", mqtt=mqtt, influxdb=influxdb
                )
                self._checked_at = time.monotonic()
            return self._cached
