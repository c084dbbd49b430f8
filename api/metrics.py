"""Prometheus metrics: the API's own requests, and each ingester's last ``ingest_stats``.

The API counts its requests by method (mapped to a fixed set: anything but the standard methods
is ``OTHER``), route template (never the raw path) and status, so that a scanner sending random
methods and paths cannot blow up the label set (issue 8 part 8), and times them to the first
response byte (a stream's lifetime is not its latency). Ingesters snapshot their counters into
InfluxDB every few seconds; ``/metrics`` turns the newest snapshot of each into
``meltemi_ingest_*`` families with an ``ingester`` label (the names the ingester's own listener
uses, labelled).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.influx import Cell
from api.surface import HEAD_SCOPE_KEY
from sensors.ingest_stats import (
    LATENCY_COUNT,
    LATENCY_SUM,
    QUARANTINED_PREFIX,
    STARTED,
    STAT_FIELDS,
    STAT_KINDS,
)
from sensors.schema import QuarantineReason

# RFC 9110 §9 methods; any other method string (a scanner's "FOO" or 4 KB of junk) is OTHER.
METHOD_LABELS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD: Final = "OTHER"
UNMATCHED_ROUTE: Final = "unmatched"
_FIELD_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
# The snapshot's fields, kinds and help texts are declared once, in sensors.ingest_stats (issue 9:
# they were kept by hand here too, and some never reached /metrics).
_DOCS: Final = {stat.name: stat.doc for stat in STAT_FIELDS}
_LATENCY_SUM: Final = LATENCY_SUM
_LATENCY_COUNT: Final = LATENCY_COUNT
_STARTED: Final = STARTED
_QUARANTINED: Final = QUARANTINED_PREFIX
# From a cached catalogue (under 5 ms) to a month of derived parameters (about a second).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """The API's own counters, in a registry of this app's (tests build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meltemi_api_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meltemi_api_request_duration_seconds",
            "time to the first response byte, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.live_dropped = Counter(
            "meltemi_api_live_dropped",
            "accepted-topic messages and entries the live stream refused to show, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "meltemi_api_storage_errors",
            "InfluxDB answers the API could not serve, by kind",
            ["kind"],
            registry=self.registry,
        )

    def render(self, ingest: Collector) -> bytes:
        """Return the Prometheus text of the API's metrics followed by the ingesters'."""
        extra = CollectorRegistry()
        extra.register(ingest)
        return generate_latest(self.registry) + generate_latest(extra)


class MetricsMiddleware:
    """Pure ASGI middleware (no buffering, so Server-Sent Events pass straight through)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response starts
        method = method_label(scope)

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.metrics.latency.labels(method, _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.requests.labels(method, _route(scope), str(status)).inc()


def method_label(scope: Scope) -> str:
    """Return the request's method as a label of the fixed set (HEAD served as GET is HEAD)."""
    if scope.get(HEAD_SCOPE_KEY):
        return "HEAD"
    method = scope["method"]
    return method if method in METHOD_LABELS else OTHER_METHOD


def _route(scope: Scope) -> str:
    # Starlette's router records the matched route in the (shared) scope.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class IngestSnapshots(Collector):
    """The newest ``ingest_stats`` row of each ingester, as metric families."""

    def __init__(self, snapshots: Mapping[str, Mapping[str, Cell]], up: bool) -> None:
        self.snapshots = snapshots
        self.up = up

    def collect(self) -> Iterable[Metric]:
        """Yield counters, gauges and the write-latency summary, labelled by ingester."""
        yield GaugeMetricFamily(
            "meltemi_ingest_stats_up",
            "1 when the ingesters' snapshots could be read from InfluxDB",
            value=1 if self.up else 0,
        )
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        quarantined = CounterMetricFamily(
            "meltemi_ingest_quarantined",
            "quarantine records by reason (cumulative since the ingester started)",
            labels=["ingester", "reason"],
        )
        latency = SummaryMetricFamily(
            "meltemi_ingest_write_latency_seconds",
            "InfluxDB /write latency of the ingester",
            labels=["ingester"],
        )
        age = GaugeMetricFamily(
            "meltemi_ingest_snapshot_age_seconds",
            "age of the newest ingest_stats snapshot",
            labels=["ingester"],
        )
        started = GaugeMetricFamily(
            "meltemi_ingest_start_time_seconds",
            "when the ingester started (Unix time)",
            labels=["ingester"],
        )
        reasons = {reason.value for reason in QuarantineReason}
        now_ns = time.time_ns()
        for ingester, row in sorted(self.snapshots.items()):
            ts = row.get("time")
            if isinstance(ts, int):
                age.add_metric([ingester], max(0.0, (now_ns - ts) / 1e9))
            numbers = {
                key: float(value)
                for key, value in row.items()
                if isinstance(value, int | float) and not isinstance(value, bool) and key != "time"
            }
            if _LATENCY_SUM in numbers and _LATENCY_COUNT in numbers:
                latency.add_metric(
                    [ingester],
                    count_value=int(numbers[_LATENCY_COUNT]),
                    sum_value=numbers[_LATENCY_SUM],
                )
            if _STARTED in numbers:
                started.add_metric([ingester], numbers[_STARTED] / 1e9)
            for name, value in sorted(numbers.items()):
                if name in (_LATENCY_SUM, _LATENCY_COUNT, _STARTED) or not _FIELD_NAME.fullmatch(
                    name
                ):
                    continue
                if name.startswith(_QUARANTINED):
                    reason = name.removeprefix(_QUARANTINED)
                    if reason in reasons:
                        quarantined.add_metric([ingester, reason], value)
                elif STAT_KINDS.get(name) == "gauge":
                    gauges.setdefault(
                        name,
                        GaugeMetricFamily(
                            f"meltemi_ingest_{name}", _DOCS[name], labels=["ingester"]
                        ),
                    ).add_metric([ingester], value)
                else:  # declared counters, and those of a newer ingester this API predates
                    doc = _DOCS.get(name, f"ingester counter {name}")
                    counters.setdefault(
                        name,
                        CounterMetricFamily(
                            f"meltemi_ingest_{name}",
                            f"{doc} (cumulative since it started)",
                            labels=["ingester"],
                        ),
                    ).add_metric([ingester], value)
        yield from counters.values()
        yield quarantined
        yield from gauges.values()
        yield latency
        yield age
        yield started
