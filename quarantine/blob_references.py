"""What the ledger says the blob store should hold (``lazaretto fsck`` checks it)."""

from dataclasses import dataclass

from packaging.utils import NormalizedName


@dataclass(frozen=True, slots=True)
class BlobReference:
    """One blob the ledger refers to: a file's bytes, its metadata file or its provenance."""

    sha256: str
    project: NormalizedName
    filename: str
    role: str  # "file", "metadata", "provenance"
    size: int | None  # the listed size, for a file's bytes
    stored: bool  # for a file's bytes: marked as in the store
