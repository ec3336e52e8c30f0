"""A cold file is answered from its verified bytes while they are made durable.

The mirror runs as a real server with a real upstream; the artifacts under test use a
real on-disk blob store whose ``persist`` waits for the test's word, so the window
between "verified" and "durable" can be looked at instead of raced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from packaging.utils import NormalizedName

from mirror.blobs.disk import DiskBlobStore, DiskBlobWriter
from mirror.blobs.interface import DigestMismatch
from mirror.files.artifacts import Artifacts
from mirror.files.downloads import VerifiedFile
from mirror.files.mapped_file import OpenFile
from mirror.services import Services
from quarantine.models import FileRecord
from support.clock import FakeClock
from support.dists import Dist, build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

AGE_OLD = timedelta(days=200)
T = TypeVar("T")


class _GatedWriter:
    def __init__(self, inner: DiskBlobWriter, store: GatedStore) -> None:
        self._inner = inner
        self._store = store

    @property
    def size(self) -> int:
        return self._inner.size

    async def write(self, chunk: bytes) -> None:
        await self._inner.write(chunk)

    async def verify(self, expected_sha256: str) -> None:
        await self._inner.verify(expected_sha256)

    def open_verified(self) -> int | None:
        return self._inner.open_verified()

    async def persist(self) -> None:
        self._store.persisting += 1
        await self._store.gate.wait()
        if self._store.refuse:
            raise OSError("No space left on device (the test's)")
        await self._inner.persist()

    async def abort(self) -> None:
        await self._inner.abort()


class GatedStore(DiskBlobStore):
    """A real disk store whose writers publish only once ``gate`` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = asyncio.Event()
        self.refuse = False
        self.persisting = 0

    def writer(self, limit: int, digest: str | None = None) -> _GatedWriter:  # type: ignore[override]
        return _GatedWriter(super().writer(limit, digest), self)


def _look(mirror: MirrorServer, upstream: Upstream, dist: Dist, **options: object) -> FileRecord:
    upstream.add(dist.project, UpstreamFile(dist, mirror.clock.now() - AGE_OLD, **options))  # type: ignore[arg-type]
    services = mirror.services
    assert services is not None
    name = NormalizedName(dist.project)
    mirror.call(services.catalog.look(name))
    record = services.ledger.file(name, dist.filename)
    assert record is not None and not record.stored
    return record


def _artifacts(mirror: MirrorServer, store: GatedStore, keep_bytes: int) -> Artifacts:
    services = mirror.services
    assert services is not None
    return Artifacts(services.ledger, store, services.client, 10**8, keep_bytes=keep_bytes)


def _staged(
    mirror: MirrorServer,
    upstream: Upstream,
    tmp_path: Path,
    project: str,
    *,
    keep_bytes: int,
    refuse: bool = False,
    open_gate: bool = False,
) -> tuple[Dist, FileRecord, GatedStore, Artifacts]:
    """A looked-at established wheel, and artifacts over a gated store for it."""
    dist = build_wheel(project, "1.0")
    record = _look(mirror, upstream, dist)
    store = GatedStore(tmp_path / "blobs")
    store.refuse = refuse
    if open_gate:
        store.gate.set()
    return dist, record, store, _artifacts(mirror, store, keep_bytes=keep_bytes)


