"""Prometheus metrics at ``/metrics``.

Counting on the hot path is a dict increment and a bisect into fixed buckets per request;
prometheus objects are made only when ``/metrics`` is scraped. Every count here is this
process's own (scrape each replica directly, not through the proxy), except the ledger's,
which are shared and read by ``LedgerCounts`` every few seconds, never per scrape.
"""

import asyncio
import bisect
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mirror.http.one_line import one_line
from mirror.services import Services
from quarantine.ledger.interface import Ledger, LedgerTally
from quarantine.models import FileState

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Seconds: a warm page takes well under a millisecond, a large file minutes.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
TALLY_INTERVAL_SECONDS = 5.0
# Route classes by the path's first segment; never the path itself: labels stay few.
_CLASSES = {
    "simple": "page",
    "files": "file",
    "-": "admin",
    "pypi": "json_api",
    "healthz": "health",
    "readyz": "health",
    "metrics": "metrics",
}


def route_class(path: str) -> str:
    if path == "/simple/":
        return "index"
    return _CLASSES.get(path.split("/", 2)[1] if path.count("/") else path, "other")


class RouteTally:
    """One route class's requests by status and durations, as plain numbers."""

    __slots__ = ("buckets", "seconds", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # one count per bucket, then +Inf
        self.seconds = 0.0


class RequestTally:
    def __init__(self) -> None:
        self.routes: dict[str, RouteTally] = {}

    def note(self, path: str, status: int, started: float) -> None:
        """One request answered (``started``: its time.perf_counter() on arrival)."""
        seconds = time.perf_counter() - started
        name = route_class(path)
        route = self.routes.get(name)
        if route is None:
            route = self.routes[name] = RouteTally()
        route.statuses[status] = route.statuses.get(status, 0) + 1
        route.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        route.seconds += seconds


class Metered:
    """An ASGI layer that times each HTTP request and notes its status (the fast path
    notes the requests it answers itself: one layer less on the hottest requests)."""

    def __init__(self, app: Any, tally: RequestTally) -> None:
        self._app = app
        self._tally = tally
        self.state = app.state  # the app's state, for whoever holds the outermost layer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app ends without a response

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, noting_status)
        finally:
            self._tally.note(scope["path"], status, started)


class LedgerCounts:
    """The ledger's counts, read every few seconds: a scrape reads memory, never the
    ledger. Readiness comes from ``readiness``, which its own loop keeps current."""

    def __init__(
        self,
        ledger: Ledger,
        readiness: Callable[[], bool | None],
        interval_seconds: float = TALLY_INTERVAL_SECONDS,
    ) -> None:
        self._ledger = ledger
        self._readiness = readiness
        self._interval = interval_seconds
        self.latest: LedgerTally | None = None

    @property
    def ready(self) -> bool | None:
        """None: not checked yet."""
        return self._readiness()

    async def refresh(self) -> None:
        self.latest = await asyncio.to_thread(self._ledger.tally)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - a metrics read must never stop serving
                log.warning("ledger counts for /metrics not read: %s", error)
            await asyncio.sleep(self._interval)


