"""Inspection in worker processes: the same evidence, crashes and limits retried once.

Real worker processes, real archives. The hooks below run inside a worker (the worker
imports them by name, as it imports the real task) to stand still until the test kills
the process, which is the only way a test can know it dies mid-task.
"""

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from quarantine.inspect.archive.reader import Limits, MiB
from quarantine.inspect.check import INSPECTION_ERROR, Inspection, inspect_file
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.pool import InspectionPool, WorkerLimits, _exit_status
from quarantine.inspect.priority import Lane, Priority
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.inspect.worker import InspectTask, Outcome, run_inspection
from support.dists import Dist, build_sdist, build_wheel

PAYLOAD = 'import base64\nexec(base64.b64decode("cHJpbnQoJ2hpJyk="))\n'
SETUP = (
    "import subprocess, urllib.request\nfrom setuptools import setup\n"
    'urllib.request.urlopen("https://example.invalid/x")\nsetup()\n'
)
HANG = "hang"  # while this file is beside the archive, the hook stands still
PIDS = "pids"  # the hook notes its process here before it stands still
STARTS = "starts"  # _hold_while_marked notes each file here as its inspection starts


def _hang_when_marked(task: InspectTask) -> Outcome:
    if (task.path.parent / HANG).exists():
        with (task.path.parent / PIDS).open("a") as notes:
            notes.write(f"{os.getpid()}\n")
        time.sleep(120)
    return run_inspection(task)


def _hold_while_marked(task: InspectTask) -> Outcome:
    """Note the start, then stand still while ``<file>.hold`` is beside the file."""
    with (task.path.parent / STARTS).open("a") as notes:
        notes.write(f"{task.filename}\n")
    deadline = time.monotonic() + 120
    while (task.path.parent / f"{task.filename}.hold").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return run_inspection(task)


def _report_modules(task: InspectTask) -> Outcome:
    (task.path.parent / "modules").write_text("\n".join(sorted(sys.modules)))
    return run_inspection(task)


def _corpus(folder: Path) -> list[tuple[Path, Dist]]:
    dists = [
        build_wheel("demo", "1.0"),
        build_wheel("demo", "1.1", modules={"demo/__init__.py": PAYLOAD}),
        build_sdist("demo", "1.2", modules={"setup.py": SETUP}),
        build_wheel(
            "demo",
            "1.3",
            modules={"demo/__init__.py": "x = eval(input())\n"},
            extra_files={"demo.pth": b"import os\n"},
        ),
    ]
    folder.mkdir(exist_ok=True)
    placed = []
    for dist in dists:
        (folder / dist.filename).write_bytes(dist.data)
        placed.append((folder / dist.filename, dist))
    return placed


def _previous(folder: Path) -> ArchiveSummary:
    older = build_wheel("demo", "0.9")
    (folder / older.filename).write_bytes(older.data)
    summary = inspect_file(folder / older.filename, older.filename, None).summary
    assert summary is not None
    return summary


def test_workers_give_exactly_the_evidence_of_inspection_in_this_process(tmp_path: Path) -> None:
    placed = _corpus(tmp_path)
    previous = _previous(tmp_path)
    pool = InspectionPool(2)

    async def both() -> list[Inspection]:
        jobs = [pool.inspect(path, d.filename, previous, Limits()) for path, d in placed]
        return list(await asyncio.gather(*jobs))

    try:
        found = asyncio.run(both())
    finally:
        pool.close()
    expected = [inspect_file(path, d.filename, previous) for path, d in placed]
    assert found == expected
    assert {f.rule for inspection in found for f in inspection.findings} >= {
        "exec-encoded-payload",
        "setup-network",
    }


def test_a_worker_imports_only_the_vetting_side(tmp_path: Path) -> None:
    ((path, dist),) = _corpus(tmp_path)[:1]
    pool = InspectionPool(1, work=_report_modules)
    try:
        asyncio.run(pool.inspect(path, dist.filename, None, Limits()))
    finally:
        pool.close()
    modules = set((tmp_path / "modules").read_text().split())
    assert "quarantine.inspect.check" in modules
    assert not {"mirror", "starlette", "aiohttp", "uvicorn"} & modules


