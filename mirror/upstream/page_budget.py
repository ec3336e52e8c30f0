"""One byte budget for every upstream page held in memory at once.

Each page look takes bytes from the budget as they arrive, and the inflated size of a
gzip page before inflating it; all of them go back when the look is done. A look that
would go over waits for others to finish, and is refused (503) if they do not finish in
time: a burst of huge or hostile pages can no longer add up to hundreds of megabytes.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mirror.errors import UpstreamUnavailable

WAIT_SECONDS = 10.0


class PagesOverBudget(UpstreamUnavailable):
    """Too many upstream page bytes in memory at once: try again shortly."""

    status = 503


class Lease:
    """The bytes one look holds."""

    def __init__(self, budget: "PageBudget") -> None:
        self._budget = budget
        self.held = 0

    async def grow(self, nbytes: int) -> None:
        await self._budget.take(nbytes)
        self.held += nbytes


class PageBudget:
    def __init__(self, total_bytes: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self.total_bytes = total_bytes
        self._wait_seconds = wait_seconds
        self.in_use = 0
        self._freed = asyncio.Event()  # set (and replaced) whenever bytes go back

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        lease = Lease(self)
        try:
            yield lease
        finally:
            self._give(lease.held)  # synchronous: runs even when the look is cancelled

    async def take(self, nbytes: int) -> None:
        if nbytes > self.total_bytes:
            raise PagesOverBudget("busy: one upstream page larger than the whole page budget")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        while self.in_use + nbytes > self.total_bytes:
            freed = self._freed
            try:
                await asyncio.wait_for(freed.wait(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise PagesOverBudget(
                    "busy: too many upstream page bytes in memory at once; try again shortly"
                ) from None
        self.in_use += nbytes

    def _give(self, nbytes: int) -> None:
        if nbytes == 0:
            return
        self.in_use -= nbytes
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()
