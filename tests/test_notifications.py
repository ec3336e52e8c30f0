"""Release-hold notifications against real local receivers on 127.0.0.1.

An aiohttp receiver checks the Standard Webhooks signature with its own code (not the
mirror's) and records every id; a Slack-style endpoint records what it got; an aiosmtpd
server takes the mail. Decisions come from the real mirror (a release held for review by
its vetting) or straight from the ledger; the notifier runs on the test's FakeClock, so
backoff takes no time.
"""

import asyncio
import base64
import email
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from packaging.utils import NormalizedName

from conftest import NOW
from mirror.errors import ConfigError
from mirror.notify.channel import (
    DeliveryFailed,
    Secret,
    address_problem,
    literal_problem,
    parse_retry_after,
)
from mirror.notify.config import NotifyTarget
from mirror.notify.delivery import Notifier, Route, backoff, build_routes
from mirror.notify.email import EmailChannel
from mirror.notify.slack import SlackChannel, slack_payload
from mirror.notify.webhook import WebhookChannel, parse_secrets, signature, verify
from mirror.settings import load_settings
from quarantine import admin
from quarantine.ledger.interface import Ledger
from quarantine.messages import idempotency_key, render, render_digest
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.outbox import DeliveryState, OutboxEntry
from quarantine.policy import Policy
from support.clock import FakeClock
from support.dists import build_wheel
from support.ledger_backend import ledger_rows, open_ledger
from support.mirror import MirrorServer
from support.upstream import Upstream
from support.upstream import UpstreamFile as PublishedFile

T = TypeVar("T")
# Canaries: distinctive values that must never show up in a log, a message or the ledger.
SECRET_KEY = b"canary-webhook-key-7Qz9-never-in-any-log-or-row"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
SMTP_PASSWORD = "canary-smtp-password-Xk42-never-logged"
SMTP_USER = "lazaretto-bot"
PTH = {"notify_demo_init.pth": b'import os; os.environ["LAZARETTO_STAND_IN"] = "1"\n'}
POLICY = Policy()


