"""Inspection in a small pool of worker processes, each task under limits.

Parsing and decompressing are CPU work: in threads they share one interpreter (one core,
and CPython gh-106905: ``ast.parse`` in concurrent threads raises ``SystemError: AST
constructor recursion depth mismatch`` on 3.11), and a hostile archive could take the
server's memory with it. Here each of N slots is a one-process executor started with the
``spawn`` method (never ``fork``: the server has threads), so the task that broke a
process is known exactly and only its slot is replaced. Not ``forkserver``: there the exit
status comes down a pipe that the executor's own thread reads too, and the loser of that
race sees status 255 instead of the signal (a CPU-time limit read as a plain crash);
a spawned worker is this process's child, and ``waitpid`` gives the status to one reader
while the other learns nothing. Limits: address space per process
and CPU time per task (set in the child, see ``inspect_worker``), wall-clock time per task
(from here: a process stuck past it is killed).

A failure the mirror caused (a crashed worker, a limit hit) is retried once in a fresh
worker before it counts; then the file gets an ``inspection-error`` that says which.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from quarantine.inspect.archive.reader import Limits, MiB
from quarantine.inspect.check import Inspection, inspect_file, inspection_error
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.inspect.worker import InspectTask, Outcome, run_inspection, start_worker

log = logging.getLogger(__name__)
RETRIED = "retried once in a fresh worker"


class Inspector(Protocol):
    async def inspect(
        self, path: Path, filename: str, previous: ArchiveSummary | None, limits: Limits
    ) -> Inspection: ...

    def close(self) -> None: ...


class InThreadInspector:
    """Inspection in a thread of this process: for tests and one-shot commands."""

    def __init__(self) -> None:
        self._cache = MemberCache()

    async def inspect(
        self, path: Path, filename: str, previous: ArchiveSummary | None, limits: Limits
    ) -> Inspection:
        return await asyncio.to_thread(inspect_file, path, filename, previous, limits, self._cache)

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """What one inspection may use. 0 turns a limit off."""

    memory_bytes: int = 1024 * MiB  # address space of a worker process
    cpu_seconds: int = 120  # CPU time of one task
    wall_seconds: float = 600.0  # wall-clock time of one task, seen from here
    nice: int = 0  # steps of CPU priority below the process that starts the workers


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start worker processes without the program's main module.

    multiprocessing runs the parent's main script again in every child it starts this
    way (``lazaretto``'s would import the serving side; a script without a main guard
    would start a pool of its own). A worker needs nothing from it, so while a process
    starts, the main module it sees is an empty one. Processes start on this thread, in
    ``submit``, and nothing else reads ``__main__`` meanwhile.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Failed(Exception):
    """One attempt failed because of the mirror (the worker), not because of the file."""


def _exit_status(process: BaseProcess, patience: float = 5.0) -> int | None:
    """The dead worker's exit status, or None if it never arrives within ``patience``.

    The executor's own thread reaps the same process; when it wins the race our ``waitpid``
    finds no child and ``exitcode`` stays None until that thread has stored the status,
    so asking once is not enough.
    """
    deadline = time.monotonic() + patience
    process.join(patience)
    while (code := process.exitcode) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return code


class _Slot:
    """One worker process, replaced whenever a task breaks it."""

    def __init__(self, limits: WorkerLimits) -> None:
        self._limits = limits
        self._executor: ProcessPoolExecutor | None = None
        self._process: BaseProcess | None = None

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def run(self, work: Callable[[InspectTask], Outcome], task: InspectTask) -> Outcome:
        """Run ``task``; :class:`_Failed` (and the slot replaced) when the worker fails it."""
        try:
            future = self._submit(work, task)
        except BrokenProcessPool:
            # The worker died while idle (killed, say): not this task's doing, and the
            # executor refuses all work from now on, so start a fresh one.
            log.warning("an idle inspection worker died; starting a fresh one")
            self.discard()
            future = self._submit(work, task)
        wall = self._limits.wall_seconds or None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=wall)
        except TimeoutError:
            self.discard()
            raise _Failed(f"worker took longer than {wall:g} s (wall clock)") from None
        except BrokenProcessPool:
            raise _Failed(await self._death()) from None

    def _submit(self, work: Callable[[InspectTask], Outcome], task: InspectTask) -> Future[Outcome]:
        executor = self._ready()
        with _main_module_hidden():  # submit starts the process when there is none
            future = executor.submit(work, task)
        self._process = next(iter(executor._processes.values()), None)
        return future

    def _ready(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=start_worker,
                initargs=(self._limits.memory_bytes, self._limits.nice),
            )
        return self._executor

    async def _death(self) -> str:
        process = self._process
        self.discard()
        code = None
        if process is not None:
            code = await asyncio.to_thread(_exit_status, process)
        if code is not None and -code == signal.SIGXCPU:
            return f"worker hit its CPU time limit ({self._limits.cpu_seconds} s)"
        if code is not None and code < 0:
            return f"worker crashed (signal {-code})"
        return f"worker crashed (exit status {code})"

    def discard(self) -> None:
        """Kill the process (if still there) and start a fresh one for the next task."""
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor, self._process = None, None


class InspectionPool:
    """Inspect files in ``workers`` processes (default: one per core)."""

    def __init__(
        self,
        workers: int = 0,
        limits: WorkerLimits | None = None,
        work: Callable[[InspectTask], Outcome] = run_inspection,
    ) -> None:
        self.limits = limits or WorkerLimits()
        self.size = workers or os.cpu_count() or 1
        self._work = work  # a module-level function (the child imports it by name)
        self._slots = [_Slot(self.limits) for _ in range(self.size)]
        self._free: asyncio.Queue[_Slot] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def pids(self) -> list[int]:
        """The worker processes running now (a test kills one mid-task)."""
        return [pid for pid in (slot.pid() for slot in self._slots) if pid is not None]

    async def inspect(
        self, path: Path, filename: str, previous: ArchiveSummary | None, limits: Limits
    ) -> Inspection:
        task = InspectTask(path, filename, previous, limits, self.limits.cpu_seconds)
        free = self._free_slots()
        slot = await free.get()
        try:
            try:
                return await self._attempt(slot, task)
            except _Failed as first:
                # A failure replaced the slot's process: the retry runs in a fresh one.
                log.warning("inspecting %s: %s; retrying in a fresh worker", filename, first)
                try:
                    return await self._attempt(slot, task)
                except _Failed as second:
                    return inspection_error(f"{first}; {RETRIED}: {second}")
        finally:
            free.put_nowait(slot)

    async def _attempt(self, slot: _Slot, task: InspectTask) -> Inspection:
        outcome = await slot.run(self._work, task)
        if outcome.inspection is None:
            slot.discard()  # a process that ran out of memory is not trusted further
            memory = self.limits.memory_bytes // MiB
            raise _Failed(f"worker hit its memory limit ({memory} MiB)")
        return outcome.inspection

    def _free_slots(self) -> asyncio.Queue[_Slot]:
        """The idle slots, as a queue of this event loop (tests run several loops)."""
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:
            self._free, self._loop = asyncio.Queue(), loop
            for slot in self._slots:
                self._free.put_nowait(slot)
        return self._free

    def close(self) -> None:
        for slot in self._slots:
            slot.discard()
