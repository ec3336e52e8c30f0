"""The promotion decision: a pure function of (file record, project, policy, now).

Nothing here reads a clock, a database or the network, so every rule can be tested by
handing it records and a time.
"""

from dataclasses import dataclass
from datetime import datetime

from quarantine.clock import format_timestamp
from quarantine.models import FileRecord, FileState, ProjectRecord, ProjectStatus
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
    needs_look: bool = False  # cooled, but the last upstream look is too old to trust


def hold_until(record: FileRecord, policy: Policy) -> datetime:
    """When the cooling period of a file that is not established ends."""
    return record.clock_start + policy.cooling_for(record.project)


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
) -> Verdict:
    """What state ``record`` should be in now. Restrictive signals are checked first.

    ``frozen`` (why promotion is stopped, e.g. a clock jump) keeps held files held.
    """
    if record.state in (FileState.REJECTED, FileState.WITHDRAWN):
        return Verdict(record.state, record.reason)  # only a person undoes these
    takedown = _TAKEDOWN.get(project.status)
    if takedown is None and not record.listed:
        takedown = "upstream_removed"
    if takedown is not None:
        return Verdict(_taken_down(record.state), takedown)
    if record.state is FileState.PROMOTED:
        return Verdict(record.state, record.reason)
    verdict = _decide_held(record, project, policy, now)
    if frozen is not None and verdict.state is FileState.PROMOTED:
        return Verdict(FileState.HELD, f"promotion frozen: {frozen}", verdict.hold_until)
    return verdict


def _taken_down(state: FileState) -> FileState:
    return FileState.WITHDRAWN if state is FileState.PROMOTED else FileState.REJECTED


def _decide_held(
    record: FileRecord, project: ProjectRecord, policy: Policy, now: datetime
) -> Verdict:
    if record.yanked is not None and not record.established:
        return Verdict(FileState.REJECTED, "yanked_upstream_before_promotion")
    if policy.is_after_cutoff(record.upload_time):
        cutoff = format_timestamp(policy.cutoff) if policy.cutoff else "?"
        return Verdict(FileState.HELD, f"cutoff: uploaded after {cutoff}")
    exemption = policy.exemption_for(record.project, now)
    if exemption is not None:
        return Verdict(FileState.PROMOTED, f"exempt: {exemption.reason}")
    if record.established:
        return Verdict(FileState.PROMOTED, "established")
    until = hold_until(record, policy)
    if now < until:
        return Verdict(FileState.HELD, _cooling_reason(record), until)
    if not record.stored:
        reason = "cooled; waiting for its bytes to be fetched and checked"
        return Verdict(FileState.HELD, reason, until, needs_bytes=True)
    if not is_fresh(project, policy, now):
        reason = "cooled; waiting for a fresh upstream look"
        return Verdict(FileState.HELD, reason, until, needs_look=True)
    return Verdict(FileState.PROMOTED, "cooled")


def _cooling_reason(record: FileRecord) -> str:
    if record.anomaly:
        return f"cooling (held from first sight: {record.anomaly})"
    return "cooling"
