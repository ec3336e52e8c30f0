"""``pip-compile --generate-hashes``: direct against the upstream vs through a fresh Lazaretto.

Run on demand (never in the test suite):

    .venv/bin/python bench/pip_compile.py [--runs 3] [--python PY] [PACKAGE ...]

The upstream is the index pip on this machine is set up for, read at run time. The mirror
starts on 127.0.0.1 with a fresh data directory and the default cooling period, so files
younger than that are held and the mirror's lock may pin older releases (listed). Every
run gets a fresh pip-tools cache; runs alternate direct / mirror, so both see the same
network. The mirror's first run is its cold one (each page and file a first look).

``--python`` is an interpreter with pip-tools installed (default: this one). pip-tools
7.6.1 and later ask ``<index root>/<project>/json``, which the public index does not
answer, so direct they hash every file; earlier versions ask ``/pypi/<project>/json``.
From the mirror's access log the table counts the files pip-compile fetched through it:
while resolving (pip reads each candidate's metadata from its wheel when the upstream has
no PEP 658 files; a backtrack reads more) and while hashing (pip-tools asks the JSON API
once it has resolved; any file after that is one downloaded to hash it). The mirror vets
cooled files in the background meanwhile, as it would in service, so its later runs may
see more releases than its first.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_support import (
    LAZARETTO_BIN,
    REPO,
    BenchError,
    ProcessCheck,
    free_port,
    log,
    spawn,
    stop_pid,
    wait_http,
)

from mirror.upstream.default_index import pip_index_url

PACKAGES = ["requests", "flask", "fastapi", "pydantic", "httpx", "uvicorn"]
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")
_GET = re.compile(r'"GET (\S+) HTTP/[\d.]+" (\d+)')


@dataclass(frozen=True)
class Run:
    seconds: float
    pins: dict[str, str]
    hashes: dict[str, set[str]]  # name -> its sha256 values
    # Through the mirror only: files fetched resolving, files fetched hashing, and JSON
    # API answers other than 200 and 301.
    mirror_counts: tuple[int, int, int] | None = None


def _pip_env() -> dict[str, str]:
    """This environment without the machine's pip settings (extra indexes, find-links)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1"]))
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", NO_PROXY=no_proxy)
    return env


def _versions(python: str) -> str:
    code = "import importlib.metadata as m; print(m.version('pip-tools'), m.version('pip'))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"{python} has no pip-tools: {done.stderr.strip()[-300:]}")
    tools, pip = done.stdout.split()
    return f"pip-tools {tools}, pip {pip}"


