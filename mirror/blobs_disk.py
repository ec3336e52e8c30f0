"""Blobs on local disk: ``blobs/ab/cd/<sha256>``, written via ``tmp/`` with fsync and rename.

Paths come only from validated digests, never from upstream URLs or request paths.
"""

import asyncio
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles

from mirror.blobs import DigestMismatch, TooLarge, store_failure

_DIGEST = re.compile(r"[0-9a-f]{64}")
CHUNK = 1024 * 1024


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class DiskBlobWriter:
    def __init__(self, store: "DiskBlobStore", limit: int) -> None:
        self._store = store
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0
        handle, name = store.temporary()
        self._path = Path(name)
        self._descriptor: int | None = handle
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
                written = os.write(self._descriptor, view)
                view = view[written:]
        except OSError as error:
            raise store_failure(error, "writing a download") from error

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
            return os.open(self._path, os.O_RDONLY)  # the rename in persist() leaves it valid
        except OSError as error:
            raise store_failure(error, "reopening a verified download") from error

    async def persist(self) -> None:
        if self._verified is None or self._descriptor is None:
            raise RuntimeError("persist() needs verify() first, once")
        descriptor, self._descriptor = self._descriptor, None
        # One thread hop for both syncs: neither may stall the event loop.
        try:
            await asyncio.to_thread(self._publish, descriptor, self._store.path_of(self._verified))
        except OSError as error:
            self._path.unlink(missing_ok=True)
            raise store_failure(error, "storing a verified download") from error

    def _publish(self, descriptor: int, target: Path) -> None:
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Same digest, same bytes: if another writer got there first, either copy is right.
        self._path.replace(target)
        _fsync_directory(target.parent)

    async def abort(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        self._path.unlink(missing_ok=True)


class DiskBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def sweep_temporary(self, older_than_seconds: float = 0) -> int:
        """Remove temp files a crash left behind; they were never reachable by any route."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for leftover in self._tmp.iterdir():
            if leftover.stat().st_mtime <= cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
        return removed

    def temporary(self) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(dir=self._tmp, prefix="incoming-")
        except OSError as error:
            raise store_failure(error, "creating a temporary file for a download") from error

    def path_of(self, sha256: str) -> Path:
        if not _DIGEST.fullmatch(sha256):
            raise ValueError("not a sha256 digest")
        return self._root / sha256[:2] / sha256[2:4] / sha256

    def writer(self, limit: int) -> DiskBlobWriter:
        return DiskBlobWriter(self, limit)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def local_path(self, sha256: str) -> Path | None:
        path = self.path_of(sha256)
        return path if path.is_file() else None

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        async with aiofiles.open(self.path_of(sha256), "rb") as handle:
            while chunk := await handle.read(CHUNK):
                yield chunk
