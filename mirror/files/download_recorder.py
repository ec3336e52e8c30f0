"""Downloads into the download log, off the request path.

A served file costs its request one append to a bounded in-memory queue; a background
task takes the queue every second and writes it in one transaction, in a thread. When
the log cannot keep up and the queue is full, a download is counted as dropped instead of
making a client wait (the count is logged, and kept in ``dropped``). The user agent is
read at flush time, not while the client waits. Old rows are pruned every hour.
"""

import asyncio
import functools
import logging
from collections import deque
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from typing import Any

from packaging.utils import NormalizedName

from mirror.http.request_base import RequestBase
from mirror.http.user_agent import MAX_USER_AGENT_CHARS, installer_of
from quarantine.clock import Clock
from quarantine.download_log.interface import Download, DownloadLog, Installer
from quarantine.models import FileRecord

log = logging.getLogger(__name__)

IDENTITY_KEY = "lazaretto.identity"  # where index authentication leaves the token's name
PRUNE_EVERY = timedelta(hours=1)

_Pending = tuple[datetime, FileRecord, str, str | None, str | None]


@functools.lru_cache(maxsize=512)
def _installer(user_agent: str | None) -> Installer:
    return installer_of(user_agent)  # a fleet sends few distinct user agents


def _user_agent(scope: MutableMapping[str, Any]) -> str | None:
    for key, value in scope["headers"]:
        if key == b"user-agent":
            # One too long to be read is not kept either: the queue holds 100,000 entries.
            return None if len(value) > MAX_USER_AGENT_CHARS else str(value.decode("latin-1"))
    return None


def coalesce(taken: list[_Pending]) -> list[Download]:
    """One row per file, client, identity and user agent within each second, counted: a
    busy client fetching one file over and over costs the log one row a second, not one a
    request (the row keeps the first time)."""
    counts: dict[tuple[int, str, str, str, str | None, str | None], list[Any]] = {}
    for at, record, client, identity, user_agent in taken:
        key = (int(at.timestamp()), record.sha256, record.filename, client, identity, user_agent)
        found = counts.get(key)
        if found is None:
            counts[key] = [at, record, 1]
        else:
            found[2] += 1
    return [
        Download(
            at,
            NormalizedName(record.project),
            record.version,
            record.filename,
            record.sha256,
            client,
            identity,
            _installer(user_agent),
            count,
        )
        for (_, _, _, client, identity, user_agent), (at, record, count) in counts.items()
    ]


class DownloadRecorder:
    def __init__(
        self,
        downloads: DownloadLog,
        clock: Clock,
        request_base: RequestBase,
        *,
        retention: timedelta,
        max_queued: int = 100_000,
        flush_seconds: float = 1.0,
    ) -> None:
        self._log = downloads
        self._clock = clock
        self._request_base = request_base
        self._retention = retention
        self._max_queued = max_queued
        self._flush_seconds = flush_seconds
        self._queue: deque[_Pending] = deque()
        self._last_prune: datetime | None = None
        self.dropped = 0  # downloads not recorded because the queue was full
        self.written = 0
        self._dropped_logged = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def note(self, scope: MutableMapping[str, Any], record: FileRecord) -> None:
        """One served file; never blocks, never raises for what the client sent."""
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        client = self._request_base.client_address(scope)
        identity = scope.get(IDENTITY_KEY)
        self._queue.append((self._clock.now(), record, client, identity, _user_agent(scope)))

    async def run_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._flush_seconds)
                try:
                    await self.flush()
                    await self._prune_when_due()
                except Exception:  # a failed batch must not end the loop; the next one retries
                    log.exception("download log: writing a batch failed")
        finally:
            await asyncio.shield(self.flush())  # a stop keeps what was served until now

    async def flush(self) -> int:
        """Write what is queued (in a thread); returns how many were written."""
        taken: list[_Pending] = []
        while self._queue:
            taken.append(self._queue.popleft())
        if self.dropped > self._dropped_logged:
            log.warning(
                "download log: %d downloads not recorded (queue of %d full: the disk is too "
                "slow for the request rate)",
                self.dropped - self._dropped_logged,
                self._max_queued,
            )
            self._dropped_logged = self.dropped
        if not taken:
            return 0
        await asyncio.to_thread(self._write, taken)
        self.written += len(taken)
        return len(taken)

    def _write(self, taken: list[_Pending]) -> None:
        self._log.write(coalesce(taken))

    async def _prune_when_due(self) -> None:
        now = self._clock.now()
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        removed = await asyncio.to_thread(self._log.prune, now - self._retention)
        if removed:
            log.info("download log: %d downloads older than the retention period pruned", removed)