# -- receivers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def receiver_verifies(keys: Sequence[bytes], headers: Any, body: bytes) -> bool:
    """The receiver's own Standard Webhooks check, written from the spec, not the mirror's."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return False
    content = f"{msg_id}.{stamp}.".encode() + body
    given = headers.get("webhook-signature", "").split(" ")
    for key in keys:
        mac = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(f"v1,{mac}", part) for part in given):
            return True
    return False


@dataclass
class Hook:
    msg_id: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """``/hook`` (signature checked, 401 when wrong) and ``/slack``, in a thread of its own."""

    keys: Sequence[bytes]
    port: int = field(default_factory=_free_port)
    hooks: list[Hook] = field(default_factory=list)
    slack: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # then 200
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack"

    def unique_ids(self) -> list[str]:
        """What a receiver that de-duplicates on webhook-id keeps, in order."""
        return list(dict.fromkeys(hook.msg_id for hook in self.hooks))

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)

    def stop(self) -> None:
        assert self._loop is not None and self._thread is not None and self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/slack", self._slack)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _scripted(self) -> web.Response | None:
        self.requests += 1
        if not self.answers:
            return None
        status, retry_after = self.answers.pop(0)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.Response(status=status, headers=headers)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not receiver_verifies(self.keys, request.headers, body):
            self.rejected.append(request.headers.get("webhook-id", ""))
            return web.Response(status=401)
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.hooks.append(Hook(headers["webhook-id"], headers, json.loads(body)))
        return web.Response(status=204)

    async def _slack(self, request: web.Request) -> web.Response:
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        self.slack.append(json.loads(await request.read()))
        return web.Response(text="ok")


class Mailbox:
    """An aiosmtpd server on 127.0.0.1 (no TLS: a local test server), AUTH checked."""

    def __init__(self, password: str | None = None) -> None:
        self.port = _free_port()
        self.mails: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[bool] = []
        self._password = password
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate if password else None,
            auth_require_tls=False,
        )

    def __enter__(self) -> "Mailbox":
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == SMTP_USER.encode()
            and data.password == (self._password or "").encode()
        )
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""  # the bytes as sent, before decoding
        parsed = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(keys=parse_secrets(SECRET, "test"))
    started.start()
    yield started
    if started._loop is not None:
        started.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path / "data")
    yield opened
    opened.close()


# -- helpers ---------------------------------------------------------------------------------


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def webhook(receiver: Receiver) -> WebhookChannel:
    return WebhookChannel("hook", receiver.hook_url, Secret(SECRET), allow_private=True)


def routes(*channels: Any) -> list[Route]:
    return [Route(channel, group_seconds=0) for channel in channels]


def mail_channel(mailbox: Mailbox, password: str | None = None, name: str = "mail") -> EmailChannel:
    return EmailChannel(
        name,
        "127.0.0.1",
        mailbox.port,
        "lazaretto@example.org",
        ["security@example.org"],
        starttls=False,
        username=SMTP_USER if password else None,
        password=Secret(password) if password else None,
        allow_private=True,
    )


def seed(
    ledger: Ledger, project: str, version: str, tags: Sequence[str], at: datetime
) -> list[FileRecord]:
    """The mirror's first look at a new release: its files are held (cooling)."""
    name = NormalizedName(project)
    files = tuple(
        UpstreamFile(
            filename=f"{project.replace('-', '_')}-{version}-{tag}.whl",
            url=f"https://files.example/{project}-{version}-{tag}.whl",
            sha256=hashlib.sha256(f"{project}{version}{tag}".encode()).hexdigest(),
            size=1024,
            upload_time=at - timedelta(hours=1),
            requires_python=None,
            yanked=None,
            core_metadata_sha256=None,
            provenance_url=None,
        )
        for tag in tags
    )
    known = {record.filename: record for record in ledger.files(name)}
    snapshot = Snapshot(name, files, ProjectStatus.ACTIVE, status_reason=None, serial=1)
    ledger.apply(observe(ledger.project(name), known, snapshot, at, POLICY), None, "system:test")
    return [record for record in ledger.files(name) if record.version == version]


def to_review(ledger: Ledger, records: Sequence[FileRecord], reason: str, at: datetime) -> None:
    for record in records:
        ledger.transition(record, FileState.REVIEW, reason, "system:vetter", at)


def all_event_ids(ledger: Ledger) -> set[str]:
    return {entry.event_id for entry in ledger.outbox(0, 10_000)}


def covered(receiver: Receiver) -> list[str]:
    """Outbox event ids in the messages a de-duplicating receiver kept."""
    kept = {hook.msg_id: hook for hook in receiver.hooks}
    return [event for hook in kept.values() for event in hook.body["data"]["event_ids"]]


# -- through the mirror: a release held for review -------------------------------------------


