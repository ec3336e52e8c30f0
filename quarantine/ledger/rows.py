"""What every ledger backend writes the same way: outbox payloads, evidence findings,
fetch attempts and the blobs a file refers to."""

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName

from quarantine.blob_references import BlobReference
from quarantine.clock import format_timestamp
from quarantine.evidence import Action, Evidence, Finding, Severity
from quarantine.models import Event, FileRecord
from quarantine.notable import Notable, notable
from quarantine.vetting.fetch_retry import MAX_ATTEMPTS, FailureKind, FetchAttempts, delay_after


def outbox_entry(event: Event, version: str | None) -> tuple[Notable, str, dict[str, Any]] | None:
    """The notification a change calls for (its kind, a new event id, its payload), if any."""
    kind = notable(event.from_state, event.to_state, event.reason, event.actor)
    if kind is None:
        return None
    payload = {
        "project": event.project,
        "version": version,
        "filename": event.filename,
        "sha256": event.sha256,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "reason": event.reason,
        "actor": event.actor,
        "at": format_timestamp(event.at),
    }
    return kind, f"evt_{uuid.uuid4().hex}", payload


def findings_document(evidence: Evidence) -> list[dict[str, Any]]:
    return [
        {
            "rule": f.rule,
            "severity": f.severity.value,
            "message": f.message,
            "path": f.path,
            "line": f.line,
        }
        for f in evidence.findings
    ]


def evidence_from(
    check: str,
    action: str,
    summary: str,
    findings: Sequence[Mapping[str, Any]],
    details: Mapping[str, Any],
) -> Evidence:
    return Evidence(
        check=check,
        action=Action(action),
        summary=summary,
        findings=tuple(
            Finding(
                rule=item["rule"],
                severity=Severity(item["severity"]),
                message=item["message"],
                path=item["path"],
                line=item["line"],
            )
            for item in findings
        ),
        details=dict(details),
    )


def next_attempts(
    before: FetchAttempts | None,
    record: FileRecord,
    kind: FailureKind,
    reason: str,
    config: str,
    at: datetime,
) -> FetchAttempts | None:
    """The file's fetch attempts after a failure at ``at``, and None when the failure is
    the one already counted (no fetch starts while one waits: another request that had
    joined the same download heard it too)."""
    if before is not None and before.waiting(at) and before.config == config:
        return None
    attempts = (before.attempts if before else 0) + 1
    return FetchAttempts(
        record.project, record.filename, kind, reason, attempts, at + delay_after(attempts), config
    )


def failure_note(after: FetchAttempts) -> str:
    """The incident a failed fetch records."""
    return (
        f"{after.kind.value}: fetch failed (attempt {after.attempts} of {MAX_ATTEMPTS}): "
        f"{after.reason}"
    )


def blob_references(
    project: str,
    filename: str,
    sha256: str,
    size: int | None,
    stored: bool,
    others: Mapping[str, str | None],
) -> Iterator[BlobReference]:
    """The blobs one file row refers to: its bytes, and its metadata and provenance files
    (``others``: role -> digest)."""
    name = NormalizedName(project)
    yield BlobReference(sha256, name, filename, "file", size, stored)
    for role, digest in others.items():
        if digest:
            yield BlobReference(digest, name, filename, role, None, False)
