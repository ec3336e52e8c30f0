"""The blob store interface: bytes kept under their sha256, written atomically.

One implementation per file (``blobs_disk`` now; an S3-compatible store later). A blob
exists only once its bytes were verified against the digest it is stored under.
"""

import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from mirror.errors import MirrorError


class DigestMismatch(MirrorError):
    """The bytes written do not hash to the digest they were meant to be stored under."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"expected sha256 {expected}, got {actual} over {size} bytes")
        self.expected, self.actual, self.size = expected, actual, size


class TooLarge(MirrorError):
    """More bytes arrived than the declared size or the configured cap allows."""


class StoreUnavailable(MirrorError):
    """The store cannot take a write now (read-only, unwritable, out of descriptors): 503.
    Nothing is wrong with the bytes: a later try may succeed."""

    status = 503


class StoreFull(StoreUnavailable):
    """No space (or quota) left for a blob: 507 Insufficient Storage."""

    status = 507


_FULL = (errno.ENOSPC, errno.EDQUOT)


def store_failure(error: OSError, doing: str) -> StoreUnavailable:
    """The one-line error for an OSError met while ``doing`` something in the store."""
    cause = error.strerror or type(error).__name__
    if error.errno in _FULL:
        return StoreFull(f"the mirror's disk is full ({cause}) while {doing}; retry later")
    return StoreUnavailable(f"the mirror cannot write its blob store ({cause}) while {doing}")


class BlobWriter(Protocol):
    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    async def write(self, chunk: bytes) -> None: ...

    async def verify(self, expected_sha256: str) -> None:
        """Check the bytes written against the digest; DigestMismatch (and aborted) if not."""
        ...

    def open_verified(self) -> int | None:
        """After verify() and before persist(): a new read-only descriptor of the verified
        bytes, readable while persist() runs and after it (the caller closes it); None when
        the writer does not keep them in a local file."""
        ...

    async def persist(self) -> None:
        """Publish the verified blob atomically and durably under its digest."""
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self, limit: int, digest: str | None = None) -> BlobWriter:
        """A writer that refuses (TooLarge) to take more than ``limit`` bytes; ``digest``:
        the one its bytes are meant to have, if known (a leftover can then be reused)."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def local_path(self, sha256: str) -> Path | None:
        """A path the server can send from directly, when the store is on local disk."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]: ...
