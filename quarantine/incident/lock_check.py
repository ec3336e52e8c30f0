"""Is what a lock pins served now? For each pin: served, held (until when, why), blocked,
withdrawn, or unknown to the mirror. A CI job gates on ``failing``.

For a pin with hashes only the files with those hashes count; without, every file of the
release. Any withdrawn or blocked file among them condemns the pin (a lock that names it
could install it from elsewhere), else any served file makes it served, else a held one
makes it held. Files outside the configured platforms stay held for ever and so never
decide alone when another file of the release is served.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from quarantine.clock import format_timestamp
from quarantine.decide import hold_until
from quarantine.incident.lock_files import Pin, same_version
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.policy import Policy

SERVED, HELD, BLOCKED, WITHDRAWN, UNKNOWN = "served", "held", "blocked", "withdrawn", "unknown"
FAILING = (WITHDRAWN, BLOCKED)


@dataclass(frozen=True, slots=True)
class PinStatus:
    project: str
    version: str
    state: str
    detail: str  # why (the recorded reason), and until when for a held pin
    files: tuple[str, ...]  # the files that decided the state
    where: str  # the pin's place in the lock

    def to_json(self) -> dict[str, object]:
        return {
            "project": self.project,
            "version": self.version,
            "state": self.state,
            "detail": self.detail,
            "files": list(self.files),
            "where": self.where,
        }


def failing(statuses: Sequence[PinStatus]) -> list[PinStatus]:
    return [status for status in statuses if status.state in FAILING]


def check_pins(ledger: Ledger, policy: Policy, pins: Sequence[Pin]) -> list[PinStatus]:
    statuses = []
    by_project: dict[str, list[FileRecord]] = {}
    for pin in pins:
        if pin.project not in by_project:
            by_project[pin.project] = ledger.files(pin.project)
        statuses.append(_status(pin, by_project[pin.project], policy))
    return statuses


def _status(pin: Pin, records: Sequence[FileRecord], policy: Policy) -> PinStatus:
    release = [r for r in records if same_version(r.version, pin.version)]
    pinned = [r for r in release if r.sha256 in pin.sha256s] if pin.sha256s else release

    def status(state: str, detail: str, files: Sequence[FileRecord]) -> PinStatus:
        names = tuple(sorted(r.filename for r in files))
        return PinStatus(pin.project, pin.version, state, detail, names, pin.where)

    if not pinned:
        if release:
            return status(
                UNKNOWN, "the mirror knows this release, but no file with a pinned hash", []
            )
        return status(UNKNOWN, "the mirror has not seen this release", [])
    withdrawn = [r for r in pinned if r.state is FileState.WITHDRAWN]
    if withdrawn:
        return status(WITHDRAWN, withdrawn[0].reason, withdrawn)
    condemned = [r for r in pinned if r.state is FileState.BLOCKED]
    if pin.sha256s:  # a pinned file the mirror refused (a hash mismatch, say) is never served
        condemned += [r for r in pinned if r.state is FileState.REJECTED]
    if condemned:
        return status(BLOCKED, condemned[0].reason, condemned)
    served = [r for r in pinned if r.state is FileState.PROMOTED]
    if served:
        return status(SERVED, "", served)
    held = [r for r in pinned if r.state in (FileState.HELD, FileState.REVIEW)]
    if held:
        return status(HELD, _held_detail(held, policy), held)
    return status(BLOCKED, pinned[0].reason, pinned)  # every file rejected: never served


def _held_detail(held: Sequence[FileRecord], policy: Policy) -> str:
    review = [r for r in held if r.state is FileState.REVIEW]
    if review:
        return f"held for review ({review[0].reason})"
    cooling = [r for r in held if not r.established]
    if cooling:
        until: datetime = max(hold_until(r, policy) for r in cooling)
        return f"held until {format_timestamp(until)} ({cooling[0].reason})"
    return f"held ({held[0].reason})"
