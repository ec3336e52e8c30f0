"""Which ledger the tests' mirrors use: SQLite in their data directory (the default) or,
with ``LAZARETTO_TEST_LEDGER=postgresql``, a database of the session's PostgreSQL.

Each data directory a test gives a mirror gets a fresh, migrated database of its own, the
same one for every mirror, ``lazaretto`` command or direct read of that directory during the
test: what the SQLite file in it would be. The databases are dropped when the test ends.

``settings_for`` and ``lazaretto_serve`` ask here by themselves; a test that runs another
``lazaretto`` command passes ``lazaretto_env(data_dir)`` as its environment, and a test that
reads a mirror's ledger opens it with ``open_ledger(settings)``.
"""

import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mirror.ledger_backend import conninfo, is_postgres, sqlite_path
from mirror.ledger_backend import open_ledger as open_configured_ledger
from mirror.settings import Settings
from quarantine.ledger.interface import Ledger
from support.postgres import PostgresServer, migrate_postgres

SWITCH = "LAZARETTO_TEST_LEDGER"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
BACKENDS = (SQLITE, POSTGRESQL)
_TEMPLATE = "lazaretto_migrated"


def backend() -> str:
    """The backend the switch names (SQLite when it is unset)."""
    chosen = os.environ.get(SWITCH, "").strip().lower() or SQLITE
    if chosen not in BACKENDS:
        raise pytest.UsageError(f"{SWITCH}={chosen!r}: expected one of {', '.join(BACKENDS)}")
    return chosen


def on_postgres() -> bool:
    return backend() == POSTGRESQL


class _Databases:
    """One test's databases, one per data directory."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.by_data_dir: dict[Path, str] = {}

    def url_for(self, data_dir: Path) -> str:
        key = Path(data_dir).resolve()
        if key not in self.by_data_dir:
            template = _migrated_template(self.server)
            self.by_data_dir[key] = self.server.new_database(template=template)
        return self.by_data_dir[key]

    def drop_all(self) -> None:
        for url in self.by_data_dir.values():
            self.server.drop_database(url)
        self.by_data_dir.clear()


# Set by the conftest's autouse fixture for the test that runs (None: SQLite): settings_for
# and the other helpers are plain functions that many tests call without fixtures.
_active: _Databases | None = None
_templates: set[PostgresServer] = set()


def _migrated_template(server: PostgresServer) -> str:
    """A migrated database to copy (``CREATE DATABASE ... TEMPLATE`` copies its files: faster
    than migrating each new one)."""
    if server not in _templates:
        migrate_postgres(server.new_database(_TEMPLATE))
        _templates.add(server)
    return _TEMPLATE


@contextmanager
def postgres_for_this_test(server: PostgresServer) -> Iterator[None]:
    """Around one test: its mirrors use databases of ``server``, dropped after it."""
    global _active
    _active = _Databases(server)
    try:
        yield
    finally:
        _active.drop_all()
        _active = None


def mirrors_use_postgres() -> bool:
    """Whether the running test's mirrors use PostgreSQL."""
    return _active is not None


def ledger_setting(data_dir: Path) -> str:
    """The ``ledger`` setting for a mirror with this data directory."""
    return SQLITE if _active is None else _active.url_for(data_dir)


def ledger_env(data_dir: Path) -> dict[str, str]:
    """``LAZARETTO_LEDGER`` for a ``lazaretto`` process on this data directory, or nothing
    (the SQLite default)."""
    if _active is None:
        return {}
    return {"LAZARETTO_LEDGER": _active.url_for(data_dir)}


def lazaretto_env(data_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment for a ``lazaretto`` command on ``data_dir``: this process's,
    then ``env``, then the test ledger's."""
    return {**os.environ, **(env or {}), **ledger_env(data_dir)}


def command_env(args: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """The environment for ``lazaretto ARGS``: ``env``, with the test ledger of the data
    directory the command names, unless ``env`` names a ledger itself."""
    data_dir = named_data_dir(args, env)
    if "LAZARETTO_LEDGER" in env or data_dir is None:
        return dict(env)
    return {**env, **ledger_env(data_dir)}


def named_data_dir(args: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """The data directory of ``lazaretto ARGS`` run with ``env``, if either names one."""
    for at, arg in enumerate(args):
        if arg == "--data-dir" and at + 1 < len(args):
            return Path(args[at + 1])
        if arg.startswith("--data-dir="):
            return Path(arg.split("=", 1)[1])
    named = env.get("LAZARETTO_DATA_DIR")
    return Path(named) if named else None


def open_ledger(where: Settings | Path) -> Ledger:
    """The ledger of a mirror with these settings, or of the test ledger for this data
    directory (as ``settings_for`` gives it); close it when done."""
    settings = where if isinstance(where, Settings) else _settings_at(where)
    return open_configured_ledger(settings)


def ledger_rows(where: Settings | Path) -> list[str]:
    """Every row of every table of the ledger's database as text, sorted: what a test
    compares before and after, or searches for a secret that must not be kept."""
    settings = where if isinstance(where, Settings) else _settings_at(where)
    if is_postgres(settings):
        return sorted(_postgres_rows(conninfo(settings)))
    with sqlite3.connect(sqlite_path(settings)) as db:
        return sorted(db.iterdump())


def ledger_query(where: Settings | Path, *queries: str) -> list[list[tuple[Any, ...]]] | None:
    """The rows of read-only SQL queries (no parameters; SQL both backends share) on the
    ledger's database, read in one snapshot beside a live or a killed mirror; None when
    there is no ledger (a SQLite one its mirror has not made yet)."""
    settings = where if isinstance(where, Settings) else _settings_at(where)
    if is_postgres(settings):
        with psycopg.connect(conninfo(settings)) as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return [[tuple(row) for row in db.execute(query.encode())] for query in queries]
    try:
        file = sqlite3.connect(f"file:{sqlite_path(settings)}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return None
    try:
        file.execute("BEGIN")  # one snapshot for every query (WAL)
        return [[tuple(row) for row in file.execute(query)] for query in queries]
    finally:
        file.close()


def _settings_at(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, ledger=ledger_setting(data_dir))


def _postgres_rows(url: str) -> Iterator[str]:
    with psycopg.connect(url) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
            for row in db.execute(query):
                yield f"{table}: {row!r}"
