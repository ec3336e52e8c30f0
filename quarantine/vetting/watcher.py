"""Re-read known projects on a schedule, so new releases are seen (and vetted, and
announced) before anyone asks for them, and takedowns reach promoted files unasked."""

import asyncio
import logging
from datetime import timedelta

from packaging.utils import NormalizedName

from quarantine.clock import Clock
from quarantine.ledger.interface import Ledger
from quarantine.source import ArtifactSource, LookFailed

log = logging.getLogger(__name__)
BACKLOG_PAUSE_SECONDS = 0.05  # between full batches: lets waiting requests go first
CONGESTED_SECONDS = 0.001  # a bare yield that takes longer means work is queued ahead
BACKOFF_SECONDS = 0.01
MAX_BACKOFFS = 20  # then look anyway: coverage must not starve under steady load


class Watcher:
    def __init__(
        self,
        ledger: Ledger,
        source: ArtifactSource,
        clock: Clock,
        interval: timedelta,
        concurrency: int = 4,
        batch: int = 500,
    ) -> None:
        self._ledger = ledger
        self._source = source
        self._clock = clock
        self._interval = interval
        self._slots = asyncio.Semaphore(concurrency)
        self._batch = batch

    async def run_once(self) -> int:
        """Look again at the projects whose last look is older than the interval."""
        _due, looked = await self._round()
        return looked

    async def _round(self) -> tuple[int, int]:
        """(how many were due in this batch, how many of them were looked at)."""
        due = self._ledger.stale_projects(self._clock.now() - self._interval, self._batch)
        results = await asyncio.gather(*(self._look(name) for name in due))
        return len(due), sum(results)

    async def _look(self, name: NormalizedName) -> int:
        async with self._slots:
            await self.yield_to_serving()
            try:
                await self._source.look(name)
            except LookFailed as failure:
                log.info("watcher: %s not refreshed: %s", name, failure)
                return 0
            return 1

    async def yield_to_serving(self) -> int:
        """Wait while the event loop is congested: the requests it serves come first.

        Looks share the loop with every request, and a look that gets a full page costs
        a few ms of it. How long a bare yield takes back is how much work is queued
        ahead; above a millisecond, back off. A slow upstream leaves the loop idle, so
        looks then run at full concurrency; a fast one no longer crowds out requests.
        Returns how many times it backed off.
        """
        loop = asyncio.get_running_loop()
        for backoffs in range(MAX_BACKOFFS):
            started = loop.time()
            await asyncio.sleep(0)
            if loop.time() - started < CONGESTED_SECONDS:
                return backoffs
            await asyncio.sleep(BACKOFF_SECONDS)
        return MAX_BACKOFFS

    async def run_forever(self, tick_seconds: float = 30.0) -> None:
        while True:
            backlog = False
            try:
                due, looked = await self._round()
                # A full batch that mostly worked means more are due: go on at once, or
                # 100,000 projects would take far longer than the interval. A failing
                # upstream (few looks work) waits for the tick instead of being hammered.
                backlog = due == self._batch and looked * 2 >= due
            except Exception:  # one bad round must not stop the watcher; the next retries
                log.exception("watcher round failed")
            await asyncio.sleep(BACKLOG_PAUSE_SECONDS if backlog else tick_seconds)
