"""A trickling upstream cannot hold a transfer for ever: each has a whole-transfer deadline.

Every read arrives well within ``read_timeout_seconds`` (one byte each tenth of a second),
so only the overall deadline (``download_timeout_seconds``, ``page_timeout_seconds``) ends
the transfer. The upstream is a real server on 127.0.0.1; a transfer still running after
HANG_SECONDS is the bug this guards against (it is no timing assertion).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from packaging.utils import NormalizedName
from yarl import URL

from mirror.blobs.disk import DiskBlobStore
from mirror.errors import UpstreamUnavailable
from mirror.upstream.client import JSON_PAGE, UpstreamClient
from mirror.upstream.url_guard import UrlGuard

HANG_SECONDS = 30


async def _trickle(request: web.Request, content_type: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = 10**6
    await response.prepare(request)
    for _ in range(10**6):
        await response.write(b" ")
        await asyncio.sleep(0.1)
    return response


@asynccontextmanager
async def _trickling_upstream() -> AsyncIterator[str]:
    app = web.Application()

    async def file(request: web.Request) -> web.StreamResponse:
        return await _trickle(request, "application/octet-stream")

    async def page(request: web.Request) -> web.StreamResponse:
        return await _trickle(request, JSON_PAGE)

    app.router.add_get("/files/slow.whl", file)
    app.router.add_get("/simple/slow/", page)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def _run(
    tmp_path: Path, step: Callable[[UpstreamClient, str, DiskBlobStore], Awaitable[object]]
) -> None:
    async def scenario() -> None:
        async with _trickling_upstream() as origin:
            client = UpstreamClient(
                UrlGuard(origin + "simple/", ()),
                connect_timeout=5,
                read_timeout=30,
                max_page_bytes=10**7,
                page_timeout=1,
                download_timeout=1,
            )
            await client.open()
            try:
                await asyncio.wait_for(
                    step(client, origin, DiskBlobStore(tmp_path / "blobs")), HANG_SECONDS
                )
            finally:
                await client.close()

    asyncio.run(scenario())


def test_a_trickled_file_ends_at_the_download_deadline(tmp_path: Path) -> None:
    async def download(client: UpstreamClient, origin: str, store: DiskBlobStore) -> None:
        writer = store.writer(10**7)
        try:
            await client.download(URL(origin + "files/slow.whl"), writer, None)
        finally:
            await writer.abort()

    with pytest.raises(UpstreamUnavailable, match="download_timeout_seconds"):
        _run(tmp_path, download)


def test_a_trickled_page_ends_at_the_page_deadline(tmp_path: Path) -> None:
    async def look(client: UpstreamClient, _origin: str, _store: DiskBlobStore) -> None:
        await client.project_page(NormalizedName("slow"), None)

    with pytest.raises(UpstreamUnavailable, match="page_timeout_seconds"):
        _run(tmp_path, look)
