"""The mirror as its own process, started by the real ``lazaretto`` entry point."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from support.ledger_backend import command_env, mirrors_use_postgres, named_data_dir
from support.ports import free_port as free_port  # where the tests have always taken it

LAZARETTO = str(Path(sys.executable).parent / "lazaretto")


def wait_until_up(origin: str, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"lazaretto exited with {process.returncode}")
        try:
            with urllib.request.urlopen(origin + "/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"lazaretto did not answer on {origin} within {seconds} s")


@contextmanager
def lazaretto_serve(args: list[str], env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``lazaretto serve ARGS`` and yield its origin; the port is chosen here."""
    port = free_port()
    process = subprocess.Popen(
        [LAZARETTO, "serve", "--port", str(port), *args],
        env=_with_test_ledger(args, {**os.environ, **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(origin, process)
        yield origin
    finally:
        stop(process)


def _with_test_ledger(args: list[str], env: dict[str, str]) -> dict[str, str]:
    if mirrors_use_postgres() and named_data_dir(args, env) is None:
        raise RuntimeError(
            "lazaretto_serve: name the data directory (--data-dir or LAZARETTO_DATA_DIR) "
            "so that it gets the test ledger of that directory"
        )
    return command_env(args, env)


def stop(process: subprocess.Popen[str]) -> None:
    """TERM, then KILL after 15 s."""
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def listed_versions(origin: str, project: str) -> list[str]:
    """The versions a running mirror's JSON page lists for ``project`` (PEP 700)."""
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(f"{origin}/simple/{project}/", headers=accept)
    with urllib.request.urlopen(request, timeout=10) as reply:
        versions: list[str] = json.loads(reply.read())["versions"]
        return versions
