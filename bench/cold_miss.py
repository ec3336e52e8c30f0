"""Cold misses up close: Lazaretto and its upstream (the harness's nginx) side by side.

Each miss asks for a project page nobody asked for before, over a fresh connection, and
is done at Content-Length (as curl is). Three ways:

- spaced 50 ms apart, as the harness spaces its cold misses;
- back to back;
- spaced, while two ``nice 19`` spin loops keep the CPUs from going idle.

The last way shows how much of the spaced figure is the machine waking idle CPUs. A
proxy pays that wakeup on three hops (client to mirror, mirror to upstream and back),
where nginx pays it once.

Needs the harness upstream on 127.0.0.1:8000 (``bash ../shared/bench/upstream.sh start``,
or one ``compare.py`` run). Run on demand:

    .venv/bin/python bench/cold_miss.py [--count 40]
"""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_support import BenchError, Lazaretto, LazarettoSpec, markdown_table

UPSTREAM = ("127.0.0.1", 8000)
SPACING_SECONDS = 0.05
SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"


def _miss(address: tuple[str, int], project: str) -> float:
    """Seconds for one page request over a new connection, up to its last body byte."""
    request = (
        f"GET /simple/{project}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: application/vnd.pypi.simple.v1+json\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(address) as connection:
        connection.sendall(request)
        data = b""
        while True:
            chunk = connection.recv(65536)
            data += chunk
            head, found, body = data.partition(b"\r\n\r\n")
            if found and len(body) >= _content_length(head):
                break
            if not chunk:
                raise BenchError(f"{project}: the connection closed early")
    elapsed = time.perf_counter() - started
    if not data.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"{project}: {data[:80]!r}")
    return elapsed


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise BenchError("no Content-Length in the answer")


def _median_ms(
    address: tuple[str, int], projects: Iterator[str], count: int, spacing: float
) -> float:
    times = []
    for _ in range(count):
        times.append(_miss(address, next(projects)))
        time.sleep(spacing)
    return statistics.median(times) * 1e3


@contextmanager
def _busy_cpus(count: int) -> Iterator[None]:
    spinners = [
        subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", SPIN]) for _ in range(count)
    ]
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40, help="misses per way and server")
    args = parser.parse_args()
    try:
        _miss(UPSTREAM, "synth-0000")
    except OSError as error:
        message = f"no harness upstream on 127.0.0.1:8000 ({error}): start it first"
        raise SystemExit(message) from error
    with tempfile.TemporaryDirectory(prefix="cold-miss-") as scratch:
        spec = LazarettoSpec(
            state_dir=Path(scratch),
            data_dir=Path(scratch) / "data",
            upstream=f"http://{UPSTREAM[0]}:{UPSTREAM[1]}/simple/",
            cooling_period="7d",
            env={"LAZARETTO_VETTING_WINDOW": "0s"},
        )
        mirror = Lazaretto(spec)
        mirror.start()
        try:
            rows = _measure(("127.0.0.1", spec.port), args.count)
        finally:
            mirror.stop()
    print(markdown_table(["way", "nginx (upstream), ms", "Lazaretto, ms", "difference, ms"], rows))
    return 0


def _measure(mirror: tuple[str, int], count: int) -> list[list[str]]:
    fresh = (f"synth-{index:04d}" for index in range(1000))  # never asked of the mirror
    rows = []
    for label, spacing, busy in (
        (f"spaced {SPACING_SECONDS * 1e3:.0f} ms", SPACING_SECONDS, False),
        ("back to back", 0.0, False),
        (f"spaced {SPACING_SECONDS * 1e3:.0f} ms, CPUs kept busy", SPACING_SECONDS, True),
    ):
        with _busy_cpus(2) if busy else _nothing():
            upstream = _median_ms(UPSTREAM, iter(["synth-0000"] * count), count, spacing)
            lazaretto = _median_ms(mirror, fresh, count, spacing)
        rows.append([label, f"{upstream:.2f}", f"{lazaretto:.2f}", f"+{lazaretto - upstream:.2f}"])
    return rows


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
