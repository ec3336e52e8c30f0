"""The background worker that moves held files towards promotion.

It fetches the bytes of held files early (so promotion is not waiting on a download),
asks the upstream again when a cooled file needs a fresh look, and applies the decisions.
One failing file never stops the others.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packaging.utils import NormalizedName

from quarantine.clock import Clock
from quarantine.clock_guard import ClockGuard
from quarantine.decide import Verdict, decide
from quarantine.errors import StaleTransition
from quarantine.feeds import Feeds, with_advisories
from quarantine.ledger import Ledger
from quarantine.live_policy import PolicySource
from quarantine.models import FileRecord, FileState
from quarantine.source import ArtifactSource, FetchFailed, IntegrityFailure, LookFailed

if TYPE_CHECKING:  # the worker runs without a vetter in tests of the time rules alone
    from quarantine.vetting import Vetter

log = logging.getLogger(__name__)
ACTOR = "system:promoter"


@dataclass
class Round:
    """What one pass did, for logs and tests."""

    fetched: int = 0
    fetch_failures: int = 0
    rejected: int = 0
    looks: int = 0
    look_failures: int = 0
    vetted: int = 0
    vetting_failures: int = 0
    promoted: list[str] = field(default_factory=list)


class Promoter:
    def __init__(
        self,
        ledger: Ledger,
        source: ArtifactSource,
        policy: PolicySource,
        clock: Clock,
        concurrency: int = 4,
        on_change: Callable[[], None] = lambda: None,
        guard: ClockGuard | None = None,
        vetter: "Vetter | None" = None,
        feeds: Feeds | None = None,
    ) -> None:
        self._ledger = ledger
        self._source = source
        self._policies = policy  # read at each use: admins change it at run time
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._on_change = on_change  # lets the serving side drop pages that changed
        self._guard = guard or ClockGuard(ledger, clock)
        self._vetter = vetter
        self._feeds = feeds

    def wake(self) -> None:
        """New held files were seen: fetch them soon rather than at the next tick."""
        self._wake.set()

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a broken round must not end the worker; the next one retries
                log.exception("promotion round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_seconds)
            self._wake.clear()

    async def run_once(self) -> Round:
        async with self._lock:
            result = Round()
            await self._fetch_missing(result)
            await self._vet_pending(result)
            by_project: dict[NormalizedName, list[FileRecord]] = defaultdict(list)
            for record in self._ledger.held():
                by_project[record.project].append(record)
            for project in sorted(by_project):
                await self._settle_project(project, result)
            self._on_change()
            return result

    async def _fetch_missing(self, result: Round) -> None:
        missing = [record for record in self._ledger.held() if not record.stored and record.sha256]
        await asyncio.gather(*(self._fetch_one(record, result) for record in missing))

    async def _fetch_one(self, record: FileRecord, result: Round) -> None:
        async with self._slots:
            try:
                await self._source.fetch(record)
                result.fetched += 1
            except IntegrityFailure as failure:
                result.rejected += 1
                self._reject(record, f"hash_mismatch: {failure}")
            except FetchFailed as failure:
                result.fetch_failures += 1
                log.warning("fetching %s failed, will retry: %s", record.filename, failure)

    async def _vet_pending(self, result: Round) -> None:
        if self._vetter is None:
            return
        pending = [record for record in self._ledger.held() if self._vetter.needs_vetting(record)]
        await asyncio.gather(*(self._vet_one(record, result) for record in pending))

    async def _vet_one(self, record: FileRecord, result: Round) -> None:
        assert self._vetter is not None
        async with self._slots:
            try:
                await self._vetter.vet(record)
                result.vetted += 1
            except (FetchFailed, IntegrityFailure) as failure:
                log.warning("vetting %s must wait: %s", record.filename, failure)
            except Exception:  # one broken file never stops the others; it stays held
                result.vetting_failures += 1
                log.exception("vetting %s failed; it stays held", record.filename)

    def _reject(self, record: FileRecord, reason: str) -> None:
        current = self._ledger.file(record.project, record.filename)
        if current is None or current.state is not FileState.HELD:
            return
        try:
            self._ledger.transition(current, FileState.REJECTED, reason, ACTOR, self._clock.now())
        except StaleTransition:
            log.info("%s changed while being rejected; the next round looks again", record.filename)

    async def _settle_project(self, project: NormalizedName, result: Round) -> None:
        verdicts = self._verdicts(project)
        if any(verdict.needs_look for _, verdict in verdicts):
            try:
                await self._source.look(project)
                result.looks += 1
            except LookFailed as failure:
                # No fresh look, no promotion: a takedown may be what we cannot see.
                result.look_failures += 1
                log.warning("upstream look for %s failed; nothing promoted: %s", project, failure)
                return
            verdicts = self._verdicts(project)
        for record, verdict in verdicts:
            self._apply(record, verdict, result)

    def _verdicts(self, project: NormalizedName) -> list[tuple[FileRecord, Verdict]]:
        state = self._ledger.project(project)
        if state is None:
            return []
        frozen = self._guard.frozen()
        now = self._clock.now()
        stored = self._ledger.evidence(project)
        verdicts = []
        for record in self._ledger.held(project):
            evidence = with_advisories(record, stored, self._feeds)
            verdicts.append(
                (record, decide(record, state, self._policies.current(), now, frozen, evidence))
            )
        return verdicts

    def _apply(self, record: FileRecord, verdict: Verdict, result: Round) -> None:
        if verdict.state == record.state and verdict.reason == record.reason:
            return
        try:
            self._ledger.transition(record, verdict.state, verdict.reason, ACTOR, self._clock.now())
        except StaleTransition:
            return  # someone else moved it; the next round decides again from fresh data
        if verdict.state is FileState.PROMOTED:
            result.promoted.append(record.filename)
