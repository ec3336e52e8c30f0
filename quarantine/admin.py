"""What admins can decide: promote early, block, unblock, retry a refused fetch, exempt,
set the cutoff.

Each action is a recorded transition with actor and reason, exactly like an automatic
one, and goes through the ledger's compare-and-swap: a stale decision is refused, never
applied over a newer state.
"""

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from quarantine.clock import format_timestamp
from quarantine.decide import hold_until
from quarantine.errors import QuarantineError, StaleTransition
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.policy import Exemption, Policy
from quarantine.vetting.fetch_retry import refused_by_fetch

MIN_REASON = 10
_LIVE = (FileState.HELD, FileState.REVIEW, FileState.PROMOTED)


class AdminError(QuarantineError):
    """An admin request that cannot be carried out as asked; the message says why."""

    status = 400


class NothingToDo(AdminError):
    status = 404


class Conflict(AdminError):
    """The files are not in a state this action applies to (or changed meanwhile)."""

    status = 409


class NotYetStored(AdminError):
    """Promotion never skips the hash check: the verified bytes must be in the store."""

    status = 409

    def __init__(self, records: list[FileRecord]) -> None:
        names = ", ".join(record.filename for record in records)
        super().__init__(f"not promoted: the bytes of {names} are not fetched and verified yet")
        self.records = records


@dataclass(frozen=True, slots=True)
class Change:
    filename: str
    before: str
    after: str


def check_reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if len(cleaned) < MIN_REASON:
        raise AdminError(f"give a reason of at least {MIN_REASON} characters: it goes on record")
    # Whitespace is one space now; any other control character would reach terminals
    # (``audit``), and a PostgreSQL ledger cannot keep a NUL at all.
    controls = sorted(
        {f"U+{ord(char):04X}" for char in cleaned if unicodedata.category(char) == "Cc"}
    )
    if controls:
        raise AdminError(
            f"a reason is plain text: remove its control characters ({', '.join(controls)})"
        )
    return cleaned


