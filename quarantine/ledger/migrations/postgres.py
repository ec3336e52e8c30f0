"""The PostgreSQL ledger's schema steps.

Applied by ``lazaretto migrate`` only (never by a server at start: several replicas
starting together, or a rolling update, must not each alter the schema). Each step runs
in one transaction with the version row it adds, under an advisory lock so two
``migrate`` runs at once apply each step once.
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from quarantine.ledger.migrations import Step, pending, refuse_newer

# Held for a migration's transaction: one migrator at a time (any key, fixed).
MIGRATION_LOCK = 0x6C617A61  # "laza"


@dataclass(frozen=True)
class SqlStep(Step):
    sql: str


# Names, filenames and other keys that pages and listings are ordered by compare as
# bytes ("C"), as in SQLite, whatever the database's default collation.
_BASE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- change_seq grows with every change a page shows; overrides_version with every admin
-- change to exemptions, blocks or the cutoff.
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters VALUES ('change_seq', 0), ('overrides_version', 0);
CREATE TABLE projects (
    name TEXT COLLATE "C" PRIMARY KEY,
    first_seen TIMESTAMPTZ NOT NULL,
    last_look_ok TIMESTAMPTZ,
    status TEXT NOT NULL,
    status_reason TEXT,
    etag TEXT,
    serial BIGINT,
    seq BIGINT NOT NULL,
    versions JSONB  -- the upstream's PEP 700 versions, a list; NULL: none given
);
CREATE INDEX projects_by_seq ON projects (seq);
CREATE INDEX projects_by_last_look ON projects (last_look_ok);
CREATE TABLE files (
    project TEXT COLLATE "C" NOT NULL REFERENCES projects(name),
    filename TEXT COLLATE "C" NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT,
    upload_time TIMESTAMPTZ,
    first_seen TIMESTAMPTZ NOT NULL,
    clock_start TIMESTAMPTZ NOT NULL,
    established BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    url TEXT NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    core_metadata_sha256 TEXT,
    provenance_url TEXT,
    provenance_sha256 TEXT,
    stored BOOLEAN NOT NULL,
    listed BOOLEAN NOT NULL,
    anomaly TEXT,
    state_version INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (project, filename)
);
CREATE INDEX files_by_digest ON files (sha256);
CREATE INDEX files_by_state ON files (state);
CREATE INDEX files_by_change ON files (project, seq);
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
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
    project TEXT COLLATE "C" NOT NULL,
    filename TEXT COLLATE "C" NOT NULL,
    check_name TEXT COLLATE "C" NOT NULL,
    action TEXT NOT NULL,
    summary TEXT NOT NULL,
    findings JSONB NOT NULL,
    details JSONB NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project, filename, check_name)
);
CREATE TABLE overrides (
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '*',
    reason TEXT NOT NULL,
    until TIMESTAMPTZ,
    actor TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, project, version)
);
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    payload JSONB NOT NULL
);
CREATE TABLE deliveries (
    event_id TEXT COLLATE "C" NOT NULL REFERENCES outbox(event_id),
    channel TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    last_error TEXT,
    PRIMARY KEY (event_id, channel)
);
CREATE INDEX deliveries_by_state ON deliveries (state, next_attempt_at);
CREATE TABLE tokens (
    name TEXT COLLATE "C" PRIMARY KEY,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TIMESTAMPTZ
);
"""

_FETCH_ATTEMPTS = """
CREATE TABLE fetch_attempts (
    project TEXT NOT NULL,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    config TEXT NOT NULL,
    PRIMARY KEY (project, filename)
);
"""

# NULL for every file seen before: vetted as soon as they cool, as they always were.
_DEFERRAL = "ALTER TABLE files ADD COLUMN deferral TEXT;"

# The download log (quarantine.download_log.postgres): who fetched which file. A row is
# one file to one client and installer within a second, ``downloads`` times.
_DOWNLOADS = """
CREATE TABLE downloads (
    at TIMESTAMPTZ NOT NULL,
    project TEXT COLLATE "C" NOT NULL,
    version TEXT NOT NULL,
    filename TEXT COLLATE "C" NOT NULL,
    sha256 TEXT NOT NULL,
    client TEXT COLLATE "C" NOT NULL,
    identity TEXT COLLATE "C",
    installer TEXT NOT NULL,
    installer_version TEXT NOT NULL,
    python TEXT NOT NULL,
    implementation TEXT NOT NULL,
    system TEXT NOT NULL,
    distro TEXT NOT NULL,
    cpu TEXT NOT NULL,
    ci BOOLEAN NOT NULL,
    downloads INTEGER NOT NULL
);
CREATE INDEX downloads_by_project ON downloads (project, at);
CREATE INDEX downloads_by_file ON downloads (sha256);
CREATE INDEX downloads_by_time ON downloads (at);
"""

STEPS: tuple[SqlStep, ...] = (
    SqlStep(1, "the ledger's tables", _BASE),
    SqlStep(2, "fetch_attempts, the retries of failed fetches", _FETCH_ATTEMPTS),
    SqlStep(3, "files.deferral, superseded releases vetted on download", _DEFERRAL),
    SqlStep(4, "downloads, the download log", _DOWNLOADS),
)
LATEST = STEPS[-1].version
DOWNLOADS_STEP = 4  # the step that makes the download log's table

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def current_version(db: psycopg.Connection[Any]) -> int:
    """The highest step applied; 0 for a database without the ledger."""
    cursor = db.cursor(row_factory=tuple_row)
    found = cursor.execute("SELECT to_regclass('schema_version')").fetchone()
    if found is None or found[0] is None:
        return 0
    row = cursor.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(db: psycopg.Connection[Any], where: str, *, dry_run: bool = False) -> list[SqlStep]:
    """Apply the missing steps (or, ``dry_run``, only name them); returns them.

    ``db`` must be in autocommit mode: each step is its own transaction.
    """
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        current = current_version(db)
        refuse_newer(current, STEPS, where)
        steps = pending(current, STEPS)
        if dry_run:
            return steps
        db.execute(_VERSION_TABLE)
        for step in steps:  # all in this one transaction: a failed step leaves no trace
            db.execute(step.sql.encode())
            db.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (step.version, step.description),
            )
    return steps