def test_review_hold_is_one_signed_message_on_every_channel(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, receiver: Receiver
) -> None:
    project = "notify-demo"
    upstream.add(project, PublishedFile(build_wheel(project, "1.0.0"), NOW - timedelta(days=400)))
    _touch(mirror, project)
    # Two files of one release, both with a new startup .pth hook: held for review.
    for tag in ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64"):
        wheel = build_wheel(project, "1.0.1", extra_files=PTH, tag=tag)
        upstream.add(project, PublishedFile(wheel, NOW + timedelta(seconds=30)))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, project)
    for _ in range(3):
        mirror.promote()
    assert mirror.services is not None
    services = mirror.services
    held = [r for r in services.ledger.files(NormalizedName(project)) if r.version == "1.0.1"]
    assert {r.state for r in held} == {FileState.REVIEW}, [(r.state, r.reason) for r in held]

    with Mailbox() as mailbox:
        notifier = Notifier(
            services.ledger,
            clock,
            routes(
                webhook(receiver),
                SlackChannel("slack", receiver.slack_url, allow_private=True),
                mail_channel(mailbox),
            ),
            policy=services.policy,
        )
        assert mirror.call(notifier.run_once()) == 3
        assert mirror.call(notifier.run_once()) == 0  # nothing twice

    assert len(receiver.hooks) == 1 and not receiver.rejected
    hook = receiver.hooks[0]
    data = hook.body["data"]
    requirement = f"{project}==1.0.1"
    assert hook.body["type"] == "lazaretto.held-for-review"
    assert hook.body["id"] == hook.msg_id == idempotency_key(data["event_ids"])
    assert data["release"] == {"project": project, "version": "1.0.1"}
    assert len(data["files"]) == 2 and len(data["event_ids"]) == 2
    assert any("pth" in reason for reason in data["reasons"])
    until = held[0].clock_start + POLICY.cooling_period
    assert data["until"].startswith("Held until a person decides")
    assert until.strftime("%Y-%m-%dT%H:%M") in data["until"]
    assert data["commands"] == [
        f'lazaretto promote {requirement} --reason "..."',
        f'lazaretto block {requirement} --reason "..."',
        f"lazaretto explain {requirement}",
    ]
    for command in data["commands"]:
        assert command in data["text"]

    assert len(receiver.slack) == 1
    slack = receiver.slack[0]
    assert slack["text"] == f"{project} 1.0.1 is held for review (2 files)"
    assert f"lazaretto promote {requirement}" in json.dumps(slack["blocks"])

    assert len(mailbox.mails) == 1
    recipients, mail = mailbox.mails[0]
    assert recipients == ["security@example.org"]
    assert mail["Subject"] == f"[Lazaretto warning] {project} 1.0.1 is held for review (2 files)"
    assert mail["X-Lazaretto-Id"] == hook.msg_id
    body = mail.get_content()
    assert f'lazaretto block {requirement} --reason "..."' in body
    assert "Held until a person decides" in body
    _print_samples(hook, slack, mail)


def _touch(mirror: MirrorServer, project: str) -> None:
    urllib.request.urlopen(mirror.url + project + "/").close()


def _print_samples(hook: Hook, slack: dict[str, Any], mail: EmailMessage) -> None:
    """The samples the issue note quotes (``pytest -s`` shows them)."""
    shown = {k: v for k, v in hook.headers.items() if k.startswith("webhook-")}
    print("\n== webhook headers\n" + json.dumps(shown, indent=2))
    print("== webhook body\n" + json.dumps(hook.body, indent=2, ensure_ascii=False))
    print("== slack body\n" + json.dumps(slack, indent=2, ensure_ascii=False))
    print("== email\n" + mail.as_string())


# -- down, back, restarted: every event exactly once by id ------------------------------------


class Crash(BaseException):
    """The process dies: not an error any code handles."""


@dataclass
class CrashAfterSend:
    """Sends for real, then 'dies' before the outcome is recorded."""

    inner: WebhookChannel

    @property
    def name(self) -> str:
        return self.inner.name

    async def send(self, message: Any) -> None:
        await self.inner.send(message)
        raise Crash


