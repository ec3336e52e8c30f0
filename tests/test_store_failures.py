"""When the blob store cannot take a download, every waiting request hears so in one line.

A temp file that cannot be created (here: ``blobs/tmp`` replaced by a file, which fails
even for root) answers 503; a full disk (here: writes to /dev/full, the kernel's own
ENOSPC) answers 507. Before, the first hung every request for the file for good and the
second was a bare 500. Refusals of the file itself name their true reason.
"""

from __future__ import annotations

import http.client
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from packaging.utils import NormalizedName

from support.clock import FakeClock
from support.dists import Dist, build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

AGE_OLD = timedelta(days=200)
# Long enough for any honest answer; a request that hangs (the bug) runs into it.
HANG_SECONDS = 30


def _get(mirror: MirrorServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=HANG_SECONDS)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _established(mirror: MirrorServer, upstream: Upstream, dist: Dist, **options: object) -> str:
    """An established file the mirror has listed: its first request downloads it."""
    upstream.add(dist.project, UpstreamFile(dist, mirror.clock.now() - AGE_OLD, **options))  # type: ignore[arg-type]
    status, _ = _get(mirror, f"/simple/{dist.project}/")
    assert status == 200
    return f"/files/{dist.sha256}/{quote(dist.filename)}"


def _one_line(body: bytes) -> str:
    assert body.endswith(b"\n") and body.count(b"\n") == 1 and body.isascii(), body
    return body.decode().rstrip("\n")


def _blobs(mirror: MirrorServer) -> Path:
    return Path(mirror.settings.data_dir) / "blobs"


def test_a_temp_file_that_cannot_be_made_releases_every_waiter_with_503(
    mirror: MirrorServer, upstream: Upstream
) -> None:
    dist = build_wheel("no-temp", "1.0")
    path = _established(mirror, upstream, dist)
    tmp = _blobs(mirror) / "tmp"
    shutil.rmtree(tmp)
    tmp.write_bytes(b"in the way")  # mkstemp in it: ENOTDIR

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: _get(mirror, path), range(4)))

    for status, body in replies:
        assert status == 503, (status, body)
        line = _one_line(body)
        assert "cannot write its blob store" in line and dist.data[:64] not in body
    tmp.unlink()
    tmp.mkdir()
    status, body = _get(mirror, path)  # nothing was held against the file: it is served
    assert status == 200 and body == dist.data


def test_a_full_disk_answers_507_in_one_line_and_keeps_nothing(
    mirror: MirrorServer, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = build_wheel("full-disk", "1.0")
    path = _established(mirror, upstream, dist)
    store = mirror.services.blobs if mirror.services else None
    assert store is not None
    made: list[Path] = []

    def full_device(_digest: str | None = None) -> tuple[int, str]:
        name = _blobs(mirror) / "tmp" / f"incoming-full-{len(made)}"
        name.write_bytes(b"")
        made.append(name)
        return os.open("/dev/full", os.O_WRONLY), str(name)

    monkeypatch.setattr(store, "temporary", full_device)
    status, body = _get(mirror, path)
    assert status == 507, (status, body)
    assert "disk is full" in _one_line(body)
    assert store.local_path(dist.sha256) is None

    monkeypatch.undo()  # space again: the file was never refused, only delayed
    status, body = _get(mirror, path)
    assert status == 200 and body == dist.data
    # By now the metadata fetched beside the file (into /dev/full too) has failed as well.
    assert made and not any(name.exists() for name in made)


def test_the_first_refusal_of_a_file_names_its_true_reason(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """A file served whole but longer than listed is other bytes than listed: refused, and
    its record says it was the size, not the digest, that showed it."""
    dist = build_wheel("too-long", "1.0")
    path = _established(mirror, upstream, dist, serve_bytes=dist.data + b"\x00more")
    status, body = _get(mirror, path)
    assert status == 502
    line = _one_line(body)
    assert "file_rejected" in line, line
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName(dist.project), dist.filename)
    assert record is not None and record.reason.startswith("hash_mismatch: size_mismatch: ")
