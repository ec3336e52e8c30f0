"""Partial downloads left by a killed process are swept at once; a live one never is.

Each temporary file is locked by the process writing it. A real child process writes
through the real store and is SIGKILLed mid-download (or just before it publishes): its
file is swept at the next start, whatever its age, while a live writer's is left alone,
and a complete leftover that hashes to the digest it is named for is published instead of
fetched again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mirror.blobs.disk import DiskBlobStore
from support.mirror import MirrorServer

PAYLOAD = os.urandom(300_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()

# Writes ``size`` bytes of the payload (read from stdin) through the real store, says so,
# and waits to be killed: a download in progress, as far as the store can tell.
_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from mirror.blobs.disk import DiskBlobStore

    async def main() -> None:
        root, digest, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        data = sys.stdin.buffer.read()
        writer = DiskBlobStore(root).writer(len(data), digest)
        await writer.write(data[:size])
        print("written", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@contextmanager
def _writing(root: Path, size: int, digest: str = DIGEST) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), digest, str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(PAYLOAD)
        child.stdin.close()
        assert child.stdout.readline() == b"written\n"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)


def _killed(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)


def _temporary(root: Path) -> list[Path]:
    return sorted((root / "tmp").iterdir())


def test_a_live_download_is_kept_and_a_killed_ones_partial_file_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    with _writing(root, size=len(PAYLOAD) // 2) as child:
        (partial,) = _temporary(root)
        assert DIGEST in partial.name
        store = DiskBlobStore(root)
        assert store.sweep_temporary().removed == 0  # alive: locked, left alone
        assert partial.exists()
        _killed(child)
        swept = store.sweep_temporary()
    assert (swept.removed, swept.reused) == (1, 0)  # seconds old, and still swept
    assert _temporary(root) == [] and not store.exists(DIGEST)


def test_a_complete_leftover_that_hashes_to_its_digest_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    with _writing(root, size=len(PAYLOAD)) as child:
        _killed(child)  # killed after the last byte, before it was published
    store = DiskBlobStore(root)
    swept = store.sweep_temporary()
    assert (swept.removed, swept.reused) == (0, 1)
    assert _temporary(root) == []
    assert store.path_of(DIGEST).read_bytes() == PAYLOAD


def test_a_complete_leftover_that_does_not_hash_to_its_name_is_removed(tmp_path: Path) -> None:
    """A name is no proof: only bytes that hash to the digest are ever published."""
    root = tmp_path / "blobs"
    other = hashlib.sha256(b"something else").hexdigest()
    with _writing(root, size=len(PAYLOAD), digest=other) as child:
        _killed(child)
    store = DiskBlobStore(root)
    assert store.sweep_temporary().removed == 1
    assert not store.exists(other) and not store.exists(DIGEST)


def test_the_mirror_sweeps_at_stop_and_at_start(mirror: MirrorServer) -> None:
    tmp = Path(mirror.settings.data_dir) / "blobs" / "tmp"
    (tmp / "incoming-left-while-running").write_bytes(b"half a wheel")
    mirror.stop()
    assert list(tmp.iterdir()) == []
    (tmp / "incoming-left-while-stopped").write_bytes(b"half a wheel")
    mirror.start()
    assert list(tmp.iterdir()) == []