def test_a_receiver_that_was_down_gets_every_event_once_after_a_restart(
    mirror: MirrorServer, clock: FakeClock, receiver: Receiver
) -> None:
    assert mirror.services is not None
    ledger = mirror.services.ledger
    now = clock.now()
    blocked = seed(ledger, "alpha", "2.0", ["py3-none-any", "cp311-abi3-linux_x86_64"], now)
    admin.block(ledger, NormalizedName("alpha"), "2.0", "known bad build", "admin:ann", now)
    to_review(ledger, seed(ledger, "beta", "1.1", ["py3-none-any"], now), "review: x", now)
    receiver.stop()  # the receiver is down

    notifier = Notifier(ledger, clock, routes(webhook(receiver)), policy=mirror.services.policy)
    assert mirror.call(notifier.run_once()) == 0
    pending = ledger.deliveries(DeliveryState.PENDING)
    assert pending and all(row.attempts == 1 for row in pending)
    assert all("cannot reach 127.0.0.1" in (row.last_error or "") for row in pending)
    assert {row.next_attempt_at for row in pending} == {now + timedelta(seconds=30)}
    assert mirror.call(notifier.run_once()) == 0  # not due yet: no new attempt
    assert {row.attempts for row in ledger.deliveries(DeliveryState.PENDING)} == {1}
    clock.advance(timedelta(seconds=31))
    mirror.call(notifier.run_once())
    assert {row.attempts for row in ledger.deliveries(DeliveryState.PENDING)} == {2}

    # Another decision while the receiver is still down, then the mirror restarts.
    to_review(ledger, seed(ledger, "gamma", "0.3", ["py3-none-any"], now), "review: y", now)
    mirror.restart()
    assert mirror.services is not None
    ledger = mirror.services.ledger
    receiver.start()  # back, on the same port
    clock.advance(timedelta(minutes=2))
    notifier = Notifier(ledger, clock, routes(webhook(receiver)), policy=mirror.services.policy)
    sent = mirror.call(notifier.run_once())
    assert sent == len(receiver.hooks) == 4  # alpha blocked, alpha admin block, beta, gamma
    assert mirror.call(notifier.run_once()) == 0
    events = covered(receiver)
    assert sorted(events) == sorted(all_event_ids(ledger))  # none missing, none twice
    assert not ledger.deliveries(DeliveryState.PENDING)
    kinds = sorted(hook.body["type"] for hook in receiver.hooks)
    assert kinds.count("lazaretto.held-for-review") == 2
    alpha = next(h for h in receiver.hooks if h.body["type"] == "lazaretto.blocked")
    assert len(alpha.body["data"]["files"]) == len(blocked) == 2  # one message per release


