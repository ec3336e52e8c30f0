"""Helpers for bench/compare.py: paths, processes, wrk, HTTP timing, RSS, markdown tables.

Loopback only: every URL handed to the load and timing helpers must point at 127.0.0.1,
and every subprocess is bounded in time.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
VENV = REPO / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
LAZARETTO_BIN = VENV / "bin" / "lazaretto"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "text/html"


class BenchError(Exception):
    """A problem the person running the benchmark must fix; printed without a traceback."""


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def require_tools(tools: Mapping[str, str]) -> None:
    """``tools`` maps a command to how to install it."""
    missing = [f"{name} ({hint})" for name, hint in tools.items() if shutil.which(name) is None]
    if missing:
        raise BenchError("missing tools: " + "; ".join(missing))


def require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host != "127.0.0.1":
        raise BenchError(f"refusing to send load to {url!r}: only 127.0.0.1 is allowed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    seconds: float
    headers: dict[str, str]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(url: str, accept: str | None = None, timeout: float = 60.0) -> Fetched:
    """One GET (no redirects followed, no proxies); any status is returned, not raised."""
    require_loopback(url)
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read()
            status = int(response.status)
            got = dict(response.headers.items())
    except urllib.error.HTTPError as error:
        body = error.read()
        status = error.code
        got = dict(error.headers.items())
    return Fetched(status, body, time.perf_counter() - started, got)


def wait_http(url: str, seconds: float, alive: "ProcessCheck | None" = None) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            if fetch(url, timeout=2).status == 200:
                return
        except OSError as error:
            last = str(error)
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 within {seconds:.0f} s {last}")


class ProcessCheck:
    def __init__(self, pid: int, what: str, log_path: Path | None) -> None:
        self.pid, self.what, self.log_path = pid, what, log_path

    def __call__(self) -> None:
        if not pid_alive(self.pid):
            tail = tail_text(self.log_path, 15) if self.log_path else ""
            raise BenchError(f"{self.what} (pid {self.pid}) exited; log tail:\n{tail}")


def tail_text(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- wrk -------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


@dataclass(frozen=True)
class WrkResult:
    url: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    mb_s: float
    non2xx: int
    socket_errors: int
    output: str

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def wrk_command(
    url: str,
    seconds: int,
    connections: int,
    threads: int,
    accept: str | None,
    headers: Sequence[str] = (),
) -> list[str]:
    require_loopback(url)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", "30s"]
    if accept:
        command += ["-H", f"Accept: {accept}"]
    for header in headers:
        command += ["-H", header]
    return [*command, url]


def parse_wrk(url: str, output: str) -> WrkResult:
    def number(pattern: str) -> str | None:
        match = re.search(pattern, output, re.MULTILINE)
        return match.group(1) if match else None

    rps = float(number(r"Requests/sec:\s+([\d.]+)") or 0.0)
    p50, p99 = number(r"^\s+50%\s+(\S+)"), number(r"^\s+99%\s+(\S+)")
    total = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)(B|KB|MB|GB|TB) read", output)
    requests, mb_s = 0, 0.0
    if total:
        requests = int(total.group(1))
        seconds = _ms(total.group(2)) / 1e3
        mb_s = float(total.group(3)) * _BYTES[total.group(4)] / seconds / 1e6 if seconds else 0.0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        url=url,
        rps=rps,
        p50_ms=_ms(p50) if p50 else float("nan"),
        p99_ms=_ms(p99) if p99 else float("nan"),
        requests=requests,
        mb_s=mb_s,
        non2xx=int(number(r"Non-2xx or 3xx responses: (\d+)") or 0),
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        output=output,
    )


def wrk(
    url: str,
    seconds: int,
    connections: int = 32,
    threads: int = 2,
    accept: str | None = None,
    headers: Sequence[str] = (),
) -> WrkResult:
    command = wrk_command(url, seconds, connections, threads, accept, headers)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    return parse_wrk(url, done.stdout)


@dataclass(frozen=True)
class CurlTiming:
    status: int
    ttfb: float  # seconds to the first byte of the body
    total: float
    size: int  # bytes on the wire (compressed when the server compressed)
    encoding: str


def curl_time(url: str, headers: Sequence[str] = (), timeout: int = 60) -> CurlTiming:
    """One GET with curl (body discarded, not decompressed)."""
    require_loopback(url)
    command = ["curl", "-s", "-o", "/dev/null", "--max-time", str(timeout), "-D", "-"]
    for header in headers:
        command += ["-H", header]
    command += ["-w", "\n@@ %{http_code} %{time_starttransfer} %{time_total} %{size_download}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=timeout + 30)
    head, _, stats = done.stdout.rpartition("@@ ")
    code, ttfb, total, size = stats.split()
    encoding = re.search(r"^content-encoding:\s*(\S+)", head, re.IGNORECASE | re.MULTILINE)
    return CurlTiming(
        int(code), float(ttfb), float(total), int(size), encoding.group(1) if encoding else ""
    )


# -- processes ---------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> int:
    """Start a server in its own session, output appended to ``log_path``; its PID."""
    for pid, child in list(_CHILDREN.items()):  # reap the ones a reset stopped
        if child.poll() is not None:
            del _CHILDREN[pid]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def stop_pid(pid: int, must_contain: str, seconds: float = 15.0) -> None:
    """TERM (then KILL) one process we started; checks its command line first."""
    child = _CHILDREN.pop(pid, None)
    if not pid_alive(pid):
        if child is not None:
            child.wait(5)
        return
    if must_contain not in cmdline(pid):
        log(f"not stopping pid {pid}: it is no longer {must_contain!r} ({cmdline(pid)[:80]})")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and pid_alive(pid):
        if child is not None and child.poll() is not None:
            break
        time.sleep(0.05)
    if pid_alive(pid):
        log(f"pid {pid} ignored SIGTERM for {seconds:.0f} s: SIGKILL")
        os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait(10)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of one process in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan"), float("nan")
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
    return (
        int(rss.group(1)) / 1024 if rss else float("nan"),
        int(hwm.group(1)) / 1024 if hwm else float("nan"),
    )


def run_logged(
    command: Sequence[str],
    log_path: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> int:
    """Run a command to completion (bounded), its output to ``log_path`` (and stderr)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        list(command),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    with log_path.open("ab") as out:
        copier = threading.Thread(target=_copy, args=(process.stdout, out, echo), daemon=True)
        copier.start()
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{command[0]} ran past {timeout:.0f} s: stopping it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(15)
            raise BenchError(f"{' '.join(command[:3])} timed out after {timeout:.0f} s") from None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)
            raise
        finally:
            copier.join(10)
    return code


