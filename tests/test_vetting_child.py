"""``vetting_worker = "child"``: ``lazaretto serve`` vets in a child process it supervises.

The server and its child are real processes with the system clock (a cooling period of a
few seconds); the demand signal is tested on a real pipe with the real promoter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import NormalizedName
from test_demand import ASKED, BACKLOG, SlowSource, _look, _promoter

from mirror.background.demand_pipe import DemandReader, DemandWriter
from support.dists import build_wheel
from support.ledger_backend import ledger_env, ledger_setting, open_ledger
from support.process import LAZARETTO, free_port, listed_versions, wait_until_up
from support.upstream import Upstream, UpstreamFile

COOLING = timedelta(seconds=4)


def _children(pid: int) -> list[int]:
    """Spawned children: the server's vetting child, the child's inspection workers
    (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        if parent == pid and b"spawn_main" in command and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s"
        time.sleep(0.2)


def test_serve_vets_in_a_child_it_restarts_and_stops_with_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    upstream.add("kid", UpstreamFile(build_wheel("kid", "1.0"), now - timedelta(days=300)))
    upstream.add("kid", UpstreamFile(build_wheel("kid", "2.0"), now))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LAZARETTO_") and k != "MALLOC_ARENA_MAX"
    }
    env |= {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_COOLING_PERIOD": f"{COOLING.seconds}s",
        "LAZARETTO_VETTING_WINDOW": "0s",
        "LAZARETTO_PROMOTE_INTERVAL": "1s",
        "LAZARETTO_INDEX_TTL": "0s",
        **ledger_env(tmp_path / "data"),
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:  # a file: a pipe nobody reads would stall the server
        server = subprocess.Popen(
            [LAZARETTO, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(origin, server)
        _until(lambda: len(_children(server.pid)) == 1, 30, "a vetting child")
        (first,) = _children(server.pid)
        # Two malloc arenas (mirror/memory.py), for the child too: glibc reads it at start.
        assert b"MALLOC_ARENA_MAX=2" in Path(f"/proc/{first}/environ").read_bytes().split(b"\0")
        assert listed_versions(origin, "kid") == ["1.0"]
        # Cooled 2.0 is vetted and promoted by the child: the server only serves.
        _until(lambda: listed_versions(origin, "kid") == ["1.0", "2.0"], 30, "2.0 promoted")

        workers = _children(first)  # its inspection workers, which vetted 2.0
        assert workers
        # Inspection yields the CPU to the server (vetting_nice, 10 by default); the child,
        # which writes the ledger, does not.
        server_nice = os.getpriority(os.PRIO_PROCESS, server.pid)
        assert os.getpriority(os.PRIO_PROCESS, first) == server_nice
        for worker in workers:
            assert os.getpriority(os.PRIO_PROCESS, worker) == min(server_nice + 10, 19)
        os.kill(first, signal.SIGKILL)  # a crash: the server starts another
        _until(lambda: _children(server.pid) not in ([], [first]), 30, "a new child")
        _until(lambda: not any(map(_alive, workers)), 10, "the dead child's workers ended")
        upstream.add("kid", UpstreamFile(build_wheel("kid", "3.0"), datetime.now(UTC)))
        assert listed_versions(origin, "kid") == ["1.0", "2.0"]
        _until(
            lambda: listed_versions(origin, "kid")[-1] == "3.0", 30, "3.0 promoted by the new one"
        )
        children = _children(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    output = log.read_text()
    assert server.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal
    assert children and not any(_alive(pid) for pid in children), output
    assert "Traceback" not in output.split(f"vetting process {first} exited")[-1], output


def test_a_project_asked_on_the_pipe_is_vetted_before_the_backlog(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = SlowSource(tmp_path / "files", ledger)
    _look(ledger, source, "backlog", {f"1.{n}": 1 for n in range(6)})  # 36 files
    promoter = _promoter(ledger, source, concurrency=2)
    reading, writing = os.pipe()
    ended = asyncio.Event()

    async def scenario() -> list[str]:
        reader = DemandReader(reading, promoter.wake, ended.set)
        reader.start()
        writer = DemandWriter(writing)
        backlog = asyncio.create_task(promoter.run_once())
        while sum(r.stored for r in ledger.files(BACKLOG)) < 4:
            await asyncio.sleep(0.01)
        _look(ledger, source, "asked", {"1.0": 1})  # the server's look saw it first
        assert writer.send(NormalizedName(ASKED), True)
        order = (await backlog).vetting_order
        writer.close()
        await asyncio.wait_for(ended.wait(), 10)  # the server's end closed: the child stops
        return order

    order = asyncio.run(scenario())
    asked = [i for i, name in enumerate(order) if name.startswith("asked-")]
    assert len(asked) == 6  # vetted in the round already running
    assert max(asked) < 16  # ahead of most of the 36-file backlog
    assert len(order) == 42
    os.close(reading)
    ledger.close()


def test_a_project_not_asked_for_keeps_its_background_rank(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = SlowSource(tmp_path / "files", ledger)
    _look(ledger, source, "backlog", {f"1.{n}": 1 for n in range(6)})
    promoter = _promoter(ledger, source, concurrency=2)
    reading, writing = os.pipe()

    async def scenario() -> list[str]:
        reader = DemandReader(reading, promoter.wake, lambda: None)
        reader.start()
        writer = DemandWriter(writing)
        backlog = asyncio.create_task(promoter.run_once())
        while sum(r.stored for r in ledger.files(BACKLOG)) < 4:
            await asyncio.sleep(0.01)
        _look(ledger, source, "asked", {"1.0": 1})
        assert writer.send(NormalizedName(ASKED), False)  # the watcher's look, no client
        order = (await backlog).vetting_order
        reader.stop()
        writer.close()
        return order

    order = asyncio.run(scenario())
    assert not any(name.startswith("asked-") for name in order)  # the next round's work
    os.close(reading)
    ledger.close()


def test_a_writer_never_blocks_on_a_child_that_stopped_reading() -> None:
    reading, writing = os.pipe()
    writer = DemandWriter(writing)
    name = NormalizedName("x" * 100)
    sent = [writer.send(name, True) for _ in range(2000)]  # ~200 KB: past any pipe buffer
    assert sent[0] and not sent[-1]
    writer.close()
    os.close(reading)
    assert not writer.send(name, True)


VETTING_ONLY = ("sigstore", "pypi_attestations", "pydantic", "quarantine.provenance.verify")
LOADED = """
import json, sys
from mirror.app import create_app
from mirror.settings import Settings
settings = Settings(data_dir=sys.argv[2], ledger=sys.argv[3],
                    upstream="http://127.0.0.1:9/simple/", vetting_worker=sys.argv[1])
create_app(settings)
print(json.dumps(sorted(sys.modules)))
"""


def _modules_loaded_by_a_server(mode: str, data_dir: Path) -> set[str]:
    ledger = ledger_setting(data_dir)
    result = subprocess.run(
        [sys.executable, "-c", LOADED, mode, str(data_dir), ledger],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(json.loads(result.stdout))


def test_a_server_that_vets_in_a_child_never_loads_the_vetting_stack(tmp_path: Path) -> None:
    # The Sigstore stack alone is about 50 MB of the serving process's memory.
    loaded = _modules_loaded_by_a_server("child", tmp_path / "child")
    assert not {name for name in loaded if name.startswith(VETTING_ONLY)}
    # The same server vetting in-process does load it: the check above can fail.
    in_process = _modules_loaded_by_a_server("in-process", tmp_path / "in-process")
    assert "quarantine.provenance.verify" in in_process
