"""What every ledger backend writes the same way: outbox payloads and evidence findings."""

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from quarantine.clock import format_timestamp
from quarantine.evidence import Action, Evidence, Finding, Severity
from quarantine.models import Event
from quarantine.notable import Notable, notable


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
