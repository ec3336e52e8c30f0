"""The SQLite ledger's view of the blob store, for ``lazaretto fsck``.

A mixin of ``SqliteLedger`` (same connection, same transactions), like the admin tables.
"""

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName

from quarantine.blob_references import BlobReference
from quarantine.ledger.rows import blob_references
from quarantine.models import FileRecord


class BlobTables:
    """Needs the host class's connection helpers (declared here for the type checker)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _row_seq(self, db: sqlite3.Connection) -> int:
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

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None:
        raise NotImplementedError

    def blob_references(self) -> list[BlobReference]:
        rows = self._query(
            "SELECT project, filename, sha256, size, stored, core_metadata_sha256, "
            "provenance_sha256 FROM files WHERE sha256 != ''"
        )
        return [
            reference
            for row in rows
            for reference in blob_references(
                row["project"],
                row["filename"],
                row["sha256"],
                row["size"],
                bool(row["stored"]),
                {"metadata": row["core_metadata_sha256"], "provenance": row["provenance_sha256"]},
            )
        ]

    def forget_blob(self, sha256: str, reason: str, actor: str, at: datetime) -> list[str]:
        """The blob ``sha256`` is gone from the store: files whose bytes it held are marked
        not stored (fetched and verified again), a provenance it held is fetched again.
        Each file affected gets an incident saying why; returns their filenames."""
        rows = self._query(
            "SELECT project, filename FROM files WHERE (sha256=? AND stored=1) "
            "OR provenance_sha256=?",
            (sha256, sha256),
        )
        records = [self.file(NormalizedName(row["project"]), row["filename"]) for row in rows]
        with self._write() as db:
            seq = self._row_seq(db)
            db.execute(
                "UPDATE files SET stored=0, seq=? WHERE sha256=? AND stored=1", (seq, sha256)
            )
            db.execute(
                "UPDATE files SET provenance_sha256=NULL, seq=? WHERE provenance_sha256=?",
                (seq, sha256),
            )
            for record in records:
                if record is not None:
                    state = record.state.value
                    self._event(db, at, record.project, record, state, "incident", reason, actor)
        return [record.filename for record in records if record is not None]
