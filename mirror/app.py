"""The app factory: the one place (with the CLI) where the parts are wired together."""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mirror.admin.api import admin_routes
from mirror.background.demand_pipe import DemandWriter
from mirror.background.feed_refresh import FeedRefresher, is_url
from mirror.background.leadership import Leadership
from mirror.background.vetting_child import VettingChild
from mirror.blobs.disk import DiskBlobStore
from mirror.blobs.interface import BlobStore
from mirror.blobs.local_copies import LocalCopies
from mirror.cli.local_backend import policy_in_force
from mirror.config_reload import ConfigReload
from mirror.errors import MirrorError
from mirror.files.artifacts import Artifacts
from mirror.files.deferred_downloads import DeferredDownloads
from mirror.files.download_recorder import DownloadRecorder
from mirror.files.fast_path import FastPath
from mirror.files.routes import serve_file
from mirror.http.access_log import redact_access_log
from mirror.http.health import Readiness, healthz, readyz
from mirror.http.index_auth import IndexAuth, with_index_auth
from mirror.http.metrics import LedgerCounts, Metered, RequestTally, metrics_registry, metrics_route
from mirror.http.one_line import OneLine, for_error, one_line
from mirror.http.request_base import RequestBase
from mirror.ledger_backend import is_postgres, open_download_log, open_lease, open_ledger
from mirror.memory import MemoryTrim
from mirror.notify.delivery import Notifier, build_routes
from mirror.services import Services
from mirror.settings import Settings
from mirror.simple.catalog import Catalog
from mirror.simple.json_api import json_api_routes
from mirror.simple.names import ReservedNames
from mirror.simple.routes import simple_project, simple_root, simple_root_without_slash
from mirror.upstream.client import UpstreamClient
from mirror.upstream.default_index import pip_index_url
from mirror.upstream.source import MirrorSource
from mirror.upstream.url_guard import UrlGuard
from quarantine import policy_record
from quarantine.clock import Clock, SystemClock
from quarantine.clock_guard import ClockGuard
from quarantine.feeds.in_force import Feeds
from quarantine.ledger.interface import Ledger
from quarantine.ledger.lease import LEADER
from quarantine.live_policy import LivePolicy
from quarantine.vetting.promoter import Promoter
from quarantine.vetting.watcher import Watcher

if TYPE_CHECKING:
    from quarantine.inspect.pool import InspectionPool
    from quarantine.vetting.worker import Vetter

log = logging.getLogger(__name__)


class _Sha256(Convertor[str]):
    regex = "[0-9a-f]{64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("sha256", _Sha256())


def _response(answer: OneLine) -> Response:
    return PlainTextResponse(answer.body, status_code=answer.status, headers=answer.headers)


def _one_line(status: int, reason: str) -> Response:
    return _response(one_line(status, reason))


async def _mirror_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, MirrorError)
    return _response(for_error(error))


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _one_line(
        error.status_code, "not found" if error.status_code == 404 else str(error.detail)
    )


def build_services(
    settings: Settings, clock: Clock | None = None, *, vets: bool = True
) -> Services:
    """Every long-lived part. ``vets=False``: this process never vets (a server whose
    vetting runs in a child), so its promoter gets no vetter and may never run."""
    clock = clock or SystemClock()
    upstream = settings.upstream or pip_index_url()
    if not upstream.endswith("/"):
        upstream += "/"
    data_dir = Path(settings.data_dir)
    ledger = open_ledger(settings)
    blobs = _blob_store(settings, data_dir)
    client = UpstreamClient(
        UrlGuard(upstream, settings.file_hosts, settings.upstream_private_networks),
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        max_page_bytes=settings.max_page_bytes,
        page_timeout=settings.page_timeout_seconds,
        download_timeout=settings.download_timeout_seconds,
    )
    artifacts = Artifacts(ledger, blobs, client, settings.max_file_bytes, clock=clock)
    guard = ClockGuard(ledger, clock)
    policy = LivePolicy(settings.policy, ledger)
    feeds = Feeds(prefixes=settings.osv_id_prefixes)
    wake: list[Promoter] = []
    catalog = Catalog(
        ledger,
        client,
        policy,
        clock,
        index_ttl_seconds=settings.index_ttl.total_seconds(),
        request_wait_seconds=settings.request_wait.total_seconds(),
        public_base_url=settings.public_base_url,
        on_new_held=lambda name, asked: wake[0].wake(name, asked) if wake else None,
        reserved=ReservedNames(settings.reserved_names),
        guard=guard,
        feeds=feeds,
        max_file_bytes=settings.max_file_bytes,
        # Replicas on PostgreSQL, serve --workers, or several serve processes beside a
        # separate worker on one data directory (deploy/lazaretto@.service).
        shared_ledger=(
            is_postgres(settings) or settings.workers > 1 or settings.vetting_worker == "separate"
        ),
        page_cache_bytes=settings.page_cache_mb * 1024 * 1024,
    )
    source = MirrorSource(artifacts, catalog, LocalCopies(blobs, data_dir / "inspection-copies"))
    promoter = Promoter(
        ledger,
        source,
        policy,
        clock,
        concurrency=settings.fetch_concurrency,
        on_change=catalog.sync,
        guard=guard,
        vetter=_vetter(settings, ledger, source, policy, clock) if vets else None,
        feeds=feeds,
        fetch_settings=artifacts.fetch_settings,
    )
    wake.append(promoter)
    watcher = Watcher(ledger, source, clock, settings.watch_interval, settings.fetch_concurrency)
    refresher = FeedRefresher(
        settings.osv_feeds,
        data_dir / "feeds",
        lambda: client.session,
        feeds,
        ledger,
        policy,
        clock,
        on_change=catalog.sync,
    )
    services = Services(
        settings,
        clock,
        ledger,
        blobs,
        client,
        catalog,
        artifacts,
        promoter,
        watcher,
        feeds,
        refresher,
        policy,
        DeferredDownloads(
            ledger,
            artifacts,
            policy,
            clock,
            demand=catalog.on_new_held,
            wait_seconds=settings.deferred_vetting_wait_seconds,
            on_change=catalog.sync,
        ),
        request_base=RequestBase(settings.trusted_proxies, settings.public_base_url),
    )
    if settings.download_log:
        services.download_log = open_download_log(settings)
    return services


