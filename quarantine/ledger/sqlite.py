"""The ledger on SQLite: the embedded default, one file under the data directory.

WAL, and reads on connections of their own, so readers never wait for the writer (in
this process either: a thread writing a big project's rows holds up no one's reads);
``synchronous=FULL`` so a committed decision survives power loss; ``BEGIN IMMEDIATE`` and a
busy timeout so the CLI and the server can write side by side.

One exception to FULL: a look that only records first sightings, or only that it
happened (no state change, nothing withdrawn), commits with ``synchronous=NORMAL``, which
skips the fsync that is most of a cold miss's cost and of a watcher's 304. WAL keeps the
database consistent either way; power loss can lose only such looks, and the next look
records them again from the upstream (a later first sight only ever holds a file longer,
an older last look only delays a promotion). The next FULL commit syncs them with it.
Marking a file's bytes as stored is NORMAL too: a lost mark only sends the next download
or promotion round to the blob store, which finds the bytes and marks them again.
"""

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from sys import intern
from typing import Any

from packaging.utils import NormalizedName

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.errors import LedgerError, LedgerMissing, StaleTransition
from quarantine.evidence import Action, Evidence, Finding, Severity
from quarantine.ledger.interface import ChangeListener, LedgerTally, NotListening
from quarantine.ledger.migrations import sqlite as migrations
from quarantine.ledger.sqlite_admin import GLOBAL, AdminTables, dt, event_record, ts
from quarantine.ledger.sqlite_blobs import BlobTables
from quarantine.ledger.sqlite_fetches import FORGET_ATTEMPTS, FetchTables
from quarantine.ledger.sqlite_readers import Readers, is_ledger, open_connection
from quarantine.models import (
    Deferral,
    Event,
    FileRecord,
    FileState,
    ProjectRecord,
    ProjectStatus,
)
from quarantine.notable import notable
from quarantine.observe import Observation
from quarantine.outbox import DeliveryState
from quarantine.platforms import OUTSIDE

ACTOR_VETTING = "system:vetting"

