"""Blobs in an S3-compatible bucket: ``<prefix>/blobs/ab/cd/<sha256>``, through obstore.

A download is hashed into a local staging file first; only once its digest matched is it
uploaded under its final key, with a SHA-256 checksum the store checks, so no object ever
holds bytes that were not verified. An upload never replaces an object (a blob already
there is the same blob, by its key). The staging file also answers the requests that
arrive while the upload runs. Keys come only from validated digests.

Every read is hashed as it streams, and its last chunk is held back until the digest
matched: an object changed behind the mirror's back ends its response short of its
Content-Length (which clients treat as a failed download), never as a complete wrong body.

Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, or a role the environment provides), never from the config file,
and never appear in a message.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import S3Store

from mirror.blobs.interface import (
    BlobBody,
    BlobMissing,
    StoreUnavailable,
    Swept,
    store_failure,
)
from mirror.blobs.s3_options import S3Options
from mirror.blobs.staging import StagedWriter

if TYPE_CHECKING:
    from obstore import GetResult

_DIGEST = re.compile(r"[0-9a-f]{64}")
# Yielded to the response as they come, up to this much at once: the default (10 MiB)
# would hold back the first bytes of every file.
CHUNK = 256 * 1024
# Parts (5 MiB each) of one multipart upload in flight at once: obstore's default of 12
# buffers 60 MiB per large upload, against a serving process's RSS goal of 150 MB. The
# upload runs after the requests were answered from the staging file, so speed matters less.
UPLOAD_PARTS_AT_ONCE = 2
# Up to this size an upload is one request with a "create only" precondition; a larger
# one is multipart (which takes no precondition), after a look for the object: a single
# request would hold the whole file in memory.
SINGLE_PART_MAX = 64 * 1024 * 1024


def _client(options: S3Options, credentials: tuple[str, str] | None) -> S3Store:
    config: dict[str, str] = {}
    if options.endpoint_url:
        config["endpoint"] = options.endpoint_url
    if options.region:
        config["region"] = options.region
    if credentials is not None:
        config["access_key_id"], config["secret_access_key"] = credentials
    config["checksum_algorithm"] = "sha256"  # the store checks each upload's bytes
    plain_http = bool(options.endpoint_url and options.endpoint_url.startswith("http://"))
    return S3Store(
        options.location.bucket,
        prefix=options.location.prefix or None,
        config=config,  # type: ignore[arg-type]  # a TypedDict built key by key
        client_options={
            "allow_http": plain_http,
            "connect_timeout": timedelta(seconds=options.connect_timeout_seconds),
            # Whole requests: a large file's stream to a slow client, one upload part.
            "timeout": timedelta(minutes=30),
        },
        retry_config={
            "max_retries": 3,
            "retry_timeout": timedelta(seconds=options.retry_timeout_seconds),
        },
    )


def _first_line(error: BaseException) -> str:
    """obstore's messages carry a debug dump after the first line; the URL it names is
    the bucket's, never a credential or a signature (nothing here is signed for a URL)."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:240]


class S3BlobWriter(StagedWriter):
    def __init__(self, store: "S3BlobStore", limit: int, digest: str | None) -> None:
        descriptor, name = store.staging_file(digest)
        super().__init__(limit, descriptor, name, "staging a download")
        self._store = store

    async def persist(self) -> None:
        if self._verified is None or self._descriptor is None:
            raise RuntimeError("persist() needs verify() first, once")
        try:
            # Same digest, same bytes: a concurrent upload of the same blob is as good.
            await self._store.upload(self._verified, self._path)
        finally:
            await self.abort()  # the staging file's work is done, uploaded or not


