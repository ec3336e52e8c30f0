"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

Ready means: the ledger answers a cheap query, the blob store takes a write (disk) or
answers (any other store), and the background side is known to run: the vetting child is
alive, the in-process loops are, or this process is told the leader is elsewhere. A frozen
promotion is reported too: serving works, but an operator must look.

The checks run once a second in the background (``Readiness``), not per request: a flood
of probes costs no I/O. Their findings name database hosts and users or an operator's
freeze reason, so only a loopback caller (an operator on the host, a local probe; behind
a proxy listed in ``trusted_proxies``, the client it forwards) hears them whole; any
other caller hears what kind of problem it is, and the log has the rest.
"""

import asyncio
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mirror.blobs.disk import DiskBlobStore
from mirror.blobs.interface import BlobStore
from mirror.http.one_line import one_line
from mirror.services import Services

log = logging.getLogger(__name__)
_NO_SUCH_BLOB = "0" * 64
READINESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a process is not ready: ``kind`` for anyone, ``detail`` for operators."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


class Readiness:
    """The readiness checks' latest finding, refreshed every ``interval_seconds``."""

    def __init__(
        self, services: Services, interval_seconds: float = READINESS_INTERVAL_SECONDS
    ) -> None:
        self._services = services
        self._interval = interval_seconds
        self.problem: Problem | None = None
        self.checked = False

    @property
    def ready(self) -> bool | None:
        """None until the first check (for /metrics' lazaretto_ready)."""
        return None if not self.checked else self.problem is None

    async def refresh(self) -> None:
        problem = await readiness_problem(self._services)
        if problem is not None and problem != self.problem:
            log.warning("not ready: %s", problem)
        self.problem, self.checked = problem, True

    async def run_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - a check must never stop serving
                self.problem, self.checked = Problem("readiness not checked", str(error)), True
                log.warning("readiness not checked: %s", error)
            await asyncio.sleep(self._interval)


def _answer(status: int, reason: str) -> Response:
    answer = one_line(status, reason)
    return PlainTextResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def healthz(_request: Request) -> Response:
    return _answer(200, "ok")


async def readyz(request: Request) -> Response:
    readiness: Readiness = request.app.state.readiness
    if not readiness.checked:  # the first request before the first round: check once
        await readiness.refresh()
    problem = readiness.problem
    services: Services = request.app.state.services
    if problem is None:
        return _answer(200, f"ready{_leader_situation(services)}")
    peer = services.request_base.client_address(request.scope)  # behind a proxy: its client
    told = str(problem) if _loopback(peer) else f"{problem.kind} (details in the server's log)"
    return _answer(503, f"not ready: {told}")


def _leader_situation(services: Services) -> str:
    """Said only where a lease decides (replicas): which one vets is what an operator asks."""
    if services.leadership is None:
        return ""
    if services.leadership.leading:
        return " (leader: promotion, vetting, watching and notifications run here)"
    return " (standing by: another process holds the leader lease)"


def _loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


async def readiness_problem(services: Services) -> Problem | None:
    """Why this process is not ready, or None."""
    problem = await asyncio.to_thread(_storage_problem, services)
    return problem or await _remote_store_problem(services.blobs) or _background_problem(services)


async def _remote_store_problem(store: BlobStore) -> Problem | None:
    """A store with no local files (an object store) must answer a round trip."""
    if isinstance(store, DiskBlobStore):
        return None  # probed with a write in _storage_problem
    try:
        await store.contains(_NO_SUCH_BLOB)
    except Exception as error:  # noqa: BLE001 - any failure to answer is the finding
        return Problem("blob store unreachable", str(error))
    return None


def _storage_problem(services: Services) -> Problem | None:
    try:
        frozen = services.ledger.freeze_reason()
    except Exception as error:  # noqa: BLE001 - any failure to answer is the finding
        return Problem("ledger unreachable", f"{type(error).__name__}: {error}")
    try:
        _probe(services.blobs)
    except Exception as error:  # noqa: BLE001 - as above
        return Problem("blob store not writable", str(error))
    return Problem("promotion frozen", frozen) if frozen else None


def _probe(store: BlobStore) -> None:
    if isinstance(store, DiskBlobStore):
        descriptor, name = store.temporary()  # a full or read-only disk raises here
        os.close(descriptor)
        Path(name).unlink()


def _background_problem(services: Services) -> Problem | None:
    child = services.vetting_child
    if child is not None and not child.alive:
        return Problem("the vetting child process is not running", "restarting")
    for task in services.tasks:  # each is a loop meant to run until the server stops
        if task.done():
            return Problem("a background loop has stopped", "see the log")
    return None
