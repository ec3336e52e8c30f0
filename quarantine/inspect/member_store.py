"""Scans of Python sources shared by every inspection worker process, on disk.

Each worker process keeps its own :class:`~quarantine.inspect.member_cache.MemberCache`, but
the wheels of one release (one per platform: the same ``.py`` members byte for byte) and
the previous release (half its members unchanged) are inspected in whichever process is
free. Behind the per-process cache, this store lets a process reuse what another scanned:
one SQLite file in the data directory, opened by each worker process.

Safety. An entry's key is a digest of everything its scan depends on: the member's bytes
(their sha256), the name it is reported under, its module name, the parse limit, how it
was scanned, and the rules version (a digest of the inspection code and the interpreter's
version, so any change to a rule, or a new Python, starts afresh). A value is what the
rules found in exactly those bytes, so an archive can only fill entries for its own
contents: no archive can give another file's member a clean scan. Entries are JSON read
back field by field (:mod:`quarantine.inspect.scan_codec`), never unpickled; an entry
that does not read back, and a database that cannot be opened or read, is a miss (the
member is scanned again), never an error. Who can write it: the mirror's own user (the
file is created readable and writable by its owner only), the same user that can write
the ledger and the blobs beside it; whoever can write there could promote a file
directly, so the store gives them nothing new.

Bounded: past ``max_entries`` the least recently used go. Writes are batched per
inspection (:meth:`MemberStore.flush`), in one transaction; SQLite's locking lets several
processes share the file.
"""

import functools
import hashlib
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_ENTRIES = 200_000  # 1.3 KB each on average (litellm): some 250 MB at most
_BUSY_MS = 2000  # a write waits this long for another process's
_FLUSH_EVERY = 100  # entries held before they are written: a sibling wheel inspected
# at the same time in another process finds them soon (a commit costs no disk sync in WAL)
_TRIM_EVERY = 10_000  # entries written between two counts of the whole table
_SCHEMA = "CREATE TABLE IF NOT EXISTS scans (key BLOB PRIMARY KEY, value TEXT, used REAL)"
_USED_INDEX = "CREATE INDEX IF NOT EXISTS scans_used ON scans (used)"


@functools.cache
def rules_version() -> str:
    """A digest of the code a scan's result depends on, and of the interpreter's version
    (``ast`` differs between Pythons): any change makes every stored scan a miss."""
    here = Path(__file__).resolve().parent
    sources = [*here.glob("*.py"), *here.glob("rules/*.py"), *here.glob("archive/*.py")]
    sources.append(here.parent / "evidence.py")
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(sources):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def entry_key(*parts: object) -> bytes:
    """The key of one scan: the rules version and what the scan depends on."""
    text = "\0".join([rules_version(), *(repr(part) for part in parts)])
    return hashlib.sha256(text.encode()).digest()


class MemberStore:
    """Scans by key, shared through one SQLite file; every failure is a miss."""

    def __init__(self, path: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self.trim_every = min(_TRIM_EVERY, max(max_entries // 10, 1))
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._pending: dict[bytes, str] = {}
        self._touched: set[bytes] = set()
        self._written = 0  # since the table was last counted
        self.hits = 0

    def get(self, key: bytes) -> str | None:
        db = self._connection()
        if db is None:
            return None
        try:
            row = db.execute("SELECT value FROM scans WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None  # busy, say: this once, scan again
        except sqlite3.Error as exc:
            self._give_up(exc)
            return None
        if row is None or not isinstance(row[0], str):
            return None
        self.hits += 1
        self._touched.add(key)
        return row[0]

    def put(self, key: bytes, value: str) -> None:
        if self._broken:
            return
        self._pending[key] = value
        if len(self._pending) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write what this process scanned since the last flush, and mark what it reused
        as recently used; then drop the least recently used past the bound."""
        pending, touched = self._pending, self._touched
        self._pending, self._touched = {}, set()
        db = self._connection()
        if db is None or not (pending or touched):
            return
        now = time.time()
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO scans (key, value, used) VALUES (?, ?, ?)",
                    [(key, value, now) for key, value in pending.items()],
                )
                db.executemany(
                    "UPDATE scans SET used = ? WHERE key = ?", [(now, key) for key in touched]
                )
                self._written += len(pending)
                if self._written >= self.trim_every:
                    self._written = 0
                    self._trim(db)
        except sqlite3.OperationalError as exc:
            log.info("shared inspection cache: %d scans not written (%s)", len(pending), exc)
        except sqlite3.Error as exc:
            self._give_up(exc)

    def _trim(self, db: sqlite3.Connection) -> None:
        (count,) = db.execute("SELECT COUNT(*) FROM scans").fetchone()
        if count > self.max_entries:
            excess = count - self.max_entries + self.max_entries // 10  # room for a while
            db.execute(
                "DELETE FROM scans WHERE key IN (SELECT key FROM scans ORDER BY used LIMIT ?)",
                (excess,),
            )

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        try:
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                log.warning(
                    "shared inspection cache %s damaged (%s); starting it afresh", self.path, exc
                )
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._db = self._open()
        except (OSError, sqlite3.Error) as exc:
            self._give_up(exc)
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=_BUSY_MS / 1000, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.execute(_USED_INDEX)
        except sqlite3.Error:
            db.close()
            raise
        db.isolation_level = "DEFERRED"  # transactions for the batched writes
        return db

    def _give_up(self, exc: Exception) -> None:
        """The store is only ever a shortcut: without it every member is scanned."""
        if not self._broken:
            log.warning(
                "shared inspection cache %s unusable (%s); scanning without it", self.path, exc
            )
        self._broken = True
        self._pending.clear()
        if self._db is not None:
            self._db.close()
        self._db = None

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
