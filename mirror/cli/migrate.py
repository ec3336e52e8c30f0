"""``lazaretto migrate [--dry-run]``: give the configured ledger the schema this code needs.

A PostgreSQL ledger is changed only by this command (``serve`` and ``work`` refuse one
that lacks a step); a SQLite ledger migrates itself when it opens, and this does the same
on request. Running it again when nothing is missing changes nothing.
"""

import argparse
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from mirror.ledger_backend import conninfo, is_postgres, open_ledger, sqlite_path, where
from mirror.settings import Settings
from quarantine.errors import LedgerError
from quarantine.ledger.migrations import Step
from quarantine.ledger.migrations import sqlite as sqlite_steps
from quarantine.ledger.sqlite_readers import open_connection

CONNECT_TIMEOUT_SECONDS = 10


def add_migrate_command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="create or update the ledger's schema (needed for PostgreSQL before `serve`)",
    )
    common(migrate)
    migrate.add_argument(
        "--dry-run", action="store_true", help="list the steps that would be applied; apply none"
    )


def run_migrate(settings: Settings, *, dry_run: bool) -> int:
    steps: Sequence[Step]
    if is_postgres(settings):
        from quarantine.ledger.migrations.postgres import LATEST

        steps, latest = _postgres(settings, dry_run), LATEST
    else:
        steps, latest = _sqlite(settings, dry_run), sqlite_steps.LATEST
    place = where(settings)
    if not steps:
        print(f"the ledger at {place} is up to date (schema {latest})")
        return 0
    verb = "would apply" if dry_run else "applied"
    for step in steps:
        print(f"{verb} step {step.version}: {step.description}")
    if not dry_run:
        print(f"the ledger at {place} is now at schema {latest}")
    return 0


def _postgres(settings: Settings, dry_run: bool) -> list[Step]:
    import psycopg  # here: a SQLite mirror's commands never pay for importing it

    from quarantine.ledger.migrations import postgres as postgres_steps

    place = where(settings)
    try:
        with psycopg.connect(
            conninfo(settings), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        ) as db:
            return list(postgres_steps.migrate(db, place, dry_run=dry_run))
    except psycopg.Error as error:
        cause = " ".join(str(error).split()) or type(error).__name__
        raise LedgerError(f"cannot migrate the ledger at {place}: {cause}") from error


def _sqlite(settings: Settings, dry_run: bool) -> list[Step]:
    path = sqlite_path(settings)
    steps = _sqlite_pending(path)
    if not dry_run:
        open_ledger(settings).close()  # it migrates as it opens
    return list(steps)


def _sqlite_pending(path: Path) -> list[sqlite_steps.SqliteStep]:
    if not path.exists():
        return list(sqlite_steps.STEPS)
    db = open_connection(path, read_only=True, create=False)
    try:
        return sqlite_steps.pending_steps(db, str(path))
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"cannot read the ledger at {path}: {error}") from error
    finally:
        db.close()
