"""Fold one upstream look at a project into the ledger's records.

Pure: given what the ledger knew and what the upstream said now, compute the new and the
changed records. The ledger writes them in one transaction.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.clock import format_timestamp
from quarantine.decide import decide, hold_until
from quarantine.evidence import Evidence
from quarantine.filenames import UnservableFile, file_version, version_or_none
from quarantine.models import (
    Deferral,
    FileRecord,
    FileState,
    ProjectRecord,
    Snapshot,
    UpstreamFile,
)
from quarantine.policy import Policy
from quarantine.vetting.fetch_retry import refused_by_digest

_SHA256 = re.compile(r"[0-9a-f]{64}")
RELISTED_AFTER_MISMATCH = "relisted: the upstream listing changed after a digest mismatch"


@dataclass(frozen=True, slots=True)
class Observation:
    project: ProjectRecord
    new: tuple[FileRecord, ...]
    changed: tuple[tuple[FileRecord, FileRecord], ...]  # (as the ledger has it, as it should be)

    @property
    def alters_pages(self) -> bool:
        return bool(self.new or self.changed)


def observe(
    before: ProjectRecord | None,
    known: Mapping[str, FileRecord],
    snapshot: Snapshot,
    now: datetime,
    policy: Policy,
    frozen: str | None = None,
    evidence_for: Callable[[FileRecord], Sequence[Evidence]] = lambda _record: (),
    max_file_bytes: int | None = None,
) -> Observation:
    """``evidence_for`` gives each file's evidence (stored, and the malware feeds');
    ``max_file_bytes`` the largest file the mirror fetches (None: no limit)."""
    project = _project_after(before, snapshot, now)
    previous_look = before.last_look_ok if before is not None else None
    listed = {entry.filename: entry for entry in snapshot.files}
    new = [
        _first_sight(snapshot.name, entry, previous_look, now, policy)
        for name, entry in listed.items()
        if name not in known
    ]
    if before is None and policy.vets_on_download:
        new = _with_superseded_deferred(new, policy, now, max_file_bytes)
    updated = {name: _relisted(record, listed.get(name)) for name, record in known.items()}
    decided_new = tuple(
        _apply_decision(record, project, policy, now, frozen, evidence_for(record))
        for record in new
    )
    changed = []
    for name, record in known.items():
        candidate = updated[name]
        final = _apply_decision(candidate, project, policy, now, frozen, evidence_for(candidate))
        if final is not record and final != record:
            changed.append((record, final))
    return Observation(project, decided_new, tuple(changed))


def _project_after(
    before: ProjectRecord | None, snapshot: Snapshot, now: datetime
) -> ProjectRecord:
    if before is None:
        return ProjectRecord(
            name=snapshot.name,
            first_seen=now,
            last_look_ok=now,
            status=snapshot.status,
            status_reason=snapshot.status_reason,
            etag=None,
            serial=snapshot.serial,
            seq=0,
            versions=snapshot.versions,
        )
    return replace(
        before,
        last_look_ok=now,
        status=snapshot.status,
        status_reason=snapshot.status_reason,
        serial=snapshot.serial,
        versions=snapshot.versions,
    )


def _apply_decision(
    record: FileRecord,
    project: ProjectRecord,
    policy: Policy,
    now: datetime,
    frozen: str | None,
    evidence: Sequence[Evidence],
) -> FileRecord:
    verdict = decide(record, project, policy, now, frozen, evidence)
    if verdict.state == record.state and verdict.reason == record.reason:
        return record
    return record.with_state(verdict.state, verdict.reason)


def _with_superseded_deferred(
    records: list[FileRecord], policy: Policy, now: datetime, max_file_bytes: int | None
) -> list[FileRecord]:
    """At a project's first sight, the files of releases older than its newest cooled one
    (already cooled, unremarkable) are deferred: listed, vetted when first downloaded.
    Nearly every install takes the newest cooled release, and the 30-day window of a busy
    project is gigabytes. The newest cooled final release stays eager too: installers
    skip pre-releases unless asked."""
    cooled = [
        version
        for record in records
        if (version := _cooled_version(record, policy, now)) is not None and record.yanked is None
    ]
    finals = [version for version in cooled if not version.is_prerelease]
    newest = max(finals or cooled, default=None)
    if newest is None:
        return records
    return [
        replace(record, deferral=Deferral.UNTIL_DOWNLOAD)
        if _superseded(record, newest, policy, now, max_file_bytes)
        else record
        for record in records
    ]


def _cooled_version(record: FileRecord, policy: Policy, now: datetime) -> Version | None:
    """The release of a held file of the configured platforms whose cooling has ended."""
    if record.state is not FileState.HELD or policy.exclusion(record.filename) is not None:
        return None
    if record.anomaly is not None or now < hold_until(record, policy):
        return None
    return version_or_none(record.version)


def _superseded(
    record: FileRecord, newest: Version, policy: Policy, now: datetime, max_file_bytes: int | None
) -> bool:
    if record.established or record.size is None:
        return False  # without a size a page cannot list it before its bytes are fetched
    if max_file_bytes is not None and record.size > max_file_bytes:
        # Never fetched, so never vetted: a listing would invite downloads that all fail.
        return False
    version = _cooled_version(record, policy, now)
    return version is not None and version < newest


def _relisted(record: FileRecord, entry: UpstreamFile | None) -> FileRecord:
    if entry is None:
        return replace(record, listed=False) if record.listed else record
    if (
        record.listed
        and record.yanked == entry.yanked
        and (record.provenance_url or not entry.provenance_url)
        and (not record.sha256 or entry.sha256 == record.sha256)
    ):
        return record  # the usual case on a big project: nothing about this file moved
    updated = replace(
        record,
        listed=True,
        yanked=entry.yanked,
        provenance_url=record.provenance_url or entry.provenance_url,
    )
    if record.sha256 and entry.sha256 != record.sha256:
        # A filename is immutable upstream; a new digest means tampering. Keep the old one,
        # and never fetch again a file whose listing changed its digest before it was served.
        anomaly = f"digest_changed: upstream now declares {entry.sha256} for this filename"
        updated = replace(updated, anomaly=anomaly)
        if record.state is FileState.HELD or refused_by_digest(record):
            updated = updated.with_state(FileState.REJECTED, "digest_changed")
        return updated
    if refused_by_digest(record):
        # Its bytes did not match the listing, which lists the file again (same digest):
        # worth another fetch, checked as ever.
        updated = updated.with_state(FileState.HELD, RELISTED_AFTER_MISMATCH)
    return updated


def _first_sight(
    project: NormalizedName,
    entry: UpstreamFile,
    previous_look: datetime | None,
    now: datetime,
    policy: Policy,
) -> FileRecord:
    state, reason = FileState.HELD, "first seen"
    try:
        version = file_version(project, entry.filename)
        sha256 = _checked_sha256(entry.sha256)
    except UnservableFile as problem:
        version = ""
        sha256 = entry.sha256 if entry.sha256 and _SHA256.fullmatch(entry.sha256) else ""
        state, reason = FileState.REJECTED, str(problem)
    clock_start, anomaly = _clock_start(entry.upload_time, previous_look, now, policy)
    established = (
        anomaly is None
        and entry.upload_time is not None
        and now - entry.upload_time >= policy.cooling_for(project) + policy.vetting_window
    )
    return FileRecord(
        project=project,
        filename=entry.filename,
        version=version,
        sha256=sha256,
        size=entry.size,
        upload_time=entry.upload_time,
        first_seen=now,
        clock_start=clock_start,
        established=established,
        state=state,
        reason=reason,
        url=entry.url,
        requires_python=entry.requires_python,
        yanked=entry.yanked,
        core_metadata_sha256=entry.core_metadata_sha256,
        provenance_url=entry.provenance_url,
        provenance_sha256=None,
        stored=False,
        listed=True,
        anomaly=anomaly,
        state_version=0,
    )


def _clock_start(
    upload_time: datetime | None, previous_look: datetime | None, now: datetime, policy: Policy
) -> tuple[datetime, str | None]:
    """Where the hold is measured from, and why that is unusual if it is."""
    if upload_time is None:
        return now, "no upload-time from the upstream"
    if previous_look is not None and upload_time < previous_look - policy.backdate_tolerance:
        return now, (
            f"backdated: upload-time {format_timestamp(upload_time)} is older than the "
            f"previous upstream look at {format_timestamp(previous_look)}"
        )
    if upload_time > now + policy.future_tolerance:
        return upload_time, f"upload-time {format_timestamp(upload_time)} is in the future"
    return upload_time, None


def _checked_sha256(value: str | None) -> str:
    if value is None or not _SHA256.fullmatch(value):
        raise UnservableFile("no_trusted_hash: the upstream gave no valid sha256")
    return value
