"""The admin API over real sockets: auth, decisions, concurrency, errors, contract, secrets.

Every request goes through ``http.client`` to the mirror running as a real uvicorn server.
Every reply to an admin API request is checked against the OpenAPI document as it is
received (``Api.call``), so each test here is also a contract test. The canary test
looks for one distinctive token value in every log line, response and ledger row.

Threat model section I (I1, I2, I3, I5, I8) and the admin row of catalogue 1.6.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in the lock
from packaging.utils import NormalizedName

from conftest import NOW
from mirror.admin.api import OPERATIONS, PREFIX, guarded, release_etag
from mirror.admin.auth import LEAK_ACTOR, ApiProblem
from mirror.admin.openapi import openapi_document
from mirror.cli.local_backend import new_token, token_hash
from mirror.cli.remote_backend import RemoteBackend, TokenUnavailable, api_base, read_token
from mirror.http.request_base import RequestBase
from quarantine import admin
from quarantine.models import FileState
from quarantine.outbox import ApiToken
from support.clock import FakeClock
from support.dists import Dist, build_wheel
from support.ledger_backend import ledger_rows
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

CANARY = "lzt_CaNaRy-7f3e9b2d-never-leak-5a1c8e0f4b6d9a"
REASON = "urgent fix for a broken release"
PROBLEM = "application/problem+json"
DOC = openapi_document()


# -- the API as a client sees it -------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[0] if found else None

    def json(self) -> Any:
        return json.loads(self.body)


def _template_for(path: str) -> str | None:
    """The documented path template a concrete API path belongs to."""
    bare = path.split("?")[0].removeprefix(PREFIX)
    for template in DOC["paths"]:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, bare):
            return str(template)
    return None


def _response_schema(template: str | None, method: str, reply: Reply) -> dict[str, Any]:
    """The schema the document gives for this reply; every error is a Problem."""
    if reply.status >= 400:
        assert reply.header("Content-Type") == PROBLEM, reply
        return {"$ref": "#/components/schemas/Problem"}
    assert template is not None, "a success on an undocumented path"
    responses = DOC["paths"][template][method.lower()]["responses"]
    assert str(reply.status) in responses, (template, method, reply.status)
    content = responses[str(reply.status)]["content"]
    assert (reply.header("Content-Type") or "").split(";")[0] in content
    return cast(dict[str, Any], content["application/json"]["schema"])


def check_contract(method: str, path: str, reply: Reply) -> None:
    template = _template_for(path)
    if template is not None and reply.status < 500 and reply.status not in (405,):
        operation = DOC["paths"][template].get(method.lower())
        if operation is not None:
            documented = set(operation["responses"])
            assert str(reply.status) in documented, (method, template, reply.status)
    schema = _response_schema(template, method, reply)
    Draft202012Validator({**schema, "components": DOC["components"]}).validate(reply.json())
    if reply.status >= 400:
        problem = reply.json()
        assert problem["status"] == reply.status
        assert "\n" not in problem["detail"] and problem["detail"].isascii()


@dataclass
class Api:
    mirror: MirrorServer
    replies: list[Reply] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.mirror.port, timeout=20)
        try:
            conn.request(method, PREFIX + path, body=data, headers=sent)
            response = conn.getresponse()
            reply = Reply(response.status, response.getheaders(), response.read())
        finally:
            conn.close()
        self.replies.append(reply)
        check_contract(method, PREFIX + path, reply)
        return reply


def make_token(mirror: MirrorServer, name: str, scope: str, value: str | None = None) -> str:
    assert mirror.services is not None
    secret = value or new_token()
    record = ApiToken(name, scope, mirror.clock.now(), "test", None)
    mirror.services.ledger.create_token(record, token_hash(secret))
    return secret


@dataclass
class Setup:
    api: Api
    mirror: MirrorServer
    upstream: Upstream
    clock: FakeClock
    decide: str
    read: str


@pytest.fixture
def setup(mirror: MirrorServer, upstream: Upstream, clock: FakeClock) -> Setup:
    decide = make_token(mirror, "ops", "decide")
    read = make_token(mirror, "viewer", "read")
    return Setup(Api(mirror), mirror, upstream, clock, decide, read)


def _get(mirror: MirrorServer, path: str, accept: str | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=20)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def held_release(s: Setup, project: str = "hold-me", version: str = "1.0") -> Dist:
    """A fresh release the mirror has seen, fetched and verified, and still holds."""
    dist = build_wheel(project, version)
    s.upstream.add(project, UpstreamFile(dist, NOW - timedelta(hours=1)))
    assert _get(s.mirror, f"/simple/{project}/").status == 200
    s.mirror.promote()  # fetches and verifies the bytes; cooling has 71 h to go
    assert s.mirror.services is not None
    record = s.mirror.services.ledger.file(NormalizedName(project), dist.filename)
    assert record is not None and record.state is FileState.HELD and record.stored, record
    return dist


def _file_path(dist: Dist) -> str:
    return f"/files/{dist.sha256}/{dist.filename}"


def _listed(s: Setup, project: str) -> set[str]:
    page = _get(s.mirror, f"/simple/{project}/", "application/vnd.pypi.simple.v1+json")
    assert page.status == 200
    return {entry["filename"] for entry in page.json()["files"]}


def _state(s: Setup, project: str, dist: Dist) -> FileState:
    assert s.mirror.services is not None
    record = s.mirror.services.ledger.file(NormalizedName(project), dist.filename)
    assert record is not None
    return record.state


# -- authentication and authorization --------------------------------------------------------
def _concrete(path: str) -> str:
    return path.replace("{project}", "demo").replace("{version}", "1.0").replace("{name}", "x")


def test_every_route_needs_a_token_and_says_so(setup: Setup) -> None:
    """I8: route enumeration; without a token every admin route is 401 with a challenge."""
    for operation in OPERATIONS:
        reply = setup.api.call(operation.method, _concrete(operation.path))
        assert reply.status == 401, (operation.method, operation.path, reply.body)
        assert (reply.header("WWW-Authenticate") or "").startswith("Bearer ")
        assert "invalid_token" not in (reply.header("WWW-Authenticate") or "")
    assert setup.api.call("GET", "/no/such/thing").status == 401  # deny by default
    assert setup.api.call("PATCH", "/holds").status == 401
    assert setup.api.call("GET", "/openapi.json").status == 200  # the document is public


def test_wrong_malformed_revoked_and_query_tokens_are_401(setup: Setup) -> None:
    api = setup.api
    refused = [
        api.call("GET", "/holds", token=new_token()),
        api.call("GET", "/holds", headers={"Authorization": "Basic b3BzOm9wcw=="}),
        api.call("GET", "/holds", headers={"Authorization": "Bearer"}),
        api.call("GET", f"/holds?token={setup.read}"),  # I1: never from a query string
    ]
    gone = make_token(setup.mirror, "gone", "decide")
    assert api.call("GET", "/holds", token=gone).status == 200
    assert setup.mirror.services is not None
    setup.mirror.services.ledger.revoke_token("gone", "test", NOW)
    refused.append(api.call("GET", "/holds", token=gone))  # revocation is immediate
    for reply in refused:
        assert reply.status == 401, reply.body
        assert 'error="invalid_token"' in (reply.header("WWW-Authenticate") or "")


def test_read_token_reads_but_cannot_decide(setup: Setup) -> None:
    api, read = setup.api, setup.read
    held_release(setup)
    before = ledger_rows(setup.mirror.settings)
    assert api.call("GET", "/holds", token=read).status == 200
    assert api.call("GET", "/projects/hold-me", token=read).status == 200
    assert api.call("GET", "/audit", token=read).status == 200
    assert api.call("GET", "/deliveries", token=read).status == 200
    after = ledger_rows(setup.mirror.settings)
    assert after == before  # I4: a GET changes nothing
    for method, path, body in [
        ("POST", "/projects/demo/releases/1.0/promote", {"reason": REASON}),
        ("POST", "/projects/demo/block", {"reason": REASON}),
        ("PUT", "/cutoff", {"time": "2026-01-01T00:00:00Z", "reason": REASON}),
        ("POST", "/tokens", {"name": "more", "scope": "decide"}),
    ]:
        reply = api.call(method, path, token=read, body=body)
        assert reply.status == 403, (path, reply.body)
        assert "decide" in reply.json()["detail"]


def test_failed_attempts_are_rate_limited_per_client(setup: Setup) -> None:
    """I5: ten failures a minute from one address, then its failures are 429 with
    Retry-After; a valid token from that address is still served (behind a proxy every
    admin shares one address: someone else's bad tries must not lock them out)."""
    api = setup.api
    for _ in range(10):
        assert api.call("GET", "/holds", token=new_token()).status == 401
    locked = api.call("GET", "/holds", token=new_token())
    assert locked.status == 429
    assert int(locked.header("Retry-After") or "0") >= 1
    assert api.call("GET", "/holds").status == 429
    assert api.call("GET", "/holds", token=setup.decide).status == 200
    assert api.call("GET", "/holds", token=setup.read).status == 200
    setup.clock.advance(timedelta(seconds=61))
    assert api.call("GET", "/holds", token=new_token()).status == 401


def test_one_bad_credential_is_limited_wherever_it_comes_from(setup: Setup) -> None:
    """Failures count per presented credential too: one stale token retried from many
    addresses (behind a trusted proxy) is locked out, while other clients are not."""
    api, stale = setup.api, new_token()

    def via(address: str, token: str) -> Reply:
        return api.call("GET", "/holds", token=token, headers={"X-Forwarded-For": address})

    with _trusting_loopback(setup):
        for number in range(10):
            assert via(f"203.0.113.{number}", stale).status == 401
        assert via("203.0.113.50", stale).status == 429
        assert via("203.0.113.50", new_token()).status == 401  # that address did nothing yet
        assert via("203.0.113.50", setup.read).status == 200


def test_addresses_behind_a_trusted_proxy_are_counted_apart(setup: Setup) -> None:
    """With the proxy trusted, X-Forwarded-For names the client: one guesser's lockout is
    not another's. Without trust, the header is ignored and the peer is counted."""
    api = setup.api

    def via(address: str, token: str) -> Reply:
        return api.call("GET", "/holds", token=token, headers={"X-Forwarded-For": address})

    with _trusting_loopback(setup):
        for _ in range(10):
            assert via("198.51.100.7", new_token()).status == 401
        assert via("198.51.100.7", new_token()).status == 429
        assert via("198.51.100.8", new_token()).status == 401
        # A client's own X-Forwarded-For is further left than the one the proxy appended.
        assert via("198.51.100.9, 198.51.100.7", new_token()).status == 429
    for _ in range(10):
        assert via("192.0.2.1", new_token()).status in (401, 429)
    assert via("192.0.2.2", new_token()).status == 429  # untrusted: the one peer counts


@contextlib.contextmanager
def _trusting_loopback(setup: Setup) -> Iterator[None]:
    services = setup.mirror.services
    assert services is not None
    before = services.request_base
    services.request_base = RequestBase(["127.0.0.1", "::1"])
    try:
        yield
    finally:
        services.request_base = before


def test_a_token_sent_in_a_query_string_is_revoked_and_kept_out_of_the_log(
    setup: Setup, every_log_line: _Everything
) -> None:
    """A token in a URL is in somebody's log: refused, revoked at once (audited with why),
    and the mirror's own access log keeps only the path."""
    api, mirror = setup.api, setup.mirror
    leaked = make_token(mirror, "leaky", "decide")
    assert api.call("GET", "/holds", token=leaked).status == 200
    assert api.call("GET", f"/holds?state=held&TOKEN={leaked}").status == 401
    assert api.call("GET", "/holds", token=leaked).status == 401  # revoked
    assert api.call("GET", "/holds", token=setup.decide).status == 200  # others unaffected
    events = api.call("GET", "/audit", token=setup.read).json()["events"]
    revoked = [e for e in events if e["to_state"] == "token-revoked"]
    assert revoked and revoked[0]["actor"] == LEAK_ACTOR, revoked
    assert "leaky" in revoked[0]["reason"]
    access = [line for line in every_log_line.lines if line.startswith("uvicorn.access")]
    assert any("/holds?[redacted]" in line for line in access), access
    assert not any(leaked in line for line in every_log_line.lines)


# -- decisions -------------------------------------------------------------------------------
def test_promote_a_held_release_then_it_downloads(setup: Setup) -> None:
    api, dist = setup.api, held_release(setup)
    assert setup.api.call("GET", "/holds?state=held", token=setup.read).json()["holds"]
    assert _get(setup.mirror, _file_path(dist)).status == 404
    reply = api.call(
        "POST", "/projects/hold-me/releases/1.0/promote", setup.decide, {"reason": REASON}
    )
    assert reply.status == 200, reply.body
    assert reply.json()["changes"] == [
        {"filename": dist.filename, "before": "held", "after": "promoted"}
    ]
    assert reply.header("ETag") == reply.json()["etag"]
    download = _get(setup.mirror, _file_path(dist))
    assert download.status == 200 and download.body == dist.data
    assert dist.filename in _listed(setup, "hold-me")
    events = api.call("GET", "/audit?project=hold-me", setup.read).json()["events"]
    assert any(e["actor"] == "api:ops" and e["to_state"] == "promoted" for e in events)
    assert not api.call("GET", "/holds", token=setup.read).json()["holds"]


def test_block_withdraws_a_promoted_release_and_unblock_holds_it_again(setup: Setup) -> None:
    api, dist = setup.api, held_release(setup)
    release = "/projects/hold-me/releases/1.0"
    assert api.call("POST", f"{release}/promote", setup.decide, {"reason": REASON}).status == 200
    assert _get(setup.mirror, _file_path(dist)).status == 200  # warms the fast path too
    blocked = api.call("POST", f"{release}/block", setup.decide, {"reason": "worm found in it"})
    assert blocked.status == 200
    assert blocked.json()["changes"][0]["after"] == "withdrawn"
    assert _get(setup.mirror, _file_path(dist)).status == 410
    assert dist.filename not in _listed(setup, "hold-me")
    again = api.call("POST", f"{release}/unblock", setup.decide, {"reason": "false alarm, clean"})
    assert again.status == 200 and again.json()["changes"][0]["after"] == "held"
    nothing = api.call("POST", f"{release}/unblock", setup.decide, {"reason": "false alarm, clean"})
    assert nothing.status == 404
    project = api.call("POST", "/projects/hold-me/block", setup.decide, {"reason": "whole project"})
    assert project.status == 200 and _state(setup, "hold-me", dist) is FileState.BLOCKED


def test_a_deferred_release_is_explained_promoted_and_blocked(setup: Setup) -> None:
    """Listed at first sight but vetted only when first downloaded: an admin can still
    promote it (its bytes are fetched and hash-checked first) or block it."""
    api, project = setup.api, "deferred-one"
    dists = {v: build_wheel(project, v) for v in ("1.0", "1.1", "2.0")}
    for version, age in (("1.0", 12), ("1.1", 11), ("2.0", 5)):
        setup.upstream.add(project, UpstreamFile(dists[version], NOW - timedelta(days=age)))
    # Nothing in the window is listed until 2.0, cooled when first seen, is vetted.
    assert _listed(setup, project) == set()
    setup.mirror.promote()
    assert _listed(setup, project) == {dists[v].filename for v in ("1.0", "1.1", "2.0")}
    explained = api.call("GET", f"/projects/{project}?version=1.0", setup.read).json()
    (entry,) = explained["files"]
    assert (entry["state"], entry["reason"]) == ("held", "listed; vetted when first downloaded")
    assert entry["deferral"] == "until-download" and not entry["stored"]

    release = f"/projects/{project}/releases"
    promoted = api.call("POST", f"{release}/1.0/promote", setup.decide, {"reason": REASON})
    assert promoted.status == 200, promoted.body
    assert promoted.json()["changes"][0]["after"] == "promoted"
    download = _get(setup.mirror, _file_path(dists["1.0"]))
    assert download.status == 200 and download.body == dists["1.0"].data
    blocked = api.call("POST", f"{release}/1.1/block", setup.decide, {"reason": "worm found in it"})
    assert blocked.status == 200 and blocked.json()["changes"][0]["after"] == "blocked"
    assert dists["1.1"].filename not in _listed(setup, project)
    assert _get(setup.mirror, _file_path(dists["1.1"])).status == 410


def test_exemption_and_cutoff(setup: Setup) -> None:
    api, token = setup.api, setup.decide
    exemption = "/projects/Some_Project/exemption"
    body = {"reason": "internal fork, vetted", "until": "2026-12-01T00:00:00Z"}
    made = api.call("POST", exemption, token, body)
    assert made.status == 200, made.body
    assert made.json() == {
        "project": "some-project",
        "exempt": True,
        "until": "2026-12-01T00:00:00.000000Z",
    }
    assert setup.mirror.services is not None
    assert "some-project" in setup.mirror.services.policy.current().exemptions
    assert api.call("DELETE", exemption, token, {"reason": "fork retired now"}).status == 200
    assert api.call("DELETE", exemption, token, {"reason": "fork retired now"}).status == 404
    cutoff = {"time": "2026-11-20T00:00:00Z", "reason": "worm outbreak upstream"}
    assert api.call("PUT", "/cutoff", token, cutoff).status == 200
    assert setup.mirror.services.policy.current().cutoff is not None
    assert api.call("DELETE", "/cutoff", token, {"reason": "outbreak contained"}).status == 200
    assert api.call("DELETE", "/cutoff", token, {"reason": "outbreak contained"}).status == 404
    bad_time = api.call("PUT", "/cutoff", token, {"time": "soon", "reason": "worm outbreak"})
    assert bad_time.status == 422
    events = api.call("GET", "/audit", setup.read).json()["events"]
    kinds = {e["to_state"] for e in events if e["actor"] == "api:ops"}
    assert {"exempted", "unexempted", "cutoff", "cutoff-cleared"} <= kinds


def test_tokens_are_made_once_and_revoked_over_the_api(setup: Setup) -> None:
    api = setup.api
    made = api.call("POST", "/tokens", setup.decide, {"name": "ci-bot", "scope": "read"})
    assert made.status == 201 and made.header("Cache-Control") == "no-store"
    secret = made.json()["token"]
    assert api.call("GET", "/holds", secret).status == 200
    again = api.call("POST", "/tokens", setup.decide, {"name": "ci-bot", "scope": "read"})
    assert again.status == 409
    bad = api.call("POST", "/tokens", setup.decide, {"name": "ci-bot", "scope": "root"})
    assert bad.status == 422
    assert api.call("DELETE", "/tokens/ci-bot", setup.decide).status == 200
    assert api.call("GET", "/holds", secret).status == 401
    assert api.call("DELETE", "/tokens/ci-bot", setup.decide).status == 404
    assert setup.mirror.services is not None
    created = [e for e in setup.mirror.services.ledger.events() if e.to_state == "token-created"]
    assert any(e.actor == "api:ops" for e in created)


# -- optimistic concurrency ------------------------------------------------------------------
def test_a_stale_if_match_is_412_and_the_current_etag_works(setup: Setup) -> None:
    api, dist = setup.api, held_release(setup)
    seen = api.call("GET", "/projects/hold-me?version=1.0", setup.read)
    assert seen.status == 200 and seen.json()["files"][0]["state"] == "held"
    etag = seen.header("ETag")
    assert etag is not None
    # Someone else blocks the release meanwhile (the CLI on the same data directory).
    assert setup.mirror.services is not None
    ledger = setup.mirror.services.ledger
    admin.block(ledger, NormalizedName("hold-me"), "1.0", "blocked elsewhere", "cli:other", NOW)
    promote = "/projects/hold-me/releases/1.0/promote"
    body = {"reason": REASON, "force": True}
    stale = api.call("POST", promote, setup.decide, body, {"If-Match": etag})
    assert stale.status == 412
    assert stale.json()["files"][0]["state"] == "blocked"
    assert stale.json()["etag"] != etag
    weak = api.call("POST", promote, setup.decide, body, {"If-Match": f"W/{stale.json()['etag']}"})
    assert weak.status == 412
    assert _state(setup, "hold-me", dist) is FileState.BLOCKED  # nothing was overwritten
    fresh = api.call("POST", promote, setup.decide, body, {"If-Match": stale.json()["etag"]})
    assert fresh.status == 200, fresh.body
    assert _state(setup, "hold-me", dist) is FileState.PROMOTED


def test_promoting_a_blocked_release_without_force_is_409(setup: Setup) -> None:
    api, dist = setup.api, held_release(setup)
    release = "/projects/hold-me/releases/1.0"
    assert api.call("POST", f"{release}/block", setup.decide, {"reason": REASON}).status == 200
    refused = api.call("POST", f"{release}/promote", setup.decide, {"reason": REASON})
    assert refused.status == 409
    problem = refused.json()
    assert problem["code"] == "conflict"
    assert setup.mirror.services is not None
    record = setup.mirror.services.ledger.file(NormalizedName("hold-me"), dist.filename)
    assert record is not None and record.state is FileState.BLOCKED
    assert problem["files"] == [
        {
            "filename": dist.filename,
            "version": "1.0",
            "state": "blocked",
            "state_version": record.state_version,
        }
    ]


def test_promoting_bytes_not_yet_verified_is_409_and_never_skips_the_check(
    setup: Setup,
) -> None:
    dist = build_wheel("unfetched", "2.0")
    setup.upstream.add("unfetched", UpstreamFile(dist, NOW - timedelta(hours=1)))
    assert _get(setup.mirror, "/simple/unfetched/").status == 200  # seen, not fetched
    path = "/projects/unfetched/releases/2.0/promote"
    refused = setup.api.call("POST", path, setup.decide, {"reason": REASON})
    assert refused.status == 409 and refused.json()["code"] == "not-yet-stored"
    assert _get(setup.mirror, _file_path(dist)).status == 404
    setup.mirror.promote()  # the worker fetches and verifies them
    assert setup.api.call("POST", path, setup.decide, {"reason": REASON}).status == 200
    assert _get(setup.mirror, _file_path(dist)).body == dist.data


def test_a_decision_that_loses_the_race_is_409_not_an_overwrite(setup: Setup) -> None:
    """Between the If-Match check and the write, another writer moves the file first."""
    dist = held_release(setup)
    assert setup.mirror.services is not None
    ledger, name = setup.mirror.services.ledger, NormalizedName("hold-me")
    snapshot = ledger.files(name)
    etag = release_etag(snapshot)
    ledger.transition(snapshot[0], FileState.REVIEW, "a check wants a person", "system:test", NOW)

    def act(pinned: Any) -> list[admin.Change]:
        return admin.promote(pinned, name, "1.0", REASON, "api:ops", NOW)

    with pytest.raises(ApiProblem) as lost:
        guarded(ledger, name, "1.0", etag, act, snapshot=snapshot)
    assert lost.value.status == 409
    assert lost.value.extra["files"][0]["state"] == "review"
    assert _state(setup, "hold-me", dist) is FileState.REVIEW


# -- malformed requests ----------------------------------------------------------------------
def test_bad_requests_get_precise_problems(setup: Setup) -> None:
    api, token = setup.api, setup.decide
    held_release(setup)
    promote = "/projects/hold-me/releases/1.0/promote"
    cases = [
        (api.call("POST", promote, token, {}), 422),
        (api.call("POST", promote, token, {"reason": "because"}), 422),
        (api.call("POST", promote, token, {"reason": 42}), 422),
        (api.call("POST", promote, token, {"reason": REASON, "force": "yes"}), 422),
        (api.call("POST", promote, token, {"reason": REASON, "<script>": 1}), 422),
        (api.call("POST", promote, token, ["not", "an", "object"]), 422),
        (api.call("POST", promote, token, raw=b"{not json"), 400),
        (api.call("POST", promote, token, raw=b" " * (65 * 1024)), 413),
        (api.call("POST", "/projects/hold-me/releases/not..a..version/promote", token), 404),
        (api.call("POST", "/projects/-bad-/block", token, {"reason": REASON}), 404),
        (
            api.call("POST", "/projects/hold-me/releases/9.9/promote", token, {"reason": REASON}),
            404,
        ),
        (api.call("GET", "/holds?state=promoted", token), 422),
        (api.call("GET", "/audit?since=yesterday", token), 422),
        (api.call("GET", "/projects/never-seen", token), 404),
        (api.call("PUT", "/holds", token), 405),
    ]
    for reply, status in cases:
        assert reply.status == status, (status, reply.body)
        assert b"<script>" not in reply.body and b"yesterday" not in reply.body
    assert cases[-1][0].header("Allow") == "GET"


def test_a_reason_with_control_characters_is_refused_and_nothing_is_recorded(
    setup: Setup,
) -> None:
    """A NUL in a JSON string is valid JSON; a PostgreSQL ledger cannot keep it (that was a
    500 there, a recorded reason on SQLite), and an escape sequence would reach terminals."""
    api, token = setup.api, setup.decide
    dist = held_release(setup)
    before = ledger_rows(setup.mirror.settings)
    for reason in (f"{REASON}\u0000", f"{REASON} \u001b[2J"):
        for path in ("/projects/hold-me/releases/1.0/block", "/projects/hold-me/exemption"):
            reply = api.call("POST", path, token, {"reason": reason})
            assert reply.status == 422, reply.body
            assert "control characters" in reply.json()["detail"]
    assert ledger_rows(setup.mirror.settings) == before
    assert _state(setup, "hold-me", dist) is FileState.HELD


def test_explain_takes_one_project_or_release_and_pages_newest_first(setup: Setup) -> None:
    api, token = setup.api, setup.read
    for version in ("1.9", "1.10", "2.0"):
        setup.upstream.add("pages", UpstreamFile(build_wheel("pages", version), NOW))
    assert _get(setup.mirror, "/simple/pages/").status == 200
    newest = api.call("GET", "/projects/pages?limit=2", token)
    assert newest.status == 200
    assert [f["version"] for f in newest.json()["files"]] == ["2.0", "1.10"]
    assert newest.json()["left_out"] == 1
    assert newest.json()["files"][0]["cooling_period"] == "3d"
    setup.clock.advance(timedelta(hours=3))
    held_release(setup, "pages", "3.0")
    recent = api.call("GET", "/projects/pages?since=2h", token).json()
    assert [f["version"] for f in recent["files"]] == ["3.0"] and recent["left_out"] == 0
    one = api.call("GET", "/projects/pages?version=1.10.0", token).json()
    assert [f["filename"] for f in one["files"]] == ["pages-1.10-py3-none-any.whl"]
    for bad in ("/projects/boto3%3E%3D1", "/projects/pages?version=1.*", "/projects/-x-"):
        refused = api.call("GET", bad, token)
        assert refused.status == 400, bad
        assert "give a project name" in refused.json()["detail"]
    for bad in ("/projects/pages?limit=0", "/projects/pages?since=later"):
        assert api.call("GET", bad, token).status == 422, bad


def test_audit_pages_the_latest_events_since_a_time_or_a_duration(setup: Setup) -> None:
    api, token = setup.api, setup.read
    held_release(setup, "early", "1.0")
    setup.clock.advance(timedelta(hours=3))
    held_release(setup, "late", "1.0")
    recent = api.call("GET", "/audit?since=1h", token).json()
    assert recent["events"] and {e["project"] for e in recent["events"]} == {"late"}
    everything = api.call("GET", "/audit?limit=10000", token).json()
    assert everything["left_out"] == 0 and not everything["truncated"]
    last_two = api.call("GET", "/audit?limit=2", token).json()
    assert last_two["events"] == everything["events"][-2:]
    assert last_two["left_out"] == len(everything["events"]) - 2 and last_two["truncated"]
    default = api.call("GET", "/audit", token).json()
    assert len(default["events"]) == min(50, len(everything["events"]))
    for name in ("listAudit", "showProject"):
        (operation,) = [
            op
            for path in DOC["paths"].values()
            for op in path.values()
            if op.get("operationId") == name
        ]
        documented = {DOC["components"]["parameters"][ref["$ref"].split("/")[-1]]["name"]
                      for ref in operation["parameters"]}  # fmt: skip
        assert {"since", "limit"} <= documented, name


def test_an_internal_error_is_a_bare_problem(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    assert setup.mirror.services is not None

    def broken(*_args: Any) -> list[Any]:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(setup.mirror.services.ledger, "recent_events", broken)
    reply = setup.api.call("GET", "/audit", setup.read)
    assert reply.status == 500
    assert b"fire" not in reply.body


# -- secrets: the canary ---------------------------------------------------------------------
class _Everything(logging.Handler):
    """Every record any logger emits, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def every_log_line() -> Iterator[_Everything]:
    handler = _Everything()
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "mirror", "quarantine"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_the_canary_token_appears_nowhere(
    setup: Setup,
    every_log_line: _Everything,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """I3/INV-8: a token used on success and failure paths is in no log, reply or row."""
    caplog.set_level(logging.DEBUG)
    api, mirror = setup.api, setup.mirror
    make_token(mirror, "canary", "decide", CANARY)
    held_release(setup)
    release = "/projects/hold-me/releases/1.0"
    api.call("GET", "/holds", CANARY)
    api.call("GET", "/projects/hold-me", CANARY)
    api.call("POST", f"{release}/promote", CANARY, {"reason": REASON})
    api.call("POST", f"{release}/promote", CANARY, {"reason": REASON})  # 409
    api.call("POST", f"{release}/block", CANARY, {"reason": "short"})  # 422
    api.call("POST", f"{release}/block", CANARY, raw=b"{")  # 400
    api.call("POST", f"{release}/block", CANARY, {"reason": REASON}, {"If-Match": '"x"'})  # 412
    api.call("POST", "/tokens", CANARY, {"name": "canary", "scope": "read"})  # 409
    api.call("GET", "/no/such/thing", CANARY)  # 404
    api.call("GET", "/holds", CANARY + "x")  # 401
    api.call("GET", "/holds", headers={"Authorization": f"Token {CANARY}"})  # malformed
    api.call("GET", "/holds", CANARY[:-1] + "\u00e9")  # not a token at all
    assert mirror.services is not None

    def broken(*_args: Any) -> list[Any]:
        raise RuntimeError("forced failure inside an authenticated handler")

    monkeypatch.setattr(mirror.services.ledger, "recent_events", broken)
    assert api.call("GET", "/audit", CANARY).status == 500
    monkeypatch.undo()
    assert mirror.services.ledger.revoke_token("canary", "test", NOW)
    assert api.call("GET", "/holds", CANARY).status == 401
    assert api.call("GET", f"/holds?token={CANARY}").status == 401  # kept out of the access log
    assert _get(mirror, f"/simple/?access_token={CANARY}").status == 200  # on any route
    remote = RemoteBackend(mirror.origin, CANARY)
    with pytest.raises(admin.AdminError) as refused:
        remote.holds(None, None)
    assert refused.value.status == 401 and CANARY not in str(refused.value)
    assert CANARY not in repr(remote)

    statuses = {reply.status for reply in api.replies}
    assert {200, 400, 401, 404, 409, 412, 422, 500} <= statuses
    for reply in api.replies:
        assert CANARY.encode() not in reply.body
        assert all(CANARY not in value for _, value in reply.headers)
    logs = "\n".join(every_log_line.lines) + caplog.text
    assert "forced failure" in logs  # the 500 was logged, with its traceback
    assert "uvicorn.access" in logs  # the access log was captured too
    assert CANARY not in logs
    dump = "\n".join(ledger_rows(mirror.settings))
    assert token_hash(CANARY) in dump  # the dump does cover the token table
    assert CANARY not in dump
    for path in Path(mirror.settings.data_dir).rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


# -- the contract ----------------------------------------------------------------------------
def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_is_well_formed_and_complete(setup: Setup) -> None:
    reply = setup.api.call("GET", "/openapi.json")
    doc = reply.json()
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearer": []}]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for ref in _refs(doc):
        section, kind, name = ref.removeprefix("#/").split("/")
        assert name in doc[section][kind], ref
    documented = {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method in operations
        if path != "/openapi.json"
    }
    assert documented == {(op.method, op.path) for op in OPERATIONS}
    for op in OPERATIONS:
        described = doc["paths"][op.path][op.method.lower()]
        assert described["x-required-scope"] == op.scope
        assert {"401", "403", "422", "429"} <= set(described["responses"])
        if op.method != "GET":
            assert "requestBody" in described or op.method == "DELETE"
            assert "413" in described["responses"] or op.method == "DELETE"
        if op.scope == "decide":  # a decision can lose a race; a read (POST /check) cannot
            assert {"409", "412", "413"} <= set(described["responses"])
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


# -- the CLI's remote mode -------------------------------------------------------------------
def test_remote_backend_drives_the_api(setup: Setup) -> None:
    """What ``lazaretto --url`` does, through RemoteBackend (the CLI wiring is tested there)."""
    dist = held_release(setup)
    remote = RemoteBackend(setup.mirror.origin + "/", setup.decide)
    holds = remote.holds("hold-me", None)
    assert [hold["filename"] for hold in holds] == [dist.filename]
    explained = remote.explain("hold-me", "1.0", None, 50)
    assert explained is not None and explained["files"][0]["state"] == "held"
    assert remote.explain("never-seen", None, None, 50) is None
    changes = remote.promote("hold-me", "1.0", REASON, False)
    assert changes == [{"filename": dist.filename, "before": "held", "after": "promoted"}]
    assert _get(setup.mirror, _file_path(dist)).status == 200
    with pytest.raises(admin.Conflict, match="nothing to promote"):
        remote.promote("hold-me", "1.0", REASON, False)
    assert remote.block("hold-me", "1.0", "withdrawn remotely")[0]["after"] == "withdrawn"
    assert _get(setup.mirror, _file_path(dist)).status == 410
    with pytest.raises(admin.NothingToDo):
        remote.unblock("other", None, "nothing to lift here")
    with pytest.raises(admin.AdminError) as short:
        remote.cutoff_clear("short")
    assert short.value.status == 422
    remote.exempt("hold-me", "vetted by hand", None)
    remote.unexempt("hold-me", "no longer needed")
    assert any(e["actor"] == "api:ops" for e in remote.audit("hold-me", None, 50)["events"])
    assert isinstance(remote.deliveries("pending"), list)
    secret = remote.token_create("from-remote", "read")
    viewer = RemoteBackend(setup.mirror.origin, secret)
    assert viewer.holds(None, None) == []
    with pytest.raises(admin.AdminError) as forbidden:
        viewer.block("hold-me", None, "a read token cannot")
    assert forbidden.value.status == 403
    remote.token_revoke("from-remote")
    with pytest.raises(admin.AdminError) as revoked:
        viewer.holds(None, None)
    assert revoked.value.status == 401


def test_the_token_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAZARETTO_TOKEN", raising=False)
    with pytest.raises(TokenUnavailable, match="LAZARETTO_TOKEN or pass --token-file"):
        read_token(None)
    monkeypatch.setenv("LAZARETTO_TOKEN", CANARY)
    assert read_token(None) == CANARY
    token_file = tmp_path / "token"
    token_file.write_text("lzt_from-a-file-0123456789\n")
    assert read_token(token_file) == "lzt_from-a-file-0123456789"
    token_file.write_text(f"{CANARY} and more")
    with pytest.raises(TokenUnavailable) as bad:
        read_token(token_file)
    assert CANARY not in str(bad.value)
    with pytest.raises(TokenUnavailable, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(TokenUnavailable):
        RemoteBackend("http://127.0.0.1:1", "bad token\r\nX-Injected: 1")


def test_remote_urls_are_checked_before_any_token_is_sent() -> None:
    assert api_base("http://127.0.0.1:8070") == "http://127.0.0.1:8070/-/admin/api/v1"
    assert api_base("http://localhost:8070/-/admin/api/v1/") == (
        "http://localhost:8070/-/admin/api/v1"
    )
    assert api_base("https://mirror.example/") == "https://mirror.example/-/admin/api/v1"
    for refused in [
        "http://mirror.example",  # clear text across a network
        "file:///etc/passwd",
        "ftp://127.0.0.1/",
        "https://user:pw@mirror.example/",
        "https://mirror.example/?x=1",
    ]:
        with pytest.raises(admin.AdminError):
            api_base(refused)


def test_retry_holds_files_a_fetch_refused_again(setup: Setup) -> None:
    api, upstream, mirror = setup.api, setup.upstream, setup.mirror
    dist = build_wheel("refused", "1.0")
    wrong = dist.data[:-8] + b"X" * 8  # the listed size, another digest
    upstream.add("refused", UpstreamFile(dist, NOW - timedelta(hours=1), serve_bytes=wrong))
    assert _get(mirror, "/simple/refused/").status == 200
    mirror.promote()
    assert _state(setup, "refused", dist) is FileState.REJECTED
    upstream.add("refused", UpstreamFile(dist, NOW - timedelta(hours=1)))

    body = {"reason": "upstream fixed the file", "filename": "other-1.0.tar.gz"}
    none = api.call("POST", "/projects/refused/retry", setup.decide, body)
    assert none.status == 404
    reading = api.call("POST", "/projects/refused/retry", setup.read, {"reason": REASON})
    assert reading.status == 403
    body["filename"] = dist.filename
    reply = api.call("POST", "/projects/refused/releases/1.0/retry", setup.decide, body)
    assert reply.status == 200, reply.body
    assert reply.json()["changes"] == [
        {"filename": dist.filename, "before": "rejected", "after": "held"}
    ]
    again = api.call("POST", "/projects/refused/retry", setup.decide, {"reason": REASON})
    assert again.status == 409
    mirror.promote()
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName("refused"), dist.filename)
    assert record is not None and record.state is FileState.HELD and record.stored
    events = api.call("GET", "/audit?project=refused", setup.read).json()["events"]
    assert any(e["actor"] == "api:ops" and e["to_state"] == "held" for e in events)
