"""The admin API: JSON over HTTP under ``/-/admin/api/v1``, beside the Simple API.

Every decision goes through ``quarantine.admin`` (a recorded transition with actor
``api:<token name>`` and a reason), exactly as the CLI's local mode does. Decisions on a
release are optimistic: ``If-Match`` carries the ETag the caller saw, and the action
compare-and-swaps against exactly the records that ETag was computed from, so a stale
decision is refused (412, or 409 if the race is lost mid-way), never applied over a
newer state. Errors are problem+json documents (``mirror.admin.auth``).
"""

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from mirror.admin.auth import DECIDE, READ, ApiProblem, Gate, Principal, problem_response
from mirror.admin.incident import check_lock, show_exposure
from mirror.admin.openapi import MAX_REASON, NAME_PATTERN, openapi_document
from mirror.cli.local_backend import SCOPES, event_json, new_token, token_hash
from mirror.errors import InvalidProjectName, MirrorError
from mirror.services import Services
from mirror.simple.names import normalized_project
from quarantine import admin
from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.decide import awaits_download
from quarantine.explain import FeedStatus, explain
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.outbox import ApiToken, DeliveryState
from quarantine.paging import DEFAULT_LIMIT, InvalidPaging, parse_limit, parse_since

log = logging.getLogger(__name__)

PREFIX = "/-/admin/api/v1"
MAX_BODY_BYTES = 64 * 1024
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_HOLD_STATES = (FileState.HELD.value, FileState.REVIEW.value)
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[Request, Principal], Awaitable[Response]]


# -- small pieces ----------------------------------------------------------------------------
def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # ASCII-only output: nothing a terminal or log viewer could misrender.
    return Response(
        json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n",
        status_code=status,
        media_type="application/json",
        headers={**_HEADERS, **(headers or {})},
    )


def _project(request: Request) -> NormalizedName:
    try:
        return normalized_project(request.path_params["project"])
    except InvalidProjectName:
        raise ApiProblem(404, "invalid project name") from None


def _path_version(request: Request) -> str:
    try:
        return str(Version(request.path_params["version"]))
    except InvalidVersion:
        raise ApiProblem(404, "invalid version") from None


def _query_project(request: Request) -> NormalizedName | None:
    raw = request.query_params.get("project")
    if raw is None:
        return None
    try:
        return normalized_project(raw)
    except InvalidProjectName:
        raise ApiProblem(422, "invalid project name in the query") from None


def _parse_time(raw: str, key: str) -> datetime:
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise ApiProblem(422, f"{key} must be an RFC 3339 time") from None


def _query_choice(request: Request, key: str, allowed: Sequence[str]) -> str | None:
    raw = request.query_params.get(key)
    if raw is not None and raw not in allowed:
        raise ApiProblem(422, f"{key} must be one of: {', '.join(allowed)}")
    return raw


