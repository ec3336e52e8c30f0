"""The mirror's side of ``quarantine.source.ArtifactSource``: fetch bytes, ask upstream."""

from pathlib import Path

from packaging.utils import NormalizedName

from mirror.blobs.interface import DigestMismatch, StoreUnavailable
from mirror.blobs.local_copies import LocalCopies
from mirror.errors import MirrorError, UpstreamGone, UpstreamRejected, UpstreamUnavailable
from mirror.files.artifacts import Artifacts
from mirror.simple.catalog import Catalog
from quarantine.models import FileRecord
from quarantine.source import FetchFailed, IntegrityFailure, LookFailed
from quarantine.vetting.fetch_retry import FailureKind


class MirrorSource:
    def __init__(
        self, artifacts: Artifacts, catalog: Catalog, copies: LocalCopies | None = None
    ) -> None:
        self._artifacts = artifacts
        self._catalog = catalog
        self._copies = copies  # for a store with no local files (S3): inspection reads these

    async def fetch(self, record: FileRecord) -> FileRecord:
        return await self._artifacts.fetch(record)

    async def local_copy(self, record: FileRecord) -> Path:
        try:
            path = await self._artifacts.ensure_file(record)
        except MirrorError as error:
            raise self._artifacts.failure(error, record) from error
        if path is not None:
            return path
        if self._copies is None:
            raise FetchFailed(
                "this blob store keeps no local files; inspection needs one", FailureKind.STORE
            )
        try:
            return await self._copies.path(record.sha256)
        except DigestMismatch as error:
            raise IntegrityFailure(f"the stored copy is damaged: {error.reason}") from error
        except StoreUnavailable as error:
            raise FetchFailed(error.reason, FailureKind.STORE) from error

    async def provenance(self, record: FileRecord) -> bytes | None:
        try:
            digest = await self._artifacts.ensure_provenance(record)
        except (UpstreamUnavailable, UpstreamRejected, StoreUnavailable) as error:
            raise FetchFailed(error.reason) from error
        except MirrorError as error:
            raise IntegrityFailure(error.reason) from error
        if digest is None:
            return None
        return await self._artifacts.read_blob(digest)

    async def look(self, project: NormalizedName) -> None:
        try:
            await self._catalog.look(project)
        except UpstreamGone:
            return  # folded into the ledger as a takedown: nothing left to promote
        except (UpstreamUnavailable, UpstreamRejected) as error:
            raise LookFailed(error.reason) from error
