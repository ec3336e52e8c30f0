"""A small PEP 691 JSON upstream on 127.0.0.1 for the extra measurements.

Pages are rendered once per change and answered with an ETag (304 on a match), files are
served from memory or from disk (sendfile), provenance objects from memory. It runs its
own event loop in a daemon thread so the benchmark can change it while Lazaretto reads it.
"""

import asyncio
import hashlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from aiohttp import web
from packaging.utils import canonicalize_name

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class StaticFile:
    filename: str
    upload_time: datetime
    sha256: str
    size: int
    data: bytes | None = None  # served from memory, or ...
    path: Path | None = None  # ... from disk
    provenance: bytes | None = None
    requires_python: str | None = None
    yanked: bool = False

    @classmethod
    def from_bytes(
        cls, filename: str, data: bytes, upload_time: datetime, provenance: bytes | None = None
    ) -> "StaticFile":
        digest = hashlib.sha256(data).hexdigest()
        return cls(filename, upload_time, digest, len(data), data=data, provenance=provenance)

    @classmethod
    def from_path(
        cls,
        path: Path,
        upload_time: datetime,
        provenance: bytes | None = None,
        sha256: str | None = None,
    ) -> "StaticFile":
        if sha256 is None:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            sha256 = digest.hexdigest()
        size = path.stat().st_size
        return cls(path.name, upload_time, sha256, size, path=path, provenance=provenance)


class StaticUpstream:
    def __init__(self, fallback: Callable[[str], list[StaticFile] | None] | None = None) -> None:
        """``fallback`` lists the files of projects not added (rendered on every request)."""
        self._fallback = fallback
        self._lock = threading.Lock()
        self._projects: dict[str, dict[str, StaticFile]] = {}
        self._pages: dict[str, tuple[bytes, str]] = {}
        self.served: Counter[str] = Counter()  # filename -> bytes of it sent in full
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    def add(self, project: str, file: StaticFile) -> None:
        name = canonicalize_name(project)
        with self._lock:
            self._projects.setdefault(name, {})[file.filename] = file
            self._pages.pop(name, None)

    def add_many(self, project: str, files: list[StaticFile]) -> None:
        name = canonicalize_name(project)
        with self._lock:
            entry = self._projects.setdefault(name, {})
            for file in files:
                entry[file.filename] = file
            self._pages.pop(name, None)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="static-upstream", daemon=True
        )
        self._thread.start()
        app = web.Application()
        app.router.add_get("/simple/{name}/", self._page)
        app.router.add_get("/files/{project}/{filename}", self._file)
        app.router.add_get("/provenance/{project}/{filename}", self._provenance)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._runner = runner

        async def open_site() -> None:
            await runner.setup()
            await web.SockSite(runner, sock).start()

        asyncio.run_coroutine_threadsafe(open_site(), loop).result(30)

    def stop(self) -> None:
        loop, runner, thread = self._loop, self._runner, self._thread
        self._loop = self._runner = self._thread = None
        if loop is None or thread is None:
            return
        try:
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------------------

    def _render(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            cached = self._pages.get(name)
            if cached is not None:
                return cached
            files = self._projects.get(name)
            listed = list(files.values()) if files is not None else None
        generated = listed is None
        if listed is None and self._fallback is not None:
            listed = self._fallback(name)
        if listed is None:
            return None
        entries = [self._entry(name, f) for f in listed]
        doc = {"meta": {"api-version": "1.1"}, "name": name, "files": entries}
        body = json.dumps(doc, separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if not generated:
            with self._lock:
                self._pages[name] = (body, etag)
        return body, etag

    def _entry(self, project: str, f: StaticFile) -> dict[str, object]:
        quoted = quote(f.filename)
        return {
            "filename": f.filename,
            "url": f"{self.origin}/files/{project}/{quoted}",
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "size": f.size,
            "upload-time": f.upload_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "yanked": f.yanked,
            "core-metadata": False,
            "provenance": (
                f"{self.origin}/provenance/{project}/{quoted}" if f.provenance else None
            ),
        }

    async def _page(self, request: web.Request) -> web.Response:
        rendered = self._render(request.match_info["name"])
        if rendered is None:
            raise web.HTTPNotFound()
        body, etag = rendered
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type=SIMPLE_JSON, headers={"ETag": etag})

    def _lookup(self, request: web.Request) -> StaticFile:
        with self._lock:
            files = self._projects.get(request.match_info["project"], {})
            found = files.get(request.match_info["filename"])
        if found is None:
            raise web.HTTPNotFound()
        return found

    async def _file(self, request: web.Request) -> web.StreamResponse:
        found = self._lookup(request)
        self.served[found.filename] += found.size
        if found.path is not None:
            return web.FileResponse(found.path, chunk_size=1 << 20)
        return web.Response(body=found.data or b"", content_type="application/octet-stream")

    async def _provenance(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if found.provenance is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=found.provenance, content_type="application/vnd.pypi.integrity.v1+json"
        )
