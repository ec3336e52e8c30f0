"""The PostgreSQL ledger's admin tables: runtime overrides, the policy in force, the
outbox, API tokens.

A mixin of ``PostgresLedger`` (same pool, same transactions), as ``sqlite_admin`` is of
the SQLite ledger. Tokens are kept as hashes only.
"""

import hmac
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
from packaging.utils import NormalizedName
from psycopg.rows import DictRow

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.models import Event, FileRecord, PolicyRecord
from quarantine.outbox import ApiToken, Delivery, DeliveryState, OutboxEntry
from quarantine.policy import Exemption, RuntimeOverrides

Conn = psycopg.Connection[DictRow]
_OVERRIDE_COLUMNS = "kind, project, version, reason, until, actor, at"
_POLICY_KEY = "policy_in_force"
GLOBAL = NormalizedName("*")  # the project column of events that concern the whole mirror


def utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _event(row: DictRow) -> Event:
    return Event(
        at=row["at"].astimezone(UTC),
        project=NormalizedName(row["project"]),
        filename=row["filename"],
        sha256=row["sha256"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        reason=row["reason"],
        actor=row["actor"],
    )


def matches_nothing(params: Sequence[Any]) -> bool:
    """A key with a NUL character (``%00`` in a request's path) matches no row: a text
    column cannot hold one. Such a query is not sent: PostgreSQL refuses it with an error
    (SQLite looks, and finds nothing)."""
    return any(isinstance(param, str) and "\x00" in param for param in params)


def _event_filter(
    project: NormalizedName | None, since: datetime | None
) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if project is not None:
        clauses.append("project=%s")
        params.append(project)
    if since is not None:
        clauses.append("at>=%s")
        params.append(since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _delivery(row: DictRow) -> Delivery:
    return Delivery(
        event_id=row["event_id"],
        channel=row["channel"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=utc(row["next_attempt_at"]),
        last_error=row["last_error"],
    )


def _token(row: DictRow) -> ApiToken:
    return ApiToken(
        name=row["name"],
        scope=row["scope"],
        created_at=row["created_at"].astimezone(UTC),
        created_by=row["created_by"],
        revoked_at=utc(row["revoked_at"]),
    )


class PostgresAdmin:
    """Needs the host class's connection helpers (declared here for the type checker)."""

    def _write(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[DictRow]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _next_seq(self, db: Conn) -> int:
        raise NotImplementedError

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
        raise NotImplementedError

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=%s", (key,))
        return str(rows[0]["value"]) if rows else None

    def overrides_version(self) -> int:
        rows = self._query("SELECT value FROM counters WHERE name='overrides_version'")
        return int(rows[0]["value"])

    def _bump_overrides(self, db: Conn) -> None:
        db.execute("UPDATE counters SET value = value + 1 WHERE name='overrides_version'")
        # Every page may list more or fewer files now: drop them all.
        db.execute("UPDATE projects SET seq=%s", (self._next_seq(db),))

    def runtime_overrides(self) -> RuntimeOverrides:
        found = RuntimeOverrides()
        for row in self._query("SELECT * FROM overrides"):
            name = NormalizedName(row["project"])
            if row["kind"] == "exemption":
                found.exemptions[name] = Exemption(row["reason"], utc(row["until"]))
            elif row["kind"] == "cutoff":
                found.cutoff = utc(row["until"])
            elif row["kind"] == "block":
                found.blocks[(name, row["version"])] = row["reason"]
        return found

    def events(
        self, project: NormalizedName | None = None, since: datetime | None = None
    ) -> Sequence[Event]:
        where, params = _event_filter(project, since)
        return [
            _event(row) for row in self._query(f"SELECT * FROM events{where} ORDER BY id", params)
        ]

    def recent_events(
        self, project: NormalizedName | None, since: datetime | None, limit: int
    ) -> tuple[list[Event], int]:
        where, params = _event_filter(project, since)
        if matches_nothing(params):
            return [], 0
        with self._snapshot() as db:  # the count and the rows agree
            counted = db.execute(f"SELECT COUNT(*) AS n FROM events{where}".encode(), params)
            total = int(_one(counted)["n"])
            rows = db.execute(
                f"SELECT * FROM (SELECT * FROM events{where} ORDER BY id DESC LIMIT %s) AS last "
                "ORDER BY id".encode(),
                (*params, limit),
            ).fetchall()
        return [_event(row) for row in rows], total

    # -- the policy in force (one meta row, for the admin commands) --------------------------
    def record_policy(
        self, document: Mapping[str, Any], summary: str, actor: str, at: datetime
    ) -> bool:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        kept = json.dumps({"document": text, "actor": actor, "at": format_timestamp(at)})
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key=%s", (_POLICY_KEY,)).fetchone()
            changed = row is None or json.loads(row["value"])["document"] != text
            db.execute(
                "INSERT INTO meta VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (_POLICY_KEY, kept),
            )
            if changed:
                self._event(db, at, GLOBAL, None, None, "policy", summary, actor)
        return changed

    def recorded_policy(self) -> PolicyRecord | None:
        kept = self._meta(_POLICY_KEY)
        if kept is None:
            return None
        found = json.loads(kept)
        return PolicyRecord(
            json.loads(found["document"]), found["actor"], parse_timestamp(found["at"])
        )

    # -- blocks, exemptions, the cutoff ------------------------------------------------------
    def _set_override(
        self, db: Conn, kind: str, project: str, version: str, reason: str,
        until: datetime | None, actor: str, at: datetime,
    ) -> None:  # fmt: skip
        db.execute(
            f"INSERT INTO overrides ({_OVERRIDE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (kind, project, version) DO UPDATE SET reason=excluded.reason, "
            "until=excluded.until, actor=excluded.actor, at=excluded.at",
            (kind, project, version, reason, until, actor, at),
        )

    def set_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> None:
        with self._write() as db:
            self._set_override(db, "block", project, version, reason, None, actor, at)
            what = project if version == "*" else f"{project}=={version}"
            self._event(db, at, project, None, None, "blocked-by-admin", f"{what}: {reason}", actor)
            self._bump_overrides(db)

    def clear_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM overrides WHERE kind='block' AND project=%s AND version=%s",
                (project, version),
            )
            if cursor.rowcount:
                what = project if version == "*" else f"{project}=={version}"
                self._event(
                    db, at, project, None, "blocked", "unblocked", f"{what}: {reason}", actor
                )
                self._bump_overrides(db)
            return cursor.rowcount > 0

    def set_exemption(
        self, project: NormalizedName, exemption: Exemption, actor: str, at: datetime
    ) -> None:
        until = exemption.until
        with self._write() as db:
            self._set_override(db, "exemption", project, "*", exemption.reason, until, actor, at)
            note = (
                f"exempt{' until ' + format_timestamp(until) if until else ''}: {exemption.reason}"
            )
            self._event(db, at, project, None, None, "exempted", note, actor)
            self._bump_overrides(db)

    def clear_exemption(
        self, project: NormalizedName, reason: str, actor: str, at: datetime
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM overrides WHERE kind='exemption' AND project=%s", (project,)
            )
            if cursor.rowcount:
                self._event(db, at, project, None, "exempted", "unexempted", reason, actor)
                self._bump_overrides(db)
            return cursor.rowcount > 0

    def set_cutoff(self, moment: datetime, reason: str, actor: str, at: datetime) -> None:
        with self._write() as db:
            self._set_override(db, "cutoff", "*", "*", reason, moment, actor, at)
            note = f"nothing uploaded after {format_timestamp(moment)} is promoted: {reason}"
            self._event(db, at, GLOBAL, None, None, "cutoff", note, actor)
            self._bump_overrides(db)

    def clear_cutoff(self, reason: str, actor: str, at: datetime) -> bool:
        with self._write() as db:
            cursor = db.execute("DELETE FROM overrides WHERE kind='cutoff'")
            if cursor.rowcount:
                self._event(db, at, GLOBAL, None, "cutoff", "cutoff-cleared", reason, actor)
                self._bump_overrides(db)
            return cursor.rowcount > 0

    # -- outbox and deliveries ---------------------------------------------------------------
    def outbox(self, after_id: int = 0, limit: int = 500) -> list[OutboxEntry]:
        rows = self._query(
            "SELECT * FROM outbox WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit)
        )
        return [
            OutboxEntry(
                id=row["id"],
                event_id=row["event_id"],
                kind=row["kind"],
                severity=row["severity"],
                created_at=row["created_at"].astimezone(UTC),
                payload=row["payload"],
            )
            for row in rows
        ]

    def deliveries(self, state: DeliveryState | None = None) -> list[Delivery]:
        if state is None:
            rows = self._query("SELECT * FROM deliveries ORDER BY event_id, channel")
        else:
            rows = self._query(
                "SELECT * FROM deliveries WHERE state=%s ORDER BY event_id, channel",
                (state.value,),
            )
        return [_delivery(row) for row in rows]

    def record_delivery(self, delivery: Delivery) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO deliveries VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (event_id, channel) DO UPDATE SET state=excluded.state, "
                "attempts=excluded.attempts, next_attempt_at=excluded.next_attempt_at, "
                "last_error=excluded.last_error",
                (
                    delivery.event_id,
                    delivery.channel,
                    delivery.state.value,
                    delivery.attempts,
                    delivery.next_attempt_at,
                    delivery.last_error,
                ),
            )

    # -- API tokens (hashes only) ------------------------------------------------------------
    def create_token(self, token: ApiToken, token_hash: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO tokens VALUES (%s, %s, %s, %s, %s, NULL)",
                (token.name, token.scope, token_hash, token.created_at, token.created_by),
            )
            reason = f"token {token.name!r} created with scope {token.scope}"
            self._event(
                db, token.created_at, GLOBAL, None, None, "token-created", reason, token.created_by
            )

    def revoke_token(self, name: str, actor: str, at: datetime) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at=%s WHERE name=%s AND revoked_at IS NULL",
                (at, name),
            )
            if cursor.rowcount:
                self._event(db, at, GLOBAL, None, None, "token-revoked", f"token {name!r}", actor)
            return cursor.rowcount > 0

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """Compared in constant time against every live token (there are few), so no
        timing depends on the hash."""
        match = None
        for row in self._query("SELECT * FROM tokens WHERE revoked_at IS NULL"):
            if hmac.compare_digest(row["hash"].encode(), token_hash.encode()):
                match = row
        return _token(match) if match is not None else None

    def tokens(self) -> list[ApiToken]:
        return [_token(row) for row in self._query("SELECT * FROM tokens ORDER BY name")]


def _one(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    row = cursor.fetchone()
    assert row is not None
    return row
