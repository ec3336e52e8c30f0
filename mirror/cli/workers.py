"""``lazaretto serve --workers N``: N serving processes on one port, the background side once.

The supervisor binds the port itself, once: a port in use is one error, reported once, and
a serving process started again after a crash finds the socket still open (no client is
refused meanwhile). Each serving process is spawned with that socket and accepts on it;
the kernel hands each new connection to one of them. A shared socket rather than
SO_REUSEPORT: with that, any process of the same user could bind the port beside ours and
take a share of the connections, and each process would report its own bind error.

The background side (promotion, vetting, watching, notifications) runs once, in the one
vetting process the supervisor keeps (``vetting_worker = "child"``); it still takes the
leader lease, so a second host or a ``lazaretto work`` on the same ledger stands by. Every
serving process writes its demand signal (``mirror.background.demand_pipe``) to one pipe
that process reads: a line is at most PIPE_BUF bytes, so the writes of several processes
never interleave. With ``"in-process"`` each serving process vets and the lease lets one
of them work; with ``"separate"`` a ``lazaretto work`` beside them does it.

Every child is started again when it dies (a second later, backing off to a minute while it
keeps dying). SIGTERM or SIGINT stops the serving processes (each finishes its requests),
then the vetting process, then the supervisor.
"""

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from mirror.background.demand_pipe import DemandWriter
from mirror.background.vetting_child import (
    HEALTHY_SECONDS,
    KILL_WAIT_SECONDS,
    RESTART_FIRST_SECONDS,
    RESTART_MAX_SECONDS,
    STOP_WAIT_SECONDS,
    child_main,
    exit_code,
    kill_group,
)
from mirror.errors import ConfigError
from mirror.ledger_backend import open_ledger
from mirror.settings import Settings

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's own default


def supervise(settings: Settings) -> None:
    """Run ``settings.workers`` serving processes until SIGTERM or SIGINT."""
    listener = listen(settings.host, settings.port)
    try:
        # Created (or migrated) here, once, not by N processes racing to do it.
        open_ledger(settings).close()
        asyncio.run(_supervise(settings, listener))
    finally:
        listener.close()


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as error:
        cause = error.strerror or type(error).__name__
        raise ConfigError(f"port: cannot listen on {host}:{port}: {cause}") from error


async def _supervise(settings: Settings, listener: socket.socket) -> None:
    context = multiprocessing.get_context("spawn")  # no copy of the supervisor's state
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    reading: Connection | None = None
    writing: Connection | None = None
    if settings.vetting_worker == "child":
        # Both ends stay open here: a restarted vetting process reads the same pipe, a
        # restarted serving process writes to it.
        reading, writing = context.Pipe(duplex=False)

    def serving(index: int) -> BaseProcess:
        return context.Process(
            target=_serving_main,
            args=(settings, listener, writing),
            name=f"lazaretto-serve-{index}",
        )

    def vetting_process() -> BaseProcess:
        return context.Process(
            target=child_main, args=(settings, reading), name="lazaretto-vetting"
        )

    servers = [
        asyncio.create_task(
            _keep(functools.partial(serving, i), f"serving process {i}", group=False)
        )
        for i in range(1, settings.workers + 1)
    ]
    vetting = None
    if reading is not None:
        vetting = asyncio.create_task(_keep(vetting_process, "vetting process", group=True))
    await stop.wait()
    log.info("stopping %d serving processes", len(servers))
    await _cancel(servers)
    if vetting is not None:
        await _cancel([vetting])
    for end in (reading, writing):
        if end is not None:
            end.close()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _keep(make: Callable[[], BaseProcess], what: str, *, group: bool) -> None:
    """Keep one child running until cancelled, then stop it. ``group``: the child leads a
    process group of its own (the vetting process and its inspection workers)."""
    loop = asyncio.get_running_loop()
    delay = RESTART_FIRST_SECONDS
    process: BaseProcess | None = None
    try:
        while True:
            started = loop.time()
            process = make()
            process.start()
            log.info("%s started (pid %s)", what, process.pid)
            code = await exit_code(process)
            if group:
                kill_group(process.pid)  # what a crash left behind
            if loop.time() - started >= HEALTHY_SECONDS:
                delay = RESTART_FIRST_SECONDS
            log.error(
                "%s (pid %s) exited (code %s); starting it again in %.0f s",
                what,
                process.pid,
                code,
                delay,
            )
            process = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)
    finally:
        if process is not None:
            await asyncio.shield(asyncio.to_thread(_stop, process, group=group))


def _stop(process: BaseProcess, *, group: bool) -> None:
    """SIGTERM (a clean stop), then SIGKILL; in a thread."""
    process.terminate()
    process.join(STOP_WAIT_SECONDS)
    if process.exitcode is None:
        log.warning("pid %s did not stop in time: killing it", process.pid)
        process.kill()
        process.join(KILL_WAIT_SECONDS)
    if group:
        kill_group(process.pid)


def _serving_main(settings: Settings, listener: socket.socket, demand: Connection | None) -> None:
    """A serving process's entry point (spawned: nothing is inherited but what is passed)."""
    from mirror.cli.serving import run_server

    writer = None
    if demand is not None:
        writer = DemandWriter(os.dup(demand.fileno()))
        demand.close()
        # The supervisor's vetting process vets for this one: no child of its own.
        settings = replace(settings, vetting_worker="separate")
    run_server(settings, listener=listener, demand=writer, name_process=True)
