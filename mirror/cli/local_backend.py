"""Where CLI decisions go: the local data directory, or a running mirror's admin API.

Both backends take and return plain JSON-able data, so the CLI prints the same way
whichever one is used. ``LocalBackend`` writes the shared ledger directly; a server on
the same data directory picks the change up within a second.
"""

import hashlib
import os
import secrets
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import canonicalize_name
from packaging.version import Version

from mirror.ledger_backend import open_download_log, open_ledger
from mirror.settings import Settings
from quarantine import admin, policy_record
from quarantine.clock import SystemClock, format_timestamp
from quarantine.explain import FeedStatus, explain
from quarantine.feeds.in_force import Feeds
from quarantine.incident import answers as incident
from quarantine.incident.lock_files import LockFileError
from quarantine.live_policy import LivePolicy
from quarantine.models import Event, FileState
from quarantine.outbox import ApiToken, DeliveryState
from quarantine.policy_record import PolicyInForce

SCOPES = ("read", "decide", "index:read")  # index:read: the index only (mirror.http.index_auth)
TOKEN_PREFIX = "lzt_"  # noqa: S105  (a recognisable prefix for secret scanners, not a secret)


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain sha256 is a safe, fast way to keep only a hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class AdminBackend(Protocol):
    def holds(self, project: str | None, state: str | None) -> list[dict[str, Any]]: ...
    def explain(
        self, project: str, version: str | None, since: datetime | None, limit: int
    ) -> dict[str, Any] | None:
        """The explanation (``files``, newest release first, and ``left_out``), or None."""
        ...

    def promote(
        self, project: str, version: str, reason: str, force: bool
    ) -> list[dict[str, Any]]: ...
    def block(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]: ...
    def unblock(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]: ...
    def retry(
        self, project: str, version: str | None, filename: str | None, reason: str
    ) -> list[dict[str, Any]]:
        """Hold files a fetch refused again, for another try."""
        ...

    def exempt(self, project: str, reason: str, until: datetime | None) -> None: ...
    def unexempt(self, project: str, reason: str) -> None: ...
    def cutoff_set(self, moment: datetime, reason: str) -> None: ...
    def cutoff_clear(self, reason: str) -> None: ...
    def audit(self, project: str | None, since: datetime | None, limit: int) -> dict[str, Any]:
        """The latest ``limit`` matching ``events`` (oldest first) and ``left_out``."""
        ...

    def token_create(self, name: str, scope: str) -> str: ...
    def token_revoke(self, name: str) -> None: ...
    def deliveries(self, state: str | None) -> list[dict[str, Any]]: ...
    def exposure(self, project: str, version: str | None, since: datetime | None) -> dict[str, Any]:
        """Who downloaded it: ``summary`` and ``downloads`` (``quarantine.incident.answers``)."""
        ...

    def check(self, name: str, text: str) -> dict[str, Any]:
        """Each pin of a lock file and its state now (``quarantine.incident.answers``)."""
        ...

    def notes(self) -> list[str]:
        """What the user should know about where the answers came from (for stderr)."""
        ...

    def close(self) -> None: ...


def event_json(event: Event) -> dict[str, Any]:
    return {**asdict(event), "at": format_timestamp(event.at)}


def local_actor() -> str:
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


def policy_in_force(settings: Settings) -> PolicyInForce:
    """What a process started with ``settings`` decides with (and records, if a mirror)."""
    return PolicyInForce(settings.policy, settings.osv_feeds, settings.osv_id_prefixes)


