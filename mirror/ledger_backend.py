"""Which ledger a process uses: SQLite in the data directory, or a PostgreSQL database.

``ledger = "sqlite"`` (the default) or ``ledger = "postgresql://user@host:5432/lazaretto"``
(``LAZARETTO_LEDGER``). The password comes from ``ledger_password_file``, from libpq's own
``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``), or, least advisable, the URL; messages
name the database by its URL without it.
"""

from pathlib import Path

from mirror.errors import ConfigError
from mirror.ledger_url import SQLITE, redacted
from mirror.settings import Settings
from quarantine.download_log.interface import DownloadLog
from quarantine.download_log.sqlite import DOWNLOAD_LOG_FILE, SqliteDownloadLog
from quarantine.ledger.interface import Ledger
from quarantine.ledger.lease import Lease


def is_postgres(settings: Settings) -> bool:
    return settings.ledger != SQLITE


def conninfo(settings: Settings) -> str:
    """The connection string, with the password from ``ledger_password_file`` if set."""
    if settings.ledger_password_file is None:
        return settings.ledger
    try:
        password = settings.ledger_password_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"ledger_password_file: cannot read {settings.ledger_password_file}: {error.strerror}"
        ) from error
    from psycopg.conninfo import make_conninfo

    return make_conninfo(settings.ledger, password=password)


def where(settings: Settings) -> str:
    if is_postgres(settings):
        return redacted(settings.ledger)
    return str(sqlite_path(settings))


def sqlite_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "ledger.sqlite3"


def open_ledger(settings: Settings, *, create: bool = True) -> Ledger:
    """The configured ledger. ``create=False`` (admin commands) never makes an empty
    SQLite one; a PostgreSQL one is only ever made by ``lazaretto migrate``."""
    if is_postgres(settings):
        from quarantine.ledger.postgres import PostgresLedger

        return PostgresLedger(
            conninfo(settings), where=where(settings), pool_size=settings.ledger_pool_size
        )
    from quarantine.ledger.sqlite import SqliteLedger

    return SqliteLedger(sqlite_path(settings), create=create)


def open_download_log(settings: Settings, *, create: bool = True) -> DownloadLog | None:
    """The download log, in the ledger's database; None when ``create=False`` and a
    SQLite data directory has none yet (nothing served from it)."""
    if is_postgres(settings):
        from quarantine.download_log.postgres import PostgresDownloadLog

        return PostgresDownloadLog(conninfo(settings), where=where(settings))
    path = Path(settings.data_dir) / DOWNLOAD_LOG_FILE
    if not create and not path.exists():
        return None
    return SqliteDownloadLog(path, create=create)


def open_lease(settings: Settings, name: str) -> Lease:
    """The lease several processes on this ledger contend for: PostgreSQL's advisory
    lock, or on one host a flock in the data directory."""
    if is_postgres(settings):
        from quarantine.ledger.lease_postgres import PostgresLease

        return PostgresLease(conninfo(settings), name)
    from quarantine.ledger.lease_file import FileLease

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return FileLease(Path(settings.data_dir) / f"{name}.lease", name)
