"""The records the vetting side reasons about. Frozen: a change is a new record."""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

from packaging.utils import NormalizedName


class FileState(StrEnum):
    HELD = "held"  # cooling, or waiting for its bytes, its vetting or a fresh upstream look
    REVIEW = "review"  # a check asks a person to decide; never promoted by time alone
    PROMOTED = "promoted"  # listed and served
    REJECTED = "rejected"  # never served: bad hash, bad name, removed or yanked while held
    BLOCKED = "blocked"  # condemned before promotion: malware advisory, a blocking finding
    WITHDRAWN = "withdrawn"  # was promoted, taken back (takedown, advisory, admin): 410


# States only a person can move a file out of.
FINAL_STATES = frozenset({FileState.REJECTED, FileState.BLOCKED, FileState.WITHDRAWN})


class Deferral(StrEnum):
    """A superseded release's file, listed without being vetted until a client asks for it."""

    UNTIL_DOWNLOAD = "until-download"  # listed; not fetched nor vetted until downloaded
    DOWNLOADED = "downloaded"  # a client asked for its bytes: vetted now, at demand rank


class ProjectStatus(StrEnum):
    """PEP 792 markers, plus ``removed`` for a project the upstream no longer has."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    DEPRECATED = "deprecated"
    QUARANTINED = "quarantined"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class UpstreamFile:
    """One file entry of an upstream project page, already validated for shape."""

    filename: str
    url: str
    sha256: str | None
    size: int | None
    upload_time: datetime | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; "": yanked without a reason
    core_metadata_sha256: str | None
    provenance_url: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the upstream said about one project in one successful look."""

    name: NormalizedName
    files: tuple[UpstreamFile, ...]
    status: ProjectStatus
    status_reason: str | None
    serial: int | None
    # PEP 700 ``versions``, spelled as the upstream spells them (None: it gave none)
    versions: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    name: NormalizedName
    first_seen: datetime
    last_look_ok: datetime | None
    status: ProjectStatus
    status_reason: str | None
    etag: str | None
    serial: int | None
    seq: int  # bumped on every change that alters what the project's pages show
    versions: tuple[str, ...] | None = None  # the upstream's, from its last full answer


@dataclass(frozen=True, slots=True)
class FileRecord:
    project: NormalizedName
    filename: str
    version: str
    sha256: str
    size: int | None
    upload_time: datetime | None
    first_seen: datetime
    clock_start: datetime  # the hold is measured from here
    established: bool  # already past cooling + vetting window when first seen
    state: FileState
    reason: str
    url: str
    requires_python: str | None
    yanked: str | None
    core_metadata_sha256: str | None
    provenance_url: str | None
    provenance_sha256: str | None
    stored: bool  # the blob store holds bytes verified against sha256
    listed: bool  # present in the latest upstream look
    anomaly: str | None
    state_version: int
    # Set at the project's first sight on a file of a superseded release (quarantine.observe)
    deferral: Deferral | None = None

    def with_state(self, state: FileState, reason: str) -> "FileRecord":
        """This record in another state; a third of ``dataclasses.replace``'s cost, which
        every file of a cold miss pays."""
        values = list(_file_record_values(self))
        values[_STATE_AT], values[_REASON_AT] = state, reason
        return FileRecord(*values)


_FILE_RECORD_FIELDS = [item.name for item in fields(FileRecord)]
_file_record_values = attrgetter(*_FILE_RECORD_FIELDS)
_STATE_AT = _FILE_RECORD_FIELDS.index("state")
_REASON_AT = _FILE_RECORD_FIELDS.index("reason")


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded state change: what, who, why and when."""

    at: datetime
    project: NormalizedName
    filename: str | None
    sha256: str | None
    from_state: str | None
    to_state: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """The policy document a mirror process recorded in the ledger, with who and when."""

    document: Mapping[str, Any]
    actor: str
    at: datetime
