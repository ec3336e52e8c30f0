"""The SQLite ledger's own promises, beyond the protocol suite in test_ledger.py.

Reads run on connections of their own, so a write in progress in this process (a worker
thread recording a big project's rows) holds up no one's read.
"""

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ledger import DEMO, NEW, NEW_WHEEL, OLD, T0, look, snapshot

from quarantine.errors import LedgerError, LedgerMissing
from quarantine.ledger.migrations import sqlite as sqlite_steps
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.models import FileState

LATEST = (str(sqlite_steps.LATEST),)

WAIT_SECONDS = 10.0  # a read waiting on the writer would wait for as long as it holds on


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    opened = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield opened
    opened.close()


def _in_a_thread(read: Callable[[], Any]) -> Any:
    """``read()``'s result, or a failure if it cannot finish while the writer holds on."""
    results: list[Any] = []
    reader = threading.Thread(target=lambda: results.append(read()), daemon=True)
    reader.start()
    reader.join(WAIT_SECONDS)
    assert not reader.is_alive(), "the read waited for the write in progress"
    return results[0]


def test_reads_go_on_beside_a_write_in_progress(ledger: SqliteLedger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    seq_before = ledger.change_seq()
    writing, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with ledger._write() as db:
            db.execute("UPDATE files SET state='rejected' WHERE filename=?", (NEW_WHEEL,))
            db.execute("UPDATE meta SET value='999' WHERE key='change_seq'")
            writing.set()
            release.wait(WAIT_SECONDS)

    writer = threading.Thread(target=long_write, daemon=True)
    writer.start()
    try:
        assert writing.wait(WAIT_SECONDS)
        # Every read answers now, with what was committed before the write began.
        assert _in_a_thread(ledger.change_seq) == seq_before
        assert _in_a_thread(lambda: ledger.project(DEMO)) is not None
        files = _in_a_thread(lambda: ledger.files(DEMO))
        assert [record.state for record in files] == [FileState.PROMOTED, FileState.HELD]
        assert _in_a_thread(ledger.freeze_reason) is None
        assert _in_a_thread(ledger.overrides_version) == 0
    finally:
        release.set()
        writer.join(WAIT_SECONDS)
    # Committed: the next read sees it.
    assert ledger.change_seq() == 999
    record = ledger.file(DEMO, NEW_WHEEL)
    assert record is not None and record.state is FileState.REJECTED


def test_a_read_connection_cannot_write(ledger: SqliteLedger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    with ledger._readers.connection() as db, pytest.raises(sqlite3.OperationalError):
        db.execute("UPDATE files SET state='promoted'")
    record = ledger.file(DEMO, NEW_WHEEL)
    assert record is not None and record.state is FileState.HELD


def test_a_closed_ledger_refuses_reads(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.change_seq()
    ledger.close()
    with pytest.raises(sqlite3.ProgrammingError):
        ledger.change_seq()


def test_a_schema_1_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = SqliteLedger(path)
    look(first, snapshot(OLD, NEW), T0)
    before = first.files(DEMO)
    first.close()
    db = sqlite3.connect(path, isolation_level=None)  # back to what schema 1 wrote
    db.executescript(
        "DROP INDEX files_by_change; ALTER TABLE files DROP COLUMN seq;"
        "DROP TABLE fetch_attempts; ALTER TABLE files DROP COLUMN deferral;"
        "UPDATE meta SET value='1' WHERE key='schema_version';"
    )
    db.close()

    again = SqliteLedger(path)
    try:
        assert again.files(DEMO) == before
        assert again.files_changed_since(DEMO, 0) == []  # rows from before the migration
        again.transition(again.held()[0], FileState.REJECTED, "bad hash", "p", T0)
        assert [r.filename for r in again.files_changed_since(DEMO, 0)] == [NEW_WHEEL]
    finally:
        again.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == LATEST
        indexes = {row[1] for row in db.execute("PRAGMA index_list(files)")}
        assert "files_by_change" in indexes
    finally:
        db.close()
    SqliteLedger(path).close()  # opening a migrated ledger again changes nothing


def test_opening_without_create_needs_a_ledger_a_mirror_made(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ledger.sqlite3"
    with pytest.raises(LedgerMissing, match="no ledger at"):
        SqliteLedger(path, create=False)
    assert not path.parent.exists()
    path.parent.mkdir()
    sqlite3.connect(path).close()  # an empty database file is not a ledger either
    with pytest.raises(LedgerMissing):
        SqliteLedger(path, create=False)
    assert path.stat().st_size == 0
    path.write_bytes(b"not a database, a text file in the way\n" * 4)
    with pytest.raises(LedgerError, match="not a database"):
        SqliteLedger(path, create=False)
    path.unlink()
    made = SqliteLedger(path)
    look(made, snapshot(OLD, NEW), T0)
    made.close()
    reopened = SqliteLedger(path, create=False)
    try:
        assert reopened.file(DEMO, NEW_WHEEL) is not None
    finally:
        reopened.close()


def test_a_ledger_without_upstream_versions_gets_them_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = SqliteLedger(path)
    look(first, snapshot(OLD, NEW), T0, etag='"etag"')
    before = first.files(DEMO)
    first.close()
    db = sqlite3.connect(path, isolation_level=None)  # as a lazaretto from before wrote it
    db.executescript("ALTER TABLE projects DROP COLUMN versions;")
    db.close()

    again = SqliteLedger(path)
    try:
        assert again.files(DEMO) == before
        project = again.project(DEMO)
        assert project is not None and project.versions is None
        # Dropped, so the next look reads the whole page and its versions, not a 304.
        assert project.etag is None
    finally:
        again.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == LATEST
    finally:
        db.close()