# -- request bodies --------------------------------------------------------------------------
async def _body(request: Request, allowed: Sequence[str]) -> dict[str, Any]:
    """The JSON object in the body, bounded in size, with no fields besides ``allowed``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiProblem(413, f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise ApiProblem(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiProblem(422, "the body must be a JSON object")
    if not set(body) <= set(allowed):
        # Named by what is allowed, never by what was sent: no input echoed back.
        raise ApiProblem(422, f"unknown field in the body; allowed: {', '.join(allowed)}")
    return body


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiProblem(422, f"reason must be a string of {admin.MIN_REASON}-{MAX_REASON} chars")
    try:
        return admin.check_reason(reason)
    except admin.AdminError as error:
        raise ApiProblem(422, str(error)) from None


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ApiProblem(422, f"{key} must be a string")
    return value


def _body_time(body: dict[str, Any], key: str, *, required: bool) -> datetime | None:
    if body.get(key) is None and not required:
        return None
    return _parse_time(_string(body, key), key)


# -- optimistic concurrency ------------------------------------------------------------------
def release_etag(records: Sequence[FileRecord]) -> str:
    """A strong ETag over the state and state_version of every file of a release/project."""
    lines = sorted(f"{r.filename}\t{r.state.value}\t{r.state_version}" for r in records)
    return '"' + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32] + '"'


def _if_match_holds(header: str | None, records: Sequence[FileRecord]) -> bool:
    if header is None:
        return True
    tags = {tag.strip() for tag in header.split(",")}
    if "*" in tags:
        return bool(records)
    return release_etag(records) in tags  # a weak tag (W/"...") never matches: RFC 9110


def _current(records: Sequence[FileRecord]) -> dict[str, Any]:
    """What a 409/412 tells the caller, so it can look again without another request."""
    return {
        "etag": release_etag(records),
        "files": [
            {
                "filename": r.filename,
                "version": r.version,
                "state": r.state.value,
                "state_version": r.state_version,
            }
            for r in records
        ],
    }


class _Pinned:
    """The ledger as the caller saw it: ``files`` answers from the checked snapshot.

    ``quarantine.admin`` reads the files it acts on through ``ledger.files``; pinning that
    read makes its compare-and-swap fail (StaleTransition, hence 409) if anything changed
    after the If-Match check, instead of acting on a state the caller never saw.
    """

    def __init__(self, ledger: Ledger, project: NormalizedName, files: list[FileRecord]) -> None:
        self._ledger = ledger
        self._project = project
        self._files = files

    def files(self, project: NormalizedName) -> list[FileRecord]:
        if project == self._project:
            return list(self._files)
        return self._ledger.files(project)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def guarded(
    ledger: Ledger,
    project: NormalizedName,
    version: str | None,
    if_match: str | None,
    act: Callable[[Ledger], list[admin.Change]],
    snapshot: list[FileRecord] | None = None,
) -> list[admin.Change]:
    """Check If-Match, then act on the same snapshot; 412 or 409 with the current state."""
    records = snapshot if snapshot is not None else admin.release_files(ledger, project, version)
    if not _if_match_holds(if_match, records):
        raise ApiProblem(
            412,
            "the release changed since you looked: fetch it and decide again",
            extra=_current(records),
        )
    try:
        return act(cast(Ledger, _Pinned(ledger, project, records)))
    except admin.AdminError as refused:
        if refused.status != 409:
            raise
        now = admin.release_files(ledger, project, version)
        code = "not-yet-stored" if isinstance(refused, admin.NotYetStored) else "conflict"
        raise ApiProblem(409, str(refused), extra={"code": code, **_current(now)}) from None


async def _decided(
    request: Request,
    project: NormalizedName,
    version: str | None,
    act: Callable[[Ledger], list[admin.Change]],
) -> Response:
    """Run a file decision off the event loop, then let pages and file routes follow at once."""
    services = _services(request)
    if_match = request.headers.get("if-match")
    try:
        changes = await asyncio.to_thread(guarded, services.ledger, project, version, if_match, act)
    except ApiProblem as refused:
        if refused.extra.get("code") == "not-yet-stored":
            services.promoter.wake()  # fetch and verify the bytes now, not at the next tick
        raise
    finally:
        services.catalog.sync()
    etag = release_etag(admin.release_files(services.ledger, project, version))
    body = {"changes": [asdict(change) for change in changes], "etag": etag}
    return _json(body, headers={"ETag": etag})


# -- reads -----------------------------------------------------------------------------------
async def list_holds(request: Request, _who: Principal) -> Response:
    services = _services(request)
    project = _query_project(request)
    state = _query_choice(request, "state", _HOLD_STATES)
    wanted = FileState(state) if state else None
    found = await asyncio.to_thread(
        admin.holds, services.ledger, services.policy.current(), project, wanted
    )
    return _json({"holds": [asdict(hold) for hold in found]})


def _explained_release(request: Request) -> tuple[NormalizedName, Version | None]:
    """What ``lazaretto explain NAME[==VERSION]`` asks: anything else is a bad request."""
    accepted = "give a project name, and optionally ?version= one exact version"
    try:
        project = normalized_project(request.path_params["project"])
    except InvalidProjectName:
        raise ApiProblem(400, f"not a project name: {accepted}") from None
    raw = request.query_params.get("version")
    try:
        return project, Version(raw) if raw is not None else None
    except InvalidVersion:
        raise ApiProblem(400, f"not a version: {accepted}") from None


async def show_project(request: Request, _who: Principal) -> Response:
    services = _services(request)
    project, version = _explained_release(request)
    since, limit = _query_since(request), _query_limit(request)
    feeds = FeedStatus(len(services.settings.osv_feeds), services.feeds)
    canonical = str(version) if version is not None else None

    def look() -> tuple[dict[str, Any] | None, str]:
        policy = services.policy.current()
        now = services.clock.now()
        found = explain(
            services.ledger, policy, project, version, feeds, since=since, limit=limit, now=now
        )
        records = admin.release_files(services.ledger, project, canonical)
        return (found.to_json() if found is not None else None), release_etag(records)

    found, etag = await asyncio.to_thread(look)
    if found is None:
        what = project + (f"=={canonical}" if canonical else "")
        raise ApiProblem(404, f"the mirror has not seen {what}")
    return _json(found, headers={"ETag": etag})


async def list_audit(request: Request, _who: Principal) -> Response:
    services = _services(request)
    project, since = _query_project(request), _query_since(request)
    limit = _query_limit(request)
    events, total = await asyncio.to_thread(services.ledger.recent_events, project, since, limit)
    body = [event_json(event) for event in events]  # the latest ones, oldest first
    left_out = total - len(events)
    return _json({"events": body, "truncated": left_out > 0, "left_out": left_out})


def _query_since(request: Request) -> datetime | None:
    raw = request.query_params.get("since")
    try:
        return None if raw is None else parse_since(raw, _services(request).clock.now())
    except InvalidPaging as error:
        raise ApiProblem(422, str(error)) from None


def _query_limit(request: Request) -> int:
    try:
        return parse_limit(request.query_params.get("limit", str(DEFAULT_LIMIT)))
    except InvalidPaging as error:
        raise ApiProblem(422, str(error)) from None


async def list_deliveries(request: Request, _who: Principal) -> Response:
    services = _services(request)
    state = _query_choice(request, "state", [s.value for s in DeliveryState])
    found = await asyncio.to_thread(
        services.ledger.deliveries, DeliveryState(state) if state else None
    )
    body = [
        {
            **asdict(d),
            "state": d.state.value,
            "next_attempt_at": format_timestamp(d.next_attempt_at) if d.next_attempt_at else None,
        }
        for d in found
    ]
    return _json({"deliveries": body})


# -- decisions on files ----------------------------------------------------------------------
async def promote_release(request: Request, who: Principal) -> Response:
    project, version = _project(request), _path_version(request)
    body = await _body(request, ("reason", "force"))
    reason, force = _reason(body), body.get("force", False)
    if not isinstance(force, bool):
        raise ApiProblem(422, "force must be true or false")
    now = _services(request).clock.now()
    await _fetch_deferred(_services(request), project, version)

    def act(ledger: Ledger) -> list[admin.Change]:
        return admin.promote(ledger, project, version, reason, who.actor, now, force=force)

    return await _decided(request, project, version, act)


async def _fetch_deferred(services: Services, project: NormalizedName, version: str) -> None:
    """A deferred file's bytes are fetched by no background work: here, hash-checked, so
    promoting it serves what was verified (as ``lazaretto promote`` does locally)."""
    policy = services.policy.current()
    records = await asyncio.to_thread(admin.release_files, services.ledger, project, version)
    for record in records:
        if not awaits_download(record, policy):
            continue
        try:
            await services.artifacts.ensure_file(record)
        except MirrorError as error:
            raise ApiProblem(409, f"not promoted: {error.reason}") from error


def _blocking(action: Callable[..., list[admin.Change]], with_version: bool) -> Handler:
    """block/unblock of a whole project or of one release: the same shape four times."""

    async def handler(request: Request, who: Principal) -> Response:
        project = _project(request)
        version = _path_version(request) if with_version else None
        reason = _reason(await _body(request, ("reason",)))
        now = _services(request).clock.now()

        def act(ledger: Ledger) -> list[admin.Change]:
            changes: list[admin.Change] = action(ledger, project, version, reason, who.actor, now)
            return changes

        return await _decided(request, project, version, act)

    return handler


def _retrying(with_version: bool) -> Handler:
    """retry of a project's, a release's or one file's fetch refusals."""

    async def handler(request: Request, who: Principal) -> Response:
        project = _project(request)
        version = _path_version(request) if with_version else None
        body = await _body(request, ("reason", "filename"))
        reason, filename = _reason(body), body.get("filename")
        if filename is not None and not isinstance(filename, str):
            raise ApiProblem(422, "filename must be a string")
        now = _services(request).clock.now()

        def act(ledger: Ledger) -> list[admin.Change]:
            return admin.retry(ledger, project, version, filename, reason, who.actor, now)

        response = await _decided(request, project, version, act)
        _services(request).promoter.wake()  # fetch them now, not at the next tick
        return response

    return handler


