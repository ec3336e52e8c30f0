"""``lazaretto work``: the vetting side in its own process, beside a server that only serves.

Both are real processes on one data directory, with the system clock: the cooling period
is a few seconds, so a held file comes due while the test watches.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.dists import build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import command_env
from support.process import LAZARETTO, lazaretto_serve, listed_versions, stop
from support.upstream import Upstream, UpstreamFile

COOLING = timedelta(seconds=4)


@contextmanager
def _worker(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [LAZARETTO, "work"],
        env=command_env([], {**os.environ, **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        stop(process)


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """Locked as a live download holds its temporary file (``mirror.blobs.disk``)."""
    descriptor = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _leftover(tmp: Path, name: str, age_seconds: float) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(b"half a wheel")
    moment = time.time() - age_seconds
    os.utime(path, (moment, moment))
    return path


def test_a_separate_worker_promotes_what_the_server_alone_only_holds(
    upstream: Upstream, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    upstream.add("split", UpstreamFile(build_wheel("split", "1.0"), now - timedelta(days=300)))
    upstream.add("split", UpstreamFile(build_wheel("split", "2.0"), now))
    data = tmp_path / "data"
    env = {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(data),
        "LAZARETTO_COOLING_PERIOD": f"{COOLING.seconds}s",
        "LAZARETTO_VETTING_WINDOW": "0s",
        "LAZARETTO_PROMOTE_INTERVAL": "1s",
        "LAZARETTO_VETTING_WORKER": "separate",
    }
    stale = _leftover(data / "blobs" / "tmp", "incoming-crashed", 1)
    busy = _leftover(data / "blobs" / "tmp", "incoming-in-progress", 1)
    with _held(busy), lazaretto_serve([], env) as origin:
        assert not stale.exists()  # a crash's leftover is swept at start, however young...
        assert busy.exists()  # ...another process's download in progress (locked) is not
        assert listed_versions(origin, "split") == ["1.0"]
        time.sleep(COOLING.total_seconds() + 2)
        # Cooled, but nobody here fetches, vets or promotes it: the server only serves.
        assert listed_versions(origin, "split") == ["1.0"]
        with _worker(env) as worker:
            deadline = time.monotonic() + 30
            while listed_versions(origin, "split") != ["1.0", "2.0"]:
                assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
                assert time.monotonic() < deadline, "the worker did not promote 2.0 in 30 s"
                time.sleep(0.2)
        outcome = pip_install(origin + "/simple/", tmp_path / "t", "split")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"split": "2.0"}


def test_the_worker_refuses_to_run_beside_an_in_process_promoter(tmp_path: Path) -> None:
    done = subprocess.run(
        [LAZARETTO, "work", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")},
    )
    assert done.returncode == 3
    assert "vetting_worker" in done.stderr and "separate" in done.stderr
    assert "Traceback" not in done.stderr
