"""The demand signal from the server to its vetting child: which projects a look saw
new held files of, and whether a client asked for them.

One line per look (``<asked 0|1> <normalized name>``) on a pipe. The server's end never
blocks: a line is written whole or not at all (a pipe write of at most PIPE_BUF bytes is
atomic), so a child that stopped reading costs the server a dropped line, never a
stalled event loop. A dropped line costs only the order: the child's ledger follower
still wakes a round that vets those files, behind what clients asked for.
"""

import asyncio
import logging
import os
import select
from collections.abc import Callable

from packaging.utils import NormalizedName, canonicalize_name

log = logging.getLogger(__name__)
# Longer lines are never written: a normalized project name is far shorter.
MAX_LINE_BYTES = select.PIPE_BUF


def demand_line(name: NormalizedName, asked: bool) -> bytes:
    return f"{int(asked)} {name}\n".encode()


class DemandWriter:
    """The server's end: ``send`` never blocks."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    def send(self, name: NormalizedName, asked: bool) -> bool:
        """Whether the line went out (not when the child is gone or not reading)."""
        line = demand_line(name, asked)
        if self._fd is None or len(line) > MAX_LINE_BYTES:
            return False
        try:
            os.write(self._fd, line)
        except BlockingIOError:
            log.warning("the vetting process is not reading; %s keeps its background rank", name)
            return False
        except OSError:  # BrokenPipeError: it died; its successor is told what was asked
            return False
        return True

    def tell(self, name: NormalizedName, asked: bool) -> None:
        """``send`` for a caller that has nothing to do when the line is dropped."""
        self.send(name, asked)

    def close(self) -> None:
        """The child reads an end of file and stops."""
        fd, self._fd = self._fd, None  # forgotten first: a send racing this never writes
        if fd is not None:  # to a descriptor number another thread may have reused
            os.close(fd)


class DemandReader:
    """The child's end, read on its event loop: each line becomes ``on_demand(name,
    asked)``; ``on_end`` runs once when the server closed its end or died."""

    def __init__(
        self,
        fd: int,
        on_demand: Callable[[NormalizedName, bool], None],
        on_end: Callable[[], None],
    ) -> None:
        self._fd = fd
        self._on_demand = on_demand
        self._on_end = on_end
        self._partial = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.stop()
            self._on_end()
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._deliver(line)

    def _deliver(self, line: bytes) -> None:
        asked, _, name = line.decode("utf-8", "replace").partition(" ")
        if asked not in ("0", "1") or not name:
            log.warning("ignoring a malformed demand line from the server: %r", line[:80])
            return
        self._on_demand(canonicalize_name(name), asked == "1")
