"""Read-only connections to the SQLite ledger, one per concurrent reader.

In WAL mode a reader on its own connection never waits for the writer: while a worker
thread writes a big project's ten thousand rows, the event loop's reads (the change
counter it polls every second, a cold miss's project record) go on beside it. Sharing
the writer's connection would queue them behind the whole write.

A connection is taken for one query and given back; there are never more than the
number of threads that read at once (the event loop and the worker threads).
"""

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_connection(path: Path, *, read_only: bool, create: bool = True) -> sqlite3.Connection:
    """A connection with the ledger's settings (raises sqlite3.Error).

    ``create=False`` opens only a file that exists (sqlite3.OperationalError otherwise).
    """
    # check_same_thread off: a connection is used by one thread at a time, but not always
    # the same one (the writer under its lock, a reader while taken from the pool).
    target = path if create else path.absolute().as_uri() + "?mode=rw"
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=not create)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=5000")
    if read_only:
        db.execute("PRAGMA query_only=ON")
    return db


def is_ledger(db: sqlite3.Connection) -> bool:
    """Whether the database holds a ledger (an empty or foreign file does not)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if found is None:
        return False
    return db.execute("SELECT 1 FROM meta WHERE key='schema_version'").fetchone() is not None


class Readers:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # held only to take or give back a connection
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        db = self._take()
        try:
            yield db
        finally:
            self._give_back(db)

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the ledger is closed")
            if self._idle:
                return self._idle.pop()
        return open_connection(self._path, read_only=True)

    def _give_back(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if self._closed:
                db.close()
            else:
                self._idle.append(db)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()
