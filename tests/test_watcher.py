"""The watcher gives way to requests: it backs off while the event loop is congested."""

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from quarantine.clock import SystemClock
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.vetting.watcher import MAX_BACKOFFS, Watcher


class _NoSource:
    """The watcher is never asked to look here; only its manners are."""


def _watcher(tmp_path: Path) -> Watcher:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    return Watcher(ledger, _NoSource(), SystemClock(), timedelta(minutes=10))  # type: ignore[arg-type]


def test_an_idle_loop_is_not_waited_on(tmp_path: Path) -> None:
    # 0 backoffs, or one if the machine itself paused this process for a millisecond
    assert asyncio.run(_watcher(tmp_path).yield_to_serving()) <= 1


def test_a_congested_loop_makes_the_watcher_back_off_then_go_on(tmp_path: Path) -> None:
    watcher = _watcher(tmp_path)

    async def congested() -> int:
        stop = asyncio.Event()

        async def request_work() -> None:  # stands in for requests holding the loop
            while not stop.is_set():
                time.sleep(0.003)  # blocks the loop, as synchronous work does
                await asyncio.sleep(0)

        busy = asyncio.create_task(request_work())
        await asyncio.sleep(0)
        try:
            return await watcher.yield_to_serving()
        finally:
            stop.set()
            await busy

    backoffs = asyncio.run(congested())
    assert 1 <= backoffs <= MAX_BACKOFFS  # it waited, and it still goes on in the end
