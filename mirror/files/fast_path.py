"""The front door for the hottest requests: an index page, a small cached file.

A warm page and a cached file are already bytes in memory; answering them without the
framework's routing, request and response objects roughly halves their cost. A page
that needs a look first is asked of the catalog here too (a cold miss is what a user
waits on); its refusals are the same one-line answers the app gives. Anything else (a
name to redirect, a query string, HEAD, a file miss, a range request) passes through to
the app unchanged, so the rules live in one place.
"""

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from packaging.utils import NormalizedName
from starlette.applications import Starlette

from mirror.errors import MirrorError
from mirror.http.metrics import Metered, RequestTally
from mirror.http.one_line import OneLine, for_error
from mirror.services import Services
from mirror.simple.names import MAX_NAME_CHARS
from mirror.simple.negotiate import negotiate
from mirror.simple.routes import etag_matches, page_for, page_headers, variant
from quarantine.models import FileState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PAGE = re.compile(r"/simple/([a-z0-9]+(?:-[a-z0-9]+)*)/")
_FILE = re.compile(r"/files/([0-9a-f]{64})/([^/]+)")
_FILE_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"cache-control", b"public, max-age=31536000, immutable"),
    (b"x-content-type-options", b"nosniff"),
]


async def _send_one_line(send: Send, answer: OneLine) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
    headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class FastPath:
    def __init__(
        self, app: Starlette | Metered, services: Services, tally: RequestTally | None = None
    ) -> None:
        """``app`` answers the rest; ``tally`` (metrics on) counts what is answered here."""
        self._app = app
        self._services = services
        self._tally = tally
        self.state = app.state  # the app's state, for whoever holds this front door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            path = scope["path"]
            started = time.perf_counter()
            status = 0  # not answered here
            if path.startswith("/simple/"):
                status = await self._page(scope, send, path)
            elif path.startswith("/files/"):
                status = await self._file(scope, send, path)
            if status:
                if self._tally is not None:
                    self._tally.note(path, status, started)
                return
        await self._app(scope, receive, send)

    async def _page(self, scope: Scope, send: Send, path: str) -> int:
        match = _PAGE.fullmatch(path)
        if match is None:
            return 0
        try:
            fmt = negotiate(_header(scope, b"accept"), None)
        except MirrorError:  # 406 and its one-line reason come from the app
            return 0
        name = match.group(1)
        if len(name) > MAX_NAME_CHARS:
            return 0  # the app refuses it with its reason
        catalog = self._services.catalog
        kept = catalog.warm_page(NormalizedName(name), fmt)
        stale: float | None = None
        try:
            if kept is None:
                served = await catalog.project_page(NormalizedName(name), fmt)
                kept, stale = served.page, served.stale_seconds
            page = await page_for(kept, self._services.request_base, scope)
        except MirrorError as error:
            answer = for_error(error)
            await _send_one_line(send, answer)
            return answer.status
        chosen = await variant(page, _header(scope, b"accept-encoding"))
        pairs = page_headers(page, chosen, stale).items()
        headers = [(k.lower().encode(), v.encode()) for k, v in pairs]
        if etag_matches(_header(scope, b"if-none-match"), chosen.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return 304
        headers.append((b"content-type", page.content_type.encode()))
        headers.append((b"content-length", str(len(chosen.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": chosen.body})
        return 200

    async def _file(self, scope: Scope, send: Send, path: str) -> int:
        match = _FILE.fullmatch(path)
        if match is None or _header(scope, b"range") is not None:
            return 0
        if self._services.settings.accel_redirect is not None:
            return 0  # nginx sends the bytes; the app answers with their location
        digest, filename = match.groups()
        catalog = self._services.catalog
        record = catalog.files.cached(digest, filename)
        if record is None or record.state is not FileState.PROMOTED:
            return 0  # the app checks again from the ledger and explains the refusal
        if catalog.writing(record.project):
            return 0  # a look is writing it: the app waits for that

        body = self._services.blob_cache.get(digest, count_miss=False)  # the app asks again
        if body is None:
            return 0
        headers = [
            *_FILE_HEADERS,
            (b"etag", f'"{digest}"'.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if self._services.downloads is not None:
            self._services.downloads.note(scope, record)
        return 200