def _blob_store(settings: Settings, data_dir: Path) -> BlobStore:
    if settings.blob_s3 is None:
        return DiskBlobStore(data_dir / "blobs")
    # Imported only when configured: the disk store's servers load no S3 client.
    from mirror.blobs.s3 import S3BlobStore

    return S3BlobStore(settings.blob_s3, data_dir / "s3-staging")


def _vetter(
    settings: Settings, ledger: Ledger, source: MirrorSource, policy: LivePolicy, clock: Clock
) -> "Vetter":
    # Imported here, not at the top: provenance (sigstore, pydantic, cryptography) and the
    # inspection rules are about 65 MB, and a server whose vetting runs in a child needs none.
    from quarantine.provenance.verify import ProvenanceVerifier
    from quarantine.vetting.worker import Vetter

    verifier = (
        ProvenanceVerifier(settings.trusted_root) if settings.trusted_root else ProvenanceVerifier()
    )
    return Vetter(ledger, source, policy, clock, verifier, inspector=_inspection_pool(settings))


def _inspection_pool(settings: Settings) -> "InspectionPool":
    from quarantine.inspect.pool import InspectionPool, WorkerLimits

    limits = WorkerLimits(
        memory_bytes=settings.inspection_memory_mb * 1024 * 1024,
        cpu_seconds=settings.inspection_cpu_seconds,
        wall_seconds=settings.inspection_timeout_seconds,
        nice=settings.vetting_nice,
    )
    shared_cache = Path(settings.data_dir) / "inspection-cache.sqlite3"
    return InspectionPool(settings.inspection_workers, limits, shared_cache=shared_cache)


def start_background(services: Services, *, vetting: bool) -> None:
    """The loops beside the requests; ``vetting=False`` leaves all but feeds to a worker.

    A server always refreshes its malware feeds: its first looks decide with them.
    """
    settings = services.settings
    if vetting and not services.promoter.vets:
        raise RuntimeError("this process was built without a vetter: it must not promote")
    work = [services.refresher.run_forever(settings.feed_refresh.total_seconds())]
    if services.vetting_child is not None:
        work.append(services.vetting_child.run_forever())
    if vetting:
        # Only one process on a ledger does this (several replicas, a restarted child).
        lease = open_lease(settings, LEADER)
        services.leadership = Leadership(lease, lambda: _leader_work(services))
        work.append(services.leadership.run_forever())
    services.tasks.extend(asyncio.create_task(item) for item in work)


def _leader_work(services: Services) -> list[Coroutine[Any, Any, None]]:
    settings = services.settings
    work = [
        services.promoter.run_forever(settings.promote_interval.total_seconds()),
        services.watcher.run_forever(),
    ]
    if services.notifier is not None:
        work.append(services.notifier.run_forever(settings.notify_interval.total_seconds()))
    return work


def follow_config(services: Services, role: str) -> None:
    """Take a changed platform filter from the config file without a restart."""
    if services.settings.config_file is None:
        return

    def changed() -> None:
        services.catalog.sync()  # this process's pages, at once
        services.promoter.wake()  # a wider filter: files to fetch and vet

    reload = ConfigReload(
        services.settings,
        services.policy,
        services.ledger,
        services.clock,
        f"system:{role}",
        on_change=changed,
    )
    services.tasks.append(asyncio.create_task(reload.run_forever()))


def attach_notifier(services: Services) -> None:
    """Here, not in build_services: CLI commands that build services need no notify secrets."""
    routes = build_routes(services.settings.notify, os.environ)  # a missing secret: ConfigError
    if routes:
        services.notifier = Notifier(
            services.ledger,
            services.clock,
            routes,
            policy=services.policy,
            max_attempts=services.settings.notify_max_attempts,
            downloads=services.download_log,
        )