# -- decisions on settings -------------------------------------------------------------------
async def _precondition(request: Request, project: NormalizedName) -> None:
    """If-Match on a project-wide setting: checked against the project's files."""
    header = request.headers.get("if-match")
    if header is None:
        return
    records = await asyncio.to_thread(_services(request).ledger.files, project)
    if not _if_match_holds(header, records):
        raise ApiProblem(
            412,
            "the project changed since you looked: fetch it and decide again",
            extra=_current(records),
        )


async def set_exemption(request: Request, who: Principal) -> Response:
    services, project = _services(request), _project(request)
    body = await _body(request, ("reason", "until"))
    reason, until = _reason(body), _body_time(body, "until", required=False)
    await _precondition(request, project)
    await asyncio.to_thread(
        admin.exempt, services.ledger, project, reason, until, who.actor, services.clock.now()
    )
    services.catalog.sync()
    return _json(
        {"project": project, "exempt": True, "until": format_timestamp(until) if until else None}
    )


async def clear_exemption(request: Request, who: Principal) -> Response:
    services, project = _services(request), _project(request)
    reason = _reason(await _body(request, ("reason",)))
    await _precondition(request, project)
    await asyncio.to_thread(
        admin.unexempt, services.ledger, project, reason, who.actor, services.clock.now()
    )
    services.catalog.sync()
    return _json({"project": project, "exempt": False, "until": None})


