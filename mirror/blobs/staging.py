"""A download written to a local staging file while it is hashed: what every blob store's
writer shares. The store decides what ``persist`` does with the verified file (rename it
into place on disk, upload it to a bucket)."""

import hashlib
import os
from pathlib import Path

from mirror.blobs.interface import DigestMismatch, TooLarge, store_failure


class StagedWriter:
    def __init__(self, limit: int, descriptor: int, name: str, doing: str) -> None:
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0
        self._descriptor: int | None = descriptor  # locked: a sweep leaves it alone
        self._path = Path(name)
        self._doing = doing  # what a failed write was doing, for its message
        self._verified: str | None = None

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise TooLarge(f"more than {self._limit} bytes")
        self._hash.update(chunk)
        assert self._descriptor is not None
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._descriptor, view) :]
        except OSError as error:
            raise store_failure(error, self._doing) from error

    async def verify(self, expected_sha256: str) -> None:
        actual = self._hash.hexdigest()
        if actual != expected_sha256:
            await self.abort()
            raise DigestMismatch(expected_sha256, actual, self.size)
        self._verified = expected_sha256

    def open_verified(self) -> int | None:
        if self._verified is None or self._descriptor is None:
            raise RuntimeError("open_verified() needs verify() first, and comes before persist()")
        try:
            # Still valid after persist() renames or removes the staging file.
            return os.open(self._path, os.O_RDONLY)
        except OSError as error:
            raise store_failure(error, "reopening a verified download") from error

    async def abort(self) -> None:
        self._path.unlink(missing_ok=True)  # while still locked
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
