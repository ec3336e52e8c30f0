"""The app factory: the one place (with the CLI) where the parts are wired together."""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mirror.access_log import redact_access_log
from mirror.admin_api import admin_routes
from mirror.artifacts import Artifacts
from mirror.blobs_disk import DiskBlobStore
from mirror.catalog import Catalog
from mirror.cli_backend import policy_in_force
from mirror.config_reload import ConfigReload
from mirror.default_index import pip_index_url
from mirror.deferred_downloads import DeferredDownloads
from mirror.errors import MirrorError
from mirror.fast_path import FastPath
from mirror.feed_refresh import FeedRefresher, is_url
from mirror.file_routes import serve_file
from mirror.json_api import json_api_routes
from mirror.names import ReservedNames
from mirror.notifier import Notifier, build_routes
from mirror.one_line import OneLine, for_error, one_line
from mirror.request_base import RequestBase
from mirror.services import Services
from mirror.settings import Settings
from mirror.simple_routes import simple_project, simple_root, simple_root_without_slash
from mirror.source import MirrorSource
from mirror.upstream import UpstreamClient
from mirror.url_guard import UrlGuard
from mirror.vetting_child import VettingChild
from quarantine import policy_record
from quarantine.clock import Clock, SystemClock
from quarantine.clock_guard import ClockGuard
from quarantine.feeds import Feeds
from quarantine.inspect_pool import InspectionPool, WorkerLimits
from quarantine.ledger_sqlite import SqliteLedger
from quarantine.live_policy import LivePolicy
from quarantine.promoter import Promoter
from quarantine.provenance import ProvenanceVerifier
from quarantine.vetting import Vetter
from quarantine.watcher import Watcher

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


async def _health(_request: Request) -> Response:
    return _one_line(200, "ok")


async def _ready(request: Request) -> Response:
    """Serving works while frozen, but an operator must look: report it as not ready."""
    services: Services = request.app.state.services
    frozen = services.ledger.freeze_reason()
    return _one_line(503, f"promotion frozen: {frozen}") if frozen else _one_line(200, "ready")


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    upstream = settings.upstream or pip_index_url()
    if not upstream.endswith("/"):
        upstream += "/"
    data_dir = Path(settings.data_dir)
    ledger = SqliteLedger(data_dir / "ledger.sqlite3")
    blobs = DiskBlobStore(data_dir / "blobs")
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
    )
    source = MirrorSource(artifacts, catalog)
    verifier = (
        ProvenanceVerifier(settings.trusted_root) if settings.trusted_root else ProvenanceVerifier()
    )
    promoter = Promoter(
        ledger,
        source,
        policy,
        clock,
        concurrency=settings.fetch_concurrency,
        on_change=catalog.sync,
        guard=guard,
        vetter=Vetter(
            ledger, source, policy, clock, verifier, inspector=_inspection_pool(settings)
        ),
        feeds=feeds,
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
    return Services(
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


def _inspection_pool(settings: Settings) -> InspectionPool:
    limits = WorkerLimits(
        memory_bytes=settings.inspection_memory_mb * 1024 * 1024,
        cpu_seconds=settings.inspection_cpu_seconds,
        wall_seconds=settings.inspection_timeout_seconds,
    )
    return InspectionPool(settings.inspection_workers, limits)


def start_background(services: Services, *, vetting: bool) -> None:
    """The loops beside the requests; ``vetting=False`` leaves all but feeds to a worker.

    A server always refreshes its malware feeds: its first looks decide with them.
    """
    settings = services.settings
    work = [services.refresher.run_forever(settings.feed_refresh.total_seconds())]
    if services.vetting_child is not None:
        work.append(services.vetting_child.run_forever())
    if vetting:
        work.append(services.promoter.run_forever(settings.promote_interval.total_seconds()))
        work.append(services.watcher.run_forever())
        if services.notifier is not None:
            interval = settings.notify_interval.total_seconds()
            work.append(services.notifier.run_forever(interval))
    services.tasks.extend(asyncio.create_task(item) for item in work)


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


async def _sweep(services: Services, left_by: str) -> None:
    """Temp files no live process holds (each download locks its own): settled now."""
    if isinstance(services.blobs, DiskBlobStore):
        swept = await asyncio.to_thread(services.blobs.sweep_temporary)
        if swept.removed or swept.reused:
            log.info(
                "partial downloads left by %s: %d removed, %d complete and verified, kept",
                left_by,
                swept.removed,
                swept.reused,
            )


def create_app(
    settings: Settings, clock: Clock | None = None, *, background: bool = True
) -> Starlette | FastPath:
    """The ASGI app. ``background=False`` leaves promotion rounds to the caller (tests)."""
    services = build_services(settings, clock)
    attach_notifier(services)
    redact_access_log()  # no token a client put in a URL reaches the access log
    if background and settings.vetting_worker == "child":
        child = VettingChild(settings)
        services.vetting_child = child
        services.catalog.on_new_held = child.ask  # the demand signal goes to the child
        services.deferred.demand = child.ask

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await open_services(services)
        services.tasks.append(asyncio.create_task(services.catalog.follow_ledger()))
        follow_config(services, "serve")
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
            Route("/healthz", _health, methods=["GET"]),
            Route("/readyz", _ready, methods=["GET"]),
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
    if settings.trusted_hosts:
        return app  # every request must pass the Host check in the app's middleware
    return FastPath(app, services)
