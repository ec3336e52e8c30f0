"""A real HTTP upstream package index for tests.

The index speaks the JSON simple API (PEP 691, with the PEP 700, 714, 740 and
792 additions) from an aiohttp server on 127.0.0.1. It runs its own event loop
in a background thread so plain synchronous tests can drive it, mutate it and
inject faults while a client talks to it over a real socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import hashlib
import json
import socket
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from packaging.metadata import parse_email
from packaging.utils import canonicalize_name

from .dists import Dist

__all__ = [
    "BOMB_INFLATED_BYTES",
    "FAULTS",
    "FILE_FAULTS",
    "INTEGRITY_JSON",
    "SIMPLE_JSON",
    "Upstream",
    "UpstreamFile",
]

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
INTEGRITY_JSON = "application/vnd.pypi.integrity.v1+json"
API_VERSION = "1.4"  # 1.4 is the first version with PEP 792 project-status
FAULTS = frozenset({"html", "malformed", "500", "slow", "bomb", "bomb_lying"})
BOMB_INFLATED_BYTES = 256 * 1024 * 1024  # what the "bomb" page inflates to
# Glitches of one file's download (``fail_file``), each answered once, then the file again.
FILE_FAULTS = frozenset({"gzip", "500", "long", "offhost", "short_chunked", "cut_unframed"})

# How long stop() lets in-flight requests finish before cancelling them; kept
# short so a test that leaves a "slow" request hanging does not stall teardown.
_SHUTDOWN_TIMEOUT = 0.5
_HOST = "127.0.0.1"


@dataclass
class UpstreamFile:
    """One file as the upstream lists and serves it."""

    dist: Dist
    upload_time: datetime | None  # UTC-aware; None omits "upload-time"
    yanked: bool | str = False  # a str means yanked with that reason
    provenance: bytes | None = None  # served at the provenance URL when set
    serve_bytes: bytes | None = None  # served instead of dist.data (bad hash)
    declared_sha256: str | None = None  # overrides the listed sha256
    with_metadata: bool = True  # PEP 658/714: list and serve "<file>.metadata"
    serve_metadata: bytes | None = None  # served as "<file>.metadata" (not the listed hash)
    with_size: bool = True  # False: no "size" in the listing, as before PEP 700


@dataclass
class _Project:
    files: dict[str, UpstreamFile] = field(default_factory=dict)
    status: str | None = None
    reason: str | None = None
    versions: list[str] | None = None  # listed instead of the files' own (set_versions)
    without_versions: bool = False  # no "versions" key at all, as before PEP 700


class Upstream:
    """A live upstream index; see the module docstring.

    All public methods may be called from any thread; state is guarded by a
    lock that request handlers only hold while copying or rendering data.
    """

    def __init__(self) -> None:
        self.journal: list[tuple[str, str]] = []
        # Seconds the "slow" fault waits before answering.
        self.slow_seconds: float = 10.0
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self._faults: dict[str, str] = {}
        self._file_faults: dict[str, list[str]] = {}  # filename -> glitches still to answer
        self._serial = 0
        self._port: int | None = None
        self._server: _ServerThread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Serve on a free port, or on the previous port after stop()."""
        if self._server is not None:
            return
        sock = _listening_socket(self._port or 0)
        self._port = int(sock.getsockname()[1])
        server = _ServerThread(self._make_app(), sock)
        server.start()
        self._server = server

    def stop(self) -> None:
        """Close the listener and all connections; state is kept."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

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

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("Upstream has never been started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    # -- mutations ---------------------------------------------------------

    def add(self, project: str, f: UpstreamFile) -> None:
        """List ``f`` under ``project``, replacing a file of the same name.

        A copy is stored, so later edits to ``f`` do not leak in silently.
        """
        if f.upload_time is not None and f.upload_time.utcoffset() is None:
            raise ValueError("upload_time must be timezone-aware")
        with self._lock:
            entry = self._projects.setdefault(canonicalize_name(project), _Project())
            entry.files[f.dist.filename] = dataclasses.replace(f)
            self._serial += 1

    def remove(self, project: str, filename: str) -> None:
        with self._lock:
            del self._projects[canonicalize_name(project)].files[filename]
            self._serial += 1

    def set_status(self, project: str, status: str | None, reason: str | None = None) -> None:
        """Set the PEP 792 status; creates the project if it is unknown."""
        with self._lock:
            entry = self._projects.setdefault(canonicalize_name(project), _Project())
            entry.status, entry.reason = status, reason
            self._serial += 1

    def set_versions(self, project: str, versions: list[str] | None) -> None:
        """List ``versions`` (PEP 700) as spelled here; None leaves the key out."""
        with self._lock:
            entry = self._projects.setdefault(canonicalize_name(project), _Project())
            entry.versions, entry.without_versions = versions, versions is None
            self._serial += 1

    def delete_project(self, project: str) -> None:
        with self._lock:
            self._projects.pop(canonicalize_name(project), None)
            self._serial += 1

    def set_fault(self, project: str, fault: str | None) -> None:
        """Make the project page misbehave; see FAULTS. None clears it."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        with self._lock:
            if fault is None:
                self._faults.pop(canonicalize_name(project), None)
            else:
                self._faults[canonicalize_name(project)] = fault
            self._serial += 1

    def fail_file(self, filename: str, *faults: str) -> None:
        """Answer the next downloads of ``filename`` with these glitches, one each, then
        serve it again: ``gzip`` (the bytes gzip-encoded, as a misconfigured CDN sends
        them), ``500``, ``long`` (more bytes than listed), ``offhost`` (a redirect to a
        host the mirror does not fetch files from), ``short_chunked`` (a complete chunked
        body 16 bytes shorter than listed), ``cut_unframed`` (half the bytes, with neither
        a length nor chunking: ended by closing the connection, as a cut transfer looks)."""
        unknown = set(faults) - FILE_FAULTS
        if unknown:
            raise ValueError(f"unknown file faults {unknown}; expected some of {FILE_FAULTS}")
        with self._lock:
            self._file_faults.setdefault(filename, []).extend(faults)

    def file_requests(self, filename: str) -> int:
        """How many times ``filename`` itself (not its metadata) was asked for."""
        with self._lock:
            return sum(1 for _, path in self.journal if path.endswith("/" + quote(filename)))

    # -- journal -----------------------------------------------------------

    def requests_for(self, prefix: str) -> list[str]:
        """Paths of received requests that start with ``prefix``, in order."""
        with self._lock:
            return [path for _, path in self.journal if path.startswith(prefix)]

    def clear_journal(self) -> None:
        with self._lock:
            self.journal.clear()

    # -- HTTP --------------------------------------------------------------

    def _make_app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            # Recorded before handling so slow or failing requests show up too.
            with self._lock:
                self.journal.append((request.method, request.path))
            return await handler(request)

        app = web.Application(middlewares=[record])
        router = app.router
        router.add_get("/simple/", self._index_page)
        router.add_get("/simple/{name}/", self._project_page)
        router.add_get("/simple/{name}", self._project_page)
        router.add_get("/files/{project}/{filename}", self._file)
        router.add_get("/integrity/{project}/{version}/{filename}/provenance", self._provenance)
        return app

    async def _index_page(self, request: web.Request) -> web.Response:
        with self._lock:
            serial = self._serial
            names = sorted(self._projects)
        doc = {
            "meta": {"api-version": API_VERSION, "_last-serial": serial},
            "projects": [{"name": name} for name in names],
        }
        return _json_response(request, json.dumps(doc).encode(), serial)

    async def _project_page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        canonical = canonicalize_name(name)
        if name != canonical or not request.path.endswith("/"):
            raise web.HTTPMovedPermanently(location=f"/simple/{quote(canonical)}/")
        with self._lock:
            fault = self._faults.get(canonical)
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif fault is not None:
            return _fault_response(fault, canonical)
        rendered = self._render_project(canonical)
        if rendered is None:
            raise web.HTTPNotFound(text=f"no project {canonical}")
        body, serial = rendered
        return _json_response(request, body, serial)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        body = self._file_body(request.match_info["project"], filename)
        if body is None:
            raise web.HTTPNotFound()
        with self._lock:
            pending = self._file_faults.get(filename)
            fault = pending.pop(0) if pending else None
        if fault in ("short_chunked", "cut_unframed"):
            return await _streamed_fault_response(request, fault, body)
        if fault is not None:
            return _file_fault_response(fault, body)
        return web.Response(body=body, content_type="application/octet-stream")

    async def _provenance(self, request: web.Request) -> web.Response:
        info = request.match_info
        with self._lock:
            f = self._lookup(info["project"], info["filename"])
        if f is None or f.provenance is None or str(f.dist.version) != info["version"]:
            raise web.HTTPNotFound()
        return web.Response(body=f.provenance, content_type=INTEGRITY_JSON)

    # -- rendering (callers outside the lock) ------------------------------

    def _render_project(self, canonical: str) -> tuple[bytes, int] | None:
        with self._lock:
            entry = self._projects.get(canonical)
            if entry is None:
                return None
            files = list(entry.files.values())
            doc: dict[str, object] = {
                "meta": {"api-version": API_VERSION, "_last-serial": self._serial},
                "name": canonical,
                "versions": [str(v) for v in sorted({f.dist.version for f in files})],
                "files": [self._file_entry(canonical, f) for f in files],
            }
            if entry.versions is not None:
                doc["versions"] = list(entry.versions)
            if entry.without_versions:
                del doc["versions"]
            if entry.status is not None:
                status = {"status": entry.status}
                if entry.reason is not None:
                    status["reason"] = entry.reason
                doc["project-status"] = status
            serial = self._serial
        return json.dumps(doc).encode(), serial

    def _file_entry(self, project: str, f: UpstreamFile) -> dict[str, object]:
        dist = f.dist
        url = f"{self.origin}/files/{project}/{quote(dist.filename)}"
        metadata: object = {"sha256": dist.metadata_sha256} if f.with_metadata else False
        entry: dict[str, object] = {
            "filename": dist.filename,
            "url": url,
            "hashes": {"sha256": f.declared_sha256 or dist.sha256},
            "requires-python": _requires_python(dist.metadata),
            "yanked": _yanked_value(f.yanked),
            "size": len(dist.data),
            "core-metadata": metadata,
            "data-dist-info-metadata": metadata,  # pre-PEP 714 spelling
            "provenance": None,
        }
        if not f.with_size:
            del entry["size"]
        if f.upload_time is not None:
            entry["upload-time"] = _timestamp(f.upload_time)
        if f.provenance is not None:
            entry["provenance"] = (
                f"{self.origin}/integrity/{project}/{dist.version}/"
                f"{quote(dist.filename)}/provenance"
            )
        return entry

    def _file_body(self, project: str, filename: str) -> bytes | None:
        with self._lock:
            f = self._lookup(project, filename)
            if f is not None:
                return f.dist.data if f.serve_bytes is None else f.serve_bytes
            base = filename.removesuffix(".metadata")
            f = self._lookup(project, base) if base != filename else None
            if f is not None and f.with_metadata:
                return f.dist.metadata if f.serve_metadata is None else f.serve_metadata
        return None

    def _lookup(self, project: str, filename: str) -> UpstreamFile | None:
        # File URLs always carry the normalized name, so no canonicalizing.
        entry = self._projects.get(project)
        return None if entry is None else entry.files.get(filename)


