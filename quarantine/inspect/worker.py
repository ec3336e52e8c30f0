"""What runs inside an inspection worker process: limits first, then the inspection.

A worker process imports only quarantine modules (this one and what inspection needs).
Its address space is capped once, when it starts, so a hostile archive that makes the
parser or a decompressor allocate without end gets a MemoryError here instead of the
machine's memory; CPU time is capped per task (the kernel ends the process with SIGXCPU
past it). Python sources already scanned in this process are not parsed again
(:class:`~quarantine.inspect.member_cache.MemberCache`), nor those another worker process
scanned, when the pool shares a store (:class:`~quarantine.inspect.member_store.MemberStore`).
"""

import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import Inspected, inspect_or_run_out
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.member_store import MemberStore, rules_version

_cache = MemberCache()  # one per worker process: each starts empty


@dataclass(frozen=True, slots=True)
class InspectTask:
    path: Path
    filename: str
    limits: Limits
    cpu_seconds: int


@dataclass(frozen=True, slots=True)
class Outcome:
    inspection: Inspected | None  # None: the memory limit was hit


def start_worker(memory_bytes: int, nice: int = 0, shared_cache: Path | None = None) -> None:
    """The pool's initializer: no core files, the memory cap for the process's life, a
    lower CPU priority (``nice`` steps) than the process that serves pages, and the store
    of scans shared with the other worker processes (None: none)."""
    global _cache
    if shared_cache is not None:
        rules_version()  # of the code this process runs, before an upgrade can replace it
        _cache = MemberCache(store=MemberStore(shared_cache))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nice > 0:
        os.nice(nice)
    if memory_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_capped(memory_bytes, hard), hard))


def run_inspection(task: InspectTask) -> Outcome:
    _limit_cpu(task.cpu_seconds)
    try:
        inspection = inspect_or_run_out(task.path, task.filename, task.limits, _cache)
    except MemoryError:
        return Outcome(None)
    _cache.flush()
    return Outcome(inspection)


def _limit_cpu(seconds: int) -> None:
    """Allow this task ``seconds`` of CPU on top of what the process has used so far."""
    if seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (_capped(soft, hard), hard))


def _capped(value: int, hard: int) -> int:
    return value if hard == resource.RLIM_INFINITY else min(value, hard)
