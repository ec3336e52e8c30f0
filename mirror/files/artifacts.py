"""Bytes from the upstream into the blob store: files, their metadata, their provenance.

Each digest is fetched by one download at a time (``downloads``); a file's bytes are
verified against the digest the listing declared before they are served or become a
blob, so nothing unverified is served. A request for a file is answered from its
verified bytes (a small file's in memory, a larger one's temporary file) while they are
still being made durable.
"""

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from yarl import URL

from mirror.blobs.interface import (
    BlobStore,
    DigestMismatch,
    read_whole,
)
from mirror.blobs.memory_cache import MAX_BLOB_BYTES
from mirror.errors import MirrorError
from mirror.files.downloads import Downloads, Early, VerifiedFile
from mirror.files.mapped_file import OpenFile
from mirror.upstream.client import UpstreamClient
from mirror.upstream.fetch_failure import failure_kind, failure_reason
from quarantine.clock import Clock, SystemClock
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord
from quarantine.source import FetchFailed, IntegrityFailure
from quarantine.vetting.fetch_retry import FailureKind

log = logging.getLogger(__name__)
ACTOR = "system:artifacts"
MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_PROVENANCE_BYTES = 4 * 1024 * 1024


class Artifacts:
    def __init__(
        self,
        ledger: Ledger,
        blobs: BlobStore,
        client: UpstreamClient,
        max_file_bytes: int,
        keep_bytes: int = MAX_BLOB_BYTES,
        clock: Clock | None = None,
    ) -> None:
        """``keep_bytes``: files up to this size are answered from memory once verified."""
        self._clock = clock or SystemClock()
        self._ledger = ledger
        self._blobs = blobs
        self._client = client
        self._max_file_bytes = max_file_bytes
        self._downloads = Downloads(blobs, client, max_file_bytes, keep_bytes)
        self._marking: set[asyncio.Future[None]] = set()  # marks of files sent before them

    @property
    def fetch_settings(self) -> str:
        """The settings that decide whether a file may be fetched at all: a file refused
        under other ones is tried again at once (``quarantine.vetting.fetch_retry``)."""
        return f"max_file_bytes={self._max_file_bytes} {self._client.guard.settings_key}"

    def failure(self, error: MirrorError, record: FileRecord) -> FetchFailed | IntegrityFailure:
        """The vetting side's word for a failed fetch of ``record``'s bytes."""
        kind = failure_kind(error, record.size, self._max_file_bytes)
        reason = failure_reason(error, self._max_file_bytes)
        if kind is FailureKind.DIGEST:
            return IntegrityFailure(reason)
        return FetchFailed(reason, kind, self.fetch_settings)

    def _file_url(self, record: FileRecord) -> URL:
        page = self._client.project_url(record.project)
        return self._client.guard.check(record.url, page).with_fragment(None)

    async def _stored(self, digest: str, url: Callable[[], URL], size: int | None) -> None:
        """The blob in the store, verified and durable, downloading it unless it is there."""
        if self._downloads.running(digest) is not None or not await self._blobs.contains(digest):
            await asyncio.shield(self._downloads.start(digest, url, size).stored)

    async def _verified(self, digest: str, url: Callable[[], URL], size: int | None) -> Early:
        """As soon as the blob's bytes are checked (still being stored): a small one's
        bytes, a larger one's verified file; None once it is stored, or when it already was
        (or the store keeps no local file)."""
        if self._downloads.running(digest) is None and await self._blobs.contains(digest):
            return None
        download = self._downloads.start(digest, url, size)
        early = await asyncio.shield(download.verified)
        if early is None:
            await asyncio.shield(download.stored)
        return early

    async def fetch(self, record: FileRecord) -> FileRecord:
        """The ArtifactSource step: the file's verified bytes, then metadata and provenance."""
        try:
            await self.ensure_file(record)
        except MirrorError as error:
            raise self.failure(error, record) from error
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
        if path is None or self._downloads.running(record.sha256) is not None:
            await self._stored(record.sha256, lambda: self._file_url(record), record.size)
            path = self._blobs.local_path(record.sha256)
        if not record.stored:
            await self._mark_stored(record)
        return path

    async def file_to_serve(self, record: FileRecord) -> bytes | OpenFile | Path | None:
        """What a request sends: as soon as the bytes are checked, a small file's bytes or a
        larger one's verified file; else the stored file's path (None: the store has no
        local path)."""
        digest = record.sha256
        path = None if self._downloads.running(digest) else self._blobs.local_path(digest)
        if path is not None:  # the common case: one stat
            if not record.stored:
                await self._mark_stored(record)
            return path
        early = await self._verified(digest, lambda: self._file_url(record), record.size)
        # The verified file may have been let go since (stored meanwhile): read the store.
        sendable = early.reopen() if isinstance(early, VerifiedFile) else early
        if sendable is None:
            return await self.ensure_file(record)
        if not record.stored:
            await self._mark_stored_later(record)
        return sendable

    async def _mark_stored_later(self, record: FileRecord) -> None:
        download = self._downloads.running(record.sha256)
        if download is None:
            await self._mark_stored(record)
            return

        def mark(stored: "asyncio.Task[None]") -> None:
            if stored.cancelled() or stored.exception() is not None:
                return  # not stored: the next request or promotion round fetches again
            self._start_marking(record)

        download.stored.add_done_callback(mark)

    def _start_marking(self, record: FileRecord) -> None:
        marking = asyncio.ensure_future(self._mark_stored(record))
        self._marking.add(marking)
        marking.add_done_callback(functools.partial(self._marked, record))

    def _marked(self, record: FileRecord, marking: "asyncio.Future[None]") -> None:
        self._marking.discard(marking)
        if not marking.cancelled() and marking.exception() is not None:
            # The mark is an optimisation; the next request retries it.
            log.error("could not mark %s as stored: %s", record.filename, marking.exception())

    async def _mark_stored(self, record: FileRecord) -> None:
        """The ledger told the bytes are stored, and their size when the upstream gave
        none: a page gives every file's size (PEP 700). In a thread: the write waits for
        the database's write lock, which the vetting process holds in turn (on the event
        loop it held every other request up to 180 ms in the first-use replay)."""
        size = None
        if record.size is None:
            path = self._blobs.local_path(record.sha256)
            with contextlib.suppress(OSError):
                size = path.stat().st_size if path is not None else None
        await asyncio.to_thread(self._ledger.mark_stored, record, size)

    def _metadata_url(self, record: FileRecord) -> URL:
        url = self._file_url(record)
        return url.with_path(url.path + ".metadata")

    async def ensure_metadata(self, record: FileRecord) -> Path | None:
        digest = record.core_metadata_sha256
        if digest is None:
            return None
        with self._metadata_checked(record):
            await self._stored(digest, lambda: self._metadata_url(record), None)
        return self._blobs.local_path(digest)

    async def metadata_to_serve(self, record: FileRecord) -> bytes | Path | None:
        """As ``file_to_serve``, for the file's core metadata (None also when it has none)."""
        digest = record.core_metadata_sha256
        if digest is None:
            return None
        with self._metadata_checked(record):
            early = await self._verified(digest, lambda: self._metadata_url(record), None)
            if isinstance(early, bytes):
                return early
            if early is not None:  # larger than memory keeps: sent from the store
                await self._stored(digest, lambda: self._metadata_url(record), None)
        return self._blobs.local_path(digest)

    @contextlib.contextmanager
    def _metadata_checked(self, record: FileRecord) -> Iterator[None]:
        """A metadata file whose bytes are not what the listing's digest says is never
        stored or sent, and the ledger stops offering it: pip and uv then read the
        metadata from the file itself, as for a file that has none."""
        try:
            yield
        except DigestMismatch as error:
            reason = f"metadata_mismatch: not the listed digest ({error.reason}); not offered"
            log.warning("%s: %s", record.filename, reason)
            self._ledger.drop_core_metadata(record, reason, ACTOR, self._clock.now())
            raise

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
        try:
            await writer.write(body)
            await writer.verify(digest)
            await writer.persist()
        except BaseException:
            await writer.abort()
            raise
        self._ledger.set_provenance(record, digest)
        current = self._ledger.file(record.project, record.filename)
        return current.provenance_sha256 if current else digest

    async def read_blob(self, sha256: str) -> bytes:
        """A small blob (provenance, metadata) read whole."""
        return await read_whole(self._blobs, sha256)