class S3BlobStore:
    def __init__(
        self,
        options: S3Options,
        staging: Path,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        """``staging``: a local directory for downloads being verified; ``credentials``:
        (access key id, secret), else the environment's."""
        self.options = options
        self._client = _client(options, credentials)
        self._staging = staging
        self._staging.mkdir(parents=True, exist_ok=True)
        # Digests seen stored by this process: blobs are immutable, so a second look at
        # one costs no request.
        self._known: set[str] = set()

    def _unavailable(self, error: BaseException, doing: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"the blob store {self.options.location} failed while {doing}: {_first_line(error)}"
        )

    def key_of(self, sha256: str) -> str:
        if not _DIGEST.fullmatch(sha256):
            raise ValueError("not a sha256 digest")
        return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def staging_file(self, digest: str | None) -> tuple[int, str]:
        """A new local file for a download, locked while its descriptor is open."""
        prefix = f"incoming-{digest}-" if digest and _DIGEST.fullmatch(digest) else "incoming-"
        try:
            descriptor, name = tempfile.mkstemp(dir=self._staging, prefix=prefix)
        except OSError as error:
            raise store_failure(error, "creating a staging file for a download") from error
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else holds it
        return descriptor, name

    async def upload(self, sha256: str, verified: Path) -> None:
        """Put a verified local file under the blob's key, never over an existing object
        (multipart when large)."""
        try:
            if verified.stat().st_size <= SINGLE_PART_MAX:
                await obstore.put_async(
                    self._client,
                    self.key_of(sha256),
                    verified,
                    mode="create",
                    use_multipart=False,
                )
            elif not await self.contains(sha256):
                await obstore.put_async(
                    self._client,
                    self.key_of(sha256),
                    verified,
                    use_multipart=True,
                    max_concurrency=UPLOAD_PARTS_AT_ONCE,
                )
        except AlreadyExistsError:
            pass  # stored under its digest already (a concurrent upload, an earlier run)
        except (BaseError, OSError) as error:
            raise self._unavailable(error, "storing a verified download") from error
        self._known.add(sha256)

    def writer(self, limit: int, digest: str | None = None) -> S3BlobWriter:
        return S3BlobWriter(self, limit, digest)

    async def contains(self, sha256: str) -> bool:
        if sha256 in self._known:
            return True
        try:
            await obstore.head_async(self._client, self.key_of(sha256))
        except FileNotFoundError:
            return False
        except (BaseError, OSError) as error:
            raise self._unavailable(error, "looking for a blob") from error
        self._known.add(sha256)
        return True

    def local_path(self, sha256: str) -> Path | None:
        return None

    async def open(self, sha256: str) -> BlobBody:
        try:
            result = await obstore.get_async(self._client, self.key_of(sha256))
        except FileNotFoundError as error:
            self._known.discard(sha256)
            raise BlobMissing(f"blob {sha256} is missing from {self.options.location}") from error
        except (BaseError, OSError) as error:
            raise self._unavailable(error, "opening a blob") from error
        self._known.add(sha256)
        return BlobBody(result.meta["size"], self._checked_chunks(sha256, result))

    async def _checked_chunks(self, sha256: str, result: "GetResult") -> AsyncIterator[bytes]:
        """The object's bytes, the last chunk only once they all hash to ``sha256``: a
        mismatch raises, so a response ends short of its length, never complete."""
        digest = hashlib.sha256()
        held: bytes | None = None
        try:
            async for chunk in result.stream(min_chunk_size=CHUNK):
                if held is not None:
                    yield held
                held = bytes(chunk)
                digest.update(held)
        except (BaseError, OSError) as error:  # the response has begun: it is cut short
            raise self._unavailable(error, "sending a blob") from error
        if digest.hexdigest() != sha256:
            self._known.discard(sha256)
            raise StoreUnavailable(
                f"blob {sha256} in the blob store {self.options.location} does not match its digest"
            )
        if held is not None:
            yield held

    async def presigned_url(self, sha256: str) -> str | None:
        if self.options.serve != "presigned":
            return None
        return await self.signed_url(sha256)

    async def signed_url(self, sha256: str) -> str | None:
        try:  # signed here, with no request to the store (a role's keys may need one)
            return await obstore.sign_async(
                self._client, "GET", self.key_of(sha256), self.options.presigned_expiry
            )
        except (BaseError, OSError) as error:
            raise self._unavailable(error, "signing a URL") from error

    async def delete(self, sha256: str) -> None:
        self._known.discard(sha256)
        try:
            await obstore.delete_async(self._client, self.key_of(sha256))
        except FileNotFoundError:
            return
        except (BaseError, OSError) as error:
            raise self._unavailable(error, "deleting a blob") from error

    def sweep_temporary(self) -> Swept:
        """Remove the staging files no live download holds (a crash or a kill left them;
        they were never uploaded: a later request downloads again)."""
        removed = 0
        for leftover in self._staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                removed += _remove_if_free(leftover)
        return Swept(removed=removed)


def _remove_if_free(leftover: Path) -> bool:
    descriptor = os.open(leftover, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live download holds it
        leftover.unlink(missing_ok=True)
        return True
    finally:
        os.close(descriptor)