def _compile(python: str, index_url: str, work: Path, label: str, timeout: float) -> Run:
    cache = work / f"cache-{label}"
    output = work / f"{label}.txt"
    command = [
        python, "-m", "piptools", "compile", "--generate-hashes", "--no-header",
        "--no-annotate", "--strip-extras", "--quiet", "--index-url", index_url,
        "--cache-dir", str(cache), "--output-file", str(output), str(work / "requirements.in"),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=_pip_env(), cwd=work, timeout=timeout
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(f"pip-compile ({label}) failed:\n{(done.stdout + done.stderr)[-2000:]}")
    lock = output.read_text()
    return Run(seconds, *_read_lock(lock))


def _read_lock(lock: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    pins: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    name = ""
    for line in lock.splitlines():
        text = line.strip().rstrip("\\").strip()
        if pin := _PIN.match(text):
            name = pin[1]
            pins[name], hashes[name] = pin[2], set()
        elif text.startswith("--hash=sha256:"):
            hashes[name].add(text.removeprefix("--hash=sha256:"))
    return pins, hashes


def _mirror_counts(log_text: str) -> tuple[int, int, int]:
    """Files fetched through the mirror while resolving and while hashing (pip-tools asks
    the JSON API only once it has resolved), and JSON API answers other than 200 and 301."""
    resolving = hashing = misses = 0
    asked_json = False
    for path, status in _GET.findall(log_text):
        if path.endswith("/json"):
            asked_json = True
            misses += status not in ("200", "301")
        elif path.startswith("/files/") and not path.endswith(".metadata"):
            if asked_json:
                hashing += 1
            else:
                resolving += 1
    return resolving, hashing, misses


def _serve(upstream: str, work: Path) -> tuple[int, str, Path]:
    if not LAZARETTO_BIN.exists():
        raise BenchError(f"{LAZARETTO_BIN} not found: run scripts/bootstrap test")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZARETTO_", "PIP_"))}
    env.update(LAZARETTO_ACCESS_LOG="true", LAZARETTO_LOG_LEVEL="info")
    log_path = work / "lazaretto.log"
    command = [
        str(LAZARETTO_BIN), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(work / "data"), "--upstream", upstream,
    ]  # fmt: skip
    pid = spawn(command, env, log_path, cwd=REPO)
    origin = f"http://127.0.0.1:{port}"
    wait_http(origin + "/healthz", 60, ProcessCheck(pid, "lazaretto", log_path))
    return pid, origin, log_path


def _count(run: Run) -> int:
    return sum(len(values) for values in run.hashes.values())


def _table(direct: list[Run], mirrored: list[Run], versions: str, packages: list[str]) -> str:
    lines = [
        f"pip-compile --generate-hashes of {' '.join(packages)} ({versions})",
        "",
        "| run | direct (s) | via mirror (s) | mirror / direct "
        "| files via mirror: resolving / hashing | JSON API not 200 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for number, (one, other) in enumerate(zip(direct, mirrored, strict=True), start=1):
        label = f"{number} (mirror cold)" if number == 1 else str(number)
        resolving, hashing, misses = other.mirror_counts or (0, 0, 0)
        lines.append(
            f"| {label} | {one.seconds:.1f} | {other.seconds:.1f} | "
            f"{other.seconds / one.seconds:.2f} | {resolving} / {hashing} | {misses} |"
        )
    for label, skipped in (("median, all runs", 0), ("median, warm mirror", 1)):
        if len(direct) <= skipped:
            continue
        left = statistics.median(run.seconds for run in direct[skipped:])
        right = statistics.median(run.seconds for run in mirrored[skipped:])
        lines.append(f"| {label} | {left:.1f} | {right:.1f} | {right / left:.2f} | | |")
    last_direct, last_mirror = direct[-1], mirrored[-1]
    lines += [
        "",
        f"pins: {len(last_direct.pins)} direct, {len(last_mirror.pins)} through the mirror; "
        f"hashes: {_count(last_direct)} direct, {_count(last_mirror)} through the mirror",
    ]
    # Same pin, so the mirror's hashes must be the upstream's, less the files it holds.
    wrong = [
        name
        for name, version in last_mirror.pins.items()
        if last_direct.pins.get(name) == version
        and not last_mirror.hashes[name] <= last_direct.hashes[name]
    ]
    lines.append(f"hashes not found direct for the same pin: {', '.join(wrong) or 'none'}")
    differing = {
        name: (version, last_mirror.pins.get(name, "-"))
        for name, version in last_direct.pins.items()
        if last_mirror.pins.get(name) != version
    }
    if differing:
        held = ", ".join(f"{n} {d} -> {m}" for n, (d, m) in sorted(differing.items()))
        lines.append(f"pinned differently through the mirror (newer releases held): {held}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=PACKAGES, help="requirements to lock")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with pip-tools")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pip-compile")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (mirror log)")
    args = parser.parse_args()
    upstream = pip_index_url().rstrip("/")  # pip-tools before 7.6.1 needs it without the /
    versions = _versions(args.python)
    work = Path(tempfile.mkdtemp(prefix="lazaretto-pip-compile-"))
    (work / "requirements.in").write_text("\n".join(args.packages) + "\n")
    pid, origin, log_path = _serve(upstream, work)
    direct: list[Run] = []
    mirrored: list[Run] = []
    try:
        for number in range(1, args.runs + 1):
            log(f"run {number}: direct")
            direct.append(_compile(args.python, upstream, work, f"direct-{number}", args.timeout))
            log(f"run {number}: through the mirror")
            before = log_path.stat().st_size
            run = _compile(args.python, f"{origin}/simple", work, f"mirror-{number}", args.timeout)
            with log_path.open(errors="replace") as text:
                text.seek(before)
                counts = _mirror_counts(text.read())
            mirrored.append(Run(run.seconds, run.pins, run.hashes, counts))
            log(f"run {number}: {direct[-1].seconds:.1f} s direct, {run.seconds:.1f} s mirror")
    finally:
        stop_pid(pid, "lazaretto")
    print(_table(direct, mirrored, versions, args.packages))
    if args.keep:
        print(f"\nmirror log and locks: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        sys.exit(f"pip_compile: {error}")
