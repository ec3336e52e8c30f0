"""``lazaretto fsck`` on a real mirror's data directory (issue 17, "Also build").

A stored blob is corrupted, another removed, an unknown one added; fsck reports each,
exits non-zero, moves the bad and the unknown aside (kept as evidence), and pip then
gets the right bytes, fetched and verified again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from packaging.utils import NormalizedName

from conftest import NOW
from mirror.cli.fsck import QUARANTINE_DIR
from support.dists import Dist, build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=200)


def _fsck(mirror: MirrorServer) -> subprocess.CompletedProcess[str]:
    command = [LAZARETTO, "fsck", "--json", "--data-dir", str(mirror.settings.data_dir)]
    env = lazaretto_env(mirror.settings.data_dir, {"LAZARETTO_UPSTREAM": mirror.settings.upstream})
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, timeout=120
    )


def _blob(mirror: MirrorServer, sha256: str) -> Path:
    return Path(mirror.settings.data_dir) / "blobs" / sha256[:2] / sha256[2:4] / sha256


def _stored(mirror: MirrorServer, dist: Dist) -> bool:
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName(dist.project), dist.filename)
    return record is not None and record.stored


def _wait_stored(mirror: MirrorServer, *dists: Dist) -> None:
    deadline = time.monotonic() + 10
    while not all(_stored(mirror, dist) for dist in dists):
        assert time.monotonic() < deadline, "never stored"
        time.sleep(0.05)


def test_fsck_reports_and_sets_aside_damage_and_the_files_are_fetched_again(
    mirror: MirrorServer, upstream: Upstream, tmp_path: Path
) -> None:
    damaged, lost = build_wheel("damaged", "1.0"), build_wheel("lost", "1.0")
    for dist in (damaged, lost):
        upstream.add(dist.project, UpstreamFile(dist, OLD))
    assert pip_install(mirror.url, tmp_path / "first", "damaged", "lost").ok
    _wait_stored(mirror, damaged, lost)
    clean = _fsck(mirror)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["findings"] == []

    corrupt = bytearray(_blob(mirror, damaged.sha256).read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    _blob(mirror, damaged.sha256).write_bytes(bytes(corrupt))
    _blob(mirror, lost.sha256).unlink()
    stray = b"bytes nobody asked for"
    stray_digest = hashlib.sha256(stray).hexdigest()
    _blob(mirror, stray_digest).parent.mkdir(parents=True, exist_ok=True)
    _blob(mirror, stray_digest).write_bytes(stray)

    found = _fsck(mirror)
    assert found.returncode == 1, found.stdout + found.stderr
    report = json.loads(found.stdout)
    kinds = {(f["kind"], f["sha256"]) for f in report["findings"]}
    assert kinds == {
        ("digest_mismatch", damaged.sha256),
        ("missing_blob", lost.sha256),
        ("orphan_blob", stray_digest),
    }
    data_dir = Path(mirror.settings.data_dir)
    moved = {f["sha256"]: data_dir / f["moved_to"] for f in report["findings"] if f["moved_to"]}
    assert moved[damaged.sha256].read_bytes() == bytes(corrupt)  # evidence kept
    assert moved[stray_digest].read_bytes() == stray
    assert all(path.parent.parent.name == QUARANTINE_DIR for path in moved.values())
    assert not _blob(mirror, damaged.sha256).exists()
    assert not _stored(mirror, damaged) and not _stored(mirror, lost)

    mirror.restart()  # no bytes kept in memory: what pip gets now comes from the store
    fetched_before = upstream.file_requests(damaged.filename)
    again = pip_install(mirror.url, tmp_path / "again", "damaged", "lost")
    assert again.ok, again.output
    assert installed(tmp_path / "again") == {"damaged": "1.0", "lost": "1.0"}
    assert upstream.file_requests(damaged.filename) == fetched_before + 1  # fetched again
    with urllib.request.urlopen(
        f"{mirror.origin}/files/{damaged.sha256}/{damaged.filename}"
    ) as reply:
        assert reply.read() == damaged.data
    _wait_stored(mirror, damaged, lost)
    assert _blob(mirror, damaged.sha256).read_bytes() == damaged.data
    after = _fsck(mirror)
    assert after.returncode == 0, after.stdout


def test_fsck_refuses_a_mirror_whose_blobs_are_in_s3(mirror: MirrorServer) -> None:
    """It hashes the disk store: against an S3 mirror's empty one, every file of the
    ledger would have been marked not stored."""
    env = {"LAZARETTO_BLOB_STORE": "s3://blobs/lazaretto"}
    command = [LAZARETTO, "fsck", "--json", "--data-dir", str(mirror.settings.data_dir)]
    refused = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=120,
        env=lazaretto_env(mirror.settings.data_dir, env),
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "s3://blobs/lazaretto" in refused.stderr and refused.stdout == ""
