"""The leader's work (promotion and vetting, watching, notifying) runs in one process only.

Each process that could do it (a vetting child, ``lazaretto work``, a server vetting
in-process) tries for the ``leader`` lease (``quarantine.ledger.lease``) every
``interval_seconds``; the one that holds it runs the work and renews it as often, the
others stand by. A leader that dies frees the lease with its connection (or its flock),
and a standby takes over at its next try, within about ``interval_seconds``.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from quarantine.ledger.lease import Lease

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0

Work = Callable[[], list[Coroutine[Any, Any, None]]]


class Leadership:
    def __init__(
        self, lease: Lease, work: Work, interval_seconds: float = INTERVAL_SECONDS
    ) -> None:
        self._lease = lease
        self._work = work
        self._interval = interval_seconds
        self.leading = False

    async def run_forever(self) -> None:
        told_standby = False
        try:
            while True:
                if await asyncio.to_thread(self._lease.acquire):
                    told_standby = False
                    await self._lead()
                elif not told_standby:
                    log.info("standing by: another process holds the %s lease", self._lease.name)
                    told_standby = True
                await asyncio.sleep(self._interval)
        finally:
            await asyncio.to_thread(self._lease.close)

    async def _lead(self) -> None:
        log.info(
            "took the %s lease: promotion, vetting, watching and notifications run here",
            self._lease.name,
        )
        tasks = [asyncio.create_task(work) for work in self._work()]
        self.leading = True
        try:
            while True:
                await asyncio.sleep(self._interval)
                if not await asyncio.to_thread(self._lease.renew):
                    break
            log.warning("lost the %s lease: standing by", self._lease.name)
        finally:
            self.leading = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
