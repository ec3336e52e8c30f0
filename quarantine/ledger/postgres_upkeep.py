"""The PostgreSQL ledger's upkeep tables and counts: fetch retries, the blob references
``lazaretto fsck`` checks, and the tally ``/metrics`` reads. A mixin of ``PostgresLedger``
(same pool, same transactions), mirroring ``sqlite_fetches`` and ``sqlite_blobs``."""

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName
from psycopg.rows import DictRow

from quarantine.blob_references import BlobReference
from quarantine.ledger.interface import LedgerTally
from quarantine.ledger.postgres_admin import Conn, utc
from quarantine.ledger.rows import blob_references, failure_note, next_attempts
from quarantine.models import FileRecord, FileState
from quarantine.outbox import DeliveryState
from quarantine.platforms import OUTSIDE
from quarantine.vetting.fetch_retry import FailureKind, FetchAttempts

_COLUMNS = "project, filename, kind, reason, attempts, next_attempt_at, config"
FORGET_ATTEMPTS = "DELETE FROM fetch_attempts WHERE project=%s AND filename=%s"


def _attempts(row: DictRow) -> FetchAttempts:
    moment = utc(row["next_attempt_at"])
    assert moment is not None
    return FetchAttempts(
        project=NormalizedName(row["project"]),
        filename=row["filename"],
        kind=FailureKind(row["kind"]),
        reason=row["reason"],
        attempts=row["attempts"],
        next_attempt_at=moment,
        config=row["config"],
    )


class PostgresUpkeep:
    """Needs the host class's connection helpers (declared here for the type checker)."""

    def _write(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[DictRow]:
        raise NotImplementedError

    def _row_seq(self, db: Conn) -> int:
        raise NotImplementedError

    def _event(
        self,
        db: Conn,
        at: datetime,
        project: NormalizedName,
        record: FileRecord | None,
        from_state: str | None,
        to_state: str,
        reason: str,
        actor: str,
    ) -> None:
        raise NotImplementedError

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None:
        raise NotImplementedError

    # -- fetch retries --------------------------------------------------------------------

    def fetch_attempts(self, project: NormalizedName | None = None) -> list[FetchAttempts]:
        if project is None:
            rows = self._query(f"SELECT {_COLUMNS} FROM fetch_attempts")
        else:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=%s", (project,)
            )
        return [_attempts(row) for row in rows]

    def fetch_attempt(self, project: NormalizedName, filename: str) -> FetchAttempts | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=%s AND filename=%s",
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
                f"SELECT {_COLUMNS} FROM fetch_attempts WHERE project=%s AND filename=%s "
                "FOR UPDATE",
                (record.project, record.filename),
            ).fetchone()
            before = _attempts(row) if row is not None else None
            after = next_attempts(before, record, kind, reason, config, at)
            if after is None:
                assert before is not None
                return before
            db.execute(
                f"INSERT INTO fetch_attempts ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project, filename) DO UPDATE SET kind=excluded.kind, "
                "reason=excluded.reason, attempts=excluded.attempts, "
                "next_attempt_at=excluded.next_attempt_at, config=excluded.config",
                (
                    after.project,
                    after.filename,
                    kind.value,
                    reason,
                    after.attempts,
                    after.next_attempt_at,
                    config,
                ),
            )
            note = failure_note(after)
            self._event(db, at, record.project, record, record.state, "incident", note, actor)
        return after

    def forget_fetch_attempts(self, project: NormalizedName, filename: str) -> None:
        with self._write() as db:
            db.execute(FORGET_ATTEMPTS, (project, filename))

    # -- the blob store, as the ledger sees it ----------------------------------------------

    def blob_references(self) -> list[BlobReference]:
        rows = self._query(
            "SELECT project, filename, sha256, size, stored, core_metadata_sha256, "
            "provenance_sha256 FROM files WHERE sha256 != ''"
        )
        return [reference for row in rows for reference in _references(row)]

    def forget_blob(self, sha256: str, reason: str, actor: str, at: datetime) -> list[str]:
        """As ``SqliteLedger.forget_blob``: files whose bytes the blob held are marked not
        stored, a provenance it held is fetched again, each with an incident."""
        rows = self._query(
            "SELECT project, filename FROM files WHERE (sha256=%s AND stored) "
            "OR provenance_sha256=%s",
            (sha256, sha256),
        )
        records = [self.file(NormalizedName(row["project"]), row["filename"]) for row in rows]
        with self._write() as db:
            seq = self._row_seq(db)
            db.execute(
                "UPDATE files SET stored=false, seq=%s WHERE sha256=%s AND stored", (seq, sha256)
            )
            db.execute(
                "UPDATE files SET provenance_sha256=NULL, seq=%s WHERE provenance_sha256=%s",
                (seq, sha256),
            )
            for record in records:
                if record is not None:
                    state = record.state.value
                    self._event(db, at, record.project, record, state, "incident", reason, actor)
        return [record.filename for record in records if record is not None]

    # -- counts for metrics ---------------------------------------------------------------

    def tally(self) -> LedgerTally:
        with self._snapshot() as db:  # one snapshot: the counts agree with each other
            by_state = db.execute("SELECT state, count(*) AS n FROM files GROUP BY state")
            states = {FileState(row["state"]): int(row["n"]) for row in by_state.fetchall()}
            queue = db.execute(
                "SELECT count(*) AS n FROM files WHERE state=%s AND left(reason, %s) != %s",
                (FileState.HELD.value, len(OUTSIDE), OUTSIDE),
            ).fetchone()
            backlog = db.execute(
                "SELECT count(*) AS n FROM deliveries WHERE state=%s",
                (DeliveryState.PENDING.value,),
            ).fetchone()
            events = db.execute("SELECT coalesce(max(id), 0) AS n FROM events").fetchone()
        assert queue is not None and backlog is not None and events is not None
        return LedgerTally(states, int(queue["n"]), int(backlog["n"]), int(events["n"]))


def _references(row: DictRow) -> Iterator[BlobReference]:
    others = {"metadata": row["core_metadata_sha256"], "provenance": row["provenance_sha256"]}
    return blob_references(
        row["project"], row["filename"], row["sha256"], row["size"], bool(row["stored"]), others
    )