async def open_services(services: Services, role: str = "serve") -> None:
    """What a server (``role`` "serve") and a worker ("work") do before their loops start."""
    # The admin commands read it: their hold-until times are then the ones enforced here.
    await asyncio.to_thread(
        policy_record.record,
        services.ledger,
        policy_in_force(services.settings),
        f"system:{role}",
        services.clock.now(),
    )
    await _sweep(services, "an earlier stop")
    await services.client.open()
    # Local feeds are in force before the first decision; URL feeds follow in the background.
    settings = services.settings
    local = [Path(f) for f in settings.osv_feeds if not is_url(f) and Path(f).exists()]
    await asyncio.to_thread(services.feeds.reload, local)


async def close_services(services: Services) -> None:
    for task in services.tasks:
        task.cancel()
    await asyncio.gather(*services.tasks, return_exceptions=True)
    services.tasks.clear()
    await services.client.close()
    await _sweep(services, "this run")  # a download cut short by the stop
    services.promoter.close()
    services.ledger.close()
    if services.download_log is not None:
        services.download_log.close()


async def _sweep(services: Services, left_by: str) -> None:
    """Temp files no live process holds (each download locks its own): settled now."""
    swept = await asyncio.to_thread(services.blobs.sweep_temporary)
    if swept.removed or swept.reused:
        log.info(
            "partial downloads left by %s: %d removed, %d complete and verified, kept",
            left_by,
            swept.removed,
            swept.reused,
        )


def create_app(
    settings: Settings,
    clock: Clock | None = None,
    *,
    background: bool = True,
    demand: DemandWriter | None = None,
) -> Starlette | FastPath | Metered | IndexAuth:
    """The ASGI app. ``background=False`` leaves promotion rounds to the caller (tests).
    ``demand``: where the demand signal goes when another process (the ``--workers``
    supervisor's vetting child) vets for this one."""
    vets_here = not background or settings.vetting_worker == "in-process"
    services = build_services(settings, clock, vets=vets_here)
    attach_notifier(services)
    redact_access_log()  # no token a client put in a URL reaches the access log
    if services.download_log is not None:
        services.downloads = DownloadRecorder(
            services.download_log,
            services.clock,
            services.request_base,
            retention=settings.download_log_retention,
        )
    if background and settings.vetting_worker == "child":
        child = VettingChild(settings)
        services.vetting_child = child
        services.catalog.on_new_held = child.ask  # the demand signal goes to the child
        services.deferred.demand = child.ask
    if demand is not None:
        services.catalog.on_new_held = services.deferred.demand = demand.tell
    # Until the leader-lease work decides it: the process that runs the background side.
    services.leader = background and settings.vetting_worker != "separate"
    tally = RequestTally()
    readiness = Readiness(services)
    counts = LedgerCounts(services.ledger, lambda: readiness.ready)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await open_services(services)
        follow = services.catalog.follow_ledger(settings.ledger_poll_seconds)
        services.tasks.append(asyncio.create_task(follow))
        if services.downloads is not None:  # written even with background=False (tests)
            services.tasks.append(asyncio.create_task(services.downloads.run_forever()))
        follow_config(services, "serve")
        services.tasks.append(asyncio.create_task(readiness.run_forever()))
        services.tasks.append(asyncio.create_task(MemoryTrim().run_forever()))
        if settings.metrics is not False:
            services.tasks.append(asyncio.create_task(counts.run_forever()))
        if background:
            start_background(services, vetting=settings.vetting_worker == "in-process")
        try:
            yield
        finally:
            await close_services(services)

    middleware = []
    if settings.trusted_hosts:
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts))
        )
    app = Starlette(
        routes=[
            Route("/simple/", simple_root, methods=["GET", "HEAD"]),
            Route("/simple", simple_root_without_slash, methods=["GET", "HEAD"]),
            Route("/simple/{project}/", simple_project, methods=["GET", "HEAD"]),
            Route("/simple/{project}", simple_project, methods=["GET", "HEAD"]),
            Route("/files/{sha256:sha256}/{filename}", serve_file, methods=["GET", "HEAD"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_route(metrics_registry(services, tally, counts))),
            *admin_routes(),
            *json_api_routes(services.catalog, services.request_base),
        ],
        middleware=middleware,
        exception_handlers={MirrorError: _mirror_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    # Starlette's own slash redirects build an absolute Location from the Host header:
    # off. The only redirects are the relative ones in simple_routes.
    app.router.redirect_slashes = False
    app.state.services = services
    app.state.readiness = readiness
    metered = app if settings.metrics is False else Metered(app, tally)
    if settings.trusted_hosts:
        # Every request must pass the Host check in the app's middleware: no fast path.
        return with_index_auth(metered, services)
    fast = FastPath(metered, services, None if settings.metrics is False else tally)
    return with_index_auth(fast, services)