def _run(mirror: MirrorServer, scenario: Callable[[], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        return await scenario()

    result: T = mirror.call(wrapped())
    return result


def _file_requests(upstream: Upstream, dist: Dist) -> int:
    return len([p for p in upstream.requests_for("/") if p.endswith("/" + dist.filename)])


async def _settle() -> None:
    for _ in range(5):  # the stored mark runs in a callback once the blob is published
        await asyncio.sleep(0)


async def _stored_then_served_from_the_store(
    stored: asyncio.Future[Path | None],
    artifacts: Artifacts,
    services: Services,
    record: FileRecord,
    dist: Dist,
) -> None:
    """Once published: the blob holds the bytes, the record is marked, requests read it."""
    path = await stored
    assert path is not None and path.read_bytes() == dist.data
    await _settle()
    after = services.ledger.file(record.project, record.filename)
    assert after is not None and after.stored
    assert (await artifacts.file_to_serve(after)) == path


def test_a_small_file_is_answered_verified_before_it_is_durable_and_stored_after(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    dist = build_wheel("early-bird", "1.0")
    record = _look(mirror, upstream, dist)
    store = GatedStore(tmp_path / "blobs")
    artifacts = _artifacts(mirror, store, keep_bytes=len(dist.data))
    services = mirror.services
    assert services is not None

    async def scenario() -> None:
        stored = asyncio.ensure_future(artifacts.ensure_file(record))  # vetting's view
        first = await artifacts.file_to_serve(record)
        assert first == dist.data
        assert store.persisting == 1 and not store.exists(record.sha256)
        assert not stored.done()
        assert (await artifacts.file_to_serve(record)) == dist.data  # joins, no refetch
        assert not services.ledger.file(record.project, record.filename).stored  # type: ignore[union-attr]
        store.gate.set()
        await _stored_then_served_from_the_store(stored, artifacts, services, record, dist)

    _run(mirror, scenario)
    assert _file_requests(upstream, dist) == 1


def test_bytes_the_store_refuses_were_verified_but_are_not_kept_or_marked(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dist = build_wheel("early-full-disk", "1.0")
    record = _look(mirror, upstream, dist)
    store = GatedStore(tmp_path / "blobs")
    store.refuse = True
    artifacts = _artifacts(mirror, store, keep_bytes=len(dist.data))
    services = mirror.services
    assert services is not None

    async def scenario() -> None:
        assert (await artifacts.file_to_serve(record)) == dist.data
        store.gate.set()
        with pytest.raises(OSError, match="No space left"):
            await artifacts.ensure_file(record)  # joins the same download and hears why
        await _settle()
        assert not store.exists(record.sha256)
        assert not list((tmp_path / "blobs" / "tmp").iterdir())  # nothing half-written left
        current = services.ledger.file(record.project, record.filename)
        assert current is not None and not current.stored
        store.refuse = False
        path = await artifacts.ensure_file(record)  # the next caller fetches again
        assert path is not None and path.read_bytes() == dist.data

    with caplog.at_level(logging.WARNING, logger="mirror.files.downloads"):
        _run(mirror, scenario)
    assert _file_requests(upstream, dist) == 2
    assert any(
        "were not stored" in message and "No space left" in message for message in caplog.messages
    )


def _read_all(opened: OpenFile) -> bytes:
    return os.pread(opened.descriptor, opened.size + 1, 0)


def _is_open(descriptor: int) -> bool:
    try:
        os.fstat(descriptor)
    except OSError:
        return False
    return True


def test_a_large_file_is_sent_from_its_verified_file_before_it_is_durable(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path
) -> None:
    dist, record, store, artifacts = _staged(
        mirror,
        upstream,
        tmp_path,
        "late-bird",
        keep_bytes=0,  # too big to keep in memory
    )
    services = mirror.services
    assert services is not None

    async def scenario() -> None:
        stored = asyncio.ensure_future(artifacts.ensure_file(record))  # vetting's view
        first = await artifacts.file_to_serve(record)
        assert isinstance(first, OpenFile) and first.size == len(dist.data)
        assert _read_all(first) == dist.data
        assert store.persisting == 1 and not store.exists(record.sha256)
        assert not stored.done()
        second = await artifacts.file_to_serve(record)  # joins: a descriptor of its own
        assert isinstance(second, OpenFile) and second.descriptor != first.descriptor
        store.gate.set()
        await _stored_then_served_from_the_store(stored, artifacts, services, record, dist)
        # Renamed into the store meanwhile: what was taken still reads the same bytes.
        assert _read_all(first) == dist.data
        first.close()
        assert not _is_open(first.descriptor)
        kept_descriptor = second.descriptor
        del second  # dropped unsent (an error on the way): its descriptor is closed too
        assert not _is_open(kept_descriptor)

    _run(mirror, scenario)
    assert _file_requests(upstream, dist) == 1


def test_a_verified_file_let_go_before_a_request_took_it_is_read_from_the_store(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path
) -> None:
    dist, record, _store, artifacts = _staged(
        mirror, upstream, tmp_path, "late-comer", keep_bytes=0, open_gate=True
    )

    async def scenario() -> None:
        download = artifacts._downloads.start(
            record.sha256, lambda: artifacts._file_url(record), record.size
        )
        early = await asyncio.shield(download.verified)
        assert isinstance(early, VerifiedFile)
        await download.stored  # stored before this request's turn came: let go
        assert early.reopen() is None
        found = await artifacts.file_to_serve(record)
        assert isinstance(found, Path) and found.read_bytes() == dist.data

    _run(mirror, scenario)
    assert _file_requests(upstream, dist) == 1


def test_a_refused_store_leaves_taken_files_readable_and_nothing_behind(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path
) -> None:
    dist, record, store, artifacts = _staged(
        mirror, upstream, tmp_path, "late-full-disk", keep_bytes=0, refuse=True
    )

    async def scenario() -> None:
        taken = await artifacts.file_to_serve(record)
        assert isinstance(taken, OpenFile)
        store.gate.set()
        with pytest.raises(OSError, match="No space left"):
            await artifacts.ensure_file(record)
        assert not store.exists(record.sha256)
        assert not list((tmp_path / "blobs" / "tmp").iterdir())
        assert _read_all(taken) == dist.data  # the response under way finishes its bytes
        taken.close()

    _run(mirror, scenario)


def test_bytes_that_do_not_match_are_never_answered_early(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path
) -> None:
    dist = build_wheel("early-forged", "1.0")
    record = _look(mirror, upstream, dist, serve_bytes=dist.data[:-1] + b"!")
    store = GatedStore(tmp_path / "blobs")
    store.gate.set()
    artifacts = _artifacts(mirror, store, keep_bytes=len(dist.data))

    async def scenario() -> None:
        with pytest.raises(DigestMismatch):
            await artifacts.file_to_serve(record)
        assert store.persisting == 0 and not store.exists(record.sha256)
        assert not list((tmp_path / "blobs" / "tmp").iterdir())

    _run(mirror, scenario)


def test_the_stored_mark_is_written_off_the_event_loop(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark waits for the database's write lock, which the vetting process holds in
    turn: written on the event loop, it held every other request meanwhile."""
    dist, record, store, artifacts = _staged(
        mirror, upstream, tmp_path, "mark-aside", keep_bytes=10**6
    )
    services = mirror.services
    assert services is not None
    on_the_loop: list[bool] = []
    real = services.ledger.mark_stored

    def traced(*args: object) -> FileRecord:
        on_the_loop.append(threading.current_thread() is mirror.loop_thread)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(services.ledger, "mark_stored", traced)

    async def scenario() -> None:
        # Sent while still being stored: marked from the download's callback, later.
        assert (await artifacts.file_to_serve(record)) == dist.data
        store.gate.set()
        for _ in range(500):
            if on_the_loop:
                break
            await asyncio.sleep(0.01)
        # Stored, but the record in hand does not say so: marked on the way.
        assert isinstance(await artifacts.file_to_serve(record), Path)

    _run(mirror, scenario)
    assert on_the_loop == [False, False]


def test_a_file_record_not_in_memory_is_read_off_the_event_loop(
    mirror: MirrorServer, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file request checks the file's state; a record not in memory is read from
    the ledger, which beside a busy thread waits for the GIL: never on the event loop."""
    dist = build_wheel("read-aside", "1.0")
    record = _look(mirror, upstream, dist)
    services = mirror.services
    assert services is not None
    on_the_loop: list[bool] = []
    real = services.ledger.file_by_digest

    def traced(sha256: str, filename: str) -> FileRecord | None:
        on_the_loop.append(threading.current_thread() is mirror.loop_thread)
        return real(sha256, filename)

    monkeypatch.setattr(services.ledger, "file_by_digest", traced)
    found = mirror.call(services.catalog.file_record(record.sha256, record.filename))
    assert found == record
    assert on_the_loop == [False]
    assert mirror.call(services.catalog.file_record(record.sha256, record.filename)) == record
    assert on_the_loop == [False]  # kept in memory since