def _killing(
    pool: InspectionPool, folder: Path, path: Path, filename: str, kills: int
) -> Inspection:
    """Inspect ``path``, killing the worker that has it ``kills`` times (SIGKILL)."""

    async def run() -> Inspection:
        job = asyncio.create_task(pool.inspect(path, filename, None, Limits()))
        for kill in range(kills):
            while len(_pids(folder)) <= kill:
                assert not job.done()
                await asyncio.sleep(0.05)
            if kill == kills - 1:
                (folder / HANG).unlink()  # whatever runs next runs through
            os.kill(_pids(folder)[kill], signal.SIGKILL)
        return await job

    return asyncio.run(run())


def _pids(folder: Path) -> list[int]:
    notes = folder / PIDS
    return [int(line) for line in notes.read_text().split()] if notes.exists() else []


def test_a_worker_killed_twice_mid_task_is_an_inspection_error_that_says_so(
    tmp_path: Path,
) -> None:
    (path, dist), (other, second) = _corpus(tmp_path)[:2]
    (tmp_path / HANG).touch()
    pool = InspectionPool(1, work=_hang_when_marked)
    try:
        broken = _killing(pool, tmp_path, path, dist.filename, kills=2)
        after = asyncio.run(pool.inspect(other, second.filename, None, Limits()))
    finally:
        pool.close()
    (finding,) = broken.findings
    assert finding.rule == INSPECTION_ERROR
    assert finding.message == (
        "worker crashed (signal 9); retried once in a fresh worker: worker crashed (signal 9)"
    )
    first, retry = _pids(tmp_path)
    assert first != retry  # a fresh worker
    assert after == inspect_file(other, second.filename, None)  # the pool goes on


def test_a_worker_killed_once_is_retried_and_the_retry_counts(tmp_path: Path) -> None:
    ((path, dist),) = _corpus(tmp_path)[1:2]
    (tmp_path / HANG).touch()
    pool = InspectionPool(1, work=_hang_when_marked)
    try:
        found = _killing(pool, tmp_path, path, dist.filename, kills=1)
    finally:
        pool.close()
    assert found == inspect_file(path, dist.filename, None)


def _heavy_wheel(folder: Path, members: int) -> tuple[Path, str]:
    """Sources the parser must build big trees for: within every archive limit."""
    body = "exec(x)\na = [" + "1," * 300_000 + "]\n"
    modules = {f"heavy/m{index}.py": f"# {index}\n{body}" for index in range(members)}
    dist = build_wheel("heavy", "1.0", modules=modules)
    (folder / dist.filename).write_bytes(dist.data)
    return folder / dist.filename, dist.filename


def test_a_cpu_time_limit_hit_is_an_inspection_error_after_one_retry(tmp_path: Path) -> None:
    path, filename = _heavy_wheel(tmp_path, members=30)
    pool = InspectionPool(1, WorkerLimits(cpu_seconds=1))
    try:
        found = asyncio.run(pool.inspect(path, filename, None, Limits()))
    finally:
        pool.close()
    assert [f.message for f in found.findings] == [
        "worker hit its CPU time limit (1 s); retried once in a fresh worker: "
        "worker hit its CPU time limit (1 s)"
    ]


class _ReapedElsewhere:
    """A dead worker whose status another thread (the executor's) is still storing."""

    def __init__(self, misses: int) -> None:
        self._misses = misses

    def join(self, timeout: float | None = None) -> None:
        return None

    @property
    def exitcode(self) -> int | None:
        if self._misses:
            self._misses -= 1
            return None
        return -signal.SIGXCPU


def test_the_exit_status_is_waited_for_when_the_executor_reaps_the_worker_first() -> None:
    # CI once saw "worker crashed (exit status None)" for a CPU-limit kill: asking once lost
    # the race with the executor's thread reaping the same process.
    process = _ReapedElsewhere(misses=3)
    assert _exit_status(process, patience=5) == -signal.SIGXCPU  # type: ignore[arg-type]


def test_an_exit_status_that_never_arrives_gives_up_after_the_patience() -> None:
    process = _ReapedElsewhere(misses=10**9)
    assert _exit_status(process, patience=0.05) is None  # type: ignore[arg-type]


def test_a_memory_limit_hit_is_an_inspection_error_after_one_retry(tmp_path: Path) -> None:
    path, filename = _heavy_wheel(tmp_path, members=1)
    pool = InspectionPool(1, WorkerLimits(memory_bytes=160 * MiB))
    try:
        found = asyncio.run(pool.inspect(path, filename, None, Limits()))
    finally:
        pool.close()
    assert [f.message for f in found.findings] == [
        "worker hit its memory limit (160 MiB); retried once in a fresh worker: "
        "worker hit its memory limit (160 MiB)"
    ]


