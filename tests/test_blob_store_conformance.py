"""One suite for every blob store: the disk store, and the S3 store on a real SeaweedFS.

Each method of the interface, as a caller relies on it: only verified bytes become a blob
(a refused or abandoned write leaves no object), reads give the stored bytes and their
size before the first byte, deletes are idempotent, two writers of one digest (two
replicas) end with one correct blob, and a sweep removes what no live download holds.
"""

import asyncio
import hashlib
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import obstore
import pytest

from mirror.blobs.disk import DiskBlobStore
from mirror.blobs.interface import (
    BlobMissing,
    BlobStore,
    BlobWriter,
    DigestMismatch,
    StoreUnavailable,
    TooLarge,
    read_whole,
)
from mirror.blobs.s3 import S3BlobStore
from mirror.blobs.s3_options import S3Location, S3Options
from support.process import free_port
from support.s3 import ACCESS_KEY, SECRET_KEY, SeaweedS3

DATA = os.urandom(200_000)
DIGEST = hashlib.sha256(DATA).hexdigest()
# Over obstore's 5 MiB part size: the upload is a multipart one.
LARGE = os.urandom(12 * 1024 * 1024 + 17)
LARGE_DIGEST = hashlib.sha256(LARGE).hexdigest()


@dataclass
class Backend:
    """A store under test, a second instance on the same storage (another replica), and
    what is stored there, seen from outside the store."""

    kind: str
    store: BlobStore
    replica: BlobStore
    staging: Path
    s3: SeaweedS3 | None = None

    def objects(self) -> list[str]:
        if isinstance(self.store, DiskBlobStore):
            root = self.staging.parent
            stored = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
            return sorted(str(p) for p in stored if p.parts[0] != "tmp")
        assert isinstance(self.store, S3BlobStore)
        listed = obstore.list(self.store._client).collect()
        return sorted(item["path"] for item in listed)

    def staged(self) -> list[Path]:
        return sorted(self.staging.iterdir())


