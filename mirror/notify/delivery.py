"""The delivery worker: outbox entries to every configured channel, at least once.

All state is in the ledger, so nothing is lost when a receiver is down or the mirror
restarts. Each round:

1. every outbox entry gets a ``pending`` delivery row per channel that wants its kind;
2. due pending rows are grouped per channel and release (project, version, kind), after a
   short settle window so the files of one release make one message;
3. before sending, the group's rows are written as if the attempt had failed (attempts+1,
   the next try after the backoff): a crash mid-send then retries the *same* group, under
   the same idempotency key, and the receiver de-duplicates it;
4. the outcome is recorded: ``delivered``, or ``pending`` again with exponential backoff
   (Retry-After honoured), or ``dead`` after ``max_attempts`` (``lazaretto deliveries``).
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from packaging.utils import NormalizedName

from mirror.errors import ConfigError
from mirror.notify.channel import Channel, DeliveryFailed, Secret
from mirror.notify.config import NotifyTarget, url_problem
from mirror.notify.email import EmailChannel
from mirror.notify.slack import SlackChannel
from mirror.notify.webhook import WebhookChannel
from quarantine.clock import Clock
from quarantine.decide import hold_until
from quarantine.download_log.interface import DownloadLog, ExposureSummary, summarize
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import PolicySource
from quarantine.messages import Message, ReleaseKey, release_key, render
from quarantine.models import FileState
from quarantine.outbox import Delivery, DeliveryState, OutboxEntry

log = logging.getLogger(__name__)

FIRST_BACKOFF = 30.0
MAX_BACKOFF = 3600.0
PAGE = 500
WITHDRAWN = "withdrawn"  # the outbox kind of a promoted file taken back
SETTLE_LIMIT = 10  # a release trickling in is sent after at most 10 settle windows


@dataclass(frozen=True, slots=True)
class Route:
    """A channel, and which events it gets and how long it waits to group them."""

    channel: Channel
    events: frozenset[str] | None = None  # None: every kind
    group_seconds: float = 30.0

    def wants(self, kind: str) -> bool:
        return self.events is None or kind in self.events


@dataclass(frozen=True, slots=True)
class _Group:
    route: Route
    rows: tuple[Delivery, ...]
    entries: tuple[OutboxEntry, ...]


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 30 s, 1 min, 2 min … 1 h."""
    return min(FIRST_BACKOFF * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF)


