"""The download log on SQLite: its own file beside the ledger (``downloads.sqlite3``).

Its own file, so the batches the server writes never wait on (or hold up) a decision in
the ledger. WAL, and ``synchronous=NORMAL``: a download log that loses its last batch to a
power cut is still an answer, while a sync per batch would cost every batch a disk flush.
The SQL is plain (no SQLite-only functions) so a PostgreSQL implementation reads the same.
"""

import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.download_log.interface import Download, ExposureRow, Installer, same_version
from quarantine.errors import LedgerError

DOWNLOAD_LOG_FILE = "downloads.sqlite3"  # in the data directory, beside the ledger
_SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    at TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    client TEXT NOT NULL,
    identity TEXT,
    installer TEXT NOT NULL,
    installer_version TEXT NOT NULL,
    python TEXT NOT NULL,
    implementation TEXT NOT NULL,
    system TEXT NOT NULL,
    distro TEXT NOT NULL,
    cpu TEXT NOT NULL,
    ci INTEGER NOT NULL,
    downloads INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS downloads_by_project ON downloads (project, at);
CREATE INDEX IF NOT EXISTS downloads_by_file ON downloads (sha256);
CREATE INDEX IF NOT EXISTS downloads_by_time ON downloads (at);
"""
_COLUMNS = (
    "project, version, filename, client, identity, installer, installer_version, python, "
    "implementation, system, distro, cpu, ci"
)
# Constants only; every value is a bound parameter ("?").
_SELECT = "SELECT " + _COLUMNS + ", SUM(downloads) AS n, MIN(at) AS first, MAX(at) AS last"
_GROUP = " GROUP BY " + _COLUMNS + " ORDER BY last DESC"


def _row(download: Download) -> tuple[Any, ...]:
    who = download.installer
    return (
        format_timestamp(download.at),
        download.project,
        download.version,
        download.filename,
        download.sha256,
        download.client,
        download.identity,
        who.name,
        who.version,
        who.python,
        who.implementation,
        who.system,
        who.distro,
        who.cpu,
        1 if who.ci else 0,
        download.count,
    )


def _exposure(row: sqlite3.Row) -> ExposureRow:
    installer = Installer(
        row["installer"],
        row["installer_version"],
        row["python"],
        row["implementation"],
        row["system"],
        row["distro"],
        row["cpu"],
        bool(row["ci"]),
    )
    return ExposureRow(
        row["project"],
        row["version"],
        row["filename"],
        row["client"],
        row["identity"],
        installer,
        int(row["n"]),
        parse_timestamp(row["first"]),
        parse_timestamp(row["last"]),
    )


class SqliteDownloadLog:
    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise LedgerError(f"no download log at {path}: no mirror has served files from here")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise LedgerError(f"cannot open the download log {path}: {error}") from error
        self._lock = threading.Lock()  # one connection: the flushing thread, or a reader

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def write(self, downloads: Sequence[Download]) -> None:
        if not downloads:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO downloads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(download) for download in downloads],
            )

    def prune(self, before: datetime) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM downloads WHERE at < ?", (format_timestamp(before),))
            return cursor.rowcount

    def _grouped(self, where: str, params: Sequence[Any]) -> list[ExposureRow]:
        with self._lock:
            query = _SELECT + " FROM downloads WHERE " + where + _GROUP
            rows = self._db.execute(query, tuple(params)).fetchall()
        return [_exposure(row) for row in rows]

    def exposure(
        self, project: NormalizedName, version: str | None, since: datetime | None
    ) -> list[ExposureRow]:
        where, params = "project = ?", [str(project)]
        if since is not None:
            where += " AND at >= ?"
            params.append(format_timestamp(since))
        rows = self._grouped(where, params)
        if version is None:
            return rows
        wanted = Version(version)
        return [row for row in rows if same_version(row.version, wanted)]

    def exposure_of(self, sha256s: Collection[str]) -> list[ExposureRow]:
        digests = sorted(set(sha256s))
        if not digests:
            return []
        marks = ", ".join("?" for _ in digests)
        return self._grouped(f"sha256 IN ({marks})", digests)
