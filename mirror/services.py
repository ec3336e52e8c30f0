"""The long-lived parts of one running mirror, built once by ``create_app``."""

import asyncio
from dataclasses import dataclass, field

from mirror.artifacts import Artifacts
from mirror.blob_cache import BlobCache
from mirror.blobs import BlobStore
from mirror.catalog import Catalog
from mirror.deferred_downloads import DeferredDownloads
from mirror.feed_refresh import FeedRefresher
from mirror.notifier import Notifier
from mirror.request_base import RequestBase
from mirror.settings import Settings
from mirror.upstream import UpstreamClient
from mirror.vetting_child import VettingChild
from quarantine.clock import Clock
from quarantine.feeds import Feeds
from quarantine.ledger import Ledger
from quarantine.live_policy import LivePolicy
from quarantine.promoter import Promoter
from quarantine.watcher import Watcher


@dataclass
class Services:
    settings: Settings
    clock: Clock
    ledger: Ledger
    blobs: BlobStore
    client: UpstreamClient
    catalog: Catalog
    artifacts: Artifacts
    promoter: Promoter
    watcher: Watcher
    feeds: Feeds
    refresher: FeedRefresher
    policy: LivePolicy
    deferred: DeferredDownloads
    notifier: Notifier | None = None  # None: no [[notify]] targets configured
    vetting_child: VettingChild | None = None  # vetting_worker = "child", while serving
    blob_cache: BlobCache = field(default_factory=BlobCache)
    request_base: RequestBase = field(default_factory=RequestBase)  # trusts no proxy
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