class _ServerThread:
    """Serves one aiohttp app on a private event loop in a daemon thread."""

    def __init__(self, app: web.Application, sock: socket.socket) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            # Abandoned requests (client timed out) stop instead of lingering.
            handler_cancellation=True,
        )
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="upstream-index", daemon=True)

    def start(self) -> None:
        self._thread.start()
        try:
            # Exceptions (e.g. the port is taken) surface here, in the caller.
            asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException:
            self._halt()
            raise

    def stop(self) -> None:
        try:
            cleanup = self._runner.cleanup()
            asyncio.run_coroutine_threadsafe(cleanup, self._loop).result()
        finally:
            self._halt()

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._close_loop()

    async def _open(self) -> None:
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, self._sock).start()
        except BaseException:
            await self._runner.cleanup()
            self._sock.close()
            raise

    def _close_loop(self) -> None:
        # Finish every leftover task so nothing is destroyed while pending.
        loop = self._loop
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets a restart rebind the port while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _json_response(request: web.Request, body: bytes, serial: int) -> web.Response:
    etag = hashlib.sha256(body).hexdigest()
    if request.if_none_match and any(tag.value in (etag, "*") for tag in request.if_none_match):
        response = web.Response(status=304)
    else:
        response = web.Response(body=body, content_type=SIMPLE_JSON)
    response.etag = etag  # aiohttp adds the quotes
    response.headers["X-PyPI-Last-Serial"] = str(serial)
    return response


