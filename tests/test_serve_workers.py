"""``lazaretto serve --workers N``: N serving processes on one port, the background side once.

Real processes throughout: the supervisor, its serving processes, its vetting process; real
pip and uv install through them.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn

from mirror.app import create_app
from mirror.background.demand_pipe import DemandWriter
from mirror.cli.workers import listen
from support.dists import build_wheel
from support.installers import installed, pip_install, uv_install
from support.ledger_backend import ledger_env
from support.mirror import settings_for
from support.process import LAZARETTO, free_port, listed_versions
from support.upstream import Upstream, UpstreamFile

WORKERS = 3
# An access line names the process that answered: ``uvicorn.access[<pid>]: ...``.
ACCESS_LINE = re.compile(r"uvicorn\.access\[(\d+)\]: .*\"GET /simple/ ")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _spawned_children(pid: int) -> list[int]:
    """The supervisor's serving and vetting processes (not multiprocessing's tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fields and int(fields[1]) == pid and b"spawn_main" in command and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _vetting_anywhere_below(pid: int) -> list[int]:
    """Vetting processes (each leads a process group) among all descendants of ``pid``."""
    found = []
    for child in _spawned_children(pid):
        if _leads_its_group(child):
            found.append(child)
        else:
            found.extend(_vetting_anywhere_below(child))
    return found


