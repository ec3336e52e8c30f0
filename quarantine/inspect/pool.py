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

Free slots go to the waiting inspections by priority (``quarantine.inspect.priority``), not
in arrival order: what a client is about to install first. And with two slots or more,
one is kept from *heavy* work (a file no client is about to install, larger than
``small_file_bytes``: inspecting litellm's 43 MB wheels of other platforms takes 15 s
each), so a likely file never waits for one of those; small ones (a second at most) may
take it, or on two cores the background's vetting would run at half speed. Nothing running
is stopped for a more urgent task.
"""

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from quarantine.inspect.archive.reader import Limits, MiB
from quarantine.inspect.check import Inspected, Inspection, inspect_alone, inspection_failed
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.priority import BACKGROUND, Priority
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.inspect.worker import InspectTask, Outcome, run_inspection, start_worker

log = logging.getLogger(__name__)
RETRIED = "retried once in a fresh worker"
# Larger files nobody is about to install keep off the last free slot. Inspection reads
# some 3 MB of wheel a second on this project's reference machine: a likely file waits
# for a smaller one a second at most.
SMALL_FILE_BYTES = 2 * MiB
MAX_HURRIED = 10_000  # files hurried before they joined the line, remembered at once


class Inspector(Protocol):
    async def inspect_alone(
        self, path: Path, filename: str, limits: Limits, priority: Priority = BACKGROUND
    ) -> Inspected:
        """Inspect the file, to compare with its previous release afterwards."""
        ...

    async def inspect(
        self,
        path: Path,
        filename: str,
        previous: ArchiveSummary | None,
        limits: Limits,
        priority: Priority = BACKGROUND,
    ) -> Inspection:
        """Inspect the file and compare it with ``previous`` (None: its first release)."""
        ...

    def hurry(self, filename: str, priority: Priority) -> None:
        """Inspections of ``filename`` still waiting for a worker wait at ``priority``
        from now on, when that is more urgent (a client asked for its project since)."""
        ...

    def close(self) -> None: ...


class InThreadInspector:
    """Inspection in a thread of this process: for tests and one-shot commands."""

    def __init__(self) -> None:
        self._cache = MemberCache()

    async def inspect_alone(
        self, path: Path, filename: str, limits: Limits, priority: Priority = BACKGROUND
    ) -> Inspected:
        return await asyncio.to_thread(inspect_alone, path, filename, limits, self._cache)

    async def inspect(
        self,
        path: Path,
        filename: str,
        previous: ArchiveSummary | None,
        limits: Limits,
        priority: Priority = BACKGROUND,
    ) -> Inspection:
        return (await self.inspect_alone(path, filename, limits, priority)).against(previous)

    def hurry(self, filename: str, priority: Priority) -> None:
        return None  # nothing waits: every inspection has a thread at once

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

    def __init__(self, limits: WorkerLimits, shared_cache: Path | None = None) -> None:
        self._limits = limits
        self._shared_cache = shared_cache
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
                initargs=(self._limits.memory_bytes, self._limits.nice, self._shared_cache),
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


@dataclass
class _Waiter:
    priority: Priority
    arrival: int
    heavy: bool
    slot: "asyncio.Future[_Slot]"
    filename: str = ""
    size: int = 0

    def rank(self) -> tuple[int, int, int, int]:
        """Most urgent first; among the files clients are about to install, the largest
        first: a resolver's next run needs every one of them, and the longest inspection
        started first ends soonest (on the real index litellm's 43 MB wheel, asked for a
        moment after numpy, waited 25 s behind two of numpy's wheels)."""
        biggest_first = -self.size if self.priority.likely else 0
        return (self.priority.lane, biggest_first, self.priority.order, self.arrival)


class _Dispatch:
    """The idle slots of one event loop, handed to waiting inspections most urgent first;
    heavy ones never take the last slot of two or more."""

    def __init__(self, slots: Sequence[_Slot]) -> None:
        self._idle = list(slots)
        self._size = len(slots)
        self._heavy: set[int] = set()  # the slots running heavy work (their ids)
        self._waiting: list[_Waiter] = []
        self._arrivals = itertools.count()
        # Files hurried before they joined the line (still fetching their previous
        # release, say): they join it at that priority.
        self._hurried: dict[str, Priority] = {}

    async def take(
        self, priority: Priority, heavy: bool, filename: str = "", size: int = 0
    ) -> _Slot:
        hurried = self._hurried.pop(filename, None)
        if hurried is not None and hurried < priority:
            priority, heavy = hurried, heavy and not hurried.likely
        future: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(priority, next(self._arrivals), heavy, future, filename, size)
        self._waiting.append(waiter)
        self._hand_out()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give(future.result())  # handed over as the task was cancelled
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def hurry(self, filename: str, priority: Priority) -> None:
        waiting = [waiter for waiter in self._waiting if waiter.filename == filename]
        for waiter in waiting:
            if priority < waiter.priority:
                waiter.priority = priority
                waiter.heavy = waiter.heavy and not priority.likely  # may take any slot now
        if not waiting:
            if len(self._hurried) >= MAX_HURRIED:
                self._hurried.clear()  # at worst a file waits at the priority it came with
            self._hurried[filename] = min(priority, self._hurried.get(filename, priority))
        self._hand_out()

    def give(self, slot: _Slot) -> None:
        self._idle.append(slot)
        self._heavy.discard(id(slot))
        self._hand_out()

    def _hand_out(self) -> None:
        for waiter in sorted(self._waiting, key=_Waiter.rank):
            if not self._idle:
                return
            if waiter.slot.done():  # cancelled while waiting
                self._waiting.remove(waiter)
                continue
            if waiter.heavy and len(self._heavy) >= max(self._size - 1, 1):
                continue  # the last slot is kept for likely or small files
            self._waiting.remove(waiter)
            slot = self._idle.pop()
            if waiter.heavy:
                self._heavy.add(id(slot))
            waiter.slot.set_result(slot)


class InspectionPool:
    """Inspect files in ``workers`` processes (default: one per core). ``shared_cache``: a
    file (in the data directory) where the processes share the Python sources they
    scanned (:mod:`quarantine.inspect.member_store`); None: each keeps its own."""

    def __init__(
        self,
        workers: int = 0,
        limits: WorkerLimits | None = None,
        work: Callable[[InspectTask], Outcome] = run_inspection,
        small_file_bytes: int = SMALL_FILE_BYTES,
        shared_cache: Path | None = None,
    ) -> None:
        self.limits = limits or WorkerLimits()
        self.size = workers or os.cpu_count() or 1
        self.small_file_bytes = small_file_bytes
        self._work = work  # a module-level function (the child imports it by name)
        self._slots = [_Slot(self.limits, shared_cache) for _ in range(self.size)]
        self._dispatch: _Dispatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def pids(self) -> list[int]:
        """The worker processes running now (a test kills one mid-task)."""
        return [pid for pid in (slot.pid() for slot in self._slots) if pid is not None]

    async def inspect(
        self,
        path: Path,
        filename: str,
        previous: ArchiveSummary | None,
        limits: Limits,
        priority: Priority = BACKGROUND,
    ) -> Inspection:
        return (await self.inspect_alone(path, filename, limits, priority)).against(previous)

    async def inspect_alone(
        self, path: Path, filename: str, limits: Limits, priority: Priority = BACKGROUND
    ) -> Inspected:
        task = InspectTask(path, filename, limits, self.limits.cpu_seconds)
        size = self._size(path)
        heavy = not priority.likely and size > self.small_file_bytes
        dispatch = self._current_dispatch()
        asked = time.monotonic()
        slot = await dispatch.take(priority, heavy, filename, size)
        started = time.monotonic()
        try:
            try:
                inspected = await self._attempt(slot, task)
                # When each inspection waited and ran: what a slow first use is made of.
                log.info(
                    "inspected %s in %.1f s after %.1f s waiting (%s)",
                    filename,
                    time.monotonic() - started,
                    started - asked,
                    priority.lane.name.lower(),
                )
                return inspected
            except _Failed as first:
                # A failure replaced the slot's process: the retry runs in a fresh one.
                log.warning("inspecting %s: %s; retrying in a fresh worker", filename, first)
                try:
                    return await self._attempt(slot, task)
                except _Failed as second:
                    return inspection_failed(f"{first}; {RETRIED}: {second}")
        finally:
            dispatch.give(slot)

    def hurry(self, filename: str, priority: Priority) -> None:
        if self._dispatch is not None:
            self._dispatch.hurry(filename, priority)

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0  # the worker reports the missing file as it does any broken one

    async def _attempt(self, slot: _Slot, task: InspectTask) -> Inspected:
        outcome = await slot.run(self._work, task)
        if outcome.inspection is None:
            slot.discard()  # a process that ran out of memory is not trusted further
            memory = self.limits.memory_bytes // MiB
            raise _Failed(f"worker hit its memory limit ({memory} MiB)")
        return outcome.inspection

    def _current_dispatch(self) -> _Dispatch:
        """The idle slots, for this event loop (tests run several loops)."""
        loop = asyncio.get_running_loop()
        if self._dispatch is None or self._loop is not loop:
            self._dispatch, self._loop = _Dispatch(self._slots), loop
        return self._dispatch

    def close(self) -> None:
        for slot in self._slots:
            slot.discard()
