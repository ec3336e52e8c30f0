"""A deferred file's first download: fetched, vetted at demand rank, served once promoted.

At a project's first sight the files of its superseded releases are listed but neither
fetched nor vetted (``quarantine.observe``). When a client asks for one's bytes (or its
metadata or provenance), the server fetches it with the hash check every download gets,
records that a client download ended its deferral, tells the vetting side to vet it before
any background work, and waits for the verdict, up to ``deferred_vetting_wait_seconds``:
promoted, the request is served as any other; held for review, blocked or rejected, it
is refused (403) with the reason; still vetting, 503 with Retry-After, which pip and uv
retry. Requests for the same file meanwhile share one wait. Nothing is sent before the
ledger says promoted: the vetting side decides, this only waits for it.

The verdict is read from the ledger, so this works the same whether vetting runs in this
process, in the server's vetting child or in ``lazaretto work``.
"""

import asyncio
import logging
from collections.abc import Callable

from packaging.utils import NormalizedName

from mirror.errors import FileRefused, UpstreamUnavailable, VettingInProgress
from mirror.files.artifacts import Artifacts
from mirror.files.fetch_backoff import count_failure, not_while_backing_off, reject
from quarantine.clock import Clock
from quarantine.decide import listed_unvetted
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import PolicySource
from quarantine.models import Deferral, FileRecord, FileState
from quarantine.source import FetchFailed, IntegrityFailure
from quarantine.vetting.fetch_retry import COUNTED

log = logging.getLogger(__name__)
ACTOR = "client download"
ENDED = "a client asked for its bytes: vetting it now, before any background work"
SYSTEM_ACTOR = "system:file-route"
# Deferral-ending downloads at once: each may be a large file, and a client (or many) asking
# for many old releases must not turn the server into a bulk downloader; the rest wait.
CONCURRENT_FETCHES = 4
POLL_SECONDS = 0.2  # the verdict is read from the ledger, which another process may write

_Key = tuple[str, str]  # (sha256, filename)


class DeferredDownloads:
    def __init__(
        self,
        ledger: Ledger,
        artifacts: Artifacts,
        policy: PolicySource,
        clock: Clock,
        demand: Callable[[NormalizedName, bool], None],
        wait_seconds: float,
        on_change: Callable[[], object] = lambda: None,
    ) -> None:
        self._ledger = ledger
        self._artifacts = artifacts
        self._policies = policy
        self._clock = clock
        self.demand = demand  # the demand signal: the app points it where vetting runs
        self._wait_seconds = wait_seconds
        self._on_change = on_change  # lets this process's pages show a verdict at once
        self._waits: dict[_Key, asyncio.Task[FileRecord]] = {}
        self._fetching = asyncio.Semaphore(CONCURRENT_FETCHES)

    def applies(self, record: FileRecord) -> bool:
        """Whether ``record`` is a listed file a download must wait for the vetting of."""
        if record.deferral is None or record.state is not FileState.HELD:
            return False  # every other download: no policy read on its way
        policy = self._policies.current()
        if policy.exclusion(record.filename) is not None:
            return False  # a platform or Python the policy now leaves out: never fetched
        return listed_unvetted(record, policy.vets_on_download)

    async def promoted(self, record: FileRecord) -> FileRecord:
        """The file's record once promoted; FileRefused when vetting condemned it or holds
        it for review, VettingInProgress when no verdict came within the wait."""
        key = (record.sha256, record.filename)
        wait = self._waits.get(key)
        if wait is None:
            wait = asyncio.ensure_future(self._vetted(record))
            self._waits[key] = wait
            wait.add_done_callback(lambda _done: self._waits.pop(key, None))
            wait.add_done_callback(_retrieve)  # its clients may all have gone meanwhile
        # Shielded: one client going away must not end the wait the others share.
        after = await asyncio.shield(wait)
        if after.state is FileState.PROMOTED:
            return after
        raise FileRefused(f"refused: {after.state.value}: {after.reason}")

    async def _vetted(self, record: FileRecord) -> FileRecord:
        deadline = asyncio.get_running_loop().time() + self._wait_seconds
        current = self._ledger.file(record.project, record.filename) or record
        if current.deferral is Deferral.UNTIL_DOWNLOAD and current.state is FileState.HELD:
            current = await self._fetched(current)
            current = self._ledger.end_deferral(current, ENDED, ACTOR, self._clock.now())
        self.demand(record.project, True)
        while current.state is FileState.HELD:
            if asyncio.get_running_loop().time() >= deadline:
                raise VettingInProgress(
                    f"vetting {record.filename}: it was deferred until a client asked for it; "
                    "retry shortly"
                )
            await asyncio.sleep(POLL_SECONDS)
            current = self._ledger.file(record.project, record.filename) or current
        self._on_change()
        return current

    async def _fetched(self, record: FileRecord) -> FileRecord:
        """The file's bytes stored and hash-checked (with its metadata and provenance, as
        the vetting side fetches them); a mismatch rejects it. A failed fetch is counted
        and backed off from as on the ordinary file route, so a retrying client does not
        start a download per retry; only a few run at once, the rest wait their turn."""
        now = self._clock.now()
        not_while_backing_off(record, self._ledger, self._artifacts.fetch_settings, now)
        try:
            async with self._fetching:
                return await self._artifacts.fetch(record)
        except IntegrityFailure as failure:
            reason = f"hash_mismatch: {failure}"
            reject(record, reason, self._ledger, SYSTEM_ACTOR, self._clock.now())
            self._on_change()
            raise FileRefused(f"refused: rejected: {reason}") from failure
        except FetchFailed as failure:
            if failure.kind not in COUNTED:
                raise UpstreamUnavailable(f"cannot fetch {record.filename}: {failure}") from failure
            refused = count_failure(record, failure, self._ledger, SYSTEM_ACTOR, self._clock.now())
            if refused:
                self._on_change()
                raise FileRefused(f"refused: rejected: {failure.reason}") from failure
            raise UpstreamUnavailable(f"cannot fetch {record.filename}: {failure}") from failure


def _retrieve(task: "asyncio.Task[FileRecord]") -> None:
    if not task.cancelled():
        task.exception()