def test_a_wall_clock_limit_kills_a_stuck_worker(tmp_path: Path) -> None:
    ((path, dist),) = _corpus(tmp_path)[:1]
    (tmp_path / HANG).touch()
    # 5 s, not 1: a fresh worker on a loaded machine can take a second to start, and must
    # reach the task (writing its pid) before the limit for the test to see two workers.
    pool = InspectionPool(1, WorkerLimits(wall_seconds=5), work=_hang_when_marked)
    try:
        found = asyncio.run(pool.inspect(path, dist.filename, None, Limits()))
    finally:
        pool.close()
    assert [f.message for f in found.findings] == [
        "worker took longer than 5 s (wall clock); retried once in a fresh worker: "
        "worker took longer than 5 s (wall clock)"
    ]
    assert len(set(_pids(tmp_path))) == 2


def test_identical_members_of_a_release_are_scanned_once(tmp_path: Path) -> None:
    shared = {f"big/mod{index}.py": f"VALUE_{index} = eval(input())\n" for index in range(20)}
    tags = ("cp312-cp312-manylinux_2_17_x86_64", "cp312-cp312-win_amd64")
    wheels = [build_wheel("big", "2.0", modules=shared, tag=tag) for tag in tags]
    cache = MemberCache()
    found = []
    for wheel in wheels:
        (tmp_path / wheel.filename).write_bytes(wheel.data)
        found.append(inspect_file(tmp_path / wheel.filename, wheel.filename, None, cache=cache))
        assert cache.scanned == len(shared)  # the second wheel's sources: none parsed again
    uncached = [inspect_file(tmp_path / w.filename, w.filename, None) for w in wheels]
    assert found == uncached
    assert all(inspection.findings for inspection in found)  # eval() is reported


