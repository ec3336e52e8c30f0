"""One download per digest at a time, answered in two steps: verified, then stored.

A request needs only the verified bytes: a small file's from memory, a larger one's from
its verified temporary file. Making them durable (fsync, rename, fsync of the directory;
a 17 MB file's fsync is a third of its cold download) goes on after the answer begins.
Vetting and the CLI wait for the stored blob. A download stays registered until it is
stored, so a request in between joins it instead of fetching again, and a blob exists in
the store only once verified and durable.
"""

import asyncio
import logging
import os
from collections.abc import Callable

from yarl import URL

from mirror.blobs.interface import BlobStore, BlobWriter, DigestMismatch
from mirror.errors import UpstreamUnavailable
from mirror.files.mapped_file import OpenFile
from mirror.upstream.client import UpstreamClient

log = logging.getLogger(__name__)


class VerifiedFile:
    """A large file's verified bytes in a local file, sendable while they are made durable.

    The download holds the file open until its blob is stored (or refused); each response
    takes a descriptor of its own.
    """

    def __init__(self, descriptor: int, size: int) -> None:
        self.size = size
        self._descriptor: int | None = descriptor

    def reopen(self) -> OpenFile | None:
        """A descriptor for one response; None once the download let go of the file (the
        stored blob is read then)."""
        if self._descriptor is None:
            return None
        return OpenFile(os.dup(self._descriptor), self.size)

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


Early = bytes | VerifiedFile | None  # what a request can send once the digest matched


class Download:
    stored: "asyncio.Task[None]"  # done once the blob is in the store (set by ``start``)

    def __init__(self) -> None:
        # Set once the digest matched: the bytes if small enough to keep, else the verified
        # file if the writer has it locally, else None (wait for ``stored``).
        self.verified: asyncio.Future[Early] = asyncio.get_running_loop().create_future()
        self.verified.add_done_callback(_retrieve)  # a failure may have nobody waiting early

    def fail(self, error: BaseException) -> None:
        if self.verified.done():
            return
        if isinstance(error, asyncio.CancelledError):
            error = UpstreamUnavailable("the download was stopped before it was verified")
        self.verified.set_exception(error)


async def _verified(writer: "_Keeping", digest: str, whole: bool) -> None:
    """The body checked against its digest. When neither the listing nor the response
    gave its length, a body ended by the connection's close may have been cut short: its
    mismatch says the transfer failed, not that the upstream's bytes are wrong."""
    try:
        await writer.verify(digest)
    except DigestMismatch as mismatch:
        if whole:
            raise
        raise UpstreamUnavailable(
            f"file transfer ended without a length after {mismatch.size} bytes that do not "
            "match the listed digest: maybe cut short"
        ) from mismatch


def _retrieve(future: "asyncio.Future[Early]") -> None:
    if not future.cancelled():
        future.exception()


class _Keeping:
    """The store's writer, keeping a copy of the bytes while they stay small."""

    def __init__(self, writer: BlobWriter, keep_bytes: int) -> None:
        self._writer = writer
        self._keep_bytes = keep_bytes
        self._parts: list[bytes] | None = []

    @property
    def size(self) -> int:
        return self._writer.size

    async def write(self, chunk: bytes) -> None:
        await self._writer.write(chunk)
        if self._parts is not None:
            if self._writer.size <= self._keep_bytes:
                self._parts.append(chunk)
            else:
                self._parts = None

    def kept(self) -> bytes | None:
        return None if self._parts is None else b"".join(self._parts)

    async def verify(self, expected_sha256: str) -> None:
        await self._writer.verify(expected_sha256)

    def early(self) -> Early:
        """After verify(): what a request can be sent before the blob is stored."""
        kept = self.kept()
        if kept is not None:
            return kept
        descriptor = self._writer.open_verified()
        return None if descriptor is None else VerifiedFile(descriptor, self._writer.size)

    def open_verified(self) -> int | None:
        return self._writer.open_verified()

    async def persist(self) -> None:
        await self._writer.persist()

    async def abort(self) -> None:
        await self._writer.abort()


class Downloads:
    def __init__(
        self, blobs: BlobStore, client: UpstreamClient, max_file_bytes: int, keep_bytes: int
    ) -> None:
        self._blobs = blobs
        self._client = client
        self._max_file_bytes = max_file_bytes
        self._keep_bytes = keep_bytes
        self._running: dict[str, Download] = {}

    def running(self, digest: str) -> Download | None:
        return self._running.get(digest)

    def start(self, digest: str, url: Callable[[], URL], size: int | None) -> Download:
        """The digest's download, joined if one is running; ``url`` is asked only to start."""
        download = self._running.get(digest)
        if download is None:
            download = Download()
            task = asyncio.ensure_future(self._run(url(), digest, size, download))
            download.stored = task
            self._running[digest] = download
            task.add_done_callback(lambda done: self._finished(digest, download, done))
        return download

    def _finished(self, digest: str, download: Download, task: "asyncio.Task[None]") -> None:
        self._running.pop(digest, None)
        if task.cancelled() or task.exception() is None:
            return
        if download.verified.done() and download.verified.exception() is None:
            # Already answered from memory; nobody else will hear the store refused it.
            log.warning("verified bytes of %s were not stored: %s", digest, task.exception())

    async def _run(self, url: URL, digest: str, size: int | None, download: Download) -> None:
        limit = min(size, self._max_file_bytes) if size is not None else self._max_file_bytes
        writer: _Keeping | None = None
        early: Early = None
        try:
            # Inside the try: a temp file that cannot be made (EMFILE, EROFS, EACCES) must
            # release the waiters too, or their requests hang for good.
            writer = _Keeping(self._blobs.writer(limit, digest), self._keep_bytes)
            framed = await self._client.download(url, writer, size)
            await _verified(writer, digest, framed or size is not None)
            early = writer.early()
            download.verified.set_result(early)
            await writer.persist()
        except BaseException as error:
            download.fail(error)  # first: cleaning up below may fail as well
            if writer is not None:
                await writer.abort()
            raise
        finally:
            if isinstance(early, VerifiedFile):
                early.close()  # the responses that took it keep their own descriptors
