"""The SQLite ledger's admin tables: runtime overrides, the policy in force, the outbox,
API tokens.

A mixin of ``SqliteLedger`` (same connection, same transactions): split out so each
module stays readable. Tokens are kept as hashes only.
"""

import hmac
import json
import sqlite3
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.models import Event, FileRecord, PolicyRecord
from quarantine.outbox import ApiToken, Delivery, DeliveryState, OutboxEntry
from quarantine.policy import Exemption, RuntimeOverrides

_OVERRIDE_COLUMNS = "kind, project, version, reason, until, actor, at"
_POLICY_KEY = "policy_in_force"
GLOBAL = NormalizedName("*")  # the project column of events that concern the whole mirror


def ts(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def dt(text: str | None) -> datetime | None:
    return None if text is None else parse_timestamp(text)


def event_record(row: sqlite3.Row) -> Event:
    return Event(
        at=parse_timestamp(row["at"]),
        project=NormalizedName(row["project"]),
        filename=row["filename"],
        sha256=row["sha256"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        reason=row["reason"],
        actor=row["actor"],
    )


def _event_filter(
    project: NormalizedName | None, since: datetime | None
) -> tuple[str, tuple[str, ...]]:
    clauses: list[str] = []
    params: list[str] = []
    if project is not None:
        clauses.append("project=?")
        params.append(project)
    if since is not None:
        clauses.append("at>=?")  # one fixed-width UTC spelling: text order is time order
        params.append(format_timestamp(since))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        event_id=row["event_id"],
        channel=row["channel"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=dt(row["next_attempt_at"]),
        last_error=row["last_error"],
    )


def _token(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        name=row["name"],
        scope=row["scope"],
        created_at=parse_timestamp(row["created_at"]),
        created_by=row["created_by"],
        revoked_at=dt(row["revoked_at"]),
    )


class AdminTables:
    """Needs the host class's connection helpers (declared here for the type checker)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _meta(self, key: str) -> str | None:
        raise NotImplementedError

    def _next_seq(self, db: sqlite3.Connection) -> int:
        raise NotImplementedError

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
        raise NotImplementedError

    def overrides_version(self) -> int:
        return int(self._meta("overrides_version") or 0)

    def _bump_overrides(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO meta VALUES ('overrides_version', '1') ON CONFLICT(key) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1"
        )
        # Every page may list more or fewer files now: drop them all.
        db.execute("UPDATE projects SET seq=?", (self._next_seq(db),))

    def runtime_overrides(self) -> RuntimeOverrides:
        found = RuntimeOverrides()
        for row in self._query("SELECT * FROM overrides"):
            name = NormalizedName(row["project"])
            if row["kind"] == "exemption":
                found.exemptions[name] = Exemption(row["reason"], dt(row["until"]))
            elif row["kind"] == "cutoff":
                found.cutoff = dt(row["until"])
            elif row["kind"] == "block":
                found.blocks[(name, row["version"])] = row["reason"]
        return found

    # -- the audit trail, a page at a time -------------------------------------------------
    def recent_events(
        self, project: NormalizedName | None, since: datetime | None, limit: int
    ) -> tuple[list[Event], int]:
        where, params = _event_filter(project, since)
        with self._reading() as db:
            db.execute("BEGIN")  # one snapshot: the count and the rows agree
            try:
                total = int(db.execute(f"SELECT COUNT(*) FROM events{where}", params).fetchone()[0])
                rows = db.execute(
                    f"SELECT * FROM (SELECT * FROM events{where} ORDER BY id DESC LIMIT ?) "
                    "ORDER BY id",
                    (*params, limit),
                ).fetchall()
            finally:
                db.execute("COMMIT")
        return [event_record(row) for row in rows], total

    # -- the policy in force (kept as one meta row, for the admin commands) -------------------
    def record_policy(
        self, document: Mapping[str, Any], summary: str, actor: str, at: datetime
    ) -> bool:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        kept = json.dumps({"document": text, "actor": actor, "at": format_timestamp(at)})
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (_POLICY_KEY,)).fetchone()
            changed = row is None or json.loads(row["value"])["document"] != text
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_POLICY_KEY, kept))
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

    def set_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> None:
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO overrides ({_OVERRIDE_COLUMNS}) "
                "VALUES ('block', ?, ?, ?, NULL, ?, ?)",
                (project, version, reason, actor, format_timestamp(at)),
            )
            what = project if version == "*" else f"{project}=={version}"
            self._event(db, at, project, None, None, "blocked-by-admin", f"{what}: {reason}", actor)
            self._bump_overrides(db)

    def clear_block(
        self, project: NormalizedName, version: str, reason: str, actor: str, at: datetime
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM overrides WHERE kind='block' AND project=? AND version=?",
                (project, version),
            )
            if cursor.rowcount:
                what = project if version == "*" else f"{project}=={version}"
                self._event(
                    db, at, project, None, "blocked", "unblocked", f"{what}: {reason}", actor
                )
                self._bump_overrides(db)
            return cursor.rowcount > 0

    # -- outbox and deliveries ---------------------------------------------------------------
    def outbox(self, after_id: int = 0, limit: int = 500) -> list[OutboxEntry]:
        rows = self._query(
            "SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [
            OutboxEntry(
                id=row["id"],
                event_id=row["event_id"],
                kind=row["kind"],
                severity=row["severity"],
                created_at=parse_timestamp(row["created_at"]),
                payload=json.loads(row["payload"]),
            )
            for row in rows
        ]

    def deliveries(self, state: DeliveryState | None = None) -> list[Delivery]:
        if state is None:
            rows = self._query("SELECT * FROM deliveries ORDER BY event_id, channel")
        else:
            rows = self._query(
                "SELECT * FROM deliveries WHERE state=? ORDER BY event_id, channel", (state.value,)
            )
        return [_delivery(row) for row in rows]

    def record_delivery(self, delivery: Delivery) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery.event_id,
                    delivery.channel,
                    delivery.state.value,
                    delivery.attempts,
                    ts(delivery.next_attempt_at),
                    delivery.last_error,
                ),
            )

    # -- API tokens (hashes only) ------------------------------------------------------------
    def create_token(self, token: ApiToken, token_hash: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                (
                    token.name,
                    token.scope,
                    token_hash,
                    format_timestamp(token.created_at),
                    token.created_by,
                ),
            )
            reason = f"token {token.name!r} created with scope {token.scope}"
            self._event(
                db, token.created_at, GLOBAL, None, None, "token-created", reason, token.created_by
            )

    def revoke_token(self, name: str, actor: str, at: datetime) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (format_timestamp(at), name),
            )
            if cursor.rowcount:
                self._event(db, at, GLOBAL, None, None, "token-revoked", f"token {name!r}", actor)
            return cursor.rowcount > 0

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The live token whose stored hash equals ``token_hash``, compared in constant time
        against every live token (there are few), so no timing depends on the hash."""
        match = None
        for row in self._query("SELECT * FROM tokens WHERE revoked_at IS NULL"):
            if hmac.compare_digest(row["hash"].encode(), token_hash.encode()):
                match = row
        return _token(match) if match is not None else None

    def tokens(self) -> list[ApiToken]:
        return [_token(row) for row in self._query("SELECT * FROM tokens ORDER BY name")]

    def set_exemption(
        self, project: NormalizedName, exemption: Exemption, actor: str, at: datetime
    ) -> None:
        until = ts(exemption.until)
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO overrides ({_OVERRIDE_COLUMNS}) "
                "VALUES ('exemption', ?, '*', ?, ?, ?, ?)",
                (project, exemption.reason, until, actor, format_timestamp(at)),
            )
            note = f"exempt{' until ' + until if until else ''}: {exemption.reason}"
            self._event(db, at, project, None, None, "exempted", note, actor)
            self._bump_overrides(db)

    def clear_exemption(
        self, project: NormalizedName, reason: str, actor: str, at: datetime
    ) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM overrides WHERE kind='exemption' AND project=?", (project,)
            )
            if cursor.rowcount:
                self._event(db, at, project, None, "exempted", "unexempted", reason, actor)
                self._bump_overrides(db)
            return cursor.rowcount > 0

    def set_cutoff(self, moment: datetime, reason: str, actor: str, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO overrides ({_OVERRIDE_COLUMNS}) "
                "VALUES ('cutoff', '*', '*', ?, ?, ?, ?)",
                (reason, format_timestamp(moment), actor, format_timestamp(at)),
            )
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
