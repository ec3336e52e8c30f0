"""What a check found about one file, kept with the file so a person can see why.

Every check (provenance, publisher continuity, content inspection, malware feeds)
returns one ``Evidence``. Findings carry a rule, a severity, and where they were found;
the policy maps severities (or single rules) to an action.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"  # worth showing, never holds anything
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Action(StrEnum):
    """What a finding does to a file's promotion, strongest last."""

    PASS = "pass"  # noqa: S105  (nothing to report; not a password)
    REPORT = "report"  # shown in evidence and notifications; does not hold the file
    REVIEW = "review"  # held until a person decides; never promoted by time alone
    BLOCK = "block"  # never promoted; withdrawn if it already was

    @property
    def rank(self) -> int:
        return list(Action).index(self)


DEFAULT_SEVERITY_ACTIONS: Mapping[Severity, Action] = {
    Severity.INFO: Action.REPORT,
    Severity.LOW: Action.REPORT,
    Severity.MEDIUM: Action.REVIEW,
    Severity.HIGH: Action.REVIEW,
    Severity.CRITICAL: Action.BLOCK,
}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str  # a stable identifier, e.g. "pth-executable-new"
    severity: Severity
    message: str  # one line a person can act on; never raw archive bytes
    path: str | None = None  # the archive member it concerns
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    check: str  # "provenance", "publisher", "content", "feeds"
    action: Action  # the check's verdict after the policy's mapping
    summary: str  # one line
    findings: tuple[Finding, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable


def action_for(
    finding: Finding,
    severity_actions: Mapping[Severity, Action] = DEFAULT_SEVERITY_ACTIONS,
    rule_actions: Mapping[str, Action] | None = None,
) -> Action:
    """The action a finding calls for: a per-rule override first, then its severity."""
    if rule_actions and finding.rule in rule_actions:
        return rule_actions[finding.rule]
    return severity_actions.get(finding.severity, Action.REVIEW)


def strongest(actions: list[Action]) -> Action:
    return max(actions, key=lambda action: action.rank, default=Action.PASS)
