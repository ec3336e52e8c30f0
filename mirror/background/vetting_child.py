"""The vetting side in a child process that ``lazaretto serve`` starts and supervises.

With ``vetting_worker = "child"`` (the default) promotion, vetting, watching and
notifications run as ``lazaretto work`` runs them, in a process of their own: they never
hold the server's GIL (a page is answered in a millisecond while thousands of files are
vetted) and their records, histories and caches never grow the server's memory.
``lazaretto serve`` is still one command.

The two share the ledger and the blob store, as with a separate worker, plus a pipe
(``mirror.background.demand_pipe``) on which the server names the projects its looks saw new held
files of, and whether a client asked for them: an asked project is vetted before the
backlog, as in one process. The child is started again when it dies (a second later,
backing off to a minute while it keeps dying) and told the projects asked for lately.
It stops when the server closes the pipe, and so by itself when the server is gone.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections import OrderedDict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from packaging.utils import NormalizedName

from mirror.background.demand_pipe import DemandWriter
from mirror.settings import Settings

log = logging.getLogger(__name__)

RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
HEALTHY_SECONDS = 60.0  # a child that lived this long starts the back-off anew
STOP_WAIT_SECONDS = 20.0  # for a clean stop (its inspection workers too), then SIGTERM
KILL_WAIT_SECONDS = 5.0  # after SIGTERM, then SIGKILL
ASKED_REMEMBERED = 200  # projects a restarted child is told clients asked for


class VettingChild:
    """Starts the child, restarts it when it dies, stops it with the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")  # no copy of the server's state
        self._process: BaseProcess | None = None
        self._demand: DemandWriter | None = None
        self._asked: OrderedDict[NormalizedName, None] = OrderedDict()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def ask(self, name: NormalizedName, asked: bool) -> None:
        """A look saw new held files of ``name`` (asked: for a client waiting now)."""
        if asked:
            self._asked.pop(name, None)
            self._asked[name] = None
            while len(self._asked) > ASKED_REMEMBERED:
                self._asked.popitem(last=False)
        if self._demand is not None:
            self._demand.send(name, asked)

    async def run_forever(self) -> None:
        """Keep a child running until cancelled; then stop it cleanly."""
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST_SECONDS
        try:
            while True:
                started = loop.time()
                process = self._start()
                code = await exit_code(process)
                self._drop_pipe()
                kill_group(process.pid)  # inspection workers a crash left behind
                if loop.time() - started >= HEALTHY_SECONDS:
                    delay = RESTART_FIRST_SECONDS
                log.error(
                    "the vetting process %s exited (code %s); starting it again in %.0f s",
                    process.pid,
                    code,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)
        finally:
            self._drop_pipe()  # here on the loop, where requests send: never mid-send
            await asyncio.shield(asyncio.to_thread(self._stop))

    def _start(self) -> BaseProcess:
        reading, writing = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child_main,
            args=(self._settings, reading),
            name="lazaretto-vetting",
        )
        process.start()
        reading.close()  # the child's now: it sees an end of file once ``writing`` closes
        self._process = process
        self._demand = DemandWriter(os.dup(writing.fileno()))  # it owns the copy
        writing.close()
        self.starts += 1
        log.info("vetting process %s started", process.pid)
        for name in self._asked:  # a successor ranks what clients asked for lately first
            self._demand.send(name, True)
        return process

    def _drop_pipe(self) -> None:
        if self._demand is not None:
            self._demand.close()
            self._demand = None

    def _stop(self) -> None:
        """Close the pipe (a clean stop), then SIGTERM, then SIGKILL; in a thread."""
        self._drop_pipe()
        process = self._process
        if process is None:
            return
        process.join(STOP_WAIT_SECONDS)
        if process.exitcode is None:
            log.warning("vetting process %s did not stop in time: terminating", process.pid)
            process.terminate()
            process.join(KILL_WAIT_SECONDS)
        if process.exitcode is None:
            process.kill()
            process.join()
        kill_group(process.pid)
        self._process = None


async def exit_code(process: BaseProcess) -> int | None:
    """Wait for ``process`` to exit, without a thread: its sentinel becomes readable."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(process.sentinel, readable)
    try:
        await exited
    finally:
        loop.remove_reader(process.sentinel)
    process.join()
    return process.exitcode


def kill_group(pgid: int | None) -> None:
    """End whatever is left of the child's process group (its inspection workers, when
    it died without stopping them)."""
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def child_main(settings: Settings, demand: Connection) -> None:
    """The child's entry point (spawned: nothing is inherited but what is passed)."""
    # A group of its own, which its inspection workers join: when the child dies
    # without stopping them, the server ends them with the group.
    os.setpgid(0, 0)
    # In a group of its own the child gets no Ctrl-C from a terminal; and if one comes,
    # the server stops the child itself, after its own requests, by closing the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if settings.log_format == "json":
        from mirror.http.log_format import configure_logging

        configure_logging(settings)
    else:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s[vetting]: %(message)s",
        )
    asyncio.run(_run_child(settings, demand))


async def _run_child(settings: Settings, demand: Connection) -> None:
    from mirror.background.worker import run_worker

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await run_worker(settings, stop, demand_fd=demand.fileno())
