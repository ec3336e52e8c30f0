"""Why each file of a project or release is where it is: state, hold-until, every check's word.

Files come newest release first, a page at a time (``limit``, and ``since`` for files
first seen from then on). A release's rejected files are part of it, with the reason. The
malware feeds always have their say, including that none is configured: silence there
would read as a clean result.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.clock import format_timestamp
from quarantine.decide import current_reason, hold_until
from quarantine.duration import format_duration
from quarantine.evidence import Evidence
from quarantine.feeds.in_force import Feeds, with_advisories
from quarantine.file_release import newest_first, release_of
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, ProjectRecord
from quarantine.paging import DEFAULT_LIMIT
from quarantine.policy import Policy

NOT_CHECKED = "not-checked"  # a check's action when it could not run at all


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """The malware feeds as the mirror has them: how many are configured, what is loaded."""

    configured: int
    feeds: Feeds | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    project: NormalizedName
    status: str
    files: list[dict[str, Any]]
    left_out: int = 0  # files that matched but are past the limit (older releases)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "status": self.status,
            "files": self.files,
            "left_out": self.left_out,
        }


def explain(
    ledger: Ledger,
    policy: Policy,
    project: NormalizedName,
    version: Version | None,
    feeds: FeedStatus,
    *,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> Explanation | None:
    """None when the mirror has seen no file of the project (or of that release).

    Given ``now``, each file's reason is the decision as it stands then (a check may have
    reported, or a hold ended, since the promoter last recorded one)."""
    record = ledger.project(project)
    if record is None:
        return None
    files = [
        file for file in ledger.files(project) if version is None or release_of(file) == version
    ]
    if not files:
        return None
    chosen = [file for file in newest_first(files) if since is None or file.first_seen >= since]
    shown = chosen[:limit]
    evidence = ledger.evidence(project)
    current = _Current(record, policy, now, ledger.freeze_reason(), feeds) if now else None
    return Explanation(
        project,
        record.status.value,
        [_file(file, evidence, policy, feeds, current) for file in shown],
        len(chosen) - len(shown),
    )


@dataclass(frozen=True, slots=True)
class _Current:
    """What a decision made now takes: the project, the policy, the time, the freeze."""

    project: ProjectRecord
    policy: Policy
    now: datetime
    frozen: str | None
    feeds: FeedStatus

    def reason(self, file: FileRecord, stored: dict[str, list[Evidence]]) -> str:
        evidence = with_advisories(file, stored, self.feeds.feeds)
        return current_reason(file, self.project, self.policy, self.now, self.frozen, evidence)


def _file(
    file: FileRecord,
    stored: dict[str, list[Evidence]],
    policy: Policy,
    feeds: FeedStatus,
    current: _Current | None,
) -> dict[str, Any]:
    release = release_of(file)
    checks = [_check(item) for item in stored.get(file.filename, [])]
    outside = policy.exclusion(file.filename)
    no_hold = file.established or outside is not None
    if all(check["check"] != "feeds" for check in checks):
        checks.append(_feed_check(file, str(release) if release else "", feeds))
    return {
        "filename": file.filename,
        "version": str(release) if release is not None else file.version,
        "sha256": file.sha256,
        "state": file.state.value,
        "reason": current.reason(file, stored) if current is not None else file.reason,
        "established": file.established,
        # "until-download": listed, vetted when first downloaded; "downloaded": a client
        # asked for it, so it was vetted then (its state says how that ended)
        "deferral": file.deferral.value if file.deferral is not None else None,
        "upload_time": format_timestamp(file.upload_time) if file.upload_time else None,
        "hold_until": None if no_hold else format_timestamp(hold_until(file, policy)),
        "cooling_period": format_duration(policy.cooling_for(file.project)),
        "anomaly": file.anomaly,
        "stored": file.stored,
        "checks": checks,
    }


def _check(item: Evidence) -> dict[str, Any]:
    return {
        "check": item.check,
        "action": item.action.value,
        "summary": item.summary,
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "message": f.message,
                "path": f.path,
                "line": f.line,
            }
            for f in item.findings
        ],
        "details": dict(item.details),
    }


def _feed_check(file: FileRecord, version: str, status: FeedStatus) -> dict[str, Any]:
    loaded = status.feeds.records_count if status.feeds is not None else 0
    if status.configured == 0:
        return _said(NOT_CHECKED, "no malware feed is configured (osv_feeds is empty)")
    feeds = f"{status.configured} malware feed{'s' if status.configured > 1 else ''}"
    if status.feeds is None or loaded == 0:
        return _said(NOT_CHECKED, f"{feeds} configured, but no advisory is loaded yet")
    advisory = status.feeds.evidence_for(file.project, version)
    if advisory is not None:
        return _check(advisory)
    return _said("pass", f"no advisory names this release ({loaded} records from {feeds})")


def _said(action: str, summary: str) -> dict[str, Any]:
    return {"check": "feeds", "action": action, "summary": summary, "findings": [], "details": {}}
