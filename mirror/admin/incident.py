"""The admin API's incident reads: ``GET /exposure`` (who downloaded it) and ``POST /check``
(is each pin of a lock served). Read scope: they answer questions, they decide nothing."""

import asyncio
import json

from packaging.utils import NormalizedName
from starlette.requests import Request
from starlette.responses import Response

from mirror.admin.auth import ApiProblem, Principal
from mirror.errors import InvalidProjectName
from mirror.services import Services
from mirror.simple.names import normalized_project
from quarantine.incident import answers as incident
from quarantine.incident.lock_files import MAX_LOCK_BYTES, LockFileError
from quarantine.paging import InvalidPaging, parse_since

_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _answer(data: object) -> Response:
    body = json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n"
    return Response(body, media_type="application/json", headers=_HEADERS)


def _project(raw: str | None) -> NormalizedName:
    if raw is None:
        raise ApiProblem(422, "give the project: ?project=NAME")
    try:
        return normalized_project(raw)
    except InvalidProjectName:
        raise ApiProblem(422, "invalid project name in the query") from None


async def show_exposure(request: Request, _who: Principal) -> Response:
    services = _services(request)
    query = request.query_params
    project = _project(query.get("project"))
    try:
        raw_since = query.get("since")
        since = parse_since(raw_since, services.clock.now()) if raw_since else None
    except InvalidPaging as error:
        raise ApiProblem(422, str(error)) from None
    try:
        found = await asyncio.to_thread(
            incident.exposure, services.download_log, project, query.get("version"), since
        )
    except incident.InvalidRelease:
        raise ApiProblem(422, "version must be one PEP 440 version") from None
    return _answer(found)


async def check_lock(request: Request, _who: Principal) -> Response:
    services = _services(request)
    name, text = await _lock_body(request)
    policy = services.policy.current()
    try:
        found = await asyncio.to_thread(incident.check, services.ledger, policy, name, text)
    except LockFileError as error:
        raise ApiProblem(422, str(error)) from None
    return _answer(found)


async def _lock_body(request: Request) -> tuple[str, str]:
    """``{"name": "uv.lock", "text": "..."}``: a lock file is bigger than a decision's body."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_LOCK_BYTES + 4096:
            raise ApiProblem(413, f"the body is over {MAX_LOCK_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiProblem(400, "the body is not valid JSON") from None
    if not isinstance(body, dict) or set(body) != {"name", "text"}:
        raise ApiProblem(422, 'the body must be {"name": FILENAME, "text": CONTENTS}')
    name, text = body["name"], body["text"]
    if not isinstance(name, str) or not isinstance(text, str) or len(name) > 255:
        raise ApiProblem(422, "name and text must be strings (name: the lock's file name)")
    return name, text
