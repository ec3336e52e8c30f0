"""The download log: which client fetched which file, when, with what installer.

One interface, one file per implementation (``sqlite`` and ``postgres``, in the ledger's
database). It answers the first question of an incident, "who installed it?": the exposure
of a project, a release or a set of files. The serving side writes to it in batches, off
the request path (``mirror.files.download_recorder``); nothing here is on a request's way.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from quarantine.clock import format_timestamp

# Kept, at most, per text field: a user agent is whatever a client says (hostile input).
FIELD_CHARS = 100


@dataclass(frozen=True, slots=True)
class Installer:
    """What an installer says about itself (pip's and uv's JSON user agent); "" unknown."""

    name: str = ""
    version: str = ""
    python: str = ""
    implementation: str = ""
    system: str = ""  # "Linux 6.8.0"
    distro: str = ""  # "Ubuntu 24.04"
    cpu: str = ""
    ci: bool = False


@dataclass(frozen=True, slots=True)
class Download:
    at: datetime
    project: NormalizedName
    version: str
    filename: str
    sha256: str
    client: str  # the client's address (a trusted proxy's X-Forwarded-For when behind one)
    identity: str | None  # the index token's name, when the request had one
    installer: Installer
    # The same file to the same client and installer within one second: one row, counted.
    count: int = 1


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """The downloads of one file by one client (address, identity, installer) in the window."""

    project: str
    version: str
    filename: str
    client: str
    identity: str | None
    installer: Installer
    downloads: int
    first: datetime
    last: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "project": self.project,
            "version": self.version,
            "filename": self.filename,
            "client": self.client,
            "identity": self.identity,
            "installer": self.installer.name,
            "installer_version": self.installer.version,
            "python": self.installer.python,
            "implementation": self.installer.implementation,
            "system": self.installer.system,
            "distro": self.installer.distro,
            "cpu": self.installer.cpu,
            "ci": self.installer.ci,
            "downloads": self.downloads,
            "first": format_timestamp(self.first),
            "last": format_timestamp(self.last),
        }


@dataclass(frozen=True, slots=True)
class ExposureSummary:
    """How far a set of files travelled: what a withdrawal notice says."""

    downloads: int
    clients: int  # distinct (address, identity) pairs
    first: datetime | None
    last: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "downloads": self.downloads,
            "clients": self.clients,
            "first": format_timestamp(self.first) if self.first else None,
            "last": format_timestamp(self.last) if self.last else None,
        }


NO_EXPOSURE = ExposureSummary(0, 0, None, None)


def summarize(rows: Sequence[ExposureRow]) -> ExposureSummary:
    if not rows:
        return NO_EXPOSURE
    return ExposureSummary(
        downloads=sum(row.downloads for row in rows),
        clients=len({(row.client, row.identity) for row in rows}),
        first=min(row.first for row in rows),
        last=max(row.last for row in rows),
    )


def same_version(stored: str, wanted: Version) -> bool:
    """Whether a logged version is the wanted one (PEP 440 equal; as spelled if invalid)."""
    try:
        return Version(stored) == wanted
    except InvalidVersion:
        return stored == str(wanted)


class DownloadLog(Protocol):
    def close(self) -> None: ...

    def write(self, downloads: Sequence[Download]) -> None:
        """Keep a batch of downloads, in one transaction."""
        ...

    def prune(self, before: datetime) -> int:
        """Forget downloads older than ``before`` (retention); returns how many."""
        ...

    def exposure(
        self, project: NormalizedName, version: str | None, since: datetime | None
    ) -> list[ExposureRow]:
        """Downloads of the project (or one release), grouped per file and client, the
        most recent first. ``version`` is compared as the ledger spells it."""
        ...

    def exposure_of(self, sha256s: Collection[str]) -> list[ExposureRow]:
        """The same for exact files (by digest), e.g. the files of a withdrawal."""
        ...
