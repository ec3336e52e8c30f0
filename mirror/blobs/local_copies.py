"""Local copies of stored blobs for a store with no local files (S3), for inspection.

The inspector reads archives from a path; an object store has none. The copy is made
from the store (verified bytes only ever reach it), checked against its digest again on
the way down, and kept under its digest so a second look at the same file reuses it.
Copies older than an hour are removed as new ones are made: an inspection is bounded by
``inspection_timeout_seconds`` (10 minutes by default), so none is still being read.
"""

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

from mirror.blobs.interface import BlobStore, DigestMismatch

KEEP_SECONDS = 3600.0


class LocalCopies:
    def __init__(self, store: BlobStore, directory: Path) -> None:
        self._store = store
        self._directory = directory

    async def path(self, sha256: str) -> Path:
        """A local file with the blob's bytes; StoreUnavailable (or BlobMissing) when the
        store cannot give them, DigestMismatch when what it gives is not that blob."""
        kept = self._directory / sha256
        if kept.exists():
            return kept
        await asyncio.to_thread(self._directory.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._remove_old)
        body = await self._store.open(sha256)
        descriptor, name = tempfile.mkstemp(dir=self._directory, prefix=".partial-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(descriptor, "wb") as output:
                async for chunk in body.chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(output.write, chunk)
            if digest.hexdigest() != sha256:
                raise DigestMismatch(sha256, digest.hexdigest(), body.size)
            Path(name).replace(kept)
        finally:
            Path(name).unlink(missing_ok=True)
        return kept

    def _remove_old(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        for entry in self._directory.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
            except FileNotFoundError:
                continue  # another process's cleanup got there first