def _leads_its_group(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and int(fields[2]) == pid


def _serving(pid: int) -> list[int]:
    return [child for child in _spawned_children(pid) if not _leads_its_group(child)]


def _vetting(pid: int) -> list[int]:
    return [child for child in _spawned_children(pid) if _leads_its_group(child)]


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s"
        time.sleep(0.2)


def _env(upstream: Upstream, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    return env | {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(data_dir),
        "LAZARETTO_COOLING_PERIOD": "4s",
        "LAZARETTO_VETTING_WINDOW": "0s",
        "LAZARETTO_PROMOTE_INTERVAL": "1s",
        "LAZARETTO_INDEX_TTL": "0s",
        **ledger_env(data_dir),
    }


@contextmanager
def _supervisor(
    upstream: Upstream, tmp_path: Path, log: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    with log.open("w") as out:  # a file: a pipe nobody reads would stall the processes
        process = subprocess.Popen(
            [LAZARETTO, "serve", "--port", str(port), "--workers", str(WORKERS)],
            env=_env(upstream, tmp_path / "data"),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_until_answering(origin: str, process: subprocess.Popen[str]) -> None:
    """The port is bound before any serving process is up: a connection waits in the
    backlog until one accepts it, so a long read timeout rather than retries."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"lazaretto exited with {process.returncode}"
        try:
            with urllib.request.urlopen(origin + "/healthz", timeout=60):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"lazaretto did not answer on {origin}")


def _answering(log: Path) -> set[int]:
    """The serving processes the access log names."""
    return {int(pid) for pid in ACCESS_LINE.findall(log.read_text())}


def _fresh_connection_gets(origin: str, count: int) -> None:
    """Each on a new connection, eight at a time: the kernel hands each to whichever
    process accepts first, and one busy with a request leaves the next to another."""

    def one(_: int) -> None:
        request = urllib.request.Request(origin + "/simple/", headers={"Connection": "close"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def _ask_until(log: Path, origin: str, answered: Callable[[set[int]], bool], what: str) -> None:
    """Ask on fresh connections until the access log shows ``answered``; on a busy machine
    one process may win many connections in a row, so this asks for up to a minute."""
    deadline = time.monotonic() + 60
    while not answered(_answering(log)):
        assert time.monotonic() < deadline, f"{what}: only {_answering(log)} answered"
        _fresh_connection_gets(origin, 40)
        time.sleep(0.1)


def test_serve_workers_shares_one_port_and_runs_the_background_once(
    upstream: Upstream, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    upstream.add("kid", UpstreamFile(build_wheel("kid", "1.0"), now - timedelta(days=300)))
    upstream.add("kid", UpstreamFile(build_wheel("kid", "2.0"), now))
    log = tmp_path / "serve.log"
    with _supervisor(upstream, tmp_path, log) as (supervisor, origin):
        _wait_until_answering(origin, supervisor)
        _until(lambda: len(_serving(supervisor.pid)) == WORKERS, 30, "the serving processes")
        _until(lambda: len(_vetting(supervisor.pid)) == 1, 30, "a vetting process")
        serving = set(_serving(supervisor.pid))
        (vetting,) = _vetting(supervisor.pid)

        assert pip_install(origin + "/simple/", tmp_path / "pip", "kid==1.0").ok, log.read_text()
        assert installed(tmp_path / "pip") == {"kid": "1.0"}
        assert uv_install(origin + "/simple/", tmp_path / "uv", "kid==1.0").ok, log.read_text()
        assert installed(tmp_path / "uv") == {"kid": "1.0"}
        # Cooled 2.0 is vetted and promoted by the one vetting process; every serving
        # process's page follows the ledger.
        _until(lambda: listed_versions(origin, "kid") == ["1.0", "2.0"], 60, "2.0 promoted")
        _ask_until(log, origin, lambda pids: len(pids) > 1, "a second serving process")
        assert _answering(log) <= serving, log.read_text()
        # One vetting process in all: none beside each serving process.
        assert _vetting_anywhere_below(supervisor.pid) == [vetting]
        assert log.read_text().count("vetting worker running on") == 1, log.read_text()
        assert log.read_text().count("took the leader lease") == 1, log.read_text()

        victim = sorted(serving)[0]
        os.kill(victim, signal.SIGKILL)
        _until(
            lambda: (
                len(_serving(supervisor.pid)) == WORKERS and victim not in _serving(supervisor.pid)
            ),
            30,
            "a serving process in its place",
        )
        (successor,) = set(_serving(supervisor.pid)) - serving
        _until(
            lambda: f"[{successor}]: Application startup complete" in log.read_text(),
            60,
            "the new serving process up",
        )
        _ask_until(log, origin, lambda pids: successor in pids, "the new serving process")
        assert listed_versions(origin, "kid") == ["1.0", "2.0"]
        assert _vetting(supervisor.pid) == [vetting]  # the background side kept running
        everyone = set(_serving(supervisor.pid)) | {vetting}

        supervisor.terminate()
        supervisor.wait(60)
    output = log.read_text()
    assert supervisor.returncode == 0, output
    assert not any(_alive(pid) for pid in everyone), output
    assert "Traceback" not in output, output


def test_serve_workers_reports_a_taken_port_once(upstream: Upstream, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [LAZARETTO, "serve", "--port", str(port), "--workers", str(WORKERS)],
            env=_env(upstream, tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("lazaretto: configuration error: port: cannot listen on "), lines
    assert done.stderr.count("cannot listen") == 1, done.stderr


def test_a_serving_process_names_what_clients_asked_for_on_the_shared_pipe(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The demand signal of every serving process reaches the one vetting process: each
    writes whole lines to the pipe the supervisor hands it. Here one serving process, on a
    socket bound for it as the supervisor binds it, with the pipe read by the test."""
    reading, writing = os.pipe()
    app = create_app(
        settings_for(tmp_path / "data", upstream.url),
        background=False,
        demand=DemandWriter(writing),
    )
    listener = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        _until(lambda: server.started, 30, "the server")
        upstream.add("kid", UpstreamFile(build_wheel("kid", "1.0"), datetime.now(UTC)))
        origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert listed_versions(origin, "kid") == []  # held: cooling
        ready, _, _ = select.select([reading], [], [], 10)
        assert ready, "nothing on the demand pipe"
        assert os.read(reading, 4096) == b"1 kid\n"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        os.close(reading)
