"""Chaos: the whole mirror SIGKILLed at random moments, restarted, and checked each time.

``lazaretto serve`` (its vetting child and inspection workers with it: one session)
runs against a local upstream that keeps publishing: cooled and fresh wheels, sdists, and
releases with a startup ``.pth`` hook that are held for review, so each life downloads,
vets, promotes, writes outbox entries and delivers them to a real webhook receiver while
clients read pages and files. At a random moment the group is SIGKILLed. Then, with the
mirror dead: every blob hashes to its name, every stored record has its blob, no recorded
event, decision or outbox entry vanished. After the restart the temp files of the dead
mirror are gone. Every file a client got whole matched its digest. At the end the mirror
runs undisturbed until the outbox is delivered: every entry reached the receiver (at least
once, by id), each recorded once; then pip and uv install from it.

25 kills by default; ``LAZARETTO_TEST_PROFILE=extended`` makes it 200. The seed is random
unless LAZARETTO_CHAOS_SEED is set, and printed with any failure.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename
from test_notifications import Receiver

from support.chaos import (
    LedgerState,
    ServeGroup,
    blob_problems,
    count_decisions,
    ledger_problems,
    read_ledger,
    temporary_files,
)
from support.counters import report
from support.dists import Dist, build_sdist, build_wheel
from support.installers import installed, pip_install, uv_install
from support.ledger_backend import ledger_env
from support.upstream import Upstream, UpstreamFile

EXTENDED = os.environ.get("LAZARETTO_TEST_PROFILE") == "extended"
KILLS = 200 if EXTENDED else 25
COOLING = timedelta(seconds=2)
SECRET_KEY = b"chaos-webhook-key-not-a-real-secret"
PTH = {"chaos_hook.pth": b"import os\n"}
PROJECTS = ("chaos-a", "chaos-b", "chaos-c")
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@dataclass
class Served:
    """What clients got from one life of the mirror."""

    files_whole: int = 0
    files_cut: int = 0  # the kill cut the transfer: not a wrong byte, nothing to check
    corrupt: list[str] = field(default_factory=list)


@dataclass
class Coverage:
    """What the lives that were killed were doing, read from the ledger they left."""

    mid_download: int = 0  # killed with a download's temp file open
    promoting: int = 0  # recorded a promotion or a hold for review
    delivering: int = 0  # sent to the webhook, or recorded a delivery
    moments: dict[str, int] = field(default_factory=dict)  # the moment each life awaited

    def add(self, before: LedgerState, after: LedgerState, downloading: bool, sent: bool) -> None:
        decided = {e[3] for e in after.events[len(before.events) :]}
        self.mid_download += downloading
        self.promoting += bool(decided & {"promoted", "review"})
        self.delivering += sent or any(
            before.delivered.get(key) != state for key, state in after.delivered.items()
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver([SECRET_KEY])
    hook.start()
    yield hook
    hook.stop()


@pytest.mark.timeout(3600 if EXTENDED else 300)
def test_sigkill_at_random_moments_loses_and_corrupts_nothing(
    upstream: Upstream, receiver: Receiver, tmp_path: Path
) -> None:
    seed = int(os.environ.get("LAZARETTO_CHAOS_SEED") or random.randrange(2**32))
    try:
        _chaos(random.Random(seed), upstream, receiver, tmp_path)
    except BaseException as failure:
        failure.add_note(f"chaos seed: LAZARETTO_CHAOS_SEED={seed}")
        raise


def _chaos(rng: random.Random, upstream: Upstream, receiver: Receiver, tmp_path: Path) -> None:
    data = tmp_path / "data"
    blobs = data / "blobs"
    env = _serve_env(upstream, receiver, tmp_path)
    log = tmp_path / "serve.log"
    truth: dict[str, str] = {}  # filename -> the sha256 of the bytes the upstream published
    for project in PROJECTS:  # established releases: served from the first look
        _publish(
            upstream, truth, build_wheel(project, "0.1"), datetime.now(UTC) - timedelta(days=9)
        )
    before = LedgerState([], {}, {}, {})
    served = Served()
    seen = Coverage()
    left: set[str] = set()  # temp files the last kill left: the next start must sweep them
    for life in range(KILLS):
        _publish_more(rng, upstream, truth, life)
        serve = ServeGroup(env, log)
        hooks = len(receiver.hooks)
        try:
            if rng.random() < 0.15:  # during start: the sweep, the ledger's first writes
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                serve.wait_until_up()
                still = left & temporary_files(blobs)
                assert not still, f"after kill {life}: temp files outlived the restart: {still}"
                moment = rng.choice(MOMENTS)
                seen.moments[moment] = seen.moments.get(moment, 0) + 1
                _live(
                    serve,
                    rng,
                    truth,
                    served,
                    functools.partial(_await_moment, moment, rng, upstream, receiver, data),
                )
        finally:
            serve.kill()  # also when a check failed: no mirror outlives the test
        left |= temporary_files(blobs)
        problems = blob_problems(blobs)
        after = read_ledger(data)
        if after is not None:  # a SQLite ledger is made at the first start
            problems += ledger_problems(before, after, blobs)
            seen.add(before, after, bool(temporary_files(blobs)), hooks != len(receiver.hooks))
            before = after
        assert not problems, f"after kill {life + 1}:\n" + "\n".join(problems)
        assert not served.corrupt, served.corrupt

    delivered = _settle(env, log, data, receiver, truth, served, tmp_path, left)
    print(
        f"{KILLS} kills: {seen}; {served.files_whole} files served whole, "
        f"{served.files_cut} cut by a kill; {delivered} outbox entries delivered"
    )
    report(
        "chaos",
        kills=KILLS,
        files_served=served.files_whole,
        transfers_cut=served.files_cut,
        corrupt_served=len(served.corrupt),
        outbox_events=delivered,
        lost_events=0,
        kills_mid_download=seen.mid_download,
        lives_promoting=seen.promoting,
        lives_delivering=seen.delivering,
    )


# When a life is killed: at a random time, or just as it fetches a file from the upstream,
# records a vetting decision, or sends a notification (the kill may land a little later).
MOMENTS = ("any time", "downloading", "deciding", "notifying")
# Seconds a life waits for its moment before it is killed anyway: a notification needs the
# vetting child started, a release vetted and held, and the notifier's next round.
LONGEST_LIFE = {"downloading": 3.0, "deciding": 3.0, "notifying": 8.0}


def _await_moment(
    moment: str, rng: random.Random, upstream: Upstream, receiver: Receiver, data: Path
) -> None:
    if moment == "any time":
        time.sleep(rng.uniform(0.1, 2.0))
        return
    start = _progress(moment, upstream, receiver, data)
    deadline = time.monotonic() + LONGEST_LIFE[moment]
    while time.monotonic() < deadline:
        if _progress(moment, upstream, receiver, data) > start:
            time.sleep(rng.uniform(0.0, 0.03))
            return
        time.sleep(0.01)


def _progress(moment: str, upstream: Upstream, receiver: Receiver, data: Path) -> int:
    if moment == "downloading":
        return len(upstream.requests_for("/files/"))
    if moment == "notifying":
        return len(receiver.hooks) + len(receiver.rejected)
    return count_decisions(data)


def _serve_env(upstream: Upstream, receiver: Receiver, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "lazaretto.toml"
    config.write_text(
        'notify_interval = "1s"\n'
        "[[notify]]\n"
        'kind = "webhook"\n'
        'name = "chaos-hook"\n'
        f'url = "{receiver.hook_url}"\n'
        'secret_env = "CHAOS_HOOK_SECRET"\n'
        "allow_private = true\n"
        "group_seconds = 0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    return env | {
        "LAZARETTO_CONFIG": str(config),
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_COOLING_PERIOD": f"{COOLING.seconds}s",
        "LAZARETTO_VETTING_WINDOW": "0s",
        "LAZARETTO_PROMOTE_INTERVAL": "1s",
        "LAZARETTO_INDEX_TTL": "0s",
        "LAZARETTO_INSPECTION_WORKERS": "1",
        **ledger_env(tmp_path / "data"),
        "CHAOS_HOOK_SECRET": "whsec_" + base64.b64encode(SECRET_KEY).decode(),
    }


def _publish(upstream: Upstream, truth: dict[str, str], dist: Dist, at: datetime) -> None:
    upstream.add(str(dist.project), UpstreamFile(dist, at))
    truth[dist.filename] = dist.sha256


def _publish_more(rng: random.Random, upstream: Upstream, truth: dict[str, str], life: int) -> None:
    """Something new each life: a wheel (some big enough to be cut mid-download), at times
    an sdist or a release held for review (an outbox entry)."""
    project = PROJECTS[life % len(PROJECTS)]
    version = f"1.{life}"
    now = datetime.now(UTC)
    uploaded = now - timedelta(days=2) if rng.random() < 0.3 else now
    filler = {"chaos_payload.bin": rng.randbytes(rng.choice((1_000, 400_000)))}
    hook = PTH if rng.random() < 0.5 else {}
    _publish(upstream, truth, build_wheel(project, version, extra_files=filler | hook), uploaded)
    if rng.random() < 0.3:
        _publish(upstream, truth, build_sdist(project, version), uploaded)


def _live(
    serve: ServeGroup,
    rng: random.Random,
    truth: dict[str, str],
    served: Served,
    pause: Callable[[], None],
) -> None:
    """Clients read pages and files in a thread while the mirror lives for ``pause``."""
    done = threading.Event()
    client = threading.Thread(
        target=_read_all, args=(serve.origin, rng.random(), truth, served, done), daemon=True
    )
    client.start()
    pause()
    done.set()
    client.join(30)


def _read_all(
    origin: str, order: float, truth: dict[str, str], served: Served, done: threading.Event
) -> None:
    projects = sorted(PROJECTS, key=lambda p: hash((p, order)))
    while not done.is_set():
        for project in projects:
            try:
                _read_project(origin, project, truth, served)
            except (OSError, http.client.HTTPException, ValueError):
                continue  # the page itself was cut short: nothing served to check
            if done.is_set():
                return
        time.sleep(0.05)


def _read_project(origin: str, project: str, truth: dict[str, str], served: Served) -> None:
    request = urllib.request.Request(f"{origin}/simple/{project}/", headers=JSON)
    with urllib.request.urlopen(request, timeout=10) as reply:
        page = json.loads(reply.read())
    for entry in page["files"]:
        listed = entry["hashes"]["sha256"]
        if truth.get(entry["filename"]) != listed:
            served.corrupt.append(f"{entry['filename']}: listed {listed}, published otherwise")
            continue
        url = urllib.parse.urljoin(f"{origin}/simple/{project}/", entry["url"])
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = reply.read()  # IncompleteRead if the kill cut it short
        except urllib.error.HTTPError:
            continue  # refused (say, not promoted yet on this path): no bytes served
        except (OSError, http.client.HTTPException):
            served.files_cut += 1
            continue
        if hashlib.sha256(body).hexdigest() != listed:
            served.corrupt.append(f"{entry['filename']}: served bytes do not hash to {listed}")
        else:
            served.files_whole += 1


def _settle(
    env: dict[str, str],
    log: Path,
    data: Path,
    receiver: Receiver,
    truth: dict[str, str],
    served: Served,
    tmp_path: Path,
    left: set[str],
) -> int:
    """A last, undisturbed life: every outbox entry delivered, pip and uv served whole."""
    serve = ServeGroup(env, log)
    try:
        serve.wait_until_up()
        assert not left & temporary_files(data / "blobs"), "temp files outlived the restart"
        for project in PROJECTS:
            _read_project(serve.origin, project, truth, served)
        ledger = _delivered(data, seconds=60)
        versions = {p: _newest(serve.origin, p) for p in PROJECTS}
        wanted = [f"{p}=={v}" for p, v in versions.items()]
        for install, target in ((pip_install, "pip"), (uv_install, "uv")):
            outcome = install(serve.origin + "/simple/", tmp_path / target, *wanted)
            assert outcome.ok, outcome.output  # each checks every file against its digest
            assert installed(tmp_path / target) == versions
    finally:
        assert serve.stop() in (0, -15), log.read_text()[-3000:]
    assert not served.corrupt, served.corrupt
    assert temporary_files(data / "blobs") == set(), "temp files left after a clean stop"
    assert not blob_problems(data / "blobs")

    recorded = {event for event, _ in ledger.delivered}
    assert set(ledger.outbox) == recorded, "an outbox entry never had its delivery recorded"
    assert len(ledger.delivered) == len(ledger.outbox)  # one row per entry and channel
    got = {event for hook in receiver.hooks for event in hook.body["data"]["event_ids"]}
    missing = set(ledger.outbox) - got
    assert not missing, f"outbox entries the receiver never got: {sorted(missing)}"
    assert not receiver.rejected
    assert ledger.outbox, "no outbox entry: the chaos never reached notification"
    return len(ledger.outbox)


def _delivered(data: Path, seconds: float) -> LedgerState:
    deadline = time.monotonic() + seconds
    while True:
        state = read_ledger(data)
        assert state is not None, "no ledger"
        pending = [k for k, s in state.delivered.items() if s != "delivered"]
        undelivered = set(state.outbox) - {event for event, _ in state.delivered}
        if not pending and not undelivered:
            return state
        assert time.monotonic() < deadline, f"not delivered: {pending} {undelivered}"
        time.sleep(0.5)


def _newest(origin: str, project: str) -> str:
    """The newest version the mirror serves a wheel of (installers then build nothing)."""
    request = urllib.request.Request(f"{origin}/simple/{project}/", headers=JSON)
    with urllib.request.urlopen(request, timeout=10) as reply:
        files = json.loads(reply.read())["files"]
    wheels = [
        parse_wheel_filename(f["filename"])[1] for f in files if f["filename"].endswith(".whl")
    ]
    return str(max(wheels))
