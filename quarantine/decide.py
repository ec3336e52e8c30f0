"""The promotion decision: a pure function of (file record, evidence, policy, now).

Nothing here reads a clock, a database or the network, so every rule can be tested by
handing it records and a time. Restrictive signals are checked first; valid provenance
or a clean scan never shortens a hold.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from quarantine.clock import format_timestamp
from quarantine.evidence import Action, Evidence
from quarantine.models import (
    FINAL_STATES,
    Deferral,
    FileRecord,
    FileState,
    ProjectRecord,
    ProjectStatus,
)
from quarantine.policy import Policy

_TAKEDOWN = {
    ProjectStatus.QUARANTINED: "upstream_quarantined",
    ProjectStatus.REMOVED: "upstream_removed",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    state: FileState
    reason: str
    hold_until: datetime | None = None
    needs_bytes: bool = False  # cooled, but the verified bytes are not in the store yet
    needs_vetting: bool = False  # cooled, but a required check has not reported yet
    needs_look: bool = False  # cooled, but the last upstream look is too old to trust


DEFERRED = "listed; vetted when first downloaded"


def hold_until(record: FileRecord, policy: Policy) -> datetime:
    """When the cooling period of a file that is not established ends."""
    return record.clock_start + policy.cooling_for(record.project)


def awaits_download(record: FileRecord, policy: Policy) -> bool:
    """A deferred file: listed, but neither fetched nor vetted until a client asks for it
    (its bytes stored by that download still wait for the deferral's end, which follows)."""
    return record.deferral is Deferral.UNTIL_DOWNLOAD and policy.vets_on_download


def lists_deferred(files: Iterable[FileRecord], policy: Policy) -> bool:
    """Whether a project's page lists its deferred files now: under "on-download", once no
    release that had already cooled when the project was first seen still waits for its
    vetting. Until then a cold resolver would pick the highest deferred release (listed at
    once) over the newest one (listed once vetted) and wait for that older release to be
    fetched and vetted. A release that cools later, or one a person must review, never
    keeps them off the page."""
    if not policy.vets_on_download:
        return False
    admits = policy.wheel_filter.admits
    return not any(
        record.state is FileState.HELD
        and record.deferral is None
        and not record.established
        and hold_until(record, policy) <= record.first_seen
        and admits(record.filename)
        for record in files
    )


def listed_unvetted(record: FileRecord, vets_on_download: bool) -> bool:
    """A held file the pages list all the same: deferred, or being vetted because a client
    asked for its bytes (its download waits for the verdict; nothing is served before).
    ``vets_on_download``: the policy's ``superseded_releases`` is "on-download"."""
    return vets_on_download and record.state is FileState.HELD and record.deferral is not None


def is_fresh(project: ProjectRecord, policy: Policy, now: datetime) -> bool:
    return (
        project.last_look_ok is not None and now - project.last_look_ok <= policy.freshness_window
    )


def decide(
    record: FileRecord,
    project: ProjectRecord,
    policy: Policy,
    now: datetime,
    frozen: str | None = None,
    evidence: Sequence[Evidence] = (),
) -> Verdict:
    """What state ``record`` should be in now.

    ``frozen`` (why promotion is stopped, e.g. a clock jump) keeps held files held.
    ``evidence`` is what the checks reported for this file, malware feeds included.
    """
    if record.state in FINAL_STATES:
        return Verdict(record.state, record.reason)  # only a person undoes these
    takedown = _TAKEDOWN.get(project.status)
    if takedown is None and not record.listed:
        takedown = "upstream_removed"
    if takedown is not None:
        return Verdict(_condemned(record.state, rejected=True), takedown)
    blocked_by_admin = policy.block_reason(record.project, record.version)
    if blocked_by_admin is not None:
        return Verdict(_condemned(record.state), f"blocked by an admin: {blocked_by_admin}")
    blocking = [item for item in evidence if item.action is Action.BLOCK]
    if blocking:
        return Verdict(_condemned(record.state), _because("blocked", blocking[0]))
    if record.state in (FileState.PROMOTED, FileState.REVIEW):
        return Verdict(record.state, record.reason)  # a review is ended by a person
    verdict = _decide_held(record, project, policy, now, evidence)
    if frozen is not None and verdict.state is FileState.PROMOTED:
        return Verdict(FileState.HELD, f"promotion frozen: {frozen}", verdict.hold_until)
    return verdict


def current_reason(
    record: FileRecord,
    project: ProjectRecord,
    policy: Policy,
    now: datetime,
    frozen: str | None = None,
    evidence: Sequence[Evidence] = (),
) -> str:
    """Why the file is where it is now, in words: the recorded reason is that of the last
    decision, which the promoter may not have made again since a check reported or a
    hold ended; this is the decision as it stands."""
    verdict = decide(record, project, policy, now, frozen, evidence)
    if verdict.state is record.state:
        return verdict.reason
    return f"{verdict.reason} ({verdict.state.value} at the next promotion round)"


def _condemned(state: FileState, *, rejected: bool = False) -> FileState:
    if state is FileState.PROMOTED:
        return FileState.WITHDRAWN
    return FileState.REJECTED if rejected else FileState.BLOCKED


def _because(word: str, item: Evidence) -> str:
    return f"{word}: {item.check}: {item.summary}"


def _decide_held(
    record: FileRecord,
    project: ProjectRecord,
    policy: Policy,
    now: datetime,
    evidence: Sequence[Evidence],
) -> Verdict:
    outside = policy.exclusion(record.filename)
    if outside is not None:
        # Never fetched, vetted or listed; a wider filter brings it back with its hold.
        return Verdict(FileState.HELD, outside)
    if record.yanked is not None and not record.established:
        return Verdict(FileState.REJECTED, "yanked_upstream_before_promotion")
    if policy.is_after_cutoff(record.upload_time):
        cutoff = format_timestamp(policy.cutoff) if policy.cutoff else "?"
        return Verdict(FileState.HELD, f"cutoff: uploaded after {cutoff}")
    exemption = policy.exemption_for(record.project, now)
    if exemption is not None or record.established:
        if record.size is None and not record.stored:
            # Promoted without its bytes, it would be listed without a size, which PEP 700
            # makes mandatory: the upstream gave none, so the bytes tell it first.
            reason = "waiting for its bytes: the upstream gave no size"
            return Verdict(FileState.HELD, reason, needs_bytes=True)
        if exemption is not None:
            return Verdict(FileState.PROMOTED, f"exempt: {exemption.reason}")
        return Verdict(FileState.PROMOTED, "established")
    until = hold_until(record, policy)
    reviews = [item for item in evidence if item.action is Action.REVIEW]
    if reviews:
        return Verdict(FileState.REVIEW, _because("review", reviews[0]), until)
    missing = [check for check in policy.required_checks if check not in _reported(evidence)]
    if now < until:
        return Verdict(FileState.HELD, _cooling_reason(record, _progress(record, missing)), until)
    if awaits_download(record, policy):
        return Verdict(FileState.HELD, DEFERRED)  # no hold to wait for: a download ends it
    if not record.stored:
        reason = "cooled; waiting for its bytes to be fetched and checked"
        return Verdict(FileState.HELD, reason, until, needs_bytes=True)
    if missing:
        reason = f"cooled; waiting for vetting ({', '.join(missing)})"
        return Verdict(FileState.HELD, reason, until, needs_vetting=True)
    if not is_fresh(project, policy, now):
        reason = "cooled and vetted; waiting for a fresh upstream look"
        return Verdict(FileState.HELD, reason, until, needs_look=True)
    return Verdict(FileState.PROMOTED, "cooled and vetted")


def _reported(evidence: Sequence[Evidence]) -> set[str]:
    return {item.check for item in evidence}


def _progress(record: FileRecord, missing: Sequence[str]) -> str:
    """How far vetting got while the file cools: its reason says so, not just "cooling"."""
    if not record.stored:
        return "waiting for its bytes"
    if missing:
        return f"waiting for vetting ({', '.join(missing)})"
    return "vetted"


def _cooling_reason(record: FileRecord, progress: str) -> str:
    if record.anomaly:
        return f"cooling (held from first sight: {record.anomaly}); {progress}"
    return f"cooling; {progress}"