def canonical_version(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion as error:
        raise AdminError(f"{version!r} is not a valid version") from error


def release_files(ledger: Ledger, project: NormalizedName, version: str | None) -> list[FileRecord]:
    files = ledger.files(project)
    if version is None:
        return files
    wanted = canonical_version(version)
    return [record for record in files if record.version == wanted]


def _apply(
    ledger: Ledger, record: FileRecord, state: FileState, reason: str, actor: str, at: datetime
) -> Change:
    try:
        ledger.transition(record, state, reason, actor, at)
    except StaleTransition as error:
        raise Conflict(f"{record.filename} changed meanwhile; look again and retry") from error
    return Change(record.filename, record.state.value, state.value)


def promote(
    ledger: Ledger,
    project: NormalizedName,
    version: str,
    reason: str,
    actor: str,
    at: datetime,
    *,
    force: bool = False,
) -> list[Change]:
    """End the hold of a release early (an urgent fix). Blocked files need ``force``."""
    why = check_reason(reason)
    files = release_files(ledger, project, version)
    if not files:
        raise NothingToDo(f"the mirror has not seen {project}=={version}")
    allowed = {FileState.HELD, FileState.REVIEW} | ({FileState.BLOCKED} if force else set())
    candidates = [record for record in files if record.state in allowed]
    blocked = [record for record in files if record.state is FileState.BLOCKED]
    if blocked and not force:
        raise Conflict(
            f"{project}=={version} is blocked ({blocked[0].reason}); "
            "overriding a block needs --force"
        )
    if not candidates:
        states = ", ".join(sorted({record.state.value for record in files}))
        raise Conflict(f"nothing to promote in {project}=={version} (states: {states})")
    missing = [record for record in candidates if not record.stored]
    if missing:
        raise NotYetStored(missing)
    if force:
        ledger.clear_block(project, canonical_version(version), why, actor, at)
    note = f"promoted early by {actor}: {why}"
    return [_apply(ledger, record, FileState.PROMOTED, note, actor, at) for record in candidates]


def block(
    ledger: Ledger,
    project: NormalizedName,
    version: str | None,
    reason: str,
    actor: str,
    at: datetime,
) -> list[Change]:
    """Block a release or a whole project, at once and for files still to come."""
    why = check_reason(reason)
    key = canonical_version(version) if version else "*"
    ledger.set_block(project, key, why, actor, at)
    note = f"blocked by an admin: {why}"
    changes = []
    for record in release_files(ledger, project, version):
        if record.state in _LIVE:
            after = FileState.WITHDRAWN if record.state is FileState.PROMOTED else FileState.BLOCKED
            changes.append(_apply(ledger, record, after, note, actor, at))
    return changes


def unblock(
    ledger: Ledger,
    project: NormalizedName,
    version: str | None,
    reason: str,
    actor: str,
    at: datetime,
) -> list[Change]:
    """Lift an admin block; its files are decided again (cooling, vetting and all)."""
    why = check_reason(reason)
    key = canonical_version(version) if version else "*"
    lifted = ledger.clear_block(project, key, why, actor, at)
    changes = []
    for record in release_files(ledger, project, version):
        if record.state in (FileState.BLOCKED, FileState.WITHDRAWN) and record.reason.startswith(
            "blocked by an admin"
        ):
            note = f"unblocked by {actor}: {why}"
            changes.append(_apply(ledger, record, FileState.HELD, note, actor, at))
    if not lifted and not changes:
        raise NothingToDo(f"no admin block on {project}{'==' + version if version else ''}")
    return changes


def retry(
    ledger: Ledger,
    project: NormalizedName,
    version: str | None,
    filename: str | None,
    reason: str,
    actor: str,
    at: datetime,
) -> list[Change]:
    """Files a fetch refused (a glitch, a setting since fixed, a digest mismatch the
    upstream has fixed) are held again for another try, its bytes checked as ever."""
    why = check_reason(reason)
    files = release_files(ledger, project, version)
    if filename is not None:
        files = [record for record in files if record.filename == filename]
    what = filename or f"{project}{'==' + version if version else ''}"
    if not files:
        raise NothingToDo(f"the mirror has not seen {what}")
    refused = [record for record in files if refused_by_fetch(record)]
    if not refused:
        states = ", ".join(sorted({record.state.value for record in files}))
        raise Conflict(f"nothing in {what} was refused by a fetch (states: {states})")
    note = f"fetch retried by {actor}: {why}"
    changes = []
    for record in refused:
        ledger.forget_fetch_attempts(record.project, record.filename)
        changes.append(_apply(ledger, record, FileState.HELD, note, actor, at))
    return changes


def exempt(
    ledger: Ledger,
    project: NormalizedName,
    reason: str,
    until: datetime | None,
    actor: str,
    at: datetime,
) -> None:
    ledger.set_exemption(project, Exemption(check_reason(reason), until), actor, at)


def unexempt(
    ledger: Ledger, project: NormalizedName, reason: str, actor: str, at: datetime
) -> None:
    if not ledger.clear_exemption(project, check_reason(reason), actor, at):
        raise NothingToDo(f"{project} has no run-time exemption (config-file ones stay)")


@dataclass(frozen=True, slots=True)
class Hold:
    project: str
    version: str
    filename: str
    state: str
    reason: str
    hold_until: str | None


def holds(
    ledger: Ledger,
    policy: Policy,
    project: NormalizedName | None = None,
    state: FileState | None = None,
) -> list[Hold]:
    """Everything held (cooling, or for review), optionally for one project or state;
    not the files outside the configured platforms, which wait for nothing."""
    found = []
    for record in ledger.in_states((FileState.HELD, FileState.REVIEW), project):
        if state is not None and record.state is not state:
            continue
        if record.state is FileState.HELD and policy.exclusion(record.filename):
            continue
        until = None if record.established else format_timestamp(hold_until(record, policy))
        found.append(
            Hold(
                record.project,
                record.version,
                record.filename,
                record.state.value,
                record.reason,
                until,
            )
        )
    return found
