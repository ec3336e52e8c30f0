"""The mirror's side of ``quarantine.source.ArtifactSource``: fetch bytes, ask upstream."""

from packaging.utils import NormalizedName

from mirror.artifacts import Artifacts
from mirror.catalog import Catalog
from mirror.errors import UpstreamGone, UpstreamRejected, UpstreamUnavailable
from quarantine.models import FileRecord
from quarantine.source import LookFailed


class MirrorSource:
    def __init__(self, artifacts: Artifacts, catalog: Catalog) -> None:
        self._artifacts = artifacts
        self._catalog = catalog

    async def fetch(self, record: FileRecord) -> FileRecord:
        return await self._artifacts.fetch(record)

    async def look(self, project: NormalizedName) -> None:
        try:
            await self._catalog.look(project)
        except UpstreamGone:
            return  # folded into the ledger as a takedown: nothing left to promote
        except (UpstreamUnavailable, UpstreamRejected) as error:
            raise LookFailed(error.reason) from error
