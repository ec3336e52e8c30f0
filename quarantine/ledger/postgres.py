"""The ledger on PostgreSQL: several replicas share one, each through a connection pool.

Same semantics as the SQLite ledger, which the conformance suite checks. Writers are
serialised, as SQLite's ``BEGIN IMMEDIATE`` serialises them: each write transaction
first locks the change counter's row. A row's seq is the counter's next value and an
outbox entry's id its identity's next value, both taken under that lock, so both grow in
commit order; a reader that remembers "everything up to N" (a kept page, the notifier's
outbox position) then never misses a row committed later with a smaller number.

Each write that grows the change counter also sends a notification at its commit, which
every replica's listener hears (``quarantine.ledger.postgres_listen``).

The schema is made and changed only by ``lazaretto migrate``
(``quarantine.ledger.migrations.postgres``): opening a database that lacks it is a
``LedgerNotMigrated`` error telling to run it.
"""

import json
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
from packaging.utils import NormalizedName
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from quarantine.clock import format_timestamp
from quarantine.errors import LedgerError, LedgerNotMigrated, StaleTransition
from quarantine.evidence import Action, Evidence
from quarantine.ledger.interface import ChangeListener
from quarantine.ledger.migrations import postgres as migrations
from quarantine.ledger.migrations import refuse_newer
from quarantine.ledger.postgres_admin import GLOBAL, Conn, PostgresAdmin, matches_nothing, utc
from quarantine.ledger.postgres_listen import CHANNEL, PostgresChangeListener
from quarantine.ledger.postgres_upkeep import FORGET_ATTEMPTS, PostgresUpkeep
from quarantine.ledger.rows import evidence_from, findings_document, outbox_entry
from quarantine.models import (
    Deferral,
    Event,
    FileRecord,
    FileState,
    ProjectRecord,
    ProjectStatus,
)
from quarantine.observe import Observation
from quarantine.platforms import OUTSIDE

ACTOR_VETTING = "system:vetting"
CONNECT_TIMEOUT_SECONDS = 10.0

_FILE_COLUMNS = (
    "project, filename, version, sha256, size, upload_time, first_seen, clock_start, "
    "established, state, reason, url, requires_python, yanked, core_metadata_sha256, "
    "provenance_url, provenance_sha256, stored, listed, anomaly, state_version, deferral"
)
_INSERT_FILE = f"INSERT INTO files ({_FILE_COLUMNS}, seq) VALUES ({', '.join(['%s'] * 23)})"
# A row's seq: the change counter's next value (the row is locked by the writer).
_ROW_SEQ = "(SELECT value + 1 FROM counters WHERE name='change_seq')"
_NEXT_SEQ = (
    "WITH grown AS (UPDATE counters SET value = value + 1 WHERE name='change_seq' "
    f"RETURNING value) SELECT value, pg_notify('{CHANNEL}', value::text) FROM grown"
)
_INSERT_EVENT = (
    "INSERT INTO events (at, project, filename, sha256, from_state, to_state, reason, actor) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_PROJECT_COLUMNS = (
    "name, first_seen, last_look_ok, status, status_reason, etag, serial, seq, versions"
)
_STATES = {state.value: state for state in FileState}
_dumps = partial(json.dumps, default=str)  # evidence details as the SQLite ledger keeps them


def _file_row(record: FileRecord, seq: int) -> tuple[Any, ...]:
    return (
        record.project, record.filename, record.version, record.sha256, record.size,
        record.upload_time, record.first_seen, record.clock_start, record.established,
        record.state.value, record.reason, record.url, record.requires_python, record.yanked,
        record.core_metadata_sha256, record.provenance_url, record.provenance_sha256,
        record.stored, record.listed, record.anomaly, record.state_version,
        record.deferral.value if record.deferral is not None else None, seq,
    )  # fmt: skip


