"""The mirror as a real HTTP server on 127.0.0.1, in a thread of the test process.

The test keeps the clock and decides when promotion rounds run, so ageing a file by
three days takes no time, while pip and uv talk to the server over a real socket.
"""

import asyncio
import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from mirror.app import create_app
from mirror.services import Services
from mirror.settings import Settings
from quarantine.vetting.promoter import Round

from .clock import FakeClock
from .ledger_backend import ledger_setting

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


class MirrorServer:
    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.services: Services | None = None
        # (method, path) of every request the server received, as the Upstream's journal.
        self.journal: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    @property
    def loop_thread(self) -> threading.Thread | None:
        """The thread the server's event loop runs in."""
        return self._thread

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_status(self, project: str) -> int:
        """The status of one JSON page request for ``project`` on a connection of its own
        (callable from several threads at once)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", f"/simple/{project}/", headers={"Accept": SIMPLE_JSON})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def start(self) -> None:
        app = create_app(replace(self.settings, port=self.port), self.clock, background=False)
        self.services = app.state.services
        # proxy_headers off, as `lazaretto serve` runs it: the mirror reads X-Forwarded-*
        # itself, from its trusted_proxies only.
        config = uvicorn.Config(
            _Journaled(app, self.journal),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("the mirror did not start within 20 s")

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        assert self._server is not None
        server = self._server

        async def serve() -> None:
            task = asyncio.ensure_future(server.serve())
            while not server.started:
                if task.done():
                    ready.set()
                    await task
                    return
                await asyncio.sleep(0.01)
            self.port = server.servers[0].sockets[0].getsockname()[1]
            ready.set()
            await task

        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(20)
        self._server = None
        self._thread = None

    def restart(self) -> None:
        """Stop and start again on the same port and data directory: a process restart."""
        self.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except (RuntimeError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's own event loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def promote(self) -> Round:
        """One promotion round, as the background worker would run it, once the looks a
        test made are in the ledger (a big project's is written in a thread, after its page
        is sent): a round that begins first would find nothing to do, unlike the next one."""
        assert self.services is not None
        services = self.services

        async def _round() -> Round:
            await services.catalog.writes_done()
            return await services.promoter.run_once()

        result: Round = self.call(_round())
        return result

    def watch(self) -> int:
        """One watcher round, once the looks a test made are in the ledger (their writes
        run in threads, after the page is sent): the projects it looked at again."""
        assert self.services is not None
        services = self.services

        async def _round() -> int:
            await services.catalog.writes_done()
            return await services.watcher.run_once()

        looked: int = self.call(_round())
        return looked

    def sync(self) -> None:
        assert self.services is not None

        async def _sync() -> None:
            assert self.services is not None
            self.services.catalog.sync()

        self.call(_sync())


class _Journaled:
    """The app, with each request's method and path appended to ``journal`` first."""

    def __init__(self, app: Any, journal: list[tuple[str, str]]) -> None:
        self._app = app
        self._journal = journal

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self._journal.append((scope["method"], scope["path"]))
        await self._app(scope, receive, send)


@contextlib.contextmanager
def running_mirror(settings: Settings, clock: FakeClock) -> Iterator[MirrorServer]:
    server = MirrorServer(settings, clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(data_dir: Path, upstream_url: str, **overrides: Any) -> Settings:
    """A mirror's settings; its ledger is the test run's (support/ledger_backend.py)."""
    base = Settings(
        data_dir=data_dir,
        upstream=upstream_url,
        access_log=False,
        request_wait=Settings().request_wait,
        ledger=ledger_setting(data_dir),
    )
    return replace(base, **overrides)