def _copy(source: IO[bytes], sink: IO[bytes], echo: bool) -> None:
    for line in iter(source.readline, b""):
        sink.write(line)
        sink.flush()
        if echo:
            sys.stderr.write("    " + line.decode(errors="replace"))
            sys.stderr.flush()


# -- Lazaretto ------------------------------------------------------------------------------------


@dataclass
class LazarettoSpec:
    """How to (re)start one Lazaretto; kept as JSON so ``compare.py _ctl`` can reset it."""

    state_dir: Path
    data_dir: Path
    upstream: str
    cooling_period: str
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    program: str = ""  # the ``lazaretto`` command to run; empty: this checkout's venv

    @property
    def log_path(self) -> Path:
        return self.state_dir / "lazaretto.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "pid"

    @property
    def worker_pid_path(self) -> Path:
        return self.state_dir / "worker.pid"

    @property
    def separate_worker(self) -> bool:
        """``vetting_worker = separate``: ``lazaretto work`` runs beside the server."""
        return self.env.get("LAZARETTO_VETTING_WORKER") == "separate"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def index_url(self) -> str:
        return f"{self.origin}/simple/"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "state_dir": str(self.state_dir),
            "data_dir": str(self.data_dir),
            "upstream": self.upstream,
            "cooling_period": self.cooling_period,
            "port": self.port,
            "env": self.env,
            "program": self.program,
        }
        (self.state_dir / "spec.json").write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, state_dir: Path) -> "LazarettoSpec":
        data = json.loads((state_dir / "spec.json").read_text())
        return cls(
            state_dir=Path(data["state_dir"]),
            data_dir=Path(data["data_dir"]),
            upstream=str(data["upstream"]),
            cooling_period=str(data["cooling_period"]),
            port=int(data["port"]),
            env={str(k): str(v) for k, v in data["env"].items()},
            program=str(data.get("program", "")),
        )


