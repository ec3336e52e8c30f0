"""``lazaretto serve`` as a session to SIGKILL, and what its data directory must hold after.

The server runs in a session of its own, which its vetting child and the child's inspection
workers share: SIGKILL to every process of it is a crash of the whole mirror. The checks
read the data directory with the process dead, as the next start will find it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from quarantine.models import FileState
from support.ledger_backend import ledger_query
from support.process import LAZARETTO, free_port, wait_until_up

_DIGEST = re.compile(r"[0-9a-f]{64}")
_FILE_STATES = {state.value for state in FileState}


class ServeGroup:
    """One life of ``lazaretto serve``: started, then killed (or stopped) as a group."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        with log.open("a") as out:  # a file: a pipe nobody reads would stall the server
            self.process = subprocess.Popen(
                [LAZARETTO, "serve", "--port", str(self.port)],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_up(self) -> None:
        wait_until_up(self.origin, self.process, seconds=60)

    def kill(self) -> None:
        """SIGKILL to every process of the mirror; back once none is left. They share
        the session, not the group: the vetting child makes a group of its own for its
        inspection workers (mirror/background/vetting_child.py)."""
        with contextlib.suppress(ProcessLookupError):  # the server's group died already
            os.killpg(self.process.pid, signal.SIGKILL)
        _until_session_gone(self.process.pid, kill=True)
        self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM, as an operator stops it; the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.kill()
            _until_session_gone(self.process.pid)


def _until_session_gone(session: int, *, kill: bool = False, seconds: float = 30) -> None:
    """Until no live process of ``session`` is left, SIGKILLing them if ``kill``."""
    deadline = time.monotonic() + seconds
    while members := _members(session):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of session {session} outlived the mirror: {members}")
        if kill:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _members(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _parent, _group, in_session = stat[stat.rfind(")") + 2 :].split()[:4]
        if state != "Z" and int(in_session) == session:
            found.append(int(entry.name))
    return found


# -- what the data directory holds --------------------------------------------------------------


@dataclass(frozen=True)
class LedgerState:
    events: list[tuple[int, str, str | None, str, str]]  # id, project, filename, to_state, actor
    outbox: dict[str, int]  # event_id -> outbox id
    files: dict[tuple[str, str], tuple[str, int, bool, str]]  # -> state, version, stored, sha256
    delivered: dict[tuple[str, str], str]  # (event_id, channel) -> state


def read_ledger(data_dir: Path) -> LedgerState | None:
    """What the ledger of the mirror with this data directory holds (on either backend);
    None when its mirror has not made a SQLite one yet."""
    found = ledger_query(
        data_dir,
        "SELECT id, project, filename, to_state, actor FROM events ORDER BY id",
        "SELECT event_id, id FROM outbox",
        "SELECT project, filename, state, state_version, stored, sha256 FROM files",
        "SELECT event_id, channel, state FROM deliveries",
    )
    if found is None:
        return None
    events, outbox, files, delivered = found
    return LedgerState(
        [(int(r[0]), str(r[1]), r[2], str(r[3]), str(r[4])) for r in events],
        {str(r[0]): int(r[1]) for r in outbox},
        {(str(r[0]), str(r[1])): (str(r[2]), int(r[3]), bool(r[4]), str(r[5])) for r in files},
        {(str(r[0]), str(r[1])): str(r[2]) for r in delivered},
    )


def blob_problems(blobs: Path) -> list[str]:
    """Every stored blob must hash to its name, at the place its name gives."""
    problems = []
    for path in blobs.rglob("*"):
        if not path.is_file() or path.parent == blobs / "tmp":
            continue
        name = path.name
        if not _DIGEST.fullmatch(name) or path.parent != blobs / name[:2] / name[2:4]:
            problems.append(f"{path}: not a blob's name or place")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != name:
            problems.append(f"{path}: its bytes do not hash to its name")
    return problems


def ledger_problems(before: LedgerState, after: LedgerState, blobs: Path) -> list[str]:
    """What a crash must never do to the ledger: lose, reorder or rewrite a recorded event
    or outbox entry, leave a file's state without the event that set it, or claim a blob
    the store does not have."""
    problems = []
    if after.events[: len(before.events)] != before.events:
        problems.append("recorded events changed or vanished")
    lost = set(before.outbox) - set(after.outbox)
    if lost:
        problems.append(f"outbox entries vanished: {sorted(lost)}")
    moved = {e for e in before.outbox if after.outbox.get(e, before.outbox[e]) != before.outbox[e]}
    if moved:
        problems.append(f"outbox entries renumbered: {sorted(moved)}")
    for key, (state, version, _, _) in before.files.items():
        now = after.files.get(key)
        if now is None or now[1] < version:
            problems.append(f"{key}: decision v{version} ({state}) lost, now {now}")
    last_event: dict[tuple[str, str], str] = {}
    for number, project, filename, to_state, _ in after.events:
        if filename is None or to_state not in _FILE_STATES:  # an incident's event
            continue
        if last_event.get((project, filename)) == to_state:
            problems.append(f"event {number}: {filename} moved to {to_state} twice")
        last_event[(project, filename)] = to_state
    for key, (state, _, stored, sha256) in after.files.items():
        if key in last_event and last_event[key] != state:
            problems.append(f"{key}: state {state} but its last event says {last_event[key]}")
        if stored and not _blob_path(blobs, sha256).is_file():
            problems.append(f"{key}: recorded as stored, but blob {sha256} is missing")
    for event_id, _channel in after.delivered:
        if event_id not in after.outbox:
            problems.append(f"delivery of unknown event {event_id}")
    return problems


def _blob_path(blobs: Path, sha256: str) -> Path:
    return blobs / sha256[:2] / sha256[2:4] / sha256


def temporary_files(blobs: Path) -> set[str]:
    tmp = blobs / "tmp"
    return {p.name for p in tmp.iterdir()} if tmp.is_dir() else set()


def count_decisions(data_dir: Path) -> int:
    """Events recording a promotion or a hold for review, read beside a live mirror."""
    query = "SELECT count(*) FROM events WHERE to_state IN ('promoted', 'review')"
    try:
        found = ledger_query(data_dir, query)
    except (sqlite3.Error, psycopg.Error):
        return 0  # not created yet, or busy: no progress seen this time
    return int(found[0][0][0]) if found else 0
