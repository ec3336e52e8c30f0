"""Bytes from the upstream into the blob store: files, their metadata, their provenance.

Each digest is fetched by one flight at a time; a file's bytes are verified against the
digest the listing declared before they become a blob, so nothing unverified is served.
"""

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from yarl import URL

from mirror.blobs import BlobStore, DigestMismatch, TooLarge
from mirror.errors import MirrorError, UpstreamRejected, UpstreamUnavailable
from mirror.upstream import UpstreamClient
from quarantine.clock import Clock
from quarantine.ledger import Ledger
from quarantine.models import FileRecord
from quarantine.source import FetchFailed, IntegrityFailure

log = logging.getLogger(__name__)
MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_PROVENANCE_BYTES = 4 * 1024 * 1024


class Artifacts:
    def __init__(
        self,
        ledger: Ledger,
        blobs: BlobStore,
        client: UpstreamClient,
        clock: Clock,
        max_file_bytes: int,
    ) -> None:
        self._ledger = ledger
        self._blobs = blobs
        self._client = client
        self._clock = clock
        self._max_file_bytes = max_file_bytes
        self._flights: dict[str, asyncio.Task[None]] = {}

    def _file_url(self, record: FileRecord) -> URL:
        page = self._client.project_url(record.project)
        return self._client.guard.check(record.url, page).with_fragment(None)

    async def _once(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once per key at a time; concurrent callers share the outcome."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            flight.add_done_callback(lambda _done: self._flights.pop(key, None))
        await asyncio.shield(flight)

    async def fetch(self, record: FileRecord) -> FileRecord:
        """The ArtifactSource step: the file's verified bytes, then metadata and provenance."""
        try:
            await self.ensure_file(record)
        except (UpstreamRejected, DigestMismatch, TooLarge) as error:
            raise IntegrityFailure(error.reason) from error
        except UpstreamUnavailable as error:
            raise FetchFailed(error.reason) from error
        current = self._ledger.file(record.project, record.filename) or record
        for step in (self.ensure_metadata, self.ensure_provenance):
            try:
                await step(current)
            except MirrorError as error:  # served later on demand; the file itself is fine
                log.warning("%s for %s: %s", step.__name__, record.filename, error.reason)
        return self._ledger.file(record.project, record.filename) or current

    async def ensure_file(self, record: FileRecord) -> Path | None:
        """The file's bytes in the store, verified; the local path when on disk."""
        path = self._blobs.local_path(record.sha256)  # one stat on the common, stored path
        if path is None and not self._blobs.exists(record.sha256):
            url = self._file_url(record)
            await self._once(record.sha256, lambda: self._download(url, record.sha256, record.size))
            path = self._blobs.local_path(record.sha256)
        if not record.stored:
            self._ledger.mark_stored(record)
        return path

    async def _download(self, url: URL, sha256: str, size: int | None) -> None:
        limit = min(size, self._max_file_bytes) if size is not None else self._max_file_bytes
        writer = self._blobs.writer(limit)
        try:
            await self._client.download(url, writer, size)
            await writer.commit(sha256)
        except BaseException:
            await writer.abort()
            raise

    async def ensure_metadata(self, record: FileRecord) -> Path | None:
        digest = record.core_metadata_sha256
        if digest is None:
            return None
        if not self._blobs.exists(digest):
            url = self._file_url(record)
            metadata_url = url.with_path(url.path + ".metadata")
            await self._once(digest, lambda: self._download(metadata_url, digest, None))
        return self._blobs.local_path(digest)

    async def ensure_provenance(self, record: FileRecord) -> str | None:
        """The digest of the exact provenance bytes kept for this file, fetched once."""
        if record.provenance_sha256 is not None or record.provenance_url is None:
            return record.provenance_sha256
        url = self._client.guard.check(
            record.provenance_url, self._client.project_url(record.project)
        )
        body = await self._client.fetch_small(url, MAX_PROVENANCE_BYTES)
        if body is None:
            return None
        digest = hashlib.sha256(body).hexdigest()
        writer = self._blobs.writer(len(body))
        await writer.write(body)
        await writer.commit(digest)
        self._ledger.set_provenance(record, digest)
        current = self._ledger.file(record.project, record.filename)
        return current.provenance_sha256 if current else digest

    async def read_blob(self, sha256: str) -> bytes:
        """A small blob (provenance, metadata) read whole."""
        parts = [chunk async for chunk in self._blobs.read(sha256)]
        return b"".join(parts)