def _file_record(row: Sequence[Any]) -> FileRecord:
    """A row selected as ``_FILE_COLUMNS``: FileRecord's fields in their order."""
    (
        project, filename, version, sha256, size, upload_time, first_seen, clock_start,
        established, state, reason, url, requires_python, yanked, core_metadata_sha256,
        provenance_url, provenance_sha256, stored, listed, anomaly, state_version, deferral,
    ) = row  # fmt: skip
    return FileRecord(
        NormalizedName(project), filename, version, sha256, size, utc(upload_time),
        first_seen.astimezone(UTC), clock_start.astimezone(UTC), established,
        _STATES[state], reason, url, requires_python, yanked, core_metadata_sha256,
        provenance_url, provenance_sha256, stored, listed, anomaly, state_version,
        None if deferral is None else Deferral(deferral),
    )  # fmt: skip


def _project_record(row: DictRow) -> ProjectRecord:
    return ProjectRecord(
        name=NormalizedName(row["name"]),
        first_seen=row["first_seen"].astimezone(UTC),
        last_look_ok=utc(row["last_look_ok"]),
        status=ProjectStatus(row["status"]),
        status_reason=row["status_reason"],
        etag=row["etag"],
        serial=row["serial"],
        seq=row["seq"],
        versions=None if row["versions"] is None else tuple(row["versions"]),
    )


def _versions(versions: tuple[str, ...] | None) -> Jsonb | None:
    return None if versions is None else Jsonb(list(versions))


def _configure(db: Conn) -> None:
    db.execute("SET TIME ZONE 'UTC'")


