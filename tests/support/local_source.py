"""An ArtifactSource over files already on disk: vetting tests without an upstream.

The ledger, the vetter and the inspector stay real; only the bytes come from a folder
the test filled, so a test can count what the vetting side reads and does.
"""

from pathlib import Path

from packaging.utils import NormalizedName

from quarantine.models import FileRecord
from quarantine.source import FetchFailed


class LocalSource:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.copies: list[str] = []  # filenames handed out, in order
        self.provenances: dict[str, bytes] = {}  # filename: PEP 740 provenance object

    def add(self, filename: str, data: bytes, provenance: bytes | None = None) -> None:
        (self.folder / filename).write_bytes(data)
        if provenance is not None:
            self.provenances[filename] = provenance

    async def fetch(self, record: FileRecord) -> FileRecord:
        await self.local_copy(record)
        return record

    async def provenance(self, record: FileRecord) -> bytes | None:
        return self.provenances.get(record.filename)

    async def local_copy(self, record: FileRecord) -> Path:
        path = self.folder / record.filename
        if not path.exists():
            raise FetchFailed(f"{record.filename} is not in {self.folder}")
        self.copies.append(record.filename)
        return path

    async def look(self, project: NormalizedName) -> None:
        return None
