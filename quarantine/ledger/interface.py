"""The ledger: where file states and every change to them are kept.

One interface, one file per implementation (``sqlite``, ``postgres``). The conformance
tests in ``tests/test_ledger.py`` run against every implementation.
"""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from packaging.utils import NormalizedName

from quarantine.blob_references import BlobReference
from quarantine.evidence import Evidence
from quarantine.models import Event, FileRecord, FileState, PolicyRecord, ProjectRecord
from quarantine.observe import Observation
from quarantine.outbox import ApiToken, Delivery, DeliveryState, OutboxEntry
from quarantine.policy import Exemption, RuntimeOverrides
from quarantine.vetting.fetch_retry import FailureKind, FetchAttempts


@dataclass(frozen=True, slots=True)
class LedgerTally:
    """Counts an operator watches (metrics), read in one go, never per request."""

    files_by_state: Mapping[FileState, int]
    vetting_queue: int  # held files inside the configured platforms: the promoter's work
    outbox_backlog: int  # notification deliveries still pending
    events: int  # state changes ever recorded (grows by one per decision)


class ChangeListener(Protocol):
    """What ``Ledger.listen`` started; ``close`` stops it."""

    @property
    def received(self) -> int:
        """Notifications of a change received so far (a metric)."""
        ...

    def close(self) -> None: ...


class NotListening:
    """The listener of a ledger that cannot tell of changes: its followers poll."""

    received = 0

    def close(self) -> None:
        pass