class PostgresLedger(PostgresUpkeep, PostgresAdmin):
    def __init__(self, conninfo: str, *, where: str, pool_size: int = 8) -> None:
        """Open the ledger at ``conninfo`` (a libpq URL or keywords, password included);
        ``where`` names it in messages, without the password."""
        self._where = where
        self._conninfo = conninfo  # for listeners, which hold a connection of their own
        self._listeners: list[PostgresChangeListener] = []
        self._lock = threading.Lock()  # only for close and the listeners' list
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(pool_size, 1),
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            open=False,
            name="lazaretto-ledger",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        except PoolTimeout as error:
            self._pool.close()
            raise LedgerError(
                f"cannot connect to the ledger at {where} within {CONNECT_TIMEOUT_SECONDS:g} s: "
                f"{_connect_problem(conninfo)}"
            ) from error
        try:
            with self._pool.connection() as db:
                current = migrations.current_version(db)
            refuse_newer(current, migrations.STEPS, where)
            if current < migrations.LATEST:
                raise LedgerNotMigrated(where, current, migrations.LATEST)
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        with self._lock:
            for listener in self._listeners:
                listener.close()
            self._listeners.clear()
            self._pool.close()

    @contextmanager
    def _write(self) -> Iterator[Conn]:
        with self._pool.connection() as db, db.transaction():
            # Writers one at a time, in commit order (see the module's docstring).
            db.execute("SELECT value FROM counters WHERE name='change_seq' FOR UPDATE")
            yield db

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[DictRow]:
        if matches_nothing(params):
            return []
        with self._pool.connection() as db:
            return db.execute(sql.encode(), params).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[Conn]:
        """A connection in one read-only snapshot, for reads that must agree."""
        with self._pool.connection() as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield db

    def _next_seq(self, db: Conn) -> int:
        """The change counter grown by one; every replica's listener hears of it when (and
        only if) this transaction commits (``quarantine.ledger.postgres_listen``)."""
        row = db.execute(_NEXT_SEQ).fetchone()
        assert row is not None
        return int(row["value"])

    def _row_seq(self, db: Conn) -> int:
        row = db.execute(f"SELECT {_ROW_SEQ} AS seq").fetchone()
        assert row is not None
        return int(row["seq"])

    def _bump(self, db: Conn, project: NormalizedName) -> int:
        seq = self._next_seq(db)
        db.execute("UPDATE projects SET seq=%s WHERE name=%s", (seq, project))
        return seq

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
        row = self._event_row(db, at, project, record, from_state, to_state, reason, actor)
        db.execute(_INSERT_EVENT, row)

    def _event_row(
        self,
        db: Conn,
        at: datetime,
        project: NormalizedName,
        record: FileRecord | None,
        from_state: str | None,
        to_state: str,
        reason: str,
        actor: str,
    ) -> tuple[Any, ...]:
        """The events row for a change, with its outbox entry written (same transaction)."""
        event = Event(
            at=at,
            project=project,
            filename=record.filename if record else None,
            sha256=record.sha256 if record else None,
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            actor=actor,
        )
        entry = outbox_entry(event, record.version if record else None)
        if entry is not None:
            kind, event_id, payload = entry
            db.execute(
                "INSERT INTO outbox (event_id, kind, severity, created_at, payload) "
                "VALUES (%s, %s, %s, %s, %s)",
                (event_id, kind.kind, kind.severity, at, Jsonb(payload)),
            )
        return (at, project, event.filename, event.sha256, from_state, to_state, reason, actor)

    # -- reads -------------------------------------------------------------------------------
    def project(self, name: NormalizedName) -> ProjectRecord | None:
        rows = self._query(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE name=%s", (name,))
        return _project_record(rows[0]) if rows else None

    def projects(self) -> list[NormalizedName]:
        rows = self._query("SELECT name FROM projects WHERE status != 'removed' ORDER BY name")
        return [NormalizedName(row["name"]) for row in rows]

    def stale_projects(self, looked_before: datetime, limit: int) -> list[NormalizedName]:
        rows = self._query(
            "SELECT name FROM projects WHERE status != 'removed' AND "
            "(last_look_ok IS NULL OR last_look_ok < %s) "
            "ORDER BY last_look_ok NULLS FIRST LIMIT %s",
            (looked_before, limit),
        )
        return [NormalizedName(row["name"]) for row in rows]

    def _files(self, where: str, params: Sequence[Any]) -> list[FileRecord]:
        if matches_nothing(params):
            return []
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE {where} ORDER BY project, filename"
        with self._pool.connection() as db:
            cursor = db.cursor(row_factory=tuple_row)  # plain tuples: a big project has many
            rows = cursor.execute(sql.encode(), params).fetchall()
        return [_file_record(row) for row in rows]

    def files(self, project: NormalizedName) -> list[FileRecord]:
        return self._files("project=%s", (project,))

    def files_changed_since(self, project: NormalizedName, seq: int) -> list[FileRecord]:
        return self._files("project=%s AND seq>%s", (project, seq))

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None:
        found = self._files("project=%s AND filename=%s", (project, filename))
        return found[0] if found else None

    def file_by_digest(self, sha256: str, filename: str) -> FileRecord | None:
        found = self._files("sha256=%s AND filename=%s", (sha256, filename))
        return found[0] if found else None

    def held(self, project: NormalizedName | None = None) -> list[FileRecord]:
        return self.in_states((FileState.HELD,), project)

    def held_inside(self, project: NormalizedName | None = None) -> list[FileRecord]:
        where = "state=%s AND NOT starts_with(reason, %s)"
        params: tuple[Any, ...] = (FileState.HELD.value, OUTSIDE)
        if project is not None:
            where, params = where + " AND project=%s", (*params, project)
        return self._files(where, params)

    def in_states(
        self, states: Collection[FileState], project: NormalizedName | None = None
    ) -> list[FileRecord]:
        where = "state = ANY(%s)"
        params: tuple[Any, ...] = ([state.value for state in states],)
        if project is not None:
            where, params = where + " AND project=%s", (*params, project)
        return self._files(where, params)

    # -- writes ------------------------------------------------------------------------------
    def touch_all_projects(self) -> int:
        with self._write() as db:
            seq = self._next_seq(db)
            db.execute("UPDATE projects SET seq=%s", (seq,))
        return seq

    def apply(self, observation: Observation, etag: str | None, actor: str) -> int:
        project = observation.project
        at = project.last_look_ok or project.first_seen
        with self._write() as db:
            before = db.execute(
                "SELECT status, versions FROM projects WHERE name=%s", (project.name,)
            ).fetchone()
            self._upsert_project(db, observation, etag)
            row_seq = self._row_seq(db)
            self._insert_new(db, observation, row_seq, at, actor)
            for old, new in observation.changed:
                self._write_change(db, old, new, at, actor, row_seq)
            status_changed = before is None or before["status"] != project.status.value
            if status_changed and before is not None:
                reason = f"upstream project status: {project.status_reason or project.status.value}"
                self._event(
                    db, at, project.name, None, before["status"], project.status.value,
                    reason, actor,
                )  # fmt: skip
            versions = None if project.versions is None else list(project.versions)
            respelled = before is not None and before["versions"] != versions
            if observation.alters_pages or status_changed or respelled:
                return self._bump(db, project.name)
            row = db.execute("SELECT seq FROM projects WHERE name=%s", (project.name,)).fetchone()
            assert row is not None
            return int(row["seq"])

    def _insert_new(
        self, db: Conn, observation: Observation, row_seq: int, at: datetime, actor: str
    ) -> None:
        name = observation.project.name
        if not observation.new:
            return
        try:
            # A savepoint: the transaction goes on to raise the error below.
            with db.transaction(), db.cursor() as cursor:
                cursor.executemany(
                    _INSERT_FILE, [_file_row(record, row_seq) for record in observation.new]
                )
        except psycopg.errors.UniqueViolation as error:
            raise StaleTransition(
                f"a file of {name} was recorded by another look meanwhile"
            ) from error
        events = []
        for record in observation.new:
            events.append(
                self._event_row(db, at, name, record, None, record.state, record.reason, actor)
            )
            if record.anomaly:
                events.append(
                    self._event_row(db, at, name, record, None, "anomaly", record.anomaly, actor)
                )
        with db.cursor() as cursor:
            cursor.executemany(_INSERT_EVENT, events)  # a first look's many files at once

    def _upsert_project(self, db: Conn, observation: Observation, etag: str | None) -> None:
        project = observation.project
        db.execute(
            f"INSERT INTO projects ({_PROJECT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s) "
            "ON CONFLICT (name) DO UPDATE SET last_look_ok=excluded.last_look_ok, "
            "status=excluded.status, status_reason=excluded.status_reason, "
            "etag=excluded.etag, serial=excluded.serial, versions=excluded.versions",
            (
                project.name,
                project.first_seen,
                project.last_look_ok,
                project.status.value,
                project.status_reason,
                etag,
                project.serial,
                _versions(project.versions),
            ),
        )

    def _write_change(
        self, db: Conn, old: FileRecord, new: FileRecord, at: datetime, actor: str, row_seq: int
    ) -> None:
        cursor = db.execute(
            "UPDATE files SET state=%s, reason=%s, yanked=%s, listed=%s, anomaly=%s, "
            "provenance_url=%s, state_version=state_version+1, seq=%s "
            "WHERE project=%s AND filename=%s AND state_version=%s",
            (
                new.state.value, new.reason, new.yanked, new.listed, new.anomaly,
                new.provenance_url, row_seq, old.project, old.filename, old.state_version,
            ),
        )  # fmt: skip
        if cursor.rowcount != 1:
            raise StaleTransition(f"{old.filename} changed while an upstream look was applied")
        if new.state != old.state:
            self._event(db, at, old.project, old, old.state, new.state, new.reason, actor)
        if new.anomaly and new.anomaly != old.anomaly:
            self._event(db, at, old.project, old, old.state, "anomaly", new.anomaly, actor)
        if new.yanked != old.yanked:
            verb = "unyanked" if new.yanked is None else f"yanked: {new.yanked or 'no reason'}"
            self._event(db, at, old.project, old, old.state, old.state, f"upstream {verb}", actor)

    def record_project_gone(self, name: NormalizedName, at: datetime, actor: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE projects SET status='removed', status_reason='the upstream answers 404', "
                "last_look_ok=%s, etag=NULL WHERE name=%s",
                (at, name),
            )
            cursor = db.cursor(row_factory=tuple_row)
            rows = cursor.execute(
                f"SELECT {_FILE_COLUMNS} FROM files "
                "WHERE project=%s AND state IN ('held', 'promoted') ORDER BY filename",
                (name,),
            ).fetchall()
            for row in rows:
                record = _file_record(row)
                to_state = (
                    FileState.WITHDRAWN
                    if record.state is FileState.PROMOTED
                    else FileState.REJECTED
                )
                db.execute(
                    "UPDATE files SET state=%s, reason='upstream_removed', listed=false, "
                    f"state_version=state_version+1, seq={_ROW_SEQ} "
                    "WHERE project=%s AND filename=%s",
                    (to_state.value, name, record.filename),
                )
                self._event(db, at, name, record, record.state, to_state, "upstream_removed", actor)
            self._event(db, at, name, None, None, "removed", "the upstream answers 404", actor)
            self._bump(db, name)

    def touch_look(self, name: NormalizedName, at: datetime) -> None:
        with self._pool.connection() as db:  # no page changes: no need to queue as a writer
            db.execute("UPDATE projects SET last_look_ok=%s WHERE name=%s", (at, name))

    def transition(
        self, before: FileRecord, state: FileState, reason: str, actor: str, at: datetime
    ) -> FileRecord:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE files SET state=%s, reason=%s, state_version=state_version+1, "
                f"seq={_ROW_SEQ} WHERE project=%s AND filename=%s AND state_version=%s",
                (state.value, reason, before.project, before.filename, before.state_version),
            )
            if cursor.rowcount != 1:
                raise StaleTransition(
                    f"{before.filename} changed since it was read; read it again and retry"
                )
            if state != before.state:
                self._event(db, at, before.project, before, before.state, state, reason, actor)
                self._bump(db, before.project)
        after = self.file(before.project, before.filename)
        assert after is not None
        return after

    def end_deferral(self, record: FileRecord, reason: str, actor: str, at: datetime) -> FileRecord:
        """As ``SqliteLedger.end_deferral``: a client's download has the file vetted now."""
        with self._write() as db:
            ended = db.execute(
                f"UPDATE files SET deferral=%s, reason=%s, seq={_ROW_SEQ} "
                "WHERE project=%s AND filename=%s AND deferral=%s AND state='held'",
                (
                    Deferral.DOWNLOADED.value,
                    reason,
                    record.project,
                    record.filename,
                    Deferral.UNTIL_DOWNLOAD.value,
                ),
            )
            if ended.rowcount == 1:
                held = FileState.HELD.value
                self._event(db, at, record.project, record, held, held, reason, actor)
                self._bump(db, record.project)
        after = self.file(record.project, record.filename)
        assert after is not None
        return after

    def mark_stored(self, record: FileRecord, size: int | None = None) -> FileRecord:
        with self._write() as db:
            row = db.execute(
                f"UPDATE files SET stored=true, size=COALESCE(size, %s), seq={_ROW_SEQ} "
                "WHERE project=%s AND filename=%s RETURNING state",
                (size, record.project, record.filename),
            ).fetchone()
            db.execute(FORGET_ATTEMPTS, (record.project, record.filename))  # fetched at last
            if size is not None and record.size is None and row and row["state"] == "promoted":
                self._bump(db, record.project)  # a listed file's size now shows on its page
        after = self.file(record.project, record.filename)
        assert after is not None
        return after

    def set_provenance(self, record: FileRecord, sha256: str) -> None:
        with self._write() as db:
            db.execute(
                f"UPDATE files SET provenance_sha256=%s, seq={_ROW_SEQ} "
                "WHERE project=%s AND filename=%s AND provenance_sha256 IS NULL",
                (sha256, record.project, record.filename),
            )

    def record_incident(self, record: FileRecord, reason: str, actor: str, at: datetime) -> None:
        with self._write() as db:
            self._event(db, at, record.project, record, record.state, "incident", reason, actor)

    def drop_core_metadata(self, record: FileRecord, reason: str, actor: str, at: datetime) -> None:
        if record.core_metadata_sha256 is None:
            return
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE files SET core_metadata_sha256=NULL, seq={_ROW_SEQ} "
                "WHERE project=%s AND filename=%s AND core_metadata_sha256=%s",
                (record.project, record.filename, record.core_metadata_sha256),
            )
            if cursor.rowcount != 1:
                return  # dropped already, by a request beside this one
            self._event(db, at, record.project, record, record.state, "incident", reason, actor)
            self._bump(db, record.project)

    # -- freeze, wall clock, evidence --------------------------------------------------------
    def freeze(self, reason: str, actor: str, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta VALUES ('promotion_freeze', %s) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (reason,),
            )
            self._event(db, at, GLOBAL, None, None, "frozen", reason, actor)

    def unfreeze(self, reason: str, actor: str, at: datetime) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM meta WHERE key='promotion_freeze'")
            if cursor.rowcount:
                self._event(db, at, GLOBAL, None, "frozen", "unfrozen", reason, actor)
            return cursor.rowcount > 0

    def freeze_reason(self) -> str | None:
        return self._meta("promotion_freeze")

    def last_wall_clock(self) -> datetime | None:
        kept = self._meta("last_wall_clock")
        return None if kept is None else datetime.fromisoformat(kept).astimezone(UTC)

    def note_wall_clock(self, at: datetime) -> None:
        with self._pool.connection() as db:  # one statement; no page changes
            db.execute(
                "INSERT INTO meta VALUES ('last_wall_clock', %s) ON CONFLICT (key) DO UPDATE "
                "SET value=excluded.value WHERE excluded.value > meta.value",
                (format_timestamp(at),),  # fixed width UTC: text order is time order
            )

    def record_evidence(self, record: FileRecord, evidence: Evidence, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO evidence VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project, filename, check_name) DO UPDATE SET "
                "action=excluded.action, summary=excluded.summary, "
                "findings=excluded.findings, details=excluded.details, at=excluded.at",
                (
                    record.project,
                    record.filename,
                    evidence.check,
                    evidence.action.value,
                    evidence.summary,
                    Jsonb(findings_document(evidence)),
                    Jsonb(dict(evidence.details), dumps=_dumps),
                    at,
                ),
            )
            if evidence.action in (Action.REVIEW, Action.BLOCK):
                reason = f"{evidence.check}: {evidence.summary}"
                self._event(
                    db, at, record.project, record, record.state, "evidence", reason, ACTOR_VETTING
                )

    def evidence(
        self, project: NormalizedName, filename: str | None = None
    ) -> dict[str, list[Evidence]]:
        sql = "SELECT * FROM evidence WHERE project=%s"
        params: tuple[Any, ...] = (project,)
        if filename is not None:
            sql, params = sql + " AND filename=%s", (project, filename)
        found: dict[str, list[Evidence]] = {}
        for row in self._query(sql + " ORDER BY filename, check_name", params):
            kept = evidence_from(
                row["check_name"], row["action"], row["summary"], row["findings"], row["details"]
            )
            found.setdefault(row["filename"], []).append(kept)
        return found

    # -- what pages follow -------------------------------------------------------------------
    def change_seq(self) -> int:
        rows = self._query("SELECT value FROM counters WHERE name='change_seq'")
        return int(rows[0]["value"])

    def changed_since(self, seq: int) -> dict[NormalizedName, int]:
        rows = self._query("SELECT name, seq FROM projects WHERE seq > %s", (seq,))
        return {NormalizedName(row["name"]): int(row["seq"]) for row in rows}

    def listen(self, on_change: Callable[[], None]) -> ChangeListener:
        listener = PostgresChangeListener(self._conninfo, self._where, on_change)
        with self._lock:
            self._listeners.append(listener)
        return listener


def _connect_problem(conninfo: str) -> str:
    """Why a connection fails, from one direct attempt (the pool only says it timed out)."""
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.Error as error:
        return " ".join(str(error).split()) or type(error).__name__
    return "the pool could not open a connection in time"