async def set_cutoff(request: Request, who: Principal) -> Response:
    services = _services(request)
    body = await _body(request, ("time", "reason"))
    moment = _body_time(body, "time", required=True)
    assert moment is not None  # required=True never returns None
    reason = _reason(body)
    await asyncio.to_thread(
        services.ledger.set_cutoff, moment, reason, who.actor, services.clock.now()
    )
    services.catalog.sync()
    return _json({"cutoff": format_timestamp(moment)})


async def clear_cutoff(request: Request, who: Principal) -> Response:
    services = _services(request)
    reason = _reason(await _body(request, ("reason",)))
    cleared = await asyncio.to_thread(
        services.ledger.clear_cutoff, reason, who.actor, services.clock.now()
    )
    if not cleared:
        raise ApiProblem(404, "no run-time cutoff is set (a config-file cutoff stays)")
    services.catalog.sync()
    return _json({"cutoff": None})


# -- tokens ----------------------------------------------------------------------------------
def _token_name(raw: object) -> str:
    if not isinstance(raw, str) or re.fullmatch(NAME_PATTERN, raw, re.ASCII) is None:
        raise ApiProblem(422, "name must be 1-64 letters, digits, '.', '_' or '-'")
    return raw


async def create_token(request: Request, who: Principal) -> Response:
    services = _services(request)
    body = await _body(request, ("name", "scope"))
    name, scope = _token_name(body.get("name")), body.get("scope")
    if scope not in SCOPES:
        raise ApiProblem(422, f"scope must be one of: {', '.join(SCOPES)}")

    def make() -> str:
        if any(token.name == name for token in services.ledger.tokens()):
            raise ApiProblem(409, f"a token named {name!r} exists; revoke it or pick another name")
        secret = new_token()
        record = ApiToken(name, scope, services.clock.now(), who.actor, None)
        services.ledger.create_token(record, token_hash(secret))
        return secret

    secret = await asyncio.to_thread(make)
    # The one time the token exists outside its owner's hands: shown once, never cached.
    return _json({"name": name, "scope": scope, "token": secret}, status=201)


async def revoke_token(request: Request, who: Principal) -> Response:
    services = _services(request)
    # Any name: tokens made by the CLI's local mode are not held to the API's pattern.
    name = str(request.path_params["name"])
    revoked = await asyncio.to_thread(
        services.ledger.revoke_token, name, who.actor, services.clock.now()
    )
    if not revoked:
        raise ApiProblem(404, "no live token with that name")  # the name is not echoed
    return _json({"name": name, "revoked": True})


