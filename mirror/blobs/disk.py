"""Blobs on local disk: ``blobs/ab/cd/<sha256>``, written via ``tmp/`` with fsync and rename.

Paths come only from validated digests, never from upstream URLs or request paths.

Each temporary file is locked (``flock``) by the writer for as long as it is open, so a
sweep removes exactly what no live process holds: at start and stop, whatever the file's
age, with no window where a slow download of another process is taken for a leftover. A
temporary file is named for the digest it is meant to hold; a leftover that is complete
and hashes to that digest is published instead of fetched again.
"""

import asyncio
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles

from mirror.blobs.interface import (
    BlobBody,
    BlobMissing,
    Swept,
    store_failure,
)
from mirror.blobs.staging import StagedWriter

_DIGEST = re.compile(r"[0-9a-f]{64}")
CHUNK = 1024 * 1024


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class DiskBlobWriter(StagedWriter):
    def __init__(self, store: "DiskBlobStore", limit: int, digest: str | None = None) -> None:
        handle, name = store.temporary(digest)
        super().__init__(limit, handle, name, "writing a download")
        self._store = store

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
            _publish(descriptor, self._path, target)
        finally:
            os.close(descriptor)  # only now: the lock kept a sweep off until the rename


def _publish(descriptor: int, source: Path, target: Path) -> None:
    os.fsync(descriptor)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same digest, same bytes: if another writer got there first, either copy is right.
    source.replace(target)
    _fsync_directory(target.parent)


def _digest_in(name: str) -> str | None:
    parts = name.split("-")
    return parts[1] if len(parts) >= 3 and _DIGEST.fullmatch(parts[1]) else None


def _sha256_of(descriptor: int) -> str:
    digest = hashlib.sha256()
    while chunk := os.read(descriptor, CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


class DiskBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def sweep_temporary(self) -> Swept:
        """Settle the temp files no live process holds (a crash or a kill left them; no
        route ever reached them): publish a complete one that hashes to the digest it is
        named for, remove the rest. Blocking: run it in a thread."""
        removed = reused = 0
        for leftover in self._tmp.iterdir():
            outcome = self._settle(leftover)
            removed += outcome == "removed"
            reused += outcome == "reused"
        return Swept(removed, reused)

    def _settle(self, leftover: Path) -> str | None:
        try:
            descriptor = os.open(leftover, os.O_RDONLY)
        except FileNotFoundError:  # settled meanwhile by another process's sweep
            return None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a live download (this process's or another's) holds it
            digest = _digest_in(leftover.name)
            if digest and not self.exists(digest) and _sha256_of(descriptor) == digest:
                _publish(descriptor, leftover, self.path_of(digest))
                return "reused"
            leftover.unlink(missing_ok=True)
            return "removed"
        finally:
            os.close(descriptor)

    def temporary(self, digest: str | None = None) -> tuple[int, str]:
        """A new temp file, locked while its descriptor is open; named for ``digest``."""
        prefix = f"incoming-{digest}-" if digest and _DIGEST.fullmatch(digest) else "incoming-"
        try:
            descriptor, name = tempfile.mkstemp(dir=self._tmp, prefix=prefix)
        except OSError as error:
            raise store_failure(error, "creating a temporary file for a download") from error
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else holds it
        return descriptor, name

    def path_of(self, sha256: str) -> Path:
        if not _DIGEST.fullmatch(sha256):
            raise ValueError("not a sha256 digest")
        return self._root / sha256[:2] / sha256[2:4] / sha256

    def writer(self, limit: int, digest: str | None = None) -> DiskBlobWriter:
        return DiskBlobWriter(self, limit, digest)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def local_path(self, sha256: str) -> Path | None:
        path = self.path_of(sha256)
        return path if path.is_file() else None

    async def contains(self, sha256: str) -> bool:
        return self.exists(sha256)

    async def open(self, sha256: str) -> BlobBody:
        try:
            handle = await aiofiles.open(self.path_of(sha256), "rb")
        except FileNotFoundError as error:
            raise BlobMissing(f"blob {sha256} is missing from the mirror's disk") from error
        except OSError as error:
            raise store_failure(error, "opening a stored blob") from error
        size = os.fstat(handle.fileno()).st_size
        return BlobBody(size, _chunks(handle))

    async def presigned_url(self, sha256: str) -> str | None:
        return None  # sent by the mirror (or its front server) from the local path

    async def signed_url(self, sha256: str) -> str | None:
        return None  # nginx sends it from the local path

    async def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)


async def _chunks(handle: "aiofiles.threadpool.binary.AsyncBufferedReader") -> AsyncIterator[bytes]:
    try:
        while chunk := await handle.read(CHUNK):
            yield chunk
    finally:
        await handle.close()
