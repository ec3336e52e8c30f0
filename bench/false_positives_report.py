"""The false-positive check's report: what was held and why, and each rule's firings."""

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from quarantine.evidence import Action, Finding, Severity, action_for
from quarantine.inspect.check import INSPECTION_ERROR, Inspection
from quarantine.policy import Policy


@dataclass(frozen=True)
class Verdict:
    project: str
    version: str
    current: Path  # the file inspected
    action: Action
    findings: tuple[Finding, ...]

    @property
    def held(self) -> bool:
        return self.action in (Action.REVIEW, Action.BLOCK)

    @property
    def release(self) -> str:
        return f"{self.project} {self.version}"


def verdict(project: str, version: str, current: Path, inspection: Inspection) -> Verdict:
    """The file's action under the default policy, as the vetting worker maps findings."""
    policy = Policy()
    action = inspection.evidence(policy.severity_actions, policy.rule_actions).action
    return Verdict(project, version, current, action, inspection.findings)


def _holding(verdict: Verdict) -> list[str]:
    """The findings that hold the file (those mapped to review or block), where they are."""
    policy = Policy()
    lines = []
    for finding in verdict.findings:
        if action_for(finding, policy.severity_actions, policy.rule_actions) in (
            Action.REVIEW,
            Action.BLOCK,
        ):
            where = f" `{finding.path}:{finding.line or ''}`" if finding.path else ""
            lines.append(f"{finding.rule} ({finding.severity.value}){where}: {finding.message}")
    return lines


def _rule_counts(verdicts: list[Verdict]) -> list[str]:
    """One table row per rule: its findings by severity and the files it fired on."""
    by_severity: dict[str, Counter[str]] = defaultdict(Counter)
    files: Counter[str] = Counter()
    for verdict in verdicts:
        for finding in verdict.findings:
            by_severity[finding.rule][finding.severity.value] += 1
        files.update({finding.rule for finding in verdict.findings})
    order = [severity.value for severity in reversed(Severity)]
    rows = sorted(by_severity, key=lambda rule: (-files[rule], rule))
    return [
        f"| {rule} | " + " | ".join(str(by_severity[rule][s] or "") for s in order)
        + f" | {sum(by_severity[rule].values())} | {files[rule]} |"
        for rule in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class Run:
    title: str
    corpus: str
    inspection: str
    seconds: float
    left_out: list[str]
    versions: list[str]


def render(run: Run, verdicts: list[Verdict]) -> str:
    releases = sorted({v.release for v in verdicts})
    held_releases = sorted({v.release for v in verdicts if v.held})
    held_files = [v for v in verdicts if v.held]
    crashed = [v for v in verdicts if any(f.rule == INSPECTION_ERROR for f in v.findings)]
    share = 100 * len(held_releases) / max(1, len(releases))
    size = sum(v.current.stat().st_size for v in verdicts)
    out = [f"## {run.title}", "", run.corpus, "", run.inspection, ""]
    out += [
        "| current releases | held (review or block) | share held (goal < 1%) "
        "| current files | files held | inspection-error |",
        "|---|---|---|---|---|---|",
        f"| {len(releases)} | {len(held_releases)} | {share:.2f}% | {len(verdicts)} "
        f"| {len(held_files)} | {len(crashed)} |",
        "",
        f"Inspection of {len(verdicts)} current files ({size / 1e6:.0f} MB) and their previous "
        f"releases' files: {run.seconds:.0f} s wall.",
        "",
        "### Held",
        "",
    ]
    if not held_files:
        out.append("None.")
    for verdict in held_files:
        out.append(f"- **{verdict.release}** `{verdict.current.name}`: {verdict.action.value}")
        out += [f"  - {line}" for line in _holding(verdict)[:8]]
    out += ["", "### Firings per rule (current files, all severities)", ""]
    order = [severity.value for severity in reversed(Severity)]
    out += [
        "| rule | " + " | ".join(order) + " | findings | files |",
        "|---|" + "---|" * (len(order) + 2),
        *_rule_counts(verdicts),
        "",
        "### Not inspected",
        "",
        *([f"- {line}" for line in run.left_out] or ["Nothing."]),
    ]
    if crashed:
        out += ["", "### inspection-error (a crash or a limit, not the file)", ""]
        out += [f"- `{v.current.name}`: {_messages(v)}" for v in crashed]
    if run.versions:
        out += ["", "### Versions (current, previous)", "", ", ".join(run.versions)]
    return "\n".join(out) + "\n"


def _messages(verdict: Verdict) -> str:
    return "; ".join(f.message for f in verdict.findings if f.rule == INSPECTION_ERROR)
