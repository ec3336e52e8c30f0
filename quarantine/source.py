"""What the vetting side needs from the outside world, declared here, built by ``mirror``."""

from pathlib import Path
from typing import Protocol

from packaging.utils import NormalizedName

from quarantine.errors import QuarantineError
from quarantine.models import FileRecord
from quarantine.vetting.fetch_retry import FailureKind


class FetchFailed(QuarantineError):
    """The bytes could not be fetched now; try again later.

    ``kind`` tells a transfer's failure from one our settings made (``config`` then names
    the fetch settings in force) and from our own store's, which no file is blamed for.
    """

    def __init__(
        self, reason: str, kind: FailureKind = FailureKind.TRANSIENT, config: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.config = config


class IntegrityFailure(QuarantineError):
    """The whole declared file arrived and its digest is not the listed one: refused and
    recorded, until the listing changes or an admin asks for another try."""


class LookFailed(QuarantineError):
    """The upstream could not be asked about a project now."""


class ArtifactSource(Protocol):
    async def fetch(self, record: FileRecord) -> FileRecord:
        """Put the file's verified bytes (and its metadata and provenance) in the store.

        Returns the updated record; raises IntegrityFailure or FetchFailed.
        """
        ...

    async def provenance(self, record: FileRecord) -> bytes | None:
        """The exact provenance bytes kept for this file (fetched once), or None."""
        ...

    async def local_copy(self, record: FileRecord) -> Path:
        """A local file holding the verified bytes, fetching them first when needed.

        Raises IntegrityFailure or FetchFailed like ``fetch``.
        """
        ...

    async def look(self, project: NormalizedName) -> None:
        """Ask the upstream about ``project`` now and fold the answer into the ledger.

        Raises LookFailed when the upstream cannot be asked.
        """
        ...
