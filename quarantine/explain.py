"""Why each file of a release is where it is: state, hold-until, and every check's word."""

from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from quarantine.clock import format_timestamp
from quarantine.decide import hold_until
from quarantine.feeds import Feeds
from quarantine.ledger import Ledger
from quarantine.models import FileRecord
from quarantine.policy import Policy


@dataclass(frozen=True, slots=True)
class Explanation:
    project: NormalizedName
    status: str
    files: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "status": self.status, "files": self.files}


def _same_version(record: FileRecord, version: str | None) -> bool:
    if version is None:
        return True
    try:
        return Version(record.version) == Version(version)
    except InvalidVersion:
        return record.version == version


def explain(
    ledger: Ledger,
    policy: Policy,
    project: NormalizedName,
    version: str | None = None,
    feeds: Feeds | None = None,
) -> Explanation | None:
    record = ledger.project(project)
    if record is None:
        return None
    evidence = ledger.evidence(project)
    files = []
    for file in ledger.files(project):
        if not _same_version(file, version):
            continue
        checks = [
            {
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
            for item in evidence.get(file.filename, [])
        ]
        advisory = feeds.evidence_for(project, file.version) if feeds else None
        if advisory is not None and all(c["check"] != "feeds" for c in checks):
            checks.append(
                {
                    "check": "feeds",
                    "action": advisory.action.value,
                    "summary": advisory.summary,
                    "findings": [],
                    "details": {},
                }
            )
        files.append(
            {
                "filename": file.filename,
                "version": file.version,
                "sha256": file.sha256,
                "state": file.state.value,
                "reason": file.reason,
                "established": file.established,
                "upload_time": format_timestamp(file.upload_time) if file.upload_time else None,
                "hold_until": None
                if file.established
                else format_timestamp(hold_until(file, policy)),
                "anomaly": file.anomaly,
                "stored": file.stored,
                "checks": checks,
            }
        )
    return Explanation(project, record.status.value, files)
