"""First use against the real index, by hand (issue 14): a fresh mirror in front of pip's index.

Run on demand, never in the tests (it downloads gigabytes from the index pip is set up for):

    .venv/bin/python bench/first_use_real.py [--max-seconds 480] [--save]

A fresh data directory and the defaults (72 h cooling, 30 d vetting window, default platform
filter, vetting in a child process). pip (this venv's) resolves REQUESTED with their
dependencies for Linux x86_64 / CPython 3.12, binary only:

1. directly from the index with ``--uploaded-prior-to`` 72 h ago: what a cooled, vetted
   mirror should give;
2. through the mirror, at the first request (cold), then again every ``--every`` seconds
   until it picks the same versions, or ``--max-seconds``.

It prints one table: the seconds to agreement, what the cold resolution got older, files
and bytes the mirror fetched, the server's and the vetting child's peak RSS.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import free_port, rss_mb
from result_file import save

from mirror.upstream.default_index import pip_index_url

REQUESTED = ["requests", "flask", "fastapi", "pydantic", "numpy", "litellm"]
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
PYTHON = Path(sys.executable)
FILE_GET = re.compile(r'"GET /files/[^"]*" (\d{3})')
ENV = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def resolve(
    index: str, report: Path, prior_to: datetime | None = None, nice: int = 0
) -> dict[str, str]:
    """What pip installs for REQUESTED from ``index``: {name: version}. ``nice``: pip's
    CPU priority below this process (clients run elsewhere in production, not on the
    mirror's cores)."""
    command = ["nice", "-n", str(nice)] if nice else []
    command += [str(PYTHON), "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed"]
    command += ["--report", str(report), "--index-url", index, "--only-binary=:all:"]
    command += ["--implementation", "cp", "--python-version", "3.12"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    if prior_to is not None:
        command += ["--uploaded-prior-to", prior_to.strftime("%Y-%m-%dT%H:%M:%SZ")]
    done = subprocess.run(command + REQUESTED, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        return {"(pip failed)": done.stderr.strip().splitlines()[-1] if done.stderr else "?"}
    installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}


class Sampler(threading.Thread):
    """Every second: RSS of the server and of its children (the vetting child, its pool)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.server_mb, self.child_mb = pid, 0.0, 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.server_mb = max(self.server_mb, _rss(self.pid))
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
            if children.exists():
                for child in children.read_text().split():
                    self.child_mb = max(self.child_mb, _rss(int(child)))


def _rss(pid: int) -> float:
    rss, _peak = rss_mb(pid)
    return 0.0 if rss != rss else rss  # nan: the process is gone


def stored(data: Path) -> tuple[int, int]:
    blobs = data / "blobs"
    files = [p for p in blobs.rglob("*") if p.is_file() and p.relative_to(blobs).parts[0] != "tmp"]
    return len(files), sum(p.stat().st_size for p in files)


def by_project(data: Path, top: int = 12) -> list[str]:
    """The projects whose stored files weigh most: files, GB, and how many of the project's
    files are in each state (deferred ones counted apart)."""
    with sqlite3.connect(f"file:{data / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
        heavy = db.execute(
            "SELECT project, count(*), sum(size) FROM files WHERE stored GROUP BY project"
            " ORDER BY sum(size) DESC LIMIT ?",
            (top,),
        ).fetchall()
        lines = []
        for project, count, size in heavy:
            states = db.execute(
                "SELECT state || CASE WHEN deferral IS NULL THEN '' ELSE ' (deferred)' END,"
                " count(*) FROM files WHERE project = ? GROUP BY 1 ORDER BY 2 DESC",
                (project,),
            ).fetchall()
            shown = ", ".join(f"{n} {state}" for state, n in states)
            lines.append(f"{project}: {count} files, {size / 1e9:.2f} GB stored; {shown}")
        return lines


def file_answers(log: Path) -> str:
    """The mirror's answers to file GETs, by status (503: a deferred file still vetting)."""
    counts = Counter(FILE_GET.findall(log.read_text(errors="replace")))
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "none"


def progress(first: float, runs: int, picked: dict[str, str], direct: dict[str, str]) -> None:
    """One line per pip run: when it ended and what it still picked unlike direct pip."""
    behind = sorted(f"{n} {picked.get(n)}" for n, v in direct.items() if picked.get(n) != v)
    elapsed = time.monotonic() - first
    print(f"pip run {runs} ended at {elapsed:.0f} s: {len(behind)} behind: {', '.join(behind)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=480.0)
    parser.add_argument("--every", type=float, default=20.0)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    parser.add_argument(
        "--pip-nice",
        type=int,
        default=0,
        help="run pip through the mirror this many steps nicer (as if on another machine)",
    )
    args = parser.parse_args()
    index = pip_index_url()
    work = Path(tempfile.mkdtemp(prefix="lazaretto-real-"))
    start_wall = datetime.now(UTC)
    began = time.monotonic()
    direct = resolve(index, work / "direct.json", start_wall - timedelta(hours=72))
    direct_seconds = time.monotonic() - began
    port = free_port()
    port_flag = ["--port", str(port)]
    server = subprocess.Popen(
        [str(PYTHON.parent / "lazaretto"), "serve", "--data-dir", str(work / "data"), *port_flag],
        stdout=(work / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    sampler = Sampler(server.pid)
    sampler.start()
    mirror = f"http://127.0.0.1:{port}/simple/"
    try:
        time.sleep(3)
        first = time.monotonic()
        cold = resolve(mirror, work / "cold.json", nice=args.pip_nice)
        cold_seconds = time.monotonic() - first
        agreed, runs, picked = None, 1, cold
        progress(first, runs, picked, direct)
        while picked != direct and time.monotonic() - first < args.max_seconds:
            time.sleep(args.every)
            picked = resolve(mirror, work / "again.json", nice=args.pip_nice)
            runs += 1
            progress(first, runs, picked, direct)
        if picked == direct:
            agreed = time.monotonic() - first
        files, size = stored(work / "data")
        heaviest = by_project(work / "data")
    finally:
        sampler.stop.set()
        server.terminate()
        server.wait(30)
    older = sorted(f"{n} {cold.get(n)} (direct {v})" for n, v in direct.items() if cold.get(n) != v)
    missing = sorted(
        f"{n} {picked.get(n)} (direct {v})" for n, v in direct.items() if picked.get(n) != v
    )
    rows = [
        (
            "direct pip, --uploaded-prior-to 72 h ago",
            f"{direct_seconds:.0f} s ({len(direct)} distributions)",
        ),
        (
            "cold pip through the mirror (the first request)",
            f"{cold_seconds:.0f} s; {len(older)} not as direct",
        ),
        ("… not as direct at the first request", "; ".join(older[:12]) or "none"),
        (
            "pip through the mirror agrees (goal ≤ 60 s)",
            f"{agreed:.0f} s ({runs} pip runs)"
            if agreed
            else f"not within {args.max_seconds:.0f} s ({runs} runs): {'; '.join(missing[:8])}",
        ),
        ("files stored / bytes, at the end", f"{files:,} / {size / 1e9:.2f} GB"),
        (
            "server RSS peak / vetting child RSS peak",
            f"{sampler.server_mb:.0f} / {sampler.child_mb:.0f} MB",
        ),
        ("file GETs answered, by status", file_answers(work / "serve.log")),
        ("load average 1/5/15 min at the end", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]
    table = ["| measurement | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    heading = f"## First use against the real index ({start_wall:%Y-%m-%d %H:%M} UTC)\n\n"
    text = (
        heading
        + f"Command: `.venv/bin/python bench/first_use_real.py --pip-nice {args.pip_nice}`\n\n"
        + "\n".join(table)
        + "\n\nStored bytes by project (the heaviest):\n\n"
        + "\n".join(f"- {line}" for line in heaviest)
        + "\n"
    )
    print(text)
    if args.save:
        save("first-use-real-index", text)
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
