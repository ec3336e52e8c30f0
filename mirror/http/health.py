"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

Ready means: the ledger answers a cheap query, the blob store takes a write (disk) or
answers (any other store), and the background side is known to run: the vetting child is
alive, the in-process loops are, or this process is told the leader is elsewhere. A frozen
promotion is reported too: serving works, but an operator must look.
"""

import asyncio
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mirror.blobs.disk import DiskBlobStore
from mirror.blobs.interface import BlobStore
from mirror.http.one_line import one_line
from mirror.services import Services

_NO_SUCH_BLOB = "0" * 64


def _answer(status: int, reason: str) -> Response:
    answer = one_line(status, reason)
    return PlainTextResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def healthz(_request: Request) -> Response:
    return _answer(200, "ok")


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    problem = await readiness_problem(services)
    if problem:
        return _answer(503, f"not ready: {problem}")
    return _answer(200, f"ready{_leader_situation(services)}")


def _leader_situation(services: Services) -> str:
    """Said only where a lease decides (replicas): which one vets is what an operator asks."""
    if services.leadership is None:
        return ""
    if services.leadership.leading:
        return " (leader: promotion, vetting, watching and notifications run here)"
    return " (standing by: another process holds the leader lease)"


async def readiness_problem(services: Services) -> str | None:
    """Why this process is not ready, or None (also read for /metrics' lazaretto_ready)."""
    problem = await asyncio.to_thread(_storage_problem, services)
    return problem or await _remote_store_problem(services.blobs) or _background_problem(services)


async def _remote_store_problem(store: BlobStore) -> str | None:
    """A store with no local files (an object store) must answer a round trip."""
    if isinstance(store, DiskBlobStore):
        return None  # probed with a write in _storage_problem
    try:
        await store.contains(_NO_SUCH_BLOB)
    except Exception as error:  # noqa: BLE001 - any failure to answer is the finding
        return f"blob store unreachable ({error})"
    return None


def _storage_problem(services: Services) -> str | None:
    try:
        frozen = services.ledger.freeze_reason()
    except Exception as error:  # noqa: BLE001 - any failure to answer is the finding
        return f"ledger unreachable ({type(error).__name__}: {error})"
    try:
        _probe(services.blobs)
    except Exception as error:  # noqa: BLE001 - as above
        return f"blob store not writable ({error})"
    return f"promotion frozen: {frozen}" if frozen else None


def _probe(store: BlobStore) -> None:
    if isinstance(store, DiskBlobStore):
        descriptor, name = store.temporary()  # a full or read-only disk raises here
        os.close(descriptor)
        Path(name).unlink()


def _background_problem(services: Services) -> str | None:
    child = services.vetting_child
    if child is not None and not child.alive:
        return "the vetting child process is not running (restarting)"
    for task in services.tasks:  # each is a loop meant to run until the server stops
        if task.done():
            return "a background loop has stopped (see the log)"
    return None