class Notifier:
    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        routes: Sequence[Route],
        *,
        policy: PolicySource | None = None,
        max_attempts: int = 12,
        batch_limit: int = 100,
        downloads: DownloadLog | None = None,
    ) -> None:
        names = [route.channel.name for route in routes]
        if len(set(names)) != len(names):
            raise ValueError("every notification channel needs its own name")
        self._ledger = ledger
        self._clock = clock
        self._routes = {route.channel.name: route for route in routes}
        self._policy = policy
        self._max_attempts = max_attempts
        self._downloads = downloads  # for the exposure a withdrawal notice carries
        self._batch_limit = batch_limit  # messages per channel per round
        self._cursor = 0  # the last outbox id that has its delivery rows
        self._started = False
        self._entries: dict[str, OutboxEntry] = {}  # entries with rows still pending
        self._lock = asyncio.Lock()

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a broken round must not end the worker; the next one retries
                log.exception("notification round failed")
            await asyncio.sleep(interval_seconds)

    async def run_once(self) -> int:
        """One round; returns how many messages were delivered."""
        if not self._routes:
            return 0
        async with self._lock:
            self._enqueue()
            groups = self._due_groups(self._clock.now())
            by_route: dict[str, list[_Group]] = {}
            for group in groups:
                by_route.setdefault(group.route.channel.name, []).append(group)
            # Channels in parallel (one slow receiver does not hold up the others), the
            # messages of one channel in order.
            counts = await asyncio.gather(
                *(self._send_all(found[: self._batch_limit]) for found in by_route.values())
            )
            self._forget_settled()
            return sum(counts)

    # -- 1. delivery rows for new entries -----------------------------------------------------
    def _enqueue(self) -> None:
        existing: set[tuple[str, str]] = set()
        pending: set[str] = set()
        if not self._started:  # after a restart: what the ledger already tracks
            for row in self._ledger.deliveries():
                existing.add((row.event_id, row.channel))
                if row.state is DeliveryState.PENDING and row.channel in self._routes:
                    pending.add(row.event_id)
        while entries := self._ledger.outbox(self._cursor, PAGE):
            for entry in entries:
                if self._add_rows(entry, existing) or entry.event_id in pending:
                    self._entries[entry.event_id] = entry
                self._cursor = entry.id
        self._started = True

    def _add_rows(self, entry: OutboxEntry, existing: set[tuple[str, str]]) -> bool:
        added = False
        for name, route in self._routes.items():
            if route.wants(entry.kind) and (entry.event_id, name) not in existing:
                row = Delivery(entry.event_id, name, DeliveryState.PENDING, 0, None, None)
                self._ledger.record_delivery(row)
                added = True
        return added

    def _forget_settled(self) -> None:
        waiting = {row.event_id for row in self._ledger.deliveries(DeliveryState.PENDING)}
        for event_id in [key for key in self._entries if key not in waiting]:
            del self._entries[event_id]

    # -- 2. what is due, grouped ----------------------------------------------------------------
    def _due_groups(self, now: datetime) -> list[_Group]:
        found: dict[tuple[str, ReleaseKey, int, datetime | None], list[Delivery]] = {}
        for row in self._ledger.deliveries(DeliveryState.PENDING):
            entry = self._entries.get(row.event_id)
            if entry is None or row.channel not in self._routes:
                continue  # a channel no longer configured: its rows wait for it to return
            # Rows tried together share attempts and next_attempt_at, and stay together.
            when = row.next_attempt_at if row.attempts else None
            found.setdefault((row.channel, release_key(entry), row.attempts, when), []).append(row)
        groups = []
        for (channel, _key, _attempts, _when), rows in found.items():
            entries = tuple(sorted((self._entries[r.event_id] for r in rows), key=_entry_id))
            group = _Group(self._routes[channel], tuple(rows), entries)
            if self._is_due(group, now):
                groups.append(group)
        return sorted(groups, key=lambda group: group.entries[0].id)

    @staticmethod
    def _is_due(group: _Group, now: datetime) -> bool:
        first = group.rows[0]
        if first.attempts:
            return first.next_attempt_at is None or first.next_attempt_at <= now
        settle = timedelta(seconds=group.route.group_seconds)
        newest = max(entry.created_at for entry in group.entries)
        oldest = min(entry.created_at for entry in group.entries)
        return newest + settle <= now or oldest + settle * SETTLE_LIMIT <= now

    # -- 3. and 4. send and record ----------------------------------------------------------
    async def _send_all(self, groups: Sequence[_Group]) -> int:
        delivered = 0
        for group in groups:
            try:
                delivered += await self._send(group)
            except Exception:  # a bug with one message must not hold up the rest
                # Its rows stay leased (attempts counted, next try after the backoff).
                log.exception("notification to %s failed unexpectedly", group.route.channel.name)
        return delivered

    async def _send(self, group: _Group) -> int:
        name = group.route.channel.name
        attempts = group.rows[0].attempts + 1
        if attempts > self._max_attempts:  # a crash right after the last try was leased
            self._record(group, DeliveryState.DEAD, attempts - 1, None, group.rows[0].last_error)
            return 0
        message = render(group.entries, self._holds(group.entries), self._exposure(group.entries))
        now = self._clock.now()
        self._record(  # the lease: written as a failure until the receiver says otherwise
            group,
            DeliveryState.PENDING,
            attempts,
            now + timedelta(seconds=backoff(attempts)),
            group.rows[0].last_error,
        )
        try:
            await group.route.channel.send(message)
        except DeliveryFailed as failure:
            self._failed(group, message, attempts, failure)
            return 0
        self._record(group, DeliveryState.DELIVERED, attempts, None, None)
        log.info("notification %s delivered to %s (%s)", message.key, name, message.kind)
        return 1

    def _failed(
        self, group: _Group, message: Message, attempts: int, failure: DeliveryFailed
    ) -> None:
        name = group.route.channel.name
        if attempts >= self._max_attempts:
            self._record(group, DeliveryState.DEAD, attempts, None, failure.reason)
            log.error(
                "notification %s to %s is dead after %d attempts: %s",
                message.key,
                name,
                attempts,
                failure.reason,
            )
            return
        wait = max(backoff(attempts), failure.retry_after or 0.0)
        retry_at = self._clock.now() + timedelta(seconds=wait)
        self._record(group, DeliveryState.PENDING, attempts, retry_at, failure.reason)
        log.warning(
            "notification %s to %s failed (attempt %d, next in %.0f s): %s",
            message.key,
            name,
            attempts,
            wait,
            failure.reason,
        )

    def _record(
        self,
        group: _Group,
        state: DeliveryState,
        attempts: int,
        next_attempt_at: datetime | None,
        last_error: str | None,
    ) -> None:
        for row in group.rows:
            self._ledger.record_delivery(
                replace(
                    row,
                    state=state,
                    attempts=attempts,
                    next_attempt_at=next_attempt_at,
                    last_error=last_error,
                )
            )

    def _holds(self, entries: Sequence[OutboxEntry]) -> dict[str, datetime]:
        """When the cooling period of each file still held ends (nothing without a policy)."""
        if self._policy is None:
            return {}
        policy = self._policy.current()
        holds = {}
        for entry in entries:
            project, filename = entry.payload.get("project"), entry.payload.get("filename")
            if not project or not filename:
                continue
            record = self._ledger.file(NormalizedName(project), filename)
            held = (FileState.HELD, FileState.REVIEW)
            if record is not None and record.state in held and not record.established:
                holds[filename] = hold_until(record, policy)
        return holds

    def _exposure(self, entries: Sequence[OutboxEntry]) -> ExposureSummary | None:
        """For a withdrawal: how often its files were served until now (None otherwise)."""
        if self._downloads is None or entries[0].kind != WITHDRAWN:
            return None
        digests = {str(entry.payload["sha256"]) for entry in entries if entry.payload.get("sha256")}
        return summarize(self._downloads.exposure_of(digests))


