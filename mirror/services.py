"""The long-lived parts of one running mirror, built once by ``create_app``."""

import asyncio
from dataclasses import dataclass, field

from mirror.background.feed_refresh import FeedRefresher
from mirror.background.leadership import Leadership
from mirror.background.vetting_child import VettingChild
from mirror.blobs.interface import BlobStore
from mirror.blobs.memory_cache import BlobCache
from mirror.files.artifacts import Artifacts
from mirror.files.deferred_downloads import DeferredDownloads
from mirror.files.download_recorder import DownloadRecorder
from mirror.http.request_base import RequestBase
from mirror.notify.delivery import Notifier
from mirror.settings import Settings
from mirror.simple.catalog import Catalog
from mirror.upstream.client import UpstreamClient
from quarantine.clock import Clock
from quarantine.download_log.interface import DownloadLog
from quarantine.feeds.in_force import Feeds
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import LivePolicy
from quarantine.vetting.promoter import Promoter
from quarantine.vetting.watcher import Watcher


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
    downloads: DownloadRecorder | None = None  # a serving process with download_log on
    download_log: DownloadLog | None = None  # the log itself (what notices and reports read)
    leadership: Leadership | None = None  # where the leader's work runs (vetting=True)
    blob_cache: BlobCache = field(default_factory=BlobCache)
    request_base: RequestBase = field(default_factory=RequestBase)  # trusts no proxy
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # This process runs the background side (vetting, watcher, notifier): the leader.
    leader: bool = False

    @property
    def leads(self) -> bool:
        """Whether the leader's work runs here now: the lease decides when one is held
        for it (several replicas), else the process's role does."""
        return self.leader if self.leadership is None else self.leadership.leading