def test_a_worker_killed_while_idle_is_replaced_for_the_next_inspection(tmp_path: Path) -> None:
    (path, dist), (other, second) = _corpus(tmp_path)[:2]
    pool = InspectionPool(1)

    async def kill_the_idle_worker_between_two() -> list[Inspection]:
        found = [await pool.inspect(path, dist.filename, None, Limits())]
        (idle,) = pool.pids()
        os.kill(idle, signal.SIGKILL)
        while _alive(idle):  # gone once its parent, the fork server, has reaped it
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # and the executor has seen it go: it is broken now
        found.append(await pool.inspect(other, second.filename, None, Limits()))
        found.append(await pool.inspect(path, dist.filename, None, Limits()))
        return found

    try:
        found = asyncio.run(kill_the_idle_worker_between_two())
    finally:
        pool.close()
    expected = [inspect_file(p, d.filename, None) for p, d in [(path, dist), (other, second)]]
    assert found == [*expected, expected[0]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_retry_runs_in_a_fresh_worker_not_in_another_busy_one(tmp_path: Path) -> None:
    (path, dist), (other, second) = _corpus(tmp_path)[:2]
    pool = InspectionPool(2, work=_hang_when_marked)

    async def start_both_workers() -> None:
        jobs = [
            pool.inspect(p, d.filename, None, Limits()) for p, d in [(path, dist), (other, second)]
        ]
        await asyncio.gather(*jobs)

    try:
        asyncio.run(start_both_workers())
        started = set(pool.pids())
        (tmp_path / HANG).touch()
        broken = _killing(pool, tmp_path, path, dist.filename, kills=2)
    finally:
        pool.close()
    assert len(started) == 2
    assert broken.findings[0].rule == INSPECTION_ERROR
    first, retry = _pids(tmp_path)
    assert first in started and retry not in started


def _held_wheels(folder: Path, names: list[str]) -> dict[str, Path]:
    """A small wheel per name, each held in its worker (``_hold_while_marked``) until its
    mark is removed."""
    paths = {}
    for index, name in enumerate(names):
        dist = build_wheel("demo", f"2.{index}")
        (folder / dist.filename).write_bytes(dist.data)
        (folder / f"{dist.filename}.hold").touch()
        paths[name] = folder / dist.filename
    return paths


def _starts(folder: Path) -> list[str]:
    notes = folder / STARTS
    return notes.read_text().split() if notes.exists() else []


async def _started(folder: Path, paths: list[Path]) -> list[str]:
    """The files started so far, once ``paths`` all have (a test that fails hangs here)."""
    async with asyncio.timeout(60):
        while not {path.name for path in paths} <= set(_starts(folder)):
            await asyncio.sleep(0.02)
    return _starts(folder)


def _release(paths: dict[str, Path]) -> None:
    for path in paths.values():
        path.with_name(f"{path.name}.hold").unlink(missing_ok=True)


def _inspecting(pool: InspectionPool, path: Path, lane: Lane, order: int) -> "asyncio.Task[object]":
    return asyncio.create_task(pool.inspect_alone(path, path.name, Limits(), Priority(lane, order)))


def test_a_likely_file_takes_the_slot_kept_from_large_unlikely_work(tmp_path: Path) -> None:
    """Both slots would be busy with files nobody installs now; the likely file asked
    for after them starts at once, in the slot kept free of them, and they wait."""
    files = _held_wheels(tmp_path, ["first", "waiting", "asked", "likely"])
    # Every unlikely file counts as large here: litellm's other-platform wheels.
    pool = InspectionPool(2, work=_hold_while_marked, small_file_bytes=0)

    async def scenario() -> tuple[list[str], list[str]]:
        jobs = [_inspecting(pool, files["first"], Lane.BACKGROUND, 0)]
        await _started(tmp_path, [files["first"]])
        jobs.append(_inspecting(pool, files["waiting"], Lane.BACKGROUND, 1))
        jobs.append(_inspecting(pool, files["asked"], Lane.ASKED, 2))
        await asyncio.sleep(0)  # both wait for a slot now
        jobs.append(_inspecting(pool, files["likely"], Lane.LIKELY, 3))
        try:
            while_held = await _started(tmp_path, [files["likely"]])
        finally:
            _release(files)
            await asyncio.gather(*jobs)
        return while_held, _starts(tmp_path)

    try:
        while_held, order = asyncio.run(scenario())
    finally:
        pool.close()
    names = {path.name: name for name, path in files.items()}
    assert [names[n] for n in while_held] == ["first", "likely"]  # the others still wait
    assert [names[n] for n in order] == ["first", "likely", "asked", "waiting"]


def _order_behind_one_busy_slot(
    tmp_path: Path,
    files: dict[str, Path],
    waiting: list[tuple[str, Lane, int]],
    meanwhile: Callable[[InspectionPool], None] = lambda pool: None,
) -> list[str]:
    """The order files start in with one slot: ``files["running"]`` holds it while the
    ``waiting`` files (name, lane, order) join the line and ``meanwhile`` runs; then all
    are released."""
    pool = InspectionPool(1, work=_hold_while_marked, small_file_bytes=0)

    async def scenario() -> list[str]:
        jobs = [_inspecting(pool, files["running"], Lane.BACKGROUND, 0)]
        await _started(tmp_path, [files["running"]])
        jobs += [_inspecting(pool, files[name], lane, order) for name, lane, order in waiting]
        await asyncio.sleep(0)
        meanwhile(pool)
        _release(files)
        await asyncio.gather(*jobs)
        return _starts(tmp_path)

    try:
        order = asyncio.run(scenario())
    finally:
        pool.close()
    names = {path.name: name for name, path in files.items()}
    return [names[n] for n in order]


def test_with_one_slot_the_waiting_files_go_by_priority(tmp_path: Path) -> None:
    files = _held_wheels(tmp_path, ["running", "later", "asked", "likely", "sooner"])
    waiting = [
        ("later", Lane.BACKGROUND, 9),
        ("asked", Lane.ASKED, 5),
        ("likely", Lane.LIKELY, 7),
        ("sooner", Lane.BACKGROUND, 1),
    ]
    order = _order_behind_one_busy_slot(tmp_path, files, waiting)
    assert order == ["running", "likely", "asked", "sooner", "later"]


def test_a_waiting_file_hurried_goes_before_those_it_waited_behind(tmp_path: Path) -> None:
    """numpy's newest wheel was taken as background work an instant before pip's request
    for numpy reached the vetting process: once hurried, it must not wait 70 s behind
    what clients asked for."""
    files = _held_wheels(tmp_path, ["running", "asked", "numpy", "other"])
    waiting = [
        ("numpy", Lane.BACKGROUND, 1),
        ("asked", Lane.ASKED, 2),
        ("other", Lane.BACKGROUND, 3),
    ]

    def hurry(pool: InspectionPool) -> None:
        pool.hurry(files["numpy"].name, Priority(Lane.LIKELY, 1))
        pool.hurry(files["other"].name, Priority(Lane.BACKGROUND, 0))  # never slower
        pool.hurry(files["asked"].name, Priority(Lane.BACKGROUND, 0))  # nor less urgent

    order = _order_behind_one_busy_slot(tmp_path, files, waiting, hurry)
    assert order == ["running", "numpy", "asked", "other"]


def test_among_likely_files_waiting_the_largest_starts_first(tmp_path: Path) -> None:
    """litellm's 43 MB wheel, asked for a moment after numpy, waited 25 s behind two of
    numpy's wheels: the longest inspection must start first."""
    files = _held_wheels(tmp_path, ["running", "small", "asked", "large"])
    large = build_wheel("demo", "9.0", extra_files={"demo/blob.bin": os.urandom(200_000)})
    files["large"].write_bytes(large.data)  # the same name, held the same way
    waiting = [("asked", Lane.ASKED, 1), ("small", Lane.LIKELY, 2), ("large", Lane.LIKELY, 3)]
    order = _order_behind_one_busy_slot(tmp_path, files, waiting)
    assert order == ["running", "large", "small", "asked"]


def test_a_large_file_hurried_to_likely_takes_the_slot_kept_from_large_work(
    tmp_path: Path,
) -> None:
    """numpy's 16 MB wheel, taken as background work, waits while one slot runs large
    background work and the other is kept free of such work: once a client asks for numpy
    it is likely, and takes that slot."""
    files = _held_wheels(tmp_path, ["running", "numpy"])
    pool = InspectionPool(2, work=_hold_while_marked, small_file_bytes=0)  # all large

    async def scenario() -> list[str]:
        jobs = [_inspecting(pool, files["running"], Lane.BACKGROUND, 0)]
        await _started(tmp_path, [files["running"]])
        jobs.append(_inspecting(pool, files["numpy"], Lane.BACKGROUND, 1))
        await asyncio.sleep(0.2)
        assert files["numpy"].name not in _starts(tmp_path)  # kept from the last slot
        pool.hurry(files["numpy"].name, Priority(Lane.LIKELY, 1))
        try:
            return await _started(tmp_path, [files["numpy"]])  # while "running" still runs
        finally:
            _release(files)
            await asyncio.gather(*jobs)

    try:
        started = asyncio.run(scenario())
    finally:
        pool.close()
    assert len(started) == 2


def test_a_file_hurried_before_it_joins_the_line_joins_it_at_that_priority(
    tmp_path: Path,
) -> None:
    """A hurry can come while the file's vetting still reads its history or fetches its
    previous release: its inspection must not then wait at its old priority."""
    files = _held_wheels(tmp_path, ["running", "asked", "numpy"])
    pool = InspectionPool(1, work=_hold_while_marked, small_file_bytes=0)

    async def scenario() -> list[str]:
        jobs = [_inspecting(pool, files["running"], Lane.BACKGROUND, 0)]
        await _started(tmp_path, [files["running"]])
        jobs.append(_inspecting(pool, files["asked"], Lane.ASKED, 1))
        pool.hurry(files["numpy"].name, Priority(Lane.LIKELY, 2))  # not in the line yet
        jobs.append(_inspecting(pool, files["numpy"], Lane.BACKGROUND, 2))
        await asyncio.sleep(0)
        _release(files)
        await asyncio.gather(*jobs)
        return _starts(tmp_path)

    try:
        order = asyncio.run(scenario())
    finally:
        pool.close()
    names = {path.name: name for name, path in files.items()}
    assert [names[n] for n in order] == ["running", "numpy", "asked"]


def test_small_unlikely_files_may_take_the_last_slot(tmp_path: Path) -> None:
    """A small file is inspected in a second or less: keeping the last slot from it would
    halve the background's vetting on two cores for no gain."""
    files = _held_wheels(tmp_path, ["first", "second"])
    pool = InspectionPool(2, work=_hold_while_marked)  # these wheels are a few KB

    async def scenario() -> list[str]:
        jobs = [_inspecting(pool, files[name], Lane.BACKGROUND, n) for n, name in enumerate(files)]
        try:
            return await _started(tmp_path, list(files.values()))
        finally:
            _release(files)
            await asyncio.gather(*jobs)

    try:
        both = asyncio.run(scenario())
    finally:
        pool.close()
    assert len(both) == 2
