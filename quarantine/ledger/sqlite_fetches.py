"""The SQLite ledger's count of failed fetches (``quarantine.vetting.fetch_retry``).

A mixin of ``SqliteLedger`` (same connection, same transactions), like the admin
tables. A row lives from a file's first failed fetch until its bytes are stored or an
admin asks for another try; the count survives restarts, so a backoff carries on.
"""

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.ledger.rows import failure_note, next_attempts
from quarantine.models import FileRecord
from quarantine.vetting.fetch_retry import FailureKind, FetchAttempts

FETCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS fetch_attempts (
    project TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (project, filename)
);
"""
_COLUMNS = "project, filename, kind, reason, attempts, next_attempt_at, config"
FORGET_ATTEMPTS = "DELETE FROM fetch_attempts WHERE project=? AND filename=?"


def _attempts(row: sqlite3.Row) -> FetchAttempts:
    return FetchAttempts(
        project=NormalizedName(row["project"]),
        filename=row["filename"],
        kind=FailureKind(row["kind"]),
        reason=row["reason"],
        attempts=row["attempts"],
        next_attempt_at=parse_timestamp(row["next_attempt_at"]),
        config=row["config"],
    )


class FetchTables:
    """Needs the host class's connection helpers (declared here for the type checker)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _event(
        self,
        db: sqlite3.Connection,
        at: datetime,
        project: NormalizedName,
        record: FileRecord | None,
        from_state: str | None,
        to_state: str,
        reason: str,
        actor: str,
    ) -> None:
        raise NotImplementedError

    def fetch_attempts(self, project: NormalizedName | None = None) -> list[FetchAttempts]:
        if project is None:
            rows = self._query(f"SELECT {_COLUMNS} FROM fetch_attempts")
        else:
            rows = self._query(f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=?", (project,))
        return [_attempts(row) for row in rows]

    def fetch_attempt(self, project: NormalizedName, filename: str) -> FetchAttempts | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=? AND filename=?",
            (project, filename),
        )
        return _attempts(rows[0]) if rows else None

    def record_fetch_failure(
        self,
        record: FileRecord,
        kind: FailureKind,
        reason: str,
        config: str,
        actor: str,
        at: datetime,
    ) -> FetchAttempts:
        with self._write() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=? AND filename=?",
                (record.project, record.filename),
            ).fetchone()
            before = _attempts(row) if row is not None else None
            after = next_attempts(before, record, kind, reason, config, at)
            if after is None:
                assert before is not None
                return before
            db.execute(
                f"INSERT OR REPLACE INTO fetch_attempts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    after.project,
                    after.filename,
                    kind.value,
                    reason,
                    after.attempts,
                    format_timestamp(after.next_attempt_at),
                    config,
                ),
            )
            note = failure_note(after)
            self._event(db, at, record.project, record, record.state, "incident", note, actor)
        return after

    def forget_fetch_attempts(self, project: NormalizedName, filename: str) -> None:
        with self._write() as db:
            db.execute(FORGET_ATTEMPTS, (project, filename))