def test_a_crash_between_send_and_record_resends_under_the_same_id(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    first_file, second_file = seed(
        ledger, "delta", "1.0", ["py3-none-any", "cp311-abi3-linux_x86_64"], NOW
    )
    to_review(ledger, [first_file], "review: z", NOW)
    crashing = Notifier(ledger, clock, routes(CrashAfterSend(webhook(receiver))))
    with pytest.raises(Crash):
        run(crashing.run_once())
    assert len(receiver.hooks) == 1  # it arrived, but the mirror never recorded that
    to_review(ledger, [second_file], "review: z", NOW)
    clock.advance(timedelta(seconds=31))
    restarted = Notifier(ledger, clock, routes(webhook(receiver)))
    assert run(restarted.run_once()) == 2  # the same group again, and the new file alone
    first, again, new = receiver.hooks
    assert again.msg_id == first.msg_id and again.body == first.body  # de-duplicable
    assert receiver.unique_ids() == [first.msg_id, new.msg_id]
    assert sorted(covered(receiver)) == sorted(all_event_ids(ledger))


def test_files_of_a_release_arriving_together_wait_for_each_other(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    first, second = seed(ledger, "lam", "3.0", ["py3-none-any", "cp311-abi3-linux_x86_64"], NOW)
    notifier = Notifier(ledger, clock, [Route(webhook(receiver), group_seconds=30)])
    to_review(ledger, [first], "review: a", clock.now())
    assert run(notifier.run_once()) == 0  # settling
    clock.advance(timedelta(seconds=20))
    to_review(ledger, [second], "review: a", clock.now())
    clock.advance(timedelta(seconds=20))
    assert run(notifier.run_once()) == 0  # the second file restarted the wait
    clock.advance(timedelta(seconds=10))
    assert run(notifier.run_once()) == 1
    (hook,) = receiver.hooks
    assert len(hook.body["data"]["files"]) == 2


def test_errors_back_off_and_retry_after_is_honoured(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    to_review(ledger, seed(ledger, "eps", "1.0", ["py3-none-any"], NOW), "review: e", NOW)
    receiver.answers = [(503, "120"), (500, None)]
    notifier = Notifier(ledger, clock, routes(webhook(receiver)))
    run(notifier.run_once())
    (row,) = ledger.deliveries(DeliveryState.PENDING)
    assert row.next_attempt_at == NOW + timedelta(seconds=120)  # Retry-After over 30 s
    assert row.last_error == "HTTP 503 from the receiver (will retry)"
    clock.advance(timedelta(seconds=119))
    run(notifier.run_once())
    assert receiver.requests == 1  # not before the receiver asked
    clock.advance(timedelta(seconds=1))
    run(notifier.run_once())
    (row,) = ledger.deliveries(DeliveryState.PENDING)
    assert row.attempts == 2 and row.next_attempt_at == clock.now() + timedelta(seconds=60)
    clock.advance(timedelta(seconds=60))
    assert run(notifier.run_once()) == 1
    assert receiver.requests == 3 and len(receiver.hooks) == 1
    (done,) = ledger.deliveries(DeliveryState.DELIVERED)
    assert done.attempts == 3 and done.last_error is None


def test_backoff_doubles_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(8) == backoff(12) == 3600
    assert parse_retry_after("7") == 7 and parse_retry_after("999999") == 3600
    later = datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", later - timedelta(minutes=2)) == 120
    assert parse_retry_after("soon") is None


def test_too_many_failures_make_a_dead_letter(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    to_review(ledger, seed(ledger, "zeta", "1.0", ["py3-none-any"], NOW), "review: d", NOW)
    receiver.answers = [(410, None)] * 10
    notifier = Notifier(ledger, clock, routes(webhook(receiver)), max_attempts=3)
    for _ in range(5):
        run(notifier.run_once())
        clock.advance(timedelta(hours=1))
    assert receiver.requests == 3
    (dead,) = ledger.deliveries(DeliveryState.DEAD)
    assert dead.channel == "hook" and dead.attempts == 3
    assert dead.last_error == "HTTP 410: the receiver refused the message"
    assert not ledger.deliveries(DeliveryState.PENDING)


# -- the target policy -----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_target_needs_allow_private(
    ledger: Ledger, clock: FakeClock, receiver: Receiver, host: str
) -> None:
    to_review(ledger, seed(ledger, "eta", "1.0", ["py3-none-any"], NOW), "review: l", NOW)
    url = f"http://{host}:{receiver.port}/hook"
    channels = [
        WebhookChannel("hook", url, Secret(SECRET)),
        SlackChannel("slack", url.replace("/hook", "/slack")),
    ]
    run(Notifier(ledger, clock, routes(*channels)).run_once())
    assert receiver.requests == 0 and not receiver.hooks and not receiver.rejected
    rows = ledger.deliveries(DeliveryState.PENDING)
    assert len(rows) == 2
    for row in rows:
        assert row.last_error is not None
        assert row.last_error.startswith(f"refused: {host} resolves to 127.0.0.1")
        assert "a loopback address" in row.last_error and "allow_private" in row.last_error


def test_address_policy() -> None:
    from ipaddress import ip_address

    for address in ("10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "192.168.1.9"):
        assert address_problem(ip_address(address), allow_private=False) is not None
    assert address_problem(ip_address("0.0.0.0"), allow_private=True) == "an unspecified address"
    assert address_problem(ip_address("10.0.0.1"), allow_private=True) is None
    assert address_problem(ip_address("93.184.216.34"), allow_private=False) is None
    assert literal_problem("[::1]", False) == "[::1] is a loopback address"
    assert literal_problem("hooks.example.org", False) is None  # names: checked at send time


# -- signatures ------------------------------------------------------------------------------


def test_a_wrong_signature_fails_at_the_receiver(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    to_review(ledger, seed(ledger, "theta", "1.0", ["py3-none-any"], NOW), "review: s", NOW)
    other = Secret("whsec_" + base64.b64encode(b"another-key-of-at-least-32-bytes!!").decode())
    wrong = WebhookChannel("hook", receiver.hook_url, other, allow_private=True)
    run(Notifier(ledger, clock, routes(wrong)).run_once())
    assert len(receiver.rejected) == 1 and not receiver.hooks
    (row,) = ledger.deliveries(DeliveryState.PENDING)
    assert row.last_error == "HTTP 401: the receiver refused the message"


def test_reference_verifier_checks_body_age_and_rotation() -> None:
    keys = parse_secrets(SECRET, "test")
    now = int(time.time())
    body = b'{"id":"msg_1"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now)}
    signed = {**headers, "webhook-signature": signature(keys, "msg_1", now, body)}
    assert verify(keys, signed, body, now=now)
    assert receiver_verifies(keys, signed, body)  # the spec, checked independently
    assert not verify(keys, signed, body + b" ", now=now)  # tampered body
    assert not receiver_verifies(keys, signed, body.replace(b"1", b"2"))
    assert not verify(keys, signed, body, now=now + 301)  # a replay after 5 minutes
    new = parse_secrets("raw-secret-for-the-rotation-overlap-0123456789", "test")
    rotated = {**headers, "webhook-signature": signature([*keys, *new], "msg_1", now, body)}
    assert verify(keys, rotated, body, now=now) and verify(new, rotated, body, now=now)
    assert rotated["webhook-signature"].count("v1,") == 2
    with pytest.raises(ValueError, match="at least 32 bytes") as short:
        parse_secrets("whsec_" + base64.b64encode(b"short").decode(), "HOOK_SECRET")
    assert "c2hvcnQ" not in str(short.value)


# -- email -----------------------------------------------------------------------------------


def test_email_has_no_injected_header_and_a_clean_body(ledger: Ledger, clock: FakeClock) -> None:
    (record,) = seed(ledger, "iota", "1.0", ["py3-none-any"], NOW)
    reason = "review: yanked: evil\r\nBcc: x@y\x1b[31m\u202e"
    ledger.transition(record, FileState.REVIEW, reason, "system:vetter", NOW)
    with Mailbox() as mailbox:
        run(Notifier(ledger, clock, routes(mail_channel(mailbox))).run_once())
    ((recipients, mail),) = mailbox.mails
    assert recipients == ["security@example.org"] and mail["Bcc"] is None
    body = mail.get_content()
    assert "review: yanked: evil Bcc: x@y" in body
    assert "\x1b" not in body and "\u202e" not in body
    assert not any(line.startswith("Bcc:") for line in body.splitlines())


# -- canaries --------------------------------------------------------------------------------


def test_secrets_never_reach_logs_messages_or_the_ledger(
    tmp_path: Path,
    clock: FakeClock,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger = open_ledger(tmp_path / "canary")
    to_review(ledger, seed(ledger, "kappa", "1.0", ["py3-none-any"], NOW), "review: c", NOW)
    env = {"HOOK_SECRET": SECRET, "SMTP_USER": SMTP_USER, "SMTP_PASSWORD": SMTP_PASSWORD}
    with Mailbox(password=SMTP_PASSWORD) as mailbox:
        built = build_routes(_targets(tmp_path, receiver, mailbox), env)
        assert all(SMTP_PASSWORD not in repr(route) for route in built)
        assert all(SECRET not in repr(route) for route in built)
        wrong = mail_channel(mailbox, "a-wrong-password-of-some-length", name="mail-wrong")
        notifier = Notifier(ledger, clock, [*built, Route(wrong, group_seconds=0)])
        assert run(notifier.run_once()) == 2  # webhook and mail; the wrong login fails
        assert mailbox.logins.count(True) == 1 and False in mailbox.logins  # smtplib tries twice
    failed = [row for row in ledger.deliveries() if row.channel == "mail-wrong"]
    assert failed[0].last_error is not None and "535" in failed[0].last_error
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("mirror", "quarantine"))]
    assert any("535" in line for line in ours)  # the failure is logged, the password is not
    plain = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    assert all(plain not in line for line in ours)  # not even as the AUTH PLAIN blob
    seen = [
        caplog.text,  # every logger, the SMTP server's debug log included
        *capfd.readouterr(),  # smtplib's debug output goes to stderr: it stays off
        "\n".join(ledger_rows(tmp_path / "canary")),
        json.dumps([hook.body for hook in receiver.hooks]),
        json.dumps([hook.headers for hook in receiver.hooks]),
        "\n".join(mail.as_string() for _, mail in mailbox.mails),
    ]
    ledger.close()
    for text in seen:
        for canary in (SECRET, SECRET_KEY.decode(), SMTP_PASSWORD):
            assert canary not in text


def _targets(tmp_path: Path, receiver: Receiver, mailbox: Mailbox) -> tuple[NotifyTarget, ...]:
    config = tmp_path / "lazaretto.toml"
    config.write_text(
        f"""
[[notify]]
kind = "webhook"
name = "hook"
url = "{receiver.hook_url}"
secret_env = "HOOK_SECRET"
allow_private = true
group_seconds = 0

[[notify]]
kind = "email"
name = "mail"
host = "127.0.0.1"
port = {mailbox.port}
starttls = false
allow_private = true
username_env = "SMTP_USER"
password_env = "SMTP_PASSWORD"
from = "lazaretto@example.org"
to = ["security@example.org"]
group_seconds = 0
""",
        encoding="utf-8",
    )
    return load_settings(config, {}, {}).notify


# -- configuration ---------------------------------------------------------------------------

EXAMPLE = """\
notify_interval = "15s"
notify_max_attempts = 8

[[notify]]
kind = "webhook"
name = "security-hook"
url = "https://hooks.example.org/lazaretto"
secret_env = "LAZARETTO_WEBHOOK_SECRET"
events = ["held-for-review", "blocked", "withdrawn", "anomaly"]

[[notify]]
kind = "slack"
name = "slack-security"
url_env = "LAZARETTO_SLACK_URL"

[[notify]]
kind = "email"
name = "oncall-mail"
host = "smtp.example.org"
username_env = "LAZARETTO_SMTP_USER"
password_env = "LAZARETTO_SMTP_PASSWORD"
from = "lazaretto@example.org"
to = ["security@example.org", "oncall@example.org"]
"""


def test_notify_config_is_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "lazaretto.toml"
    config.write_text(EXAMPLE, encoding="utf-8")
    settings = load_settings(config, {}, {})
    hook, slack, mail = settings.notify
    assert settings.notify_interval == timedelta(seconds=15) and settings.notify_max_attempts == 8
    assert hook.events == frozenset({"held-for-review", "blocked", "withdrawn", "anomaly"})
    assert slack.url is None and slack.url_env == "LAZARETTO_SLACK_URL"
    assert (mail.port, mail.starttls, mail.sender) == (587, True, "lazaretto@example.org")
    assert mail.events is None and mail.group_seconds == 30
    env = {
        "LAZARETTO_WEBHOOK_SECRET": SECRET,
        "LAZARETTO_SLACK_URL": "https://chat.example.org/services/T0/B0/x",
        "LAZARETTO_SMTP_USER": SMTP_USER,
        "LAZARETTO_SMTP_PASSWORD": SMTP_PASSWORD,
    }
    assert [route.channel.name for route in build_routes(settings.notify, env)] == [
        "security-hook",
        "slack-security",
        "oncall-mail",
    ]
    with pytest.raises(ConfigError, match="LAZARETTO_SMTP_PASSWORD is not set"):
        build_routes(settings.notify, {**env, "LAZARETTO_SMTP_PASSWORD": ""})
    short = {**env, "LAZARETTO_WEBHOOK_SECRET": "too-short"}
    with pytest.raises(ConfigError, match="at least 32 bytes") as error:
        build_routes(settings.notify, short)
    assert "too-short" not in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("https://hooks.example.org/lazaretto", "http://127.0.0.1/x"), "line 7: notify[0].url"),
        (("https://hooks.example.org/lazaretto", "https://10.0.0.1/x"), "a private address"),
        (("https://hooks.example.org/lazaretto", "ftp://x"), "expected an https:// URL"),
        (('secret_env = "LAZARETTO_WEBHOOK_SECRET"', 'secret = "x"'), "line 8: notify[0].secret"),
        (('name = "slack-security"', 'name = "security-hook"'), "line 13: notify[1].name"),
        (('"anomaly"]', '"anomaly", "nope"]'), "unknown event 'nope'"),
        (('host = "smtp.example.org"', 'host = "127.0.0.1"'), "line 19: notify[2].host"),
        (('to = ["security', 'starttls = false\nto = ["security'), "notify[2].starttls"),
        (('password_env = "LAZARETTO_SMTP_PASSWORD"', ""), "both username_env and password_env"),
        (('kind = "slack"', 'kind = "pager"'), "line 12: notify[1].kind"),
    ],
)
def test_notify_config_errors_name_the_key_and_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    config = tmp_path / "lazaretto.toml"
    config.write_text(EXAMPLE.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(config, {}, {})


# -- rendering -------------------------------------------------------------------------------


def _entry(number: int, **payload: Any) -> OutboxEntry:
    base = {
        "project": "lam",
        "version": "1.0",
        "filename": f"lam-1.0-{number}.whl",
        "sha256": "ab" * 32,
        "from_state": "held",
        "to_state": "review",
        "reason": "review: content: new .pth hook",
        "actor": "system:vetter",
        "at": "2026-11-23T12:00:00.000000Z",
    }
    return OutboxEntry(
        number, f"evt_{number}", "held-for-review", "warning", NOW, {**base, **payload}
    )


def test_messages_group_per_release_and_clean_upstream_text() -> None:
    from quarantine.messages import group_entries

    entries = [_entry(1), _entry(2), _entry(3, version="2.0"), _entry(4, filename="x\x1b[2Jy")]
    groups = group_entries(entries)
    assert [len(group) for group in groups.values()] == [3, 1]
    message = render(groups[next(iter(groups))], {"lam-1.0-1.whl": NOW + timedelta(days=3)})
    assert message.key == idempotency_key(["evt_4", "evt_2", "evt_1"])
    assert [line.filename for line in message.files] == ["lam-1.0-1.whl", "lam-1.0-2.whl", "x[2Jy"]
    assert message.files[0].hold_until == "2026-11-26T12:00:00.000000Z"
    assert "\x1b" not in message.text
    blocked = render([_entry(5, to_state="blocked", reason="blocked by an admin: bad")])
    assert blocked.commands == (
        'lazaretto promote lam==1.0 --force --reason "..."',
        'lazaretto unblock lam==1.0 --reason "..."',
        "lazaretto explain lam==1.0",
    )
    anomaly = render([_entry(7, to_state="anomaly", reason="backdated: upload-time ...")])
    assert [command.split()[1] for command in anomaly.commands] == ["promote", "block", "explain"]
    cutoff = OutboxEntry(9, "evt_9", "cutoff", "warning", NOW, {"project": "*", "reason": "x"})
    assert render([cutoff]).commands[0] == 'lazaretto cutoff clear --reason "..."'
    slack = json.dumps(slack_payload(render([_entry(6, reason="<!channel> & <https://x|y>")])))
    assert "<!channel>" not in slack and "&lt;!channel&gt; &amp;" in slack


def test_digest_lists_routine_holds_in_one_message() -> None:
    held = [  # what `lazaretto holds` lists (quarantine.admin.holds)
        admin.Hold("lam", "1.0", "lam-1.0.whl", "held", "cooling", "2026-11-26T12:00:00Z"),
        admin.Hold("lam", "1.0", "lam-1.0.tar.gz", "held", "cooling", "2026-11-26T12:00:00Z"),
        admin.Hold("mu", "2.0", "mu-2.0.whl", "review", "review: x", None),
    ]
    digest = render_digest(held, NOW)
    assert digest.key == "digest_2026-11-23" and digest.kind == "digest"
    assert digest.title.startswith("Daily digest 2026-11-23: 3 files of 2 releases held")
    assert "lam 1.0: 2 files, held until 2026-11-26T12:00:00.000000Z (cooling)" in digest.text
    assert "mu 2.0: 1 file, review until a person decides" in digest.text


def test_secret_values_hide_in_reprs() -> None:
    assert repr(Secret(SMTP_PASSWORD)) == str(Secret(SMTP_PASSWORD)) == "Secret('***')"
    failure = DeliveryFailed("HTTP 500 from the receiver (will retry)", 3.0)
    assert failure.retry_after == 3.0 and str(failure) == failure.reason