_FILE_COLUMNS = (
    "project, filename, version, sha256, size, upload_time, first_seen, clock_start, "
    "established, state, reason, url, requires_python, yanked, core_metadata_sha256, "
    "provenance_url, provenance_sha256, stored, listed, anomaly, state_version, deferral"
)
_INSERT_FILE = f"INSERT INTO files ({_FILE_COLUMNS}, seq) VALUES ({', '.join('?' * 23)})"
# A row's seq is the change counter's next value when the row is written: greater than
# the seq of any page built before the write, so files_changed_since finds every row a
# kept page has not seen (a write that bumps its project takes exactly that value).
_ROW_SEQ = "(SELECT CAST(value AS INTEGER) + 1 FROM meta WHERE key='change_seq')"
_INSERT_EVENT = (
    "INSERT INTO events (at, project, filename, sha256, from_state, to_state, reason, actor) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# sqlite3 lets the GIL go around every row it steps, and while another thread computes,
# taking it back waits up to a switch interval each time: 200 rows beside a busy thread
# took 0.3-1.9 s, and a page build or a look waited that long. Built by SQLite as one JSON
# value (TEXT, INTEGER and NULL carry over exactly; the files table holds nothing else),
# the same rows are one step: 3 ms.
_ROWS_AS_JSON = f"SELECT json_group_array(json_array({_FILE_COLUMNS})) FROM ({{}})"
_PROJECT_COLUMNS = (
    "name, first_seen, last_look_ok, status, status_reason, etag, serial, seq, versions"
)


def _file_row(record: FileRecord, seq: int) -> tuple[Any, ...]:
    return (
        record.project,
        record.filename,
        record.version,
        record.sha256,
        record.size,
        ts(record.upload_time),
        ts(record.first_seen),
        ts(record.clock_start),
        int(record.established),
        record.state.value,
        record.reason,
        record.url,
        record.requires_python,
        record.yanked,
        record.core_metadata_sha256,
        record.provenance_url,
        record.provenance_sha256,
        int(record.stored),
        int(record.listed),
        record.anomaly,
        record.state_version,
        record.deferral.value if record.deferral is not None else None,
        seq,
    )


_STATES = {state.value: state for state in FileState}
_DEFERRALS: dict[str | None, Deferral | None] = {None: None}
_DEFERRALS.update({deferral.value: deferral for deferral in Deferral})


def _file_record(row: Sequence[Any]) -> FileRecord:
    """A row selected as ``_FILE_COLUMNS``, which are FileRecord's fields in their order.

    Unpacked by position: a 10,000-file page is rebuilt from these, and by-name lookups
    and keyword arguments made up most of that. The project, version and reason recur
    across a project's rows: one string each, not one per row (a big page's records stay
    in memory, ``mirror.simple.page_parts``).
    """
    (
        project, filename, version, sha256, size, upload_time, first_seen, clock_start,
        established, state, reason, url, requires_python, yanked, core_metadata_sha256,
        provenance_url, provenance_sha256, stored, listed, anomaly, state_version, deferral,
    ) = row  # fmt: skip
    return FileRecord(
        NormalizedName(intern(project)), filename, intern(version), sha256, size,
        dt(upload_time), parse_timestamp(first_seen), parse_timestamp(clock_start),
        bool(established), _STATES[state], intern(reason), url, requires_python, yanked,
        core_metadata_sha256, provenance_url, provenance_sha256, bool(stored), bool(listed),
        anomaly, state_version, _DEFERRALS[deferral],
    )  # fmt: skip


def _evidence(row: sqlite3.Row) -> Evidence:
    findings = tuple(
        Finding(
            rule=item["rule"],
            severity=Severity(item["severity"]),
            message=item["message"],
            path=item["path"],
            line=item["line"],
        )
        for item in json.loads(row["findings"])
    )
    return Evidence(
        check=row["check_name"],
        action=Action(row["action"]),
        summary=row["summary"],
        findings=findings,
        details=json.loads(row["details"]),
    )


def _project_record(row: sqlite3.Row) -> ProjectRecord:
    return ProjectRecord(
        name=NormalizedName(row["name"]),
        first_seen=parse_timestamp(row["first_seen"]),
        last_look_ok=dt(row["last_look_ok"]),
        status=ProjectStatus(row["status"]),
        status_reason=row["status_reason"],
        etag=row["etag"],
        serial=row["serial"],
        seq=row["seq"],
        versions=_versions(row["versions"]),
    )


def _versions(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def _versions_text(versions: tuple[str, ...] | None) -> str | None:
    return None if versions is None else json.dumps(list(versions))


class SqliteLedger(AdminTables, FetchTables, BlobTables):
    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open the ledger at ``path``; ``create=False`` (admin commands) only opens one
        that a mirror made, and raises LedgerMissing instead of making an empty one."""
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = open_connection(path, read_only=False, create=create)  # the writer's
        except sqlite3.OperationalError as error:
            if not create and not path.exists():
                raise LedgerMissing(path) from error
            raise LedgerError(f"cannot open the ledger at {path}: {error}") from error
        except (OSError, sqlite3.Error) as error:
            raise LedgerError(f"cannot open the ledger at {path}: {error}") from error
        self._lock = threading.RLock()  # one writer in this process at a time
        try:
            if not create and not is_ledger(self._db):
                raise LedgerMissing(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # FULL is set around each write
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate(path)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise LedgerError(f"cannot open the ledger at {path}: {error}") from error
        except LedgerError:
            self._db.close()
            raise
        self._readers = Readers(path)  # reads never queue behind this process's writes

    def _migrate(self, path: Path) -> None:
        # One transaction, so a CLI and a server starting together migrate once.
        with self._write(durable=True) as db:
            migrations.migrate(db, str(path))

    def close(self) -> None:
        self._readers.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")  # only between transactions
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._readers.connection() as db:
            return db.execute(sql, params).fetchall()

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._readers.connection()

    def _next_seq(self, db: sqlite3.Connection) -> int:
        row = db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='change_seq' "
            "RETURNING value"
        ).fetchone()
        return int(row["value"])

    def _row_seq(self, db: sqlite3.Connection) -> int:
        return int(db.execute(f"SELECT {_ROW_SEQ}").fetchone()[0])

    def _bump(self, db: sqlite3.Connection, project: NormalizedName) -> int:
        seq = self._next_seq(db)
        db.execute("UPDATE projects SET seq=? WHERE name=?", (seq, project))
        return seq

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
        row = self._event_row(db, at, project, record, from_state, to_state, reason, actor)
        db.execute(_INSERT_EVENT, row)

    def _event_row(
        self,
        db: sqlite3.Connection,
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
        self._enqueue(db, event, record.version if record else None)
        return (
            format_timestamp(at),
            event.project,
            event.filename,
            event.sha256,
            event.from_state,
            event.to_state,
            event.reason,
            event.actor,
        )

    def _enqueue(self, db: sqlite3.Connection, event: Event, version: str | None) -> None:
        """Write the outbox entry a notable change calls for, in the same transaction."""
        kind = notable(event.from_state, event.to_state, event.reason, event.actor)
        if kind is None:
            return
        payload = {
            "project": event.project,
            "version": version,
            "filename": event.filename,
            "sha256": event.sha256,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "reason": event.reason,
            "actor": event.actor,
            "at": format_timestamp(event.at),
        }
        db.execute(
            "INSERT INTO outbox (event_id, kind, severity, created_at, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                f"evt_{uuid.uuid4().hex}",
                kind.kind,
                kind.severity,
                format_timestamp(event.at),
                json.dumps(payload),
            ),
        )

    def project(self, name: NormalizedName) -> ProjectRecord | None:
        rows = self._query(f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE name=?", (name,))
        return _project_record(rows[0]) if rows else None

    def projects(self) -> list[NormalizedName]:
        rows = self._query("SELECT name FROM projects WHERE status != 'removed' ORDER BY name")
        return [NormalizedName(row["name"]) for row in rows]

    def stale_projects(self, looked_before: datetime, limit: int) -> list[NormalizedName]:
        rows = self._query(
            "SELECT name FROM projects WHERE status != 'removed' AND "
            "(last_look_ok IS NULL OR last_look_ok < ?) ORDER BY last_look_ok LIMIT ?",
            (format_timestamp(looked_before), limit),
        )
        return [NormalizedName(row["name"]) for row in rows]

    def files(self, project: NormalizedName) -> list[FileRecord]:
        return self._project_files("project=?", (project,))

    def files_changed_since(self, project: NormalizedName, seq: int) -> list[FileRecord]:
        return self._project_files("project=? AND seq>?", (project, seq))

    def _project_files(self, where: str, params: tuple[Any, ...]) -> list[FileRecord]:
        """A project's file rows by filename, read in one step as a JSON array SQLite
        builds (see ``_ROWS_AS_JSON``)."""
        with self._readers.connection() as db:
            sql = _ROWS_AS_JSON.format(f"SELECT {_FILE_COLUMNS} FROM files WHERE {where}")
            (packed,) = db.execute(sql, params).fetchone()
        rows = json.loads(packed)
        rows.sort(key=itemgetter(1))  # by filename: an aggregate keeps no promised order
        return [_file_record(row) for row in rows]

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None:
        rows = self._query(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE project=? AND filename=?",
            (project, filename),
        )
        return _file_record(rows[0]) if rows else None

    def file_by_digest(self, sha256: str, filename: str) -> FileRecord | None:
        rows = self._query(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE sha256=? AND filename=?", (sha256, filename)
        )
        return _file_record(rows[0]) if rows else None

    def held(self, project: NormalizedName | None = None) -> list[FileRecord]:
        return self.in_states((FileState.HELD,), project)

    def held_inside(self, project: NormalizedName | None = None) -> list[FileRecord]:
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE state=? AND substr(reason, 1, ?) != ?"
        params: tuple[Any, ...] = (FileState.HELD.value, len(OUTSIDE), OUTSIDE)
        if project is not None:
            sql, params = sql + " AND project=?", (*params, project)
        return [
            _file_record(row) for row in self._query(sql + " ORDER BY project, filename", params)
        ]

    def touch_all_projects(self) -> int:
        with self._write() as db:
            seq = self._next_seq(db)
            db.execute("UPDATE projects SET seq=?", (seq,))
        return seq

    def tally(self) -> LedgerTally:
        with self._readers.connection() as db:
            # One read transaction: the counts agree with each other.
            db.execute("BEGIN")
            try:
                by_state = db.execute("SELECT state, count(*) FROM files GROUP BY state")
                states = {FileState(state): count for state, count in by_state.fetchall()}
                (queue,) = db.execute(
                    "SELECT count(*) FROM files WHERE state=? AND substr(reason, 1, ?) != ?",
                    (FileState.HELD.value, len(OUTSIDE), OUTSIDE),
                ).fetchone()
                (backlog,) = db.execute(
                    "SELECT count(*) FROM deliveries WHERE state=?", (DeliveryState.PENDING.value,)
                ).fetchone()
                (events,) = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
            finally:
                db.execute("COMMIT")
        return LedgerTally(states, queue, backlog, events)

    def in_states(
        self, states: Collection[FileState], project: NormalizedName | None = None
    ) -> list[FileRecord]:
        marks = ", ".join("?" * len(states))
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE state IN ({marks})"
        params: tuple[Any, ...] = tuple(state.value for state in states)
        if project is not None:
            sql, params = sql + " AND project=?", (*params, project)
        return [
            _file_record(row) for row in self._query(sql + " ORDER BY project, filename", params)
        ]

    def apply(self, observation: Observation, etag: str | None, actor: str) -> int:
        project = observation.project
        at = project.last_look_ok or project.first_seen
        sightings_only = not observation.changed and project.status is ProjectStatus.ACTIVE
        with self._write(durable=not sightings_only) as db:
            before = db.execute(
                "SELECT status, versions FROM projects WHERE name=?", (project.name,)
            ).fetchone()
            self._upsert_project(db, observation, etag)
            row_seq = self._row_seq(db)
            try:
                db.executemany(
                    _INSERT_FILE, [_file_row(record, row_seq) for record in observation.new]
                )
            except sqlite3.IntegrityError as error:
                raise StaleTransition(
                    f"a file of {project.name} was recorded by another look meanwhile"
                ) from error
            events = []
            for record in observation.new:
                events.append(
                    self._event_row(
                        db, at, project.name, record, None, record.state, record.reason, actor
                    )
                )
                if record.anomaly:
                    events.append(
                        self._event_row(
                            db, at, project.name, record, None, "anomaly", record.anomaly, actor
                        )
                    )
            db.executemany(_INSERT_EVENT, events)  # one statement for a first look's many files
            for old, new in observation.changed:
                self._write_change(db, old, new, at, actor, row_seq)
            status_changed = before is None or before["status"] != project.status.value
            if status_changed and before is not None:
                self._event(
                    db,
                    at,
                    project.name,
                    None,
                    before["status"],
                    project.status.value,
                    f"upstream project status: {project.status_reason or project.status.value}",
                    actor,
                )
            respelled = before is not None and before["versions"] != _versions_text(
                project.versions
            )
            if observation.alters_pages or status_changed or respelled:
                return self._bump(db, project.name)
            row = db.execute("SELECT seq FROM projects WHERE name=?", (project.name,)).fetchone()
            return int(row["seq"])

    def _upsert_project(
        self, db: sqlite3.Connection, observation: Observation, etag: str | None
    ) -> None:
        project = observation.project
        db.execute(
            f"INSERT INTO projects ({_PROJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) "
            "ON CONFLICT(name) DO UPDATE SET last_look_ok=excluded.last_look_ok, "
            "status=excluded.status, status_reason=excluded.status_reason, "
            "etag=excluded.etag, serial=excluded.serial, versions=excluded.versions",
            (
                project.name,
                format_timestamp(project.first_seen),
                ts(project.last_look_ok),
                project.status.value,
                project.status_reason,
                etag,
                project.serial,
                _versions_text(project.versions),
            ),
        )

    def _write_change(
        self,
        db: sqlite3.Connection,
        old: FileRecord,
        new: FileRecord,
        at: datetime,
        actor: str,
        row_seq: int,
    ) -> None:
        cursor = db.execute(
            "UPDATE files SET state=?, reason=?, yanked=?, listed=?, anomaly=?, provenance_url=?,"
            " state_version=state_version+1, seq=? "
            "WHERE project=? AND filename=? AND state_version=?",
            (
                new.state.value,
                new.reason,
                new.yanked,
                int(new.listed),
                new.anomaly,
                new.provenance_url,
                row_seq,
                old.project,
                old.filename,
                old.state_version,
            ),
        )
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
                "last_look_ok=?, etag=NULL WHERE name=?",
                (format_timestamp(at), name),
            )
            rows = db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files "
                "WHERE project=? AND state IN ('held', 'promoted')",
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
                    "UPDATE files SET state=?, reason='upstream_removed', listed=0, "
                    f"state_version=state_version+1, seq={_ROW_SEQ} "
                    "WHERE project=? AND filename=?",
                    (to_state.value, name, record.filename),
                )
                self._event(db, at, name, record, record.state, to_state, "upstream_removed", actor)
            self._event(db, at, name, None, None, "removed", "the upstream answers 404", actor)
            self._bump(db, name)

    def touch_look(self, name: NormalizedName, at: datetime) -> None:
        # Not durable: a lost touch only makes the last look older, so promotion waits for
        # another look (the safe direction), and the watcher's 304s stay off the fsync path.
        with self._write(durable=False) as db:
            db.execute(
                "UPDATE projects SET last_look_ok=? WHERE name=?", (format_timestamp(at), name)
            )

    def transition(
        self, before: FileRecord, state: FileState, reason: str, actor: str, at: datetime
    ) -> FileRecord:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE files SET state=?, reason=?, state_version=state_version+1, "
                f"seq={_ROW_SEQ} WHERE project=? AND filename=? AND state_version=?",
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
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE files SET deferral=?, reason=?, seq={_ROW_SEQ} "
                "WHERE project=? AND filename=? AND deferral=? AND state='held'",
                (
                    Deferral.DOWNLOADED.value,
                    reason,
                    record.project,
                    record.filename,
                    Deferral.UNTIL_DOWNLOAD.value,
                ),
            )
            if cursor.rowcount == 1:
                held = FileState.HELD.value
                self._event(db, at, record.project, record, held, held, reason, actor)
                self._bump(db, record.project)
        after = self.file(record.project, record.filename)
        assert after is not None
        return after

    def mark_stored(self, record: FileRecord, size: int | None = None) -> FileRecord:
        # Not durable: a lost mark only sends the next download or promotion round to the
        # blob store again, which finds the bytes and marks them anew.
        with self._write(durable=False) as db:
            cursor = db.execute(
                f"UPDATE files SET stored=1, size=COALESCE(size, ?), seq={_ROW_SEQ} "
                "WHERE project=? AND filename=? RETURNING state",
                (size, record.project, record.filename),
            )
            row = cursor.fetchone()
            db.execute(FORGET_ATTEMPTS, (record.project, record.filename))  # fetched at last
            if size is not None and record.size is None and row and row["state"] == "promoted":
                self._bump(db, record.project)  # a listed file's size now shows on its page
        after = self.file(record.project, record.filename)
        assert after is not None
        return after

    def set_provenance(self, record: FileRecord, sha256: str) -> None:
        with self._write() as db:
            db.execute(
                f"UPDATE files SET provenance_sha256=?, seq={_ROW_SEQ} "
                "WHERE project=? AND filename=? "
                "AND provenance_sha256 IS NULL",
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
                "WHERE project=? AND filename=? AND core_metadata_sha256=?",
                (record.project, record.filename, record.core_metadata_sha256),
            )
            if cursor.rowcount != 1:
                return  # dropped already, by a request beside this one
            self._event(db, at, record.project, record, record.state, "incident", reason, actor)
            self._bump(db, record.project)

    def events(
        self, project: NormalizedName | None = None, since: datetime | None = None
    ) -> Sequence[Event]:
        sql = "SELECT * FROM events WHERE 1=1"
        params: list[Any] = []
        if project is not None:
            sql += " AND project=?"
            params.append(project)
        if since is not None:
            sql += " AND at>=?"
            params.append(format_timestamp(since))
        rows = self._query(sql + " ORDER BY id", tuple(params))
        return [event_record(row) for row in rows]

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0]["value"]) if rows else None

    def freeze(self, reason: str, actor: str, at: datetime) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('promotion_freeze', ?)", (reason,))
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
        return dt(self._meta("last_wall_clock"))

    def note_wall_clock(self, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta VALUES ('last_wall_clock', ?) ON CONFLICT(key) DO UPDATE "
                "SET value=excluded.value WHERE excluded.value > meta.value",
                (format_timestamp(at),),
            )

    def record_evidence(self, record: FileRecord, evidence: Evidence, at: datetime) -> None:
        findings = [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "message": f.message,
                "path": f.path,
                "line": f.line,
            }
            for f in evidence.findings
        ]
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.project,
                    record.filename,
                    evidence.check,
                    evidence.action.value,
                    evidence.summary,
                    json.dumps(findings),
                    json.dumps(dict(evidence.details), default=str),
                    format_timestamp(at),
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
        sql = "SELECT * FROM evidence WHERE project=?"
        params: tuple[Any, ...] = (project,)
        if filename is not None:
            sql, params = sql + " AND filename=?", (project, filename)
        found: dict[str, list[Evidence]] = {}
        for row in self._query(sql + " ORDER BY filename, check_name", params):
            found.setdefault(row["filename"], []).append(_evidence(row))
        return found

    def listen(self, on_change: Callable[[], None]) -> ChangeListener:
        # SQLite has no notifications: processes sharing the file see changes by polling.
        return NotListening()

    def change_seq(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key='change_seq'")
        return int(rows[0]["value"])

    def changed_since(self, seq: int) -> dict[NormalizedName, int]:
        rows = self._query("SELECT name, seq FROM projects WHERE seq > ?", (seq,))
        return {NormalizedName(row["name"]): row["seq"] for row in rows}