# -- routing ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    scope: str
    handler: Handler


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/holds", READ, list_holds),
    Operation("GET", "/projects/{project}", READ, show_project),
    Operation("GET", "/audit", READ, list_audit),
    Operation("GET", "/deliveries", READ, list_deliveries),
    Operation("GET", "/exposure", READ, show_exposure),
    Operation("POST", "/check", READ, check_lock),
    Operation("POST", "/projects/{project}/releases/{version}/promote", DECIDE, promote_release),
    Operation("POST", "/projects/{project}/block", DECIDE, _blocking(admin.block, False)),
    Operation(
        "POST", "/projects/{project}/releases/{version}/block", DECIDE, _blocking(admin.block, True)
    ),
    Operation("POST", "/projects/{project}/unblock", DECIDE, _blocking(admin.unblock, False)),
    Operation(
        "POST",
        "/projects/{project}/releases/{version}/unblock",
        DECIDE,
        _blocking(admin.unblock, True),
    ),
    Operation("POST", "/projects/{project}/retry", DECIDE, _retrying(False)),
    Operation("POST", "/projects/{project}/releases/{version}/retry", DECIDE, _retrying(True)),
    Operation("POST", "/projects/{project}/exemption", DECIDE, set_exemption),
    Operation("DELETE", "/projects/{project}/exemption", DECIDE, clear_exemption),
    Operation("PUT", "/cutoff", DECIDE, set_cutoff),
    Operation("DELETE", "/cutoff", DECIDE, clear_cutoff),
    Operation("POST", "/tokens", DECIDE, create_token),
    Operation("DELETE", "/tokens/{name}", DECIDE, revoke_token),
)


def _failure(error: Exception) -> Response:
    """Any error a handler raised, as a problem document."""
    if isinstance(error, ApiProblem):
        return error.response()
    if isinstance(error, admin.AdminError):
        # The admin module's 400s are all about the request's content: 422 here.
        return problem_response(422 if error.status == 400 else error.status, str(error))
    # Logged with its traceback; the response says nothing about it, and no request
    # header is ever put into a message, so no token can reach the log this way.
    log.error("admin API request failed", exc_info=error)
    return problem_response(500, "internal error; the server log has the details")


def _endpoint(
    gate: Gate, by_method: dict[str, Operation]
) -> Callable[[Request], Awaitable[Response]]:
    """One path: authenticate first (deny by default), then dispatch on the method."""
    allow = ", ".join(sorted(by_method))

    async def endpoint(request: Request) -> Response:
        operation = by_method.get(request.method)
        try:
            who = gate.check(request, operation.scope if operation else READ)
            if operation is None:
                raise ApiProblem(405, "method not allowed here", {"Allow": allow})
            # A page goes out before its look's write: the admin sees that look too.
            await _services(request).catalog.writes_done()
            return await operation.handler(request, who)
        except Exception as error:  # noqa: BLE001  (every failure becomes a problem document)
            return _failure(error)

    return endpoint


def _unknown(gate: Gate) -> Callable[[Request], Awaitable[Response]]:
    """Anything else under the prefix: still 401 without a token, then 404."""

    async def endpoint(request: Request) -> Response:
        try:
            gate.check(request, READ)
        except ApiProblem as refused:
            return refused.response()
        return problem_response(404, "no such admin API resource")

    return endpoint


async def openapi_json(_request: Request) -> Response:
    # The document describes the API, not its data: readable without a token.
    return _json(openapi_document())


def admin_routes(gate: Gate | None = None) -> list[BaseRoute]:
    """The admin API as one Mount; each app gets its own failure counts (its own Gate)."""
    gate = gate or Gate()
    paths: dict[str, dict[str, Operation]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = operation
    routes: list[BaseRoute] = [Route("/openapi.json", openapi_json, methods=["GET"])]
    routes += [
        Route(path, _endpoint(gate, by_method), methods=_ALL_METHODS)
        for path, by_method in paths.items()
    ]
    routes.append(Route("/{rest:path}", _unknown(gate), methods=_ALL_METHODS))
    return [Mount(PREFIX, routes=routes)]