def _entry_id(entry: OutboxEntry) -> int:
    return entry.id


# -- from settings -----------------------------------------------------------------------------


def build_routes(targets: Sequence[NotifyTarget], env: Mapping[str, str]) -> list[Route]:
    """Channels for the ``[[notify]]`` targets, secrets read from ``env`` now (fail fast)."""
    return [Route(_channel(target, env), target.events, target.group_seconds) for target in targets]


def _from_env(env: Mapping[str, str], target: NotifyTarget, key: str, name: str | None) -> str:
    value = env.get(name or "", "")
    if not name or not value:
        raise ConfigError(f"notify {target.name}: {key}: environment variable {name} is not set")
    return value


def _channel(target: NotifyTarget, env: Mapping[str, str]) -> Channel:
    if target.kind == "email":
        return _email(target, env)
    url = target.url or _from_env(env, target, "url_env", target.url_env)
    if target.url_env:  # a URL from the environment gets the checks the file's would
        problem = url_problem(url, target.allow_private)
        if problem:
            raise ConfigError(f"notify {target.name}: url_env {target.url_env}: {problem}")
    if target.kind == "slack":
        return SlackChannel(target.name, Secret(url), allow_private=target.allow_private)
    secret = Secret(_from_env(env, target, "secret_env", target.secret_env))
    try:
        return WebhookChannel(target.name, Secret(url), secret, allow_private=target.allow_private)
    except ValueError as error:  # the message names the variable, never the secret
        raise ConfigError(f"{error} ({target.secret_env})") from error


def _email(target: NotifyTarget, env: Mapping[str, str]) -> EmailChannel:
    username = password = None
    if target.username_env:
        username = _from_env(env, target, "username_env", target.username_env)
        password = Secret(_from_env(env, target, "password_env", target.password_env))
    assert target.host is not None and target.sender is not None  # checked by notify_config
    return EmailChannel(
        target.name,
        target.host,
        target.port,
        target.sender,
        target.to,
        starttls=target.starttls,
        username=username,
        password=password,
        allow_private=target.allow_private,
    )
