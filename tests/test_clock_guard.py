"""A jump of the wall clock must not end quarantines (threat model O1)."""

import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.clock_guard import ClockGuard
from quarantine.ledger.interface import Ledger
from support.clock import FakeClock
from support.dists import build_wheel
from support.ledger_backend import lazaretto_env, open_ledger
from support.mirror import MirrorServer
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile


def _guard(tmp_path: Path, clock: FakeClock) -> tuple[ClockGuard, Ledger]:
    ledger = open_ledger(tmp_path / "data")
    return ClockGuard(ledger, clock), ledger


def test_time_passing_normally_is_no_jump(tmp_path: Path, clock: FakeClock) -> None:
    guard, _ledger = _guard(tmp_path, clock)
    assert guard.frozen() is None
    for _ in range(5):
        clock.advance(timedelta(days=2))
        assert guard.frozen() is None


def test_forward_jump_freezes(tmp_path: Path, clock: FakeClock) -> None:
    guard, ledger = _guard(tmp_path, clock)
    assert guard.frozen() is None
    clock.advance(timedelta(minutes=1))
    clock.jump(timedelta(days=10))
    reason = guard.frozen()
    assert reason is not None and "forward" in reason
    clock.advance(timedelta(minutes=5))
    assert guard.frozen() == reason  # stays frozen until a person lifts it
    assert [e.to_state for e in ledger.events(NormalizedName("*"))] == ["frozen"]


def test_backward_jump_freezes_also_across_restarts(tmp_path: Path, clock: FakeClock) -> None:
    guard, ledger = _guard(tmp_path, clock)
    assert guard.frozen() is None
    ledger.close()
    clock.jump(-timedelta(hours=1))
    restarted, _ = _guard(tmp_path, clock)  # no in-process history: the ledger remembers
    reason = restarted.frozen()
    assert reason is not None and "behind" in reason


def _readyz_when_not_ready(mirror: MirrorServer) -> bytes:
    """/readyz answers from a check made every second: the freeze shows within a round."""
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(mirror.origin + "/readyz").close()
        except urllib.error.HTTPError as error:
            assert error.code == 503
            return bytes(error.read())
        assert time.monotonic() < deadline, "readyz must report the freeze"
        time.sleep(0.1)


def test_a_jump_promotes_nothing_until_lifted(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    upstream.add("jumpy", UpstreamFile(build_wheel("jumpy", "1.0"), NOW - timedelta(days=400)))
    upstream.add("jumpy", UpstreamFile(build_wheel("jumpy", "2.0"), NOW - timedelta(hours=1)))
    urllib.request.urlopen(mirror.url + "jumpy/").close()
    mirror.promote()
    clock.advance(timedelta(minutes=1))
    clock.jump(timedelta(days=10))  # the monotonic clock moved one minute
    assert mirror.promote().promoted == []
    assert b"frozen" in _readyz_when_not_ready(mirror)
    data_dir = str(mirror.settings.data_dir)
    lifted = subprocess.run(
        [LAZARETTO, "unfreeze", "--data-dir", data_dir, "--reason", "NTP fixed, checked by ops"],
        capture_output=True,
        text=True,
        check=False,
        env=lazaretto_env(mirror.settings.data_dir),
    )
    assert lifted.returncode == 0, lifted.stderr
    assert mirror.promote().promoted == ["jumpy-2.0-py3-none-any.whl"]