@pytest.fixture(params=["disk", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "disk":
        root = tmp_path / "blobs"
        yield Backend("disk", DiskBlobStore(root), DiskBlobStore(root), root / "tmp")
        return
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    options = server.options()
    credentials = (ACCESS_KEY, SECRET_KEY)
    staging = tmp_path / "staging"
    store = S3BlobStore(options, staging, credentials)
    replica = S3BlobStore(options, tmp_path / "replica-staging", credentials)
    yield Backend("s3", store, replica, staging, server)


async def _put(store: BlobStore, data: bytes, digest: str) -> None:
    writer = store.writer(len(data), digest)
    try:
        for start in range(0, len(data), 64 * 1024):
            await writer.write(data[start : start + 64 * 1024])
        await writer.verify(digest)
        await writer.persist()
    except BaseException:
        await writer.abort()
        raise


def test_a_verified_write_is_stored_and_read_back_with_its_size(backend: Backend) -> None:
    async def run() -> None:
        assert not await backend.store.contains(DIGEST)
        await _put(backend.store, DATA, DIGEST)
        assert await backend.store.contains(DIGEST)
        assert await backend.replica.contains(DIGEST)  # seen by another instance too
        body = await backend.replica.open(DIGEST)
        assert body.size == len(DATA)
        assert b"".join([chunk async for chunk in body.chunks]) == DATA
        assert await read_whole(backend.store, DIGEST) == DATA

    asyncio.run(run())
    assert backend.staged() == []
    local = backend.store.local_path(DIGEST)
    if backend.kind == "disk":
        assert local is not None and local.read_bytes() == DATA
        assert backend.objects() == [f"{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}"]
    else:
        assert local is None
        assert backend.objects() == [f"blobs/{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}"]


def test_a_large_blob_goes_up_in_parts_and_comes_back_whole(backend: Backend) -> None:
    async def run() -> None:
        await _put(backend.store, LARGE, LARGE_DIGEST)
        body = await backend.replica.open(LARGE_DIGEST)
        assert body.size == len(LARGE)
        digest = hashlib.sha256()
        async for chunk in body.chunks:
            digest.update(chunk)
        assert digest.hexdigest() == LARGE_DIGEST

    asyncio.run(run())


def test_bytes_that_do_not_match_their_digest_leave_no_object(backend: Backend) -> None:
    wrong = DATA[:-1] + bytes([DATA[-1] ^ 1])

    async def run() -> None:
        with pytest.raises(DigestMismatch):
            await _put(backend.store, wrong, DIGEST)
        assert not await backend.store.contains(DIGEST)
        with pytest.raises(BlobMissing):
            await backend.store.open(DIGEST)

    asyncio.run(run())
    assert backend.objects() == [] and backend.staged() == []


def test_more_bytes_than_the_limit_are_refused_and_leave_nothing(backend: Backend) -> None:
    async def run() -> None:
        writer = backend.store.writer(len(DATA) - 1, DIGEST)
        with pytest.raises(TooLarge):
            await writer.write(DATA)
        await writer.abort()

    asyncio.run(run())
    assert backend.objects() == [] and backend.staged() == []


def test_an_abandoned_write_leaves_nothing(backend: Backend) -> None:
    async def run() -> None:
        writer = backend.store.writer(len(DATA), DIGEST)
        await writer.write(DATA[:1000])
        await writer.abort()
        await writer.abort()  # twice is harmless: cleanup paths may overlap

    asyncio.run(run())
    assert backend.objects() == [] and backend.staged() == []


def test_the_verified_bytes_stay_readable_while_and_after_they_are_stored(
    backend: Backend,
) -> None:
    async def run() -> None:
        writer = backend.store.writer(len(DATA), DIGEST)
        await writer.write(DATA)
        with pytest.raises(RuntimeError):
            writer.open_verified()  # never before the digest matched
        await writer.verify(DIGEST)
        descriptor = writer.open_verified()
        assert descriptor is not None  # both stores stage the bytes in a local file
        try:
            await writer.persist()
            assert os.pread(descriptor, len(DATA) + 1, 0) == DATA
        finally:
            os.close(descriptor)

    asyncio.run(run())


def test_two_replicas_storing_one_digest_at_once_end_with_one_correct_blob(
    backend: Backend,
) -> None:
    async def run() -> None:
        await asyncio.gather(
            *(_put(store, DATA, DIGEST) for store in (backend.store, backend.replica) * 2)
        )
        assert await read_whole(backend.store, DIGEST) == DATA

    asyncio.run(run())
    assert len(backend.objects()) == 1
    assert backend.staged() == []


def test_delete_removes_a_blob_and_is_idempotent(backend: Backend) -> None:
    async def run() -> None:
        await _put(backend.store, DATA, DIGEST)
        await backend.replica.contains(DIGEST)
        await backend.store.delete(DIGEST)
        assert not await backend.store.contains(DIGEST)
        with pytest.raises(BlobMissing):
            await backend.store.open(DIGEST)
        await backend.store.delete(DIGEST)

    asyncio.run(run())
    assert backend.objects() == []


def test_a_sweep_removes_a_dead_downloads_file_and_keeps_a_live_one(backend: Backend) -> None:
    async def run() -> tuple[BlobWriter, BlobWriter]:
        live, dead = backend.store.writer(len(DATA), DIGEST), backend.store.writer(10, None)
        await live.write(DATA[:1000])
        await dead.write(b"partial")
        return live, dead

    live, dead = asyncio.run(run())
    # A killed process lets go of its file without removing it: close only the lock.
    os.close(dead._descriptor)  # type: ignore[attr-defined]
    dead._descriptor = None  # type: ignore[attr-defined]
    assert len(backend.staged()) == 2
    swept = backend.store.sweep_temporary()
    assert swept.removed == 1
    (kept,) = backend.staged()
    assert kept.name.startswith(f"incoming-{DIGEST}-")
    asyncio.run(live.abort())
    assert backend.staged() == [] and backend.objects() == []


def test_only_a_presigning_store_hands_out_urls_and_they_fetch_the_blob(
    backend: Backend, tmp_path: Path
) -> None:
    asyncio.run(_put(backend.store, DATA, DIGEST))
    assert asyncio.run(backend.store.presigned_url(DIGEST)) is None
    if backend.s3 is None:
        return
    assert isinstance(backend.store, S3BlobStore)
    presigning = S3BlobStore(
        S3Options(backend.store.options.location, backend.s3.endpoint, "us-east-1", "presigned"),
        tmp_path / "presigning",
        (ACCESS_KEY, SECRET_KEY),
    )
    url = asyncio.run(presigning.presigned_url(DIGEST))
    assert url is not None and "X-Amz-Expires=300" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == DATA


def test_a_signed_url_for_the_server_in_front_whatever_the_serve_mode(backend: Backend) -> None:
    """What nginx fetches a bucket's blob with (accel_redirect); a disk blob has its path."""
    asyncio.run(_put(backend.store, DATA, DIGEST))
    url = asyncio.run(backend.store.signed_url(DIGEST))
    if backend.s3 is None:
        assert url is None and backend.store.local_path(DIGEST) is not None
        return
    assert url is not None and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == DATA


def test_an_unreachable_s3_store_is_a_store_unavailable_error(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = S3Options(
        S3Location("lazaretto-tests", "gone"), closed, "us-east-1", retry_timeout_seconds=1.0
    )
    store = S3BlobStore(options, tmp_path / "staging", (ACCESS_KEY, SECRET_KEY))

    async def run() -> None:
        for step in (store.contains(DIGEST), store.open(DIGEST), store.delete(DIGEST)):
            with pytest.raises(StoreUnavailable) as caught:
                await step
            assert "s3://lazaretto-tests/gone" in caught.value.reason
            assert "\n" not in caught.value.reason and SECRET_KEY not in caught.value.reason
        writer = store.writer(len(DATA), DIGEST)
        await writer.write(DATA)
        await writer.verify(DIGEST)
        with pytest.raises(StoreUnavailable):
            await writer.persist()

    asyncio.run(run())
    assert list((tmp_path / "staging").iterdir()) == []