class Ledger(Protocol):
    def close(self) -> None: ...

    def project(self, name: NormalizedName) -> ProjectRecord | None: ...

    def projects(self) -> list[NormalizedName]:
        """Every project that answered at least one look, in name order."""
        ...

    def stale_projects(self, looked_before: datetime, limit: int) -> list[NormalizedName]:
        """Projects (not removed) whose last successful look is older than ``looked_before``."""
        ...

    def files(self, project: NormalizedName) -> list[FileRecord]: ...

    def files_changed_since(self, project: NormalizedName, seq: int) -> list[FileRecord]:
        """The project's records written after its seq was ``seq`` (and maybe a few before).

        Records read with ``files`` after reading the project's seq, updated with these
        (read after reading the seq again), are the ledger's records: a big page is kept
        up to date with them instead of reading every row on each change.
        """
        ...

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None: ...

    def file_by_digest(self, sha256: str, filename: str) -> FileRecord | None: ...

    def held(self, project: NormalizedName | None = None) -> list[FileRecord]: ...

    def held_inside(self, project: NormalizedName | None = None) -> list[FileRecord]:
        """Held files, but those last decided outside the configured platforms or Pythons
        (their reason starts with ``quarantine.platforms.OUTSIDE``): the promoter's work,
        which stays small however many wheels of other platforms the mirror has seen."""
        ...

    def touch_all_projects(self) -> int:
        """Give every project a new seq (what every page shows changed, as when the
        platform filter does); returns the new change counter."""
        ...

    def in_states(
        self, states: Collection[FileState], project: NormalizedName | None = None
    ) -> list[FileRecord]: ...

    def apply(self, observation: Observation, etag: str | None, actor: str) -> int:
        """Write one look's new and changed records, their events and the project, atomically.

        Returns the project's change counter after the write (its page generation).
        """
        ...

    def record_project_gone(self, name: NormalizedName, at: datetime, actor: str) -> None:
        """The upstream answers 404 for a project the ledger knows: withdraw all of it."""
        ...

    def touch_look(self, name: NormalizedName, at: datetime) -> None:
        """An upstream look confirmed that nothing changed (HTTP 304)."""
        ...

    def transition(
        self,
        before: FileRecord,
        state: FileState,
        reason: str,
        actor: str,
        at: datetime,
    ) -> FileRecord:
        """Compare-and-swap one file's state; StaleTransition if it changed since read."""
        ...

    def end_deferral(self, record: FileRecord, reason: str, actor: str, at: datetime) -> FileRecord:
        """A client asked for a deferred file's bytes: it is vetted now (the deferral is
        recorded as ``Deferral.DOWNLOADED``, with an event saying who and why). A no-op for a
        file no longer held and deferred. Returns the record as the ledger has it now."""
        ...

    def mark_stored(self, record: FileRecord, size: int | None = None) -> FileRecord:
        """Its bytes are in the blob store, verified against its sha256; ``size``, their
        byte count, is recorded when the record has none (the upstream gave none)."""
        ...

    def set_provenance(self, record: FileRecord, sha256: str) -> None: ...

    def record_incident(self, record: FileRecord, reason: str, actor: str, at: datetime) -> None:
        """An event that does not change state: a hash mismatch, a failed fetch."""
        ...

    def fetch_attempts(self, project: NormalizedName | None = None) -> list[FetchAttempts]:
        """Files whose fetches failed since their bytes were last stored (or retried)."""
        ...

    def fetch_attempt(self, project: NormalizedName, filename: str) -> FetchAttempts | None: ...

    def record_fetch_failure(
        self,
        record: FileRecord,
        kind: FailureKind,
        reason: str,
        config: str,
        actor: str,
        at: datetime,
    ) -> FetchAttempts:
        """Count one more failed fetch (and say so as an incident); returns the count, with
        when to try next. A failure heard while the count waits for its next try is the
        one already counted (requests that joined one download), and changes nothing.
        ``mark_stored`` forgets the count."""
        ...

    def forget_fetch_attempts(self, project: NormalizedName, filename: str) -> None:
        """Start the count afresh: an admin's retry, or settings that changed."""
        ...

    def blob_references(self) -> list[BlobReference]:
        """Every blob the records refer to (a file's bytes, metadata, provenance)."""
        ...

    def forget_blob(self, sha256: str, reason: str, actor: str, at: datetime) -> list[str]:
        """The blob is gone from the store (``fsck`` moved it aside): mark the files it
        held as not stored, so they are fetched and verified again; an incident each."""
        ...

    def drop_core_metadata(self, record: FileRecord, reason: str, actor: str, at: datetime) -> None:
        """Its metadata file (PEP 658) is not what the upstream's digest says: offered no
        more (the pages change), with an incident saying why. A no-op once dropped."""
        ...

    def events(
        self, project: NormalizedName | None = None, since: datetime | None = None
    ) -> Sequence[Event]: ...

    def recent_events(
        self, project: NormalizedName | None, since: datetime | None, limit: int
    ) -> tuple[list[Event], int]:
        """The latest ``limit`` events matching (oldest first), and how many match in all."""
        ...

    def freeze(self, reason: str, actor: str, at: datetime) -> None:
        """Stop all promotions until ``unfreeze``; recorded as an event."""
        ...

    def unfreeze(self, reason: str, actor: str, at: datetime) -> bool:
        """Lift a freeze (False when there was none); recorded as an event."""
        ...

    def freeze_reason(self) -> str | None: ...

    def last_wall_clock(self) -> datetime | None: ...

    def note_wall_clock(self, at: datetime) -> None:
        """Remember the latest wall-clock time seen, to catch a clock set back later."""
        ...

    def record_evidence(self, record: FileRecord, evidence: Evidence, at: datetime) -> None:
        """Keep one check's evidence with the file (replacing that check's earlier one)."""
        ...

    def evidence(
        self, project: NormalizedName, filename: str | None = None
    ) -> dict[str, list[Evidence]]:
        """Evidence by filename, for one project (or one file of it)."""
        ...

    def overrides_version(self) -> int:
        """Grows whenever an admin changes an exemption or the cutoff."""
        ...

    def runtime_overrides(self) -> RuntimeOverrides:
        """Exemptions, blocks and the cutoff set at run time (on top of the config file)."""
        ...

    def record_policy(
        self, document: Mapping[str, Any], summary: str, actor: str, at: datetime
    ) -> bool:
        """Keep the policy a mirror process enforces (JSON-able), replacing the last one.

        A document that differs from the last is also an event (``summary`` its reason);
        True then.
        """
        ...

    def recorded_policy(self) -> PolicyRecord | None:
        """The policy document last recorded, or None when no process recorded one."""
        ...

    def set_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> None:
        """Block a release (``version``) or the whole project (``"*"``), new files included."""
        ...

    def clear_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> bool: ...

    def outbox(self, after_id: int = 0, limit: int = 500) -> list[OutboxEntry]:
        """Notification entries in the order they were written."""
        ...

    def deliveries(self, state: DeliveryState | None = None) -> list[Delivery]: ...

    def record_delivery(self, delivery: Delivery) -> None:
        """Create or update one entry's delivery state on one channel."""
        ...

    def create_token(self, token: ApiToken, token_hash: str) -> None:
        """Keep a new API token's hash (never the token itself)."""
        ...

    def revoke_token(self, name: str, actor: str, at: datetime) -> bool: ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The live (not revoked) token with this hash, compared in constant time."""
        ...

    def tokens(self) -> list[ApiToken]: ...

    def set_exemption(
        self, project: NormalizedName, exemption: Exemption, actor: str, at: datetime
    ) -> None: ...

    def clear_exemption(
        self, project: NormalizedName, reason: str, actor: str, at: datetime
    ) -> bool: ...

    def set_cutoff(self, moment: datetime, reason: str, actor: str, at: datetime) -> None: ...

    def clear_cutoff(self, reason: str, actor: str, at: datetime) -> bool: ...

    def tally(self) -> LedgerTally:
        """Counts by state and of pending work; cheap enough to read every few seconds."""
        ...

    def change_seq(self) -> int:
        """A counter that grows with every change to what any page shows."""
        ...

    def changed_since(self, seq: int) -> dict[NormalizedName, int]:
        """Projects whose pages changed after ``seq``, with their current seq."""
        ...

    def listen(self, on_change: Callable[[], None]) -> ChangeListener:
        """Call ``on_change`` (from another thread) soon after any process commits a write
        that grows ``change_seq``, and whenever a change may have been missed (listening
        began or resumed). Best effort: a ledger that cannot tell (SQLite) never calls it,
        and a lost notification is possible, so a follower still polls ``change_seq``."""
        ...
