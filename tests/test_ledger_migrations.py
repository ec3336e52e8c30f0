"""Schema migrations of both ledger backends, and ``lazaretto migrate``."""

import os
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from packaging.utils import NormalizedName
from test_ledger import DEMO, NEW, OLD, T0, look, snapshot

from mirror.ledger_url import redacted
from quarantine.errors import LedgerError, LedgerNotMigrated
from quarantine.ledger.migrations import postgres as postgres_steps
from quarantine.ledger.migrations import sqlite as sqlite_steps
from quarantine.ledger.postgres import PostgresLedger
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.models import FileState
from support.postgres import PostgresServer, migrate_postgres
from support.process import LAZARETTO

# Made by the SQLite ledger as it was before migrations were steps (schema 2, commit
# 80d23dc): three files of demo (one promoted), a block, a token and evidence.
SCHEMA_2 = Path(__file__).parent / "fixtures" / "ledger" / "schema-2.sqlite3"


def _migrate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAZARETTO, "migrate", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
        timeout=120,
    )


def _columns(db: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {
        table: sorted((row[1], row[2]) for row in db.execute(f"PRAGMA table_info({table})"))
        for table in tables
    }


def test_a_ledger_made_before_migrations_opens_with_everything_in_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    shutil.copy(SCHEMA_2, path)
    ledger = SqliteLedger(path)
    try:
        assert [r.state for r in ledger.files(DEMO)] == [
            FileState.PROMOTED,
            FileState.HELD,
            FileState.HELD,
        ]
        assert ledger.runtime_overrides().blocks == {(DEMO, "1.0"): "a bad release"}
        assert [t.name for t in ledger.tokens()] == ["ci"]
        assert list(ledger.evidence(DEMO)) == [NEW.filename]
        assert len(ledger.outbox()) == 1
        seq = ledger.change_seq()
        record = ledger.file(DEMO, NEW.filename)
        assert record is not None
        ledger.transition(record, FileState.REJECTED, "bad", "p", T0)
        assert ledger.change_seq() > seq
    finally:
        ledger.close()


def test_a_fresh_sqlite_ledger_has_the_schema_an_old_one_is_migrated_to(tmp_path: Path) -> None:
    SqliteLedger(tmp_path / "fresh.sqlite3").close()
    shutil.copy(SCHEMA_2, tmp_path / "old.sqlite3")
    SqliteLedger(tmp_path / "old.sqlite3").close()
    fresh = sqlite3.connect(tmp_path / "fresh.sqlite3")
    old = sqlite3.connect(tmp_path / "old.sqlite3")
    try:
        assert _columns(fresh) == _columns(old)
        version = "SELECT value FROM meta WHERE key='schema_version'"
        latest = (str(sqlite_steps.LATEST),)
        assert fresh.execute(version).fetchone() == old.execute(version).fetchone() == latest
    finally:
        fresh.close()
        old.close()


def test_sqlite_refuses_a_ledger_newer_than_the_code(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match=r"schema 99, newer than this lazaretto .*upgrade"):
        SqliteLedger(path)


def test_migrate_on_sqlite_names_the_steps_then_reports_an_up_to_date_ledger(
    tmp_path: Path,
) -> None:
    env = {"LAZARETTO_DATA_DIR": str(tmp_path)}
    shutil.copy(SCHEMA_2, tmp_path / "ledger.sqlite3")
    dry = _migrate("--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would apply step 3: fetch_attempts" in dry.stdout
    assert _migrate(env=env).returncode == 0
    done = _migrate("--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert f"up to date (schema {sqlite_steps.LATEST})" in done.stdout


def test_postgres_is_never_migrated_by_opening_it(postgres_url: str) -> None:
    with pytest.raises(LedgerNotMigrated, match="run `lazaretto migrate`"):
        PostgresLedger(postgres_url, where="the test database")
    with psycopg.connect(postgres_url) as db:
        assert postgres_steps.current_version(db) == 0


def test_migrate_dry_run_then_migrate_then_again_changes_nothing(postgres_url: str) -> None:
    env = {"LAZARETTO_LEDGER": postgres_url}
    dry = _migrate("--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would apply step 1: the ledger's tables" in dry.stdout
    with psycopg.connect(postgres_url) as db:
        assert postgres_steps.current_version(db) == 0

    applied = _migrate(env=env)
    assert applied.returncode == 0, applied.stderr
    assert "applied step 1" in applied.stdout
    again = _migrate(env=env)
    assert again.returncode == 0, again.stderr
    assert f"up to date (schema {postgres_steps.LATEST})" in again.stdout

    ledger = PostgresLedger(postgres_url, where="the test database")
    try:
        look(ledger, snapshot(OLD, NEW), T0)
        assert len(ledger.files(DEMO)) == 2
    finally:
        ledger.close()


def test_postgres_refuses_a_ledger_newer_than_the_code(postgres_url: str) -> None:
    assert _migrate(env={"LAZARETTO_LEDGER": postgres_url}).returncode == 0
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_version (version, description) VALUES (99, 'future')")
    with pytest.raises(LedgerError, match="schema 99, newer than this lazaretto"):
        PostgresLedger(postgres_url, where="the test database")
    refused = _migrate(env={"LAZARETTO_LEDGER": postgres_url})
    assert refused.returncode != 0
    assert "upgrade lazaretto" in refused.stderr


def test_serve_refuses_an_unmigrated_postgres_in_one_line(
    postgres_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [LAZARETTO, "serve", "--port", "1", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LAZARETTO_LEDGER": postgres_url},
        timeout=120,
    )
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lazaretto: the ledger at postgresql://")
    assert "run `lazaretto migrate`" in last


def test_a_password_never_shows_in_messages(postgres_server: object, tmp_path: Path) -> None:
    secret = "s3cret-not-to-show"
    url = f"postgresql://nobody:{secret}@127.0.0.1:1/none"
    done = _migrate(env={"LAZARETTO_LEDGER": url, "LAZARETTO_DATA_DIR": str(tmp_path)})
    assert done.returncode != 0
    assert secret not in done.stderr + done.stdout
    assert "postgresql://nobody:***@127.0.0.1:1/none" in done.stderr


def test_a_password_in_the_query_never_shows_either() -> None:
    url = "postgresql://nobody@db.internal/none?sslmode=require&password=s3cret&sslpassword=k3y"
    shown = redacted(url)
    assert "s3cret" not in shown and "k3y" not in shown
    assert "sslmode=require" in shown and "password=***" in shown


def test_a_bad_ledger_setting_is_one_line_naming_the_key(tmp_path: Path) -> None:
    done = _migrate(env={"LAZARETTO_LEDGER": "mysql://x@y/z"})
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "lazaretto: configuration error: LAZARETTO_LEDGER: 'mysql://x@y/z' is neither "
        '"sqlite" nor a postgresql:// URL such as postgresql://lazaretto@db.internal:5432/lazaretto'
    )


def test_postgres_orders_names_as_sqlite_does_whatever_the_database_collation(
    postgres_server: PostgresServer,
) -> None:
    """In a collation that ignores punctuation "ab" sorts before "a-c";
    byte order, SQLite's, puts "a-c" first."""
    name = "test_icu_collation"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 '
            'LOCALE_PROVIDER icu ICU_LOCALE "en-US-u-ka-shifted"'
        )
    url = postgres_server.url(name)
    try:
        migrate_postgres(url)
        ledger = PostgresLedger(url, where="the test database")
        try:
            for project in ("ab", "a-c"):
                look(ledger, replace(snapshot(OLD), name=NormalizedName(project)), T0)
            assert ledger.projects() == ["a-c", "ab"]
        finally:
            ledger.close()
    finally:
        postgres_server.drop_database(url)
