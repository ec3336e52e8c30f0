"""The vetting worker: runs every check on a held file and keeps the evidence with it.

Checks: PEP 740 provenance (offline, pinned trust root), publisher continuity against
the project's earlier releases (the promoted ones, and those in any state but rejected or
blocked, their provenance verified here on demand: a freshly started mirror judges from
the upstream history too, whichever file it vets first), content inspection compared
with the previous promoted release, and malware feeds (applied at decision time, see
``quarantine.feeds.in_force``). Inspection runs in worker processes (``quarantine.inspect.pool``)
when the server gives the vetter a pool, and other CPU-bound work in threads, so serving
never waits on it.

The file and the previous release it is compared with (when that one was never
inspected: an established release, on a new mirror) are inspected side by side, and
compared afterwards: on the real index litellm's newest wheel waited 27 s for its
predecessor's inspection before its own began. The files of one release share one
inspection of their predecessor, however many are vetted at once.
"""

import asyncio
import hashlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from packaging.utils import NormalizedName

from quarantine.clock import Clock
from quarantine.evidence import Evidence
from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import Inspected, Inspection
from quarantine.inspect.pool import Inspector, InThreadInspector
from quarantine.inspect.priority import BACKGROUND, Priority
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import PolicySource
from quarantine.models import FileRecord, FileState
from quarantine.provenance.verify import (
    ProvenanceResult,
    ProvenanceVerifier,
    PublisherIdentity,
    continuity_evidence,
    provenance_evidence,
)
from quarantine.source import ArtifactSource, FetchFailed, IntegrityFailure
from quarantine.vetting.history import Earlier, EarlierRelease, ReleaseHistory

log = logging.getLogger(__name__)
HISTORY_RELEASES = 3  # earlier releases consulted for the expected publisher
PREVIOUS_FETCHES = 4  # previous releases' files fetched at once (not stored yet: first use)
_A = TypeVar("_A")
_B = TypeVar("_B")


@dataclass(frozen=True, slots=True)
class _Verified:
    result: ProvenanceResult | None
    digest: str | None


