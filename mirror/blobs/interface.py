"""The blob store interface: bytes kept under their sha256, written atomically.

One implementation per file (``disk``, ``s3``). A blob exists only once its bytes were
verified against the digest it is stored under: no store ever writes an object under its
final name before that.
"""

import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
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


class BlobMissing(StoreUnavailable):
    """A blob the mirror recorded as stored is not in the store (removed behind its back)."""


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


@dataclass(frozen=True, slots=True)
class Swept:
    removed: int = 0  # partial, unverifiable or unneeded leftovers
    reused: int = 0  # complete leftovers that hash to their digest: published


@dataclass(frozen=True, slots=True)
class BlobBody:
    """An opened blob: its size is known before the first byte is sent, and opening it has
    already reached the store, so an unreachable store fails before a response starts."""

    size: int
    chunks: AsyncIterator[bytes]


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

    async def contains(self, sha256: str) -> bool:
        """Whether the blob is stored (StoreUnavailable when the store cannot tell)."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A path the server can send from directly, when the store is on local disk."""
        ...

    async def open(self, sha256: str) -> BlobBody:
        """The stored blob's bytes; BlobMissing if it is not there. A store that keeps no
        local file checks them as they stream: bytes that do not hash to ``sha256`` raise
        before the last chunk, so a response sending them ends short of its length."""
        ...

    async def presigned_url(self, sha256: str) -> str | None:
        """A short-lived URL a client may fetch the blob from directly, when the store is
        configured to hand those out; None: send the bytes through the mirror."""
        ...

    async def signed_url(self, sha256: str) -> str | None:
        """A GET URL of the blob that works for a short while, whatever ``presigned_url``
        hands out: for the server in front of the mirror (nginx, ``accel_redirect``) to
        fetch it from; None when the store keeps blobs on local disk (``local_path``)."""
        ...

    async def delete(self, sha256: str) -> None:
        """Remove the blob; nothing happens when it is not there."""
        ...

    def sweep_temporary(self) -> Swept:
        """Settle the temporary files of downloads no live process holds any more.
        Blocking: run it in a thread."""
        ...


async def read_whole(store: BlobStore, sha256: str) -> bytes:
    """A small blob (provenance, metadata) read into memory."""
    body = await store.open(sha256)
    return b"".join([chunk async for chunk in body.chunks])
