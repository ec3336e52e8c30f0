"""Send a stored blob from memory maps of its file: no read copy, no thread hop per chunk.

Reading a large file in chunks costs a copy out of the page cache and a worker-thread hop
per chunk; handing the server windows of a memory map lets it write straight from the
page cache (measured here: 17 MB wheels at 8 connections, 1.09 GB/s with 1 MiB reads,
2.18 GB/s with 4 MiB windows). A window stays mapped only while the server still holds
its bytes, so the process's memory does not grow with the file's size.

Blobs are content-addressed and immutable: written once under a temporary name, then
renamed into place, never rewritten or truncated. That is what makes mapping them safe
(a mapped file truncated underneath would fault on access). The same holds for a large
file's verified temporary file, which a cold request is sent from while it is made
durable (an ``OpenFile``).
"""

import mmap
import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

WINDOW_BYTES = 4 * 1024 * 1024  # a multiple of mmap.ALLOCATIONGRANULARITY


class OpenFile:
    """A read-only descriptor of verified bytes, for one response to send.

    Closed once sent, or when dropped unsent (an error on the way leaks no descriptor).
    """

    def __init__(self, descriptor: int, size: int) -> None:
        self.descriptor = descriptor
        self.size = size
        self.close = weakref.finalize(self, os.close, descriptor)  # runs once at most


class MappedFileResponse(Response):
    def __init__(
        self, source: Path | OpenFile, size: int, headers: Mapping[str, str], media_type: str
    ) -> None:
        # Ranges are answered too (by starlette's FileResponse): say so, as it would.
        exact = {**headers, "Content-Length": str(size), "Accept-Ranges": "bytes"}
        super().__init__(None, headers=exact, media_type=media_type)
        self._source = source
        self._size = size

    @contextmanager
    def _descriptor(self) -> Iterator[int]:
        if isinstance(self._source, OpenFile):
            try:
                yield self._source.descriptor
            finally:
                self._source.close()
        else:
            with self._source.open("rb") as handle:
                yield handle.fileno()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._descriptor() as descriptor:
            await self._send(scope, send, descriptor)

    async def _send(self, scope: Scope, send: Send, descriptor: int) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") == "HEAD" or self._size == 0:
            await send({"type": "http.response.body", "body": b""})
            return
        for offset in range(0, self._size, WINDOW_BYTES):
            length = min(WINDOW_BYTES, self._size - offset)
            window = mmap.mmap(descriptor, length, access=mmap.ACCESS_READ, offset=offset)
            # The server may keep the view until the socket takes it; the window is
            # unmapped when the last reference goes.
            more = offset + length < self._size
            body = memoryview(window)
            await send({"type": "http.response.body", "body": body, "more_body": more})