class MirrorCollector(Collector):
    def __init__(self, services: Services, tally: RequestTally, counts: LedgerCounts) -> None:
        self._services = services
        self._tally = tally
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._caches()
        failures = CounterMetricFamily(
            "lazaretto_upstream_errors",
            "Failed upstream requests (unreachable, too slow, or an answer not usable)",
            labels=["kind"],
        )
        for kind, count in sorted(self._services.client.failures.items()):
            failures.add_metric([kind], count)
        yield failures
        yield CounterMetricFamily(
            "lazaretto_ledger_notifications",
            "Changes the ledger told this process of (PostgreSQL LISTEN/NOTIFY; 0 on SQLite)",
            value=self._services.catalog.listener.received,
        )
        yield GaugeMetricFamily(
            "lazaretto_leader",
            "1 when this process runs the background side (vetting, watcher, notifier)",
            value=int(self._services.leads),
        )
        if self._counts.ready is not None:
            yield GaugeMetricFamily(
                "lazaretto_ready",
                "1 when /readyz would answer 200 (checked every few seconds)",
                value=int(self._counts.ready),
            )
        yield from _disk_metrics(self._services.settings.data_dir)
        if self._counts.latest is not None:
            yield from _ledger_metrics(self._counts.latest)

    def _requests(self) -> Iterator[Metric]:
        routes = sorted(self._tally.routes.items())
        requests = CounterMetricFamily(
            "lazaretto_http_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for name, route in routes:
            for status, count in sorted(route.statuses.items()):
                requests.add_metric([name, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "lazaretto_http_request_duration_seconds",
            "Time from a request's arrival to its last byte handed to the server",
            labels=["route"],
        )
        for name, route in routes:
            cumulative, total = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), route.buckets, strict=True):
                total += count
                cumulative.append((_bound(bound), total))
            latency.add_metric([name], cumulative, route.seconds)
        yield latency

    def _caches(self) -> Iterator[Metric]:
        catalog, blobs = self._services.catalog, self._services.blob_cache
        lookups = CounterMetricFamily(
            "lazaretto_cache_lookups",
            "Pages answered from memory without a look, and small files from memory",
            labels=["cache", "result"],
        )
        lookups.add_metric(["page", "hit"], catalog.warm_hits)
        lookups.add_metric(["page", "miss"], catalog.warm_misses)
        lookups.add_metric(["file", "hit"], blobs.hits)
        lookups.add_metric(["file", "miss"], blobs.misses)
        yield lookups


def _disk_metrics(data_dir: Path) -> Iterator[Metric]:
    """The data directory's file system (ledger, blobs, staging): one statvfs call."""
    try:
        facts = os.statvfs(data_dir)
    except OSError:
        return
    yield GaugeMetricFamily(
        "lazaretto_data_dir_free_bytes",
        "Bytes free to this process on the data directory's file system",
        value=facts.f_bavail * facts.f_frsize,
    )
    yield GaugeMetricFamily(
        "lazaretto_data_dir_size_bytes",
        "Size of the data directory's file system",
        value=facts.f_blocks * facts.f_frsize,
    )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _ledger_metrics(tally: LedgerTally) -> Iterator[Metric]:
    files = GaugeMetricFamily(
        "lazaretto_files", "Files in the ledger by state (every replica's)", labels=["state"]
    )
    for state in FileState:
        files.add_metric([state.value], tally.files_by_state.get(state, 0))
    yield files
    yield GaugeMetricFamily(
        "lazaretto_vetting_queue_depth",
        "Held files inside the configured platforms: the vetting side's work",
        value=tally.vetting_queue,
    )
    yield GaugeMetricFamily(
        "lazaretto_outbox_backlog",
        "Notification deliveries not yet made",
        value=tally.outbox_backlog,
    )
    yield CounterMetricFamily(
        "lazaretto_ledger_events",
        "State changes recorded in the ledger (its rate is the decision rate)",
        value=tally.events,
    )


def metrics_registry(
    services: Services, tally: RequestTally, counts: LedgerCounts
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MirrorCollector(services, tally, counts))
    ProcessCollector(registry=registry)  # memory, CPU and open descriptors of this process
    return registry


def allowed_peer(rule: bool | tuple[str, ...], peer: str | None) -> bool:
    """The ``metrics`` setting: on, off, or only from the listed networks (the direct peer:
    a scraper reaches each replica itself, not through the proxy)."""
    if isinstance(rule, bool):
        return rule
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in rule)


def metrics_route(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        services: Services = request.app.state.services
        peer = request.client.host if request.client else None
        if not allowed_peer(services.settings.metrics, peer):
            answer = one_line(404, "not found")
            return PlainTextResponse(answer.body, answer.status, answer.headers)
        body = generate_latest(registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics
