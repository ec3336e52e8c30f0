"""Keep the malware feeds current: download URL feeds, reload all, apply at once.

A feed given as a URL is downloaded (https, capped, written atomically) into the data
directory, then read like a local one. If a download fails, the last good copy stays in
force: a feed that cannot be refreshed never unblocks anything.
"""

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp

from mirror.errors import UpstreamUnavailable
from quarantine.clock import Clock
from quarantine.feeds.in_force import Feeds, apply_feeds
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import PolicySource

log = logging.getLogger(__name__)
MAX_FEED_BYTES = 1024 * 1024 * 1024


def is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def feed_copy(directory: Path, source: str) -> Path:
    """Where a feed is read from: a local one where it is, a URL one's download here."""
    if not is_url(source):
        return Path(source).expanduser()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return directory / f"feed-{digest}.zip"


class FeedRefresher:
    def __init__(
        self,
        sources: tuple[str, ...],
        directory: Path,
        session: Callable[[], aiohttp.ClientSession],
        feeds: Feeds,
        ledger: Ledger,
        policy: PolicySource,
        clock: Clock,
        on_change: Callable[[], object],
    ) -> None:
        self._sources = sources
        self._directory = directory
        self._session = session
        self._feeds = feeds
        self._ledger = ledger
        self._policies = policy  # read at each use: admins change it at run time
        self._clock = clock
        self._on_change = on_change

    def _local(self, source: str) -> Path:
        return feed_copy(self._directory, source)

    async def refresh_once(self) -> int:
        """Download, reload and apply; the number of files newly blocked or withdrawn."""
        for source in self._sources:
            if is_url(source):
                try:
                    await self._download(source, self._local(source))
                except UpstreamUnavailable as error:
                    log.warning("feed %s not refreshed (keeping the last copy): %s", source, error)
        paths = [path for path in map(self._local, self._sources) if path.exists()]
        await asyncio.to_thread(self._feeds.reload, paths)
        for problem in self._feeds.problems[:20]:
            log.warning("feed problem: %s", problem)
        condemned = apply_feeds(
            self._ledger, self._feeds, self._policies.current(), self._clock.now()
        )
        if condemned:
            log.warning("malware feeds condemned %d file(s)", len(condemned))
            self._on_change()
        return len(condemned)

    async def _download(self, url: str, target: Path) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self._directory, prefix="incoming-")
        try:
            size = 0
            async with self._session().get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise UpstreamUnavailable(f"feed answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(1024 * 1024):
                    size += len(chunk)
                    if size > MAX_FEED_BYTES:
                        raise UpstreamUnavailable("feed larger than 1 GiB")
                    os.write(handle, chunk)
            os.fsync(handle)
            os.close(handle)
            handle = -1
            Path(name).replace(target)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise UpstreamUnavailable(f"feed download failed: {type(error).__name__}") from error
        finally:
            if handle != -1:
                os.close(handle)
            Path(name).unlink(missing_ok=True)

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.refresh_once()
            except Exception:  # a broken feed must not stop serving; the next round retries
                log.exception("feed refresh failed")
            await asyncio.sleep(interval_seconds)