def _fault_response(fault: str, project: str) -> web.Response:
    if fault == "html":
        page = (
            f"<!DOCTYPE html><html><head><title>Links for {project}</title></head>"
            f"<body><h1>Links for {project}</h1></body></html>"
        )
        return web.Response(text=page, content_type="text/html")
    if fault == "malformed":
        return web.Response(body=b'{"meta": {"api-version": ', content_type=SIMPLE_JSON)
    if fault in ("bomb", "bomb_lying"):
        body = _gzip_bomb()
        if fault == "bomb_lying":  # the gzip trailer claims a small page
            body = body[:-4] + (1000).to_bytes(4, "little")
        response = web.Response(body=body, content_type=SIMPLE_JSON)
        response.headers["Content-Encoding"] = "gzip"
        return response
    return web.Response(status=500, text="Internal Server Error")


class _Unframed(web.StreamResponse):
    """No Content-Length and no chunking: the body ends when the connection closes."""

    _length_check = False


async def _streamed_fault_response(
    request: web.Request, fault: str, body: bytes
) -> web.StreamResponse:
    response: web.StreamResponse
    if fault == "short_chunked":
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        sent = body[:-16]
    else:
        response = _Unframed()
        response.force_close()
        sent = body[: len(body) // 2]
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    await response.write(sent)
    await response.write_eof()
    return response


def _file_fault_response(fault: str, body: bytes) -> web.Response:
    if fault == "gzip":
        response = web.Response(body=gzip.compress(body), content_type="application/octet-stream")
        response.headers["Content-Encoding"] = "gzip"
        return response
    if fault == "long":
        return web.Response(body=body + b"\0" * 16, content_type="application/octet-stream")
    if fault == "offhost":
        # Never connected to: the mirror refuses a host outside its file_hosts first.
        raise web.HTTPFound("https://files.invalid/elsewhere.whl")
    return web.Response(status=500, text="Internal Server Error")


@functools.cache
def _gzip_bomb() -> bytes:
    """A quarter of a GiB of spaces, gzipped to a few hundred KiB (made in pieces: the
    test process never holds the inflated bytes itself)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = b" " * (1024 * 1024)
    parts = [packer.compress(piece) for _ in range(BOMB_INFLATED_BYTES // len(piece))]
    return b"".join([*parts, packer.flush()])


def _requires_python(metadata: bytes) -> str | None:
    raw, _ = parse_email(metadata)
    return raw.get("requires_python")


def _yanked_value(yanked: bool | str) -> bool | str:
    # PEP 691 reasons must be non-empty strings; an empty reason is plain true.
    if isinstance(yanked, str):
        return yanked or True
    return yanked


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
