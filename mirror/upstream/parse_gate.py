"""How many upstream page bytes are parsed at once, in worker threads.

Parsing holds the GIL, and its decoded objects are most of a big look's memory (pydantic-core:
a 6 MB page makes 16 MB of objects at its peak, 10 MB of them kept). Several big pages parsed
side by side added up in memory and took the GIL from the event loop in turn. Pages are
admitted while their bytes fit in the budget together; one larger than the whole budget
is parsed alone. First come, first admitted: a big page is not overtaken for ever by small
ones.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

_Parsed = TypeVar("_Parsed")


class ParseGate:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.in_use = 0  # bytes of the pages being parsed
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def parsed(self, nbytes: int, parse: Callable[[], _Parsed]) -> _Parsed:
        """``parse()`` run in a worker thread once ``nbytes`` are admitted. Its bytes go
        back when the thread is done, even when the caller stopped waiting for it: a
        thread cannot be stopped, and its memory is in use until it ends."""
        await self._admitted(nbytes)
        try:
            parsing = asyncio.ensure_future(asyncio.to_thread(parse))
        except BaseException:
            self._give(nbytes)
            raise
        parsing.add_done_callback(lambda done: self._parse_ended(done, nbytes))
        return await asyncio.shield(parsing)

    async def _admitted(self, nbytes: int) -> None:
        if not self._waiting and self._fits(nbytes):
            self.in_use += nbytes
            return
        admitted = asyncio.get_running_loop().create_future()
        place = (nbytes, admitted)
        self._waiting.append(place)
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():
                self._give(nbytes)  # admitted just as the caller went away
            else:
                self._waiting.remove(place)
                self._admit_waiting()  # the next in line may fit now
            raise

    def _fits(self, nbytes: int) -> bool:
        return self.in_use == 0 or self.in_use + nbytes <= self.budget_bytes

    def _parse_ended(self, parsing: "asyncio.Future[Any]", nbytes: int) -> None:
        if not parsing.cancelled():
            parsing.exception()  # retrieved here: the caller may have stopped waiting
        self._give(nbytes)

    def _give(self, nbytes: int) -> None:
        self.in_use -= nbytes
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            nbytes, admitted = self._waiting.popleft()
            if admitted.done():
                continue  # its caller went away
            self.in_use += nbytes
            admitted.set_result(None)
