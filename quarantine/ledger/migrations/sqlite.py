"""The SQLite ledger's schema steps, applied when it opens (as before there were steps).

The version lives where every lazaretto since the first reads it, the ``meta`` row
``schema_version``: an older lazaretto then refuses a ledger a newer one migrated.
Columns added "in place" (``ADDED_IN_PLACE``) came without a version of their own, since
older code reads and writes the other columns by name; they are added when missing.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from quarantine.ledger.migrations import Step, pending, refuse_newer
from quarantine.ledger.sqlite_fetches import FETCH_SCHEMA


@dataclass(frozen=True)
class SqliteStep(Step):
    statements: tuple[str, ...]


def _statements(script: str) -> tuple[str, ...]:
    """One script as statements: ``executescript`` would commit the open transaction."""
    return tuple(part.strip() for part in script.split(";") if part.strip())


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('change_seq', '0');
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_look_ok TEXT,
    status TEXT NOT NULL,
    status_reason TEXT,
    etag TEXT,
    serial INTEGER,
    seq INTEGER NOT NULL
);
CREATE TABLE files (
    project TEXT NOT NULL REFERENCES projects(name),
    filename TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER,
    upload_time TEXT,
    first_seen TEXT NOT NULL,
    clock_start TEXT NOT NULL,
    established INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    url TEXT NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    core_metadata_sha256 TEXT,
    provenance_url TEXT,
    provenance_sha256 TEXT,
    stored INTEGER NOT NULL,
    listed INTEGER NOT NULL,
    anomaly TEXT,
    state_version INTEGER NOT NULL,
    PRIMARY KEY (project, filename)
);
CREATE INDEX files_by_digest ON files (sha256);
CREATE INDEX files_by_state ON files (state);
CREATE INDEX projects_by_seq ON projects (seq);
CREATE INDEX projects_by_last_look ON projects (last_look_ok);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    project TEXT NOT NULL,
    filename TEXT,
    sha256 TEXT,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX events_by_project ON events (project, at);
CREATE TABLE evidence (
    project TEXT NOT NULL,
    filename TEXT NOT NULL,
    check_name TEXT NOT NULL,
    action TEXT NOT NULL,
    summary TEXT NOT NULL,
    findings TEXT NOT NULL,
    details TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (project, filename, check_name)
);
CREATE TABLE overrides (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '*',
    reason TEXT NOT NULL,
    until TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (kind, project, version)
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    created_at TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE deliveries (
    event_id TEXT NOT NULL REFERENCES outbox(event_id),
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT,
    last_error TEXT,
    PRIMARY KEY (event_id, channel)
);
CREATE INDEX deliveries_by_state ON deliveries (state, next_attempt_at);
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
)
"""

# Rows written before have seq 0: every page built since a start has read them all, so
# none is missed.
_SCHEMA_2 = """
ALTER TABLE files ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX files_by_change ON files (project, seq)
"""

# IF NOT EXISTS: ledgers of a development build made the table before it was a step.
_SCHEMA_3 = FETCH_SCHEMA

STEPS: tuple[SqliteStep, ...] = (
    SqliteStep(1, "the ledger's tables", _statements(_SCHEMA_1)),
    SqliteStep(2, "files.seq, the change that last wrote each row", _statements(_SCHEMA_2)),
    SqliteStep(3, "fetch_attempts, the retries of failed fetches", _statements(_SCHEMA_3)),
    # NULL for every file seen before: vetted as soon as they cool, as they always were.
    SqliteStep(
        4,
        "files.deferral, superseded releases vetted on download",
        ("ALTER TABLE files ADD COLUMN deferral TEXT",),
    ),
)
LATEST = STEPS[-1].version


def _add_versions(db: sqlite3.Connection) -> bool:
    """projects.versions (the upstream's PEP 700 versions, a JSON list)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(projects)")}
    if "versions" in columns:
        return False
    db.execute("ALTER TABLE projects ADD COLUMN versions TEXT")
    # Without the ETag the next look reads the whole page, versions and all, where a 304
    # would leave them unknown until the project changes upstream.
    db.execute("UPDATE projects SET etag=NULL")
    return True


ADDED_IN_PLACE: tuple[Callable[[sqlite3.Connection], bool], ...] = (_add_versions,)


def current_version(db: sqlite3.Connection) -> int:
    """The ledger's schema version; 0 for a file without a ledger."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'")
    if found.fetchone() is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def migrate(db: sqlite3.Connection, where: str) -> list[SqliteStep]:
    """Apply the missing steps; call it inside a write transaction (all or nothing)."""
    current = current_version(db)
    refuse_newer(current, STEPS, where)
    steps = pending(current, STEPS)
    for step in steps:
        for statement in step.statements:
            db.execute(statement)
    if steps:
        db.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(LATEST),),
        )
    for add in ADDED_IN_PLACE:
        add(db)
    return steps


def pending_steps(db: sqlite3.Connection, where: str) -> list[SqliteStep]:
    """What ``migrate`` would apply (for ``lazaretto migrate --dry-run``)."""
    current = current_version(db)
    refuse_newer(current, STEPS, where)
    return pending(current, STEPS)