class LocalBackend:
    """The data directory itself. Hold-until times and feed checks use the policy the
    mirror recorded there (the one it enforces), not this command's configuration."""

    def __init__(
        self, settings: Settings, actor: str | None = None, config_file: Path | None = None
    ) -> None:
        self._settings = settings
        # Never a new, empty ledger: it would report "nothing is held" for a full mirror.
        self._ledger = open_ledger(settings, create=False)
        self._clock = SystemClock()
        self._actor = actor or local_actor()
        self._config_file = config_file
        self._in_force: PolicyInForce | None = None
        self._policy: LivePolicy | None = None
        self._notes: list[str] = []

    def close(self) -> None:
        self._ledger.close()

    def notes(self) -> list[str]:
        return list(self._notes)

    def _policies(self) -> tuple[PolicyInForce, LivePolicy]:
        if self._in_force is None or self._policy is None:
            self._in_force = self._mirrors_policy()
            self._policy = LivePolicy(self._in_force.policy, self._ledger)
        return self._in_force, self._policy

    def _mirrors_policy(self) -> PolicyInForce:
        own = policy_in_force(self._settings)
        found = policy_record.recorded(self._ledger)
        where = self._settings.data_dir
        if found is None:
            self._notes.append(
                f"no mirror has recorded its policy in {where} yet (none started since "
                "lazaretto records it): hold-until times use this command's configuration"
            )
            return own
        configured = self._config_file is not None or own != policy_in_force(Settings())
        if configured and own != found.in_force:
            source = f" ({self._config_file})" if self._config_file else ""
            self._notes.append(
                f"this command's configuration{source} differs from the policy the mirror "
                f"recorded in {where} at {format_timestamp(found.at)} ({found.actor}); "
                "shown: the mirror's, which it enforces until it restarts with the new one"
            )
        return found.in_force

    def holds(self, project: str | None, state: str | None) -> list[dict[str, Any]]:
        wanted = FileState(state) if state else None
        name = canonicalize_name(project, validate=False) if project else None
        policy = self._policies()[1].current()
        return [asdict(hold) for hold in admin.holds(self._ledger, policy, name, wanted)]

    def explain(
        self, project: str, version: str | None, since: datetime | None, limit: int
    ) -> dict[str, Any] | None:
        in_force, policy = self._policies()
        name = canonicalize_name(project, validate=False)
        release = Version(version) if version is not None else None
        found = explain(
            self._ledger,
            policy.current(),
            name,
            release,
            self._feeds(in_force),
            since=since,
            limit=limit,
            now=self._clock.now(),
        )
        return found.to_json() if found is not None else None

    def _feeds(self, in_force: PolicyInForce) -> FeedStatus:
        """The mirror's feeds: local ones, and its downloaded copies of URL ones."""
        if not in_force.osv_feeds:
            return FeedStatus(configured=0)
        from mirror.background.feed_refresh import feed_copy

        directory = Path(self._settings.data_dir) / "feeds"
        paths = [feed_copy(directory, source) for source in in_force.osv_feeds]
        feeds = Feeds(prefixes=in_force.osv_id_prefixes)
        feeds.reload([path for path in paths if path.exists()])
        return FeedStatus(len(in_force.osv_feeds), feeds)

    def promote(self, project: str, version: str, reason: str, force: bool) -> list[dict[str, Any]]:
        name = canonicalize_name(project, validate=False)
        changes = admin.promote(
            self._ledger, name, version, reason, self._actor, self._clock.now(), force=force
        )
        return [asdict(change) for change in changes]

    def block(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]:
        name = canonicalize_name(project, validate=False)
        return [
            asdict(c)
            for c in admin.block(
                self._ledger, name, version, reason, self._actor, self._clock.now()
            )
        ]

    def unblock(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]:
        name = canonicalize_name(project, validate=False)
        return [
            asdict(c)
            for c in admin.unblock(
                self._ledger, name, version, reason, self._actor, self._clock.now()
            )
        ]

    def retry(
        self, project: str, version: str | None, filename: str | None, reason: str
    ) -> list[dict[str, Any]]:
        name = canonicalize_name(project, validate=False)
        now = self._clock.now()
        changes = admin.retry(self._ledger, name, version, filename, reason, self._actor, now)
        return [asdict(change) for change in changes]

    def exempt(self, project: str, reason: str, until: datetime | None) -> None:
        name = canonicalize_name(project, validate=False)
        admin.exempt(self._ledger, name, reason, until, self._actor, self._clock.now())

    def unexempt(self, project: str, reason: str) -> None:
        admin.unexempt(
            self._ledger,
            canonicalize_name(project, validate=False),
            reason,
            self._actor,
            self._clock.now(),
        )

    def cutoff_set(self, moment: datetime, reason: str) -> None:
        self._ledger.set_cutoff(moment, admin.check_reason(reason), self._actor, self._clock.now())

    def cutoff_clear(self, reason: str) -> None:
        if not self._ledger.clear_cutoff(
            admin.check_reason(reason), self._actor, self._clock.now()
        ):
            raise admin.NothingToDo("no run-time cutoff is set (a config-file cutoff stays)")

    def audit(self, project: str | None, since: datetime | None, limit: int) -> dict[str, Any]:
        name = canonicalize_name(project, validate=False) if project else None
        events, total = self._ledger.recent_events(name, since, limit)
        return {"events": [event_json(event) for event in events], "left_out": total - len(events)}

    def token_create(self, name: str, scope: str) -> str:
        if scope not in SCOPES:
            raise admin.AdminError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
        if any(token.name == name for token in self._ledger.tokens()):
            raise admin.Conflict(f"a token named {name!r} exists; revoke it or pick another name")
        token = new_token()
        record = ApiToken(name, scope, self._clock.now(), self._actor, None)
        self._ledger.create_token(record, token_hash(token))
        return token

    def token_revoke(self, name: str) -> None:
        if not self._ledger.revoke_token(name, self._actor, self._clock.now()):
            raise admin.NothingToDo(f"no live token named {name!r}")

    def exposure(self, project: str, version: str | None, since: datetime | None) -> dict[str, Any]:
        downloads = open_download_log(self._settings, create=False)
        if downloads is None:
            self._notes.append(f"no download log in {self._settings.data_dir}: nothing served yet")
        try:
            name = canonicalize_name(project, validate=False)
            return incident.exposure(downloads, name, version, since)
        except incident.InvalidRelease as error:
            raise admin.AdminError(str(error)) from None
        finally:
            if downloads is not None:
                downloads.close()

    def check(self, name: str, text: str) -> dict[str, Any]:
        try:
            return incident.check(self._ledger, self._policies()[1].current(), name, text)
        except LockFileError as error:
            raise admin.AdminError(str(error)) from None

    def deliveries(self, state: str | None) -> list[dict[str, Any]]:
        wanted = DeliveryState(state) if state else None
        return [
            {
                **asdict(d),
                "state": d.state.value,
                "next_attempt_at": format_timestamp(d.next_attempt_at)
                if d.next_attempt_at
                else None,
            }
            for d in self._ledger.deliveries(wanted)
        ]
