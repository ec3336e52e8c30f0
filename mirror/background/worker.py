"""``lazaretto work``: promotion, vetting, watching and notifications, without serving.

With ``vetting_worker = "separate"`` the server only answers requests (and keeps its
malware feeds fresh, since its first looks decide with them); this process does the rest
on the same ledger and blob store. The two meet only in the ledger: the server's looks
record new held files, which wake the next promotion round here, and the promotions made
here reach the server's pages through its ledger follower (at once on PostgreSQL, which
tells of each change; within ``ledger_poll_seconds`` otherwise).

The vetting child ``lazaretto serve`` starts (``vetting_worker = "child"``,
``mirror.background.vetting_child``) runs this too, with the server's demand signal on a pipe: the
projects clients asked for go before the backlog, as in one process.
"""

import asyncio
import contextlib
import logging
import signal

from mirror.app import (
    attach_notifier,
    build_services,
    close_services,
    follow_config,
    open_services,
    start_background,
)
from mirror.background.demand_pipe import DemandReader
from mirror.memory import MemoryTrim
from mirror.settings import Settings

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, demand_fd: int | None = None
) -> None:
    """Run until ``stop`` is set, or SIGINT / SIGTERM when none is given. ``demand_fd``:
    the server's demand signal (``mirror.background.demand_pipe``); its end also stops the
    worker."""
    services = build_services(settings)
    attach_notifier(services)
    stop = stop or _stop_on_signals()
    demand = None
    if demand_fd is not None:
        demand = DemandReader(demand_fd, services.promoter.wake, stop.set)
    await open_services(services, role="work")
    try:
        start_background(services, vetting=True)
        if demand is not None:
            demand.start()
        # A server's look recorded new held files, or an admin decided: a round soon.
        follow = services.catalog.follow_ledger(
            settings.ledger_poll_seconds, on_change=services.promoter.wake
        )
        services.tasks.append(asyncio.create_task(follow))
        services.tasks.append(asyncio.create_task(MemoryTrim().run_forever()))
        follow_config(services, "work")
        log.info("vetting worker running on %s", settings.data_dir)
        await stop.wait()
    finally:
        if demand is not None:
            demand.stop()
        await close_services(services)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on this platform
            loop.add_signal_handler(number, stop.set)
    return stop
