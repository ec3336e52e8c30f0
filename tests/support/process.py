"""The mirror as its own process, started by the real ``lazaretto`` entry point."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

LAZARETTO = str(Path(sys.executable).parent / "lazaretto")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        env={**os.environ, **(env or {})},
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