class Vetter:
    def __init__(
        self,
        ledger: Ledger,
        source: ArtifactSource,
        policy: PolicySource,
        clock: Clock,
        verifier: ProvenanceVerifier,
        limits: Limits | None = None,
        inspector: Inspector | None = None,
    ) -> None:
        self._ledger = ledger
        self._source = source
        self._policies = policy  # read at each use: admins change it at run time
        self._clock = clock
        self._verifier = verifier
        self._limits = limits or Limits()
        self._releases = ReleaseHistory(ledger)
        self._inspector = inspector or InThreadInspector()
        # Summaries of previous releases being worked out now, by (project, filename).
        self._summaries: dict[tuple[str, str], asyncio.Task[ArchiveSummary | None]] = {}
        self._compared: dict[str, str] = {}  # file being vetted -> its previous, meanwhile
        self._previous_fetches = asyncio.Semaphore(PREVIOUS_FETCHES)

    def close(self) -> None:
        """Stop the inspection workers."""
        self._inspector.close()

    def hurry(self, record: FileRecord, priority: Priority) -> None:
        """``record``'s inspections (its own, its previous release's) not yet begun wait
        at ``priority`` from now on: a client asked for its project meanwhile."""
        self._inspector.hurry(record.filename, priority)
        previous = self._compared.get(record.filename)
        if previous is not None:
            self._inspector.hurry(previous, priority)

    def needs_vetting(self, record: FileRecord) -> bool:
        if record.state is not FileState.HELD or not record.stored or record.established:
            return False
        done = self._ledger.evidence(record.project, record.filename).get(record.filename, [])
        reported = {item.check for item in done}
        return any(check not in reported for check in self._policies.current().required_checks)

    async def vet(self, record: FileRecord, priority: Priority = BACKGROUND) -> list[Evidence]:
        """Run every check on ``record`` and record what each found. ``priority``: its
        inspections' place in the pool's line (and its predecessor's, when inspected now)."""
        # In a thread: a big project's first read (10,000 records and their versions) takes
        # a quarter of a second, which the event loop serving pages must not wait for.
        earlier = await asyncio.to_thread(self._releases.earlier, record, HISTORY_RELEASES)
        (provenance, publisher), content = await _together(
            self._publisher_checks(record, earlier), self._content(record, earlier, priority)
        )
        found = [provenance, publisher, content]
        now = self._clock.now()
        for item in found:
            self._ledger.record_evidence(record, item, now)
        return found

    async def _publisher_checks(
        self, record: FileRecord, earlier: Earlier
    ) -> tuple[Evidence, Evidence]:
        """The provenance check's evidence and the publisher continuity check's."""
        verified = await self._verify(record, self._pinned(record.project))
        provenance = provenance_evidence(verified.result, verified.digest, **self._mappings())
        identity = verified.result.identity if verified.result and verified.result.ok else None
        known: dict[tuple[str, ...], PublisherIdentity | None] = {}  # each release looked up once
        publisher = continuity_evidence(
            identity,
            record.provenance_url is not None,
            await self._history(record.project, earlier.recent, known),
            self._pinned(record.project),
            self._policies.current().requires_provenance(record.project),
            standing=await self._history(record.project, earlier.standing, known),
            **self._mappings(),
        )
        return provenance, publisher

    async def _content(self, record: FileRecord, earlier: Earlier, priority: Priority) -> Evidence:
        inspected, previous = await _together(
            self._inspect(record, priority), self._previous_summary(record, earlier, priority)
        )
        return self._content_evidence(inspected.against(previous))

    def _mappings(self) -> dict[str, Any]:
        return {
            "severity_actions": self._policies.current().severity_actions,
            "rule_actions": self._policies.current().rule_actions,
        }

    def _pinned(self, project: NormalizedName) -> PublisherIdentity | None:
        pin = self._policies.current().pinned_publishers.get(project)
        return PublisherIdentity.from_pin(pin) if pin else None

    async def _verify(self, record: FileRecord, expected: PublisherIdentity | None) -> _Verified:
        if record.provenance_url is None:
            return _Verified(None, None)
        raw = await self._source.provenance(record)
        if raw is None:
            return _Verified(None, None)
        result = await asyncio.to_thread(
            self._verifier.verify, raw, record.filename, record.sha256, expected
        )
        return _Verified(result, hashlib.sha256(raw).hexdigest())  # the bytes verified

    # -- the project's history -------------------------------------------------------------
    async def _history(
        self,
        project: NormalizedName,
        releases: Sequence[EarlierRelease],
        known: dict[tuple[str, ...], PublisherIdentity | None],
    ) -> list[tuple[str, PublisherIdentity | None]]:
        """(version, verified publisher or None) of each release, oldest first."""
        history = []
        for release in releases:
            if release.attested not in known:  # the same files in both views: one look
                known[release.attested] = await self._release_identity(project, release)
            history.append((str(release.version), known[release.attested]))
        return history

    async def _release_identity(
        self, project: NormalizedName, release: EarlierRelease
    ) -> PublisherIdentity | None:
        sample = self._ledger.file(project, release.attested[0]) if release.attested else None
        if sample is None:
            return None
        known = self._ledger.evidence(sample.project, sample.filename).get(sample.filename, [])
        for item in known:
            if item.check == "provenance" and "identity" in item.details:
                return PublisherIdentity.from_json(item.details["identity"])
        # Not verified yet (a held file of a project seen for the first time, or an
        # established one): verified now, and kept with the file for the next look.
        try:
            verified = await self._verify(sample, None)
        except (FetchFailed, IntegrityFailure) as error:
            log.warning("provenance of %s unavailable: %s", sample.filename, error)
            return None
        evidence = provenance_evidence(verified.result, verified.digest)
        self._ledger.record_evidence(sample, evidence, self._clock.now())
        if verified.result is not None and verified.result.ok:
            return verified.result.identity
        return None

    async def _previous_summary(
        self, record: FileRecord, earlier: Earlier, priority: Priority
    ) -> ArchiveSummary | None:
        """The summary of the file ``record`` is compared with, worked out once however
        many files ask for it at the same time."""
        previous = earlier.previous
        found = self._ledger.file(record.project, previous) if previous else None
        if found is None:
            return None
        key = (found.project, found.filename)
        task = self._summaries.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.create_task(self._summary_of(found, priority))
            self._summaries[key] = task
            task.add_done_callback(lambda done: self._forget_summary(key, done))
        else:
            # Worked out for another file first, maybe at a lower priority: it goes at
            # the most urgent of theirs.
            self._inspector.hurry(found.filename, priority)
        self._compared[record.filename] = found.filename
        try:
            # Shielded: a vetting cancelled does not cancel the others' wait for the same.
            return await asyncio.shield(task)
        finally:
            self._compared.pop(record.filename, None)

    def _forget_summary(self, key: tuple[str, str], done: "asyncio.Task[object]") -> None:
        if self._summaries.get(key) is done:
            del self._summaries[key]  # recorded in the ledger from now on (or failed)

    async def _summary_of(self, record: FileRecord, priority: Priority) -> ArchiveSummary | None:
        known = self._ledger.evidence(record.project, record.filename).get(record.filename, [])
        for item in known:
            if item.check == "content" and "summary" in item.details:
                return ArchiveSummary.from_json(item.details["summary"])
        try:
            # Bounded: each of the many likely files vetted at once may fetch its own.
            async with self._previous_fetches:
                path = await self._source.local_copy(record)
        except (FetchFailed, IntegrityFailure) as error:
            log.warning("previous release %s unavailable: %s", record.filename, error)
            return None
        inspected = await self._inspector.inspect_alone(
            path, record.filename, self._limits, priority
        )
        inspection = inspected.against(None)
        self._ledger.record_evidence(record, self._content_evidence(inspection), self._clock.now())
        return inspection.summary

    async def _inspect(self, record: FileRecord, priority: Priority) -> Inspected:
        path = await self._source.local_copy(record)
        return await self._inspector.inspect_alone(path, record.filename, self._limits, priority)

    def _content_evidence(self, inspection: Inspection) -> Evidence:
        return inspection.evidence(
            self._policies.current().severity_actions, self._policies.current().rule_actions
        )


async def _together(
    first: Coroutine[Any, Any, _A], second: Coroutine[Any, Any, _B]
) -> tuple[_A, _B]:
    """Both at once, each to its end; then the first failure is raised as it is (not in a
    group: callers tell a fetch failure from a broken file by its type). Not cancelled
    when the other fails: a cancelled inspection goes on in its worker process, and the
    pool would count its slot free meanwhile."""
    one, two = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(one, BaseException):
        raise one
    if isinstance(two, BaseException):
        raise two
    return one, two
