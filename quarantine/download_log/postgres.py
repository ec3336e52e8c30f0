"""The download log on PostgreSQL: the ``downloads`` table in the ledger's database.

Same semantics as the SQLite log (the conformance suite runs on both). The table comes
from a step of the ledger's migrations (``lazaretto migrate``); opening a database
without it says to run that. The log has a small pool of its own, apart from the
ledger's: a batch being written never takes a connection a decision waits for, and its
inserts lock no ledger row, so several replicas write their batches side by side.
"""

import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from quarantine.download_log.interface import Download, ExposureRow, Installer, same_version
from quarantine.errors import LedgerError, LedgerNotMigrated
from quarantine.ledger.migrations import postgres as migrations
from quarantine.ledger.migrations import refuse_newer

CONNECT_TIMEOUT_SECONDS = 10.0
# One connection for the flushing task, one for a reader (a report, a withdrawal notice).
POOL_SIZE = 2

_COLUMNS = (
    "project, version, filename, client, identity, installer, installer_version, python, "
    "implementation, system, distro, cpu, ci"
)
# Constants only; every value is a bound parameter ("%s").
_INSERT = (
    "INSERT INTO downloads (at, project, version, filename, sha256, client, identity, "
    "installer, installer_version, python, implementation, system, distro, cpu, ci, "
    "downloads) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_SELECT = "SELECT " + _COLUMNS + ", SUM(downloads) AS n, MIN(at) AS first, MAX(at) AS last"
_GROUP = " GROUP BY " + _COLUMNS + " ORDER BY last DESC"

Conn = Connection[DictRow]


def _row(download: Download) -> tuple[Any, ...]:
    who = download.installer
    return (
        download.at, download.project, download.version, download.filename, download.sha256,
        download.client, download.identity, who.name, who.version, who.python,
        who.implementation, who.system, who.distro, who.cpu, who.ci, download.count,
    )  # fmt: skip


def _exposure(row: DictRow) -> ExposureRow:
    installer = Installer(
        row["installer"],
        row["installer_version"],
        row["python"],
        row["implementation"],
        row["system"],
        row["distro"],
        row["cpu"],
        row["ci"],
    )
    return ExposureRow(
        row["project"],
        row["version"],
        row["filename"],
        row["client"],
        row["identity"],
        installer,
        int(row["n"]),
        row["first"].astimezone(UTC),
        row["last"].astimezone(UTC),
    )


class PostgresDownloadLog:
    def __init__(self, conninfo: str, *, where: str) -> None:
        """Open the log in the ledger's database at ``conninfo`` (password included);
        ``where`` names it in messages, without the password."""
        self._lock = threading.Lock()  # only for close
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="lazaretto-downloads",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
            with self._pool.connection() as db:
                current = migrations.current_version(db)
            refuse_newer(current, migrations.STEPS, where)
            if current < migrations.DOWNLOADS_STEP:
                raise LedgerNotMigrated(where, current, migrations.LATEST)
        except PoolTimeout as error:
            self._pool.close()
            raise LedgerError(
                f"cannot connect to the download log at {where} "
                f"within {CONNECT_TIMEOUT_SECONDS:g} s"
            ) from error
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._pool.close()

    def write(self, downloads: Sequence[Download]) -> None:
        if not downloads:
            return
        with self._pool.connection() as db, db.transaction(), db.cursor() as cursor:
            cursor.executemany(_INSERT, [_row(download) for download in downloads])

    def prune(self, before: datetime) -> int:
        with self._pool.connection() as db:
            cursor = db.execute("DELETE FROM downloads WHERE at < %s", (before,))
            return cursor.rowcount

    def _grouped(self, where: str, params: Sequence[Any]) -> list[ExposureRow]:
        query = _SELECT + " FROM downloads WHERE " + where + _GROUP
        with self._pool.connection() as db:
            rows = db.execute(query.encode(), tuple(params)).fetchall()
        return [_exposure(row) for row in rows]

    def exposure(
        self, project: NormalizedName, version: str | None, since: datetime | None
    ) -> list[ExposureRow]:
        where = "project = %s"
        params: list[object] = [str(project)]
        if since is not None:
            where += " AND at >= %s"
            params.append(since)
        rows = self._grouped(where, params)
        if version is None:
            return rows
        wanted = Version(version)
        return [row for row in rows if same_version(row.version, wanted)]

    def exposure_of(self, sha256s: Collection[str]) -> list[ExposureRow]:
        digests = sorted(set(sha256s))
        if not digests:
            return []
        return self._grouped("sha256 = ANY(%s)", [digests])