BASE_ENV = {
    "LAZARETTO_ACCESS_LOG": "false",
    "LAZARETTO_LOG_LEVEL": "warning",
    "LAZARETTO_FILE_HOSTS": "",
}


class Lazaretto:
    """One ``lazaretto serve`` process (restartable), stopped by its PID; with a
    ``lazaretto work`` process beside it when the spec asks for a separate worker."""

    def __init__(self, spec: LazarettoSpec) -> None:
        if spec.port == 0:
            spec.port = free_port()
        self.spec = spec
        spec.save()

    @property
    def pid(self) -> int | None:
        try:
            return int(self.spec.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, wait_seconds: float = 60.0) -> float:
        """Start it; seconds until /healthz answered."""
        if not LAZARETTO_BIN.exists():
            raise BenchError(f"{LAZARETTO_BIN} not found: create the venv (scripts/serve)")
        spec = self.spec
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("LAZARETTO_", "PIP_"))
        }
        env.update(BASE_ENV)
        env.update(spec.env)
        shared = [
            "--data-dir",
            str(spec.data_dir),
            "--upstream",
            spec.upstream,
            "--cooling-period",
            spec.cooling_period,
        ]
        program = spec.program or str(LAZARETTO_BIN)
        command = [program, "serve", "--host", "127.0.0.1", "--port", str(spec.port)]
        command += shared
        with spec.log_path.open("a") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(command)}\n")
        started = time.perf_counter()
        pid = spawn(command, env, spec.log_path, cwd=REPO)
        spec.pid_path.write_text(f"{pid}\n")
        wait_http(
            spec.origin + "/healthz",
            wait_seconds,
            ProcessCheck(pid, "lazaretto", spec.log_path),
        )
        up = time.perf_counter() - started
        if spec.separate_worker:
            worker = spawn([program, "work", *shared], env, spec.log_path, cwd=REPO)
            spec.worker_pid_path.write_text(f"{worker}\n")
        return up

    def stop(self) -> None:
        for path, what in (
            (self.spec.worker_pid_path, "lazaretto work"),
            (self.spec.pid_path, "lazaretto"),
        ):
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            stop_pid(pid, what)
            path.unlink(missing_ok=True)

    def reset(self) -> None:
        """Restart with an empty data directory (the harness's --reset-cmd)."""
        self.stop()
        shutil.rmtree(self.spec.data_dir, ignore_errors=True)
        self.start()

    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def problems(self) -> list[str]:
        """Tracebacks and ERROR lines in its log (all runs of this spec)."""
        try:
            lines = self.spec.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        markers = ("Traceback", " ERROR ", " CRITICAL ")
        return [line[:300] for line in lines if any(m in line for m in markers)]

    def first_traceback(self) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace")
        except OSError:
            return ""
        start = text.find("Traceback")
        if start < 0:
            return ""
        block = text[start:].splitlines()
        end = next((i for i, line in enumerate(block[1:], 1) if not line.startswith(" ")), 0)
        return "\n".join(block[: end + 1])


# -- output ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the extra measurements table."""

    area: str
    measurement: str
    value: str
    goal: str = ""
    verdict: str = "info"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"
