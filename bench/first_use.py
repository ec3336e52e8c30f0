"""First use at real-index scale (issue 14): a fresh mirror in front of a replay of real projects.

Run on demand (never in the test suite), from the repository root:

    .venv/bin/python bench/first_use.py                  # before (8d86e71) and after (this tree)
    .venv/bin/python bench/first_use.py --only after --max-seconds 300

The upstream replays the shape recorded by bench/index_shape.py (litellm, numpy,
pydantic-core, boto3, botocore, fastapi and what pip pulls with them for Linux x86_64 /
CPython 3.12): every file's name, upload time (shifted so that the start of the run is the
moment of the recording), requires-python and yanked flag, with synthetic bytes (the
recorded size up to a cap; older files are small placeholders). The mirror starts with a
fresh data directory and its defaults (72 h cooling; the default platform filter when the
tree has one). Then, for each tree:

1. pip resolves every project directly from the upstream with ``--uploaded-prior-to``
   72 h ago: what a cooled, vetted mirror should give (checked against this script's own
   reading of the pages, which the polling below uses);
2. the first request: pip resolves through the mirror (cold);
3. the pages are polled until they list what the direct resolution picked, then pip
   confirms through the mirror: seconds from the first request to agreement;
4. from the first request on, a side thread times page requests (curl, one at a time,
   round the projects the mirror has recorded a look at: no cold miss), RSS is sampled
   every second, and the run ends when vetting has been idle
   for ``--idle-seconds`` after agreement, or at ``--max-seconds``.

It prints one table and saves it under bench/results/. Loopback only.
"""

import argparse
import contextlib
import functools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import (
    JSON_ACCEPT,
    REPO,
    VENV_PYTHON,
    BenchError,
    Lazaretto,
    LazarettoSpec,
    curl_time,
    fetch,
    markdown_table,
)
from index_shape import PLATFORMS, PYTHON, Shape, clean_env, load_shape
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version
from replay_upstream import Generated, generate, recorded_sizes, replay

BEFORE = "8d86e71"
COOLING = timedelta(hours=72)
WORK = Path(tempfile.gettempdir()) / "lazaretto-first-use"
RESULTS = REPO / "bench" / "results"
INTERPRETER = f"cp{PYTHON[0]}{PYTHON[1]}"
TAGS = frozenset(cpython_tags(PYTHON, [INTERPRETER], PLATFORMS)) | frozenset(
    compatible_tags(PYTHON, INTERPRETER, PLATFORMS)
)
PYTHON_VERSION = Version(".".join(map(str, PYTHON)))


def log(message: str) -> None:
    print(f"[first_use {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- what pip picks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    filename: str
    requires_python: str | None
    yanked: bool


def _python_ok(requires: str | None) -> bool:
    if not requires:
        return True
    try:
        return PYTHON_VERSION in SpecifierSet(requires)
    except InvalidSpecifier:
        return True  # pip ignores a requires-python it cannot read


@functools.cache
def installable(filename: str, requires_python: str | None) -> Version | None:
    """The version of a wheel pip may install here (``--only-binary=:all:``, no --pre)."""
    if not filename.endswith(".whl"):
        return None
    try:
        _, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    if version.is_prerelease or not tags & TAGS or not _python_ok(requires_python):
        return None
    return version


def pick(files: Iterable[Listed]) -> Version | None:
    """The version pip installs for this machine."""
    versions = (
        installable(file.filename, file.requires_python) for file in files if not file.yanked
    )
    return max((v for v in versions if v is not None), default=None)


class Expected:
    """What the upstream offers for this machine, uploaded before a moment (cheap to ask)."""

    def __init__(self, shape: Shape, started: datetime) -> None:
        self.started = started  # the replay's "now" is the recording time
        self.installable: dict[NormalizedName, list[tuple[int, Version]]] = {}
        for project, files in shape.files.items():
            found = []
            for file in files:
                version = None if file.yanked else installable(file.filename, file.requires_python)
                if version is not None:
                    found.append((file.age_seconds, version))
            self.installable[project] = found

    def before(self, cut: datetime) -> dict[NormalizedName, Version]:
        oldest_age = (self.started - cut).total_seconds()
        found = {}
        for project, candidates in self.installable.items():
            cooled = [version for age, version in candidates if age >= oldest_age]
            if cooled:
                found[project] = max(cooled)
        return found


def listed_by(index_url: str, project: str) -> Version | None:
    page = fetch(f"{index_url}{project}/", accept=JSON_ACCEPT, timeout=120)
    if page.status != 200:
        return None
    entries = json.loads(page.body)["files"]
    return pick(
        Listed(e["filename"], e.get("requires-python"), bool(e.get("yanked"))) for e in entries
    )


@dataclass(frozen=True)
class PipRun:
    seconds: float
    versions: dict[NormalizedName, Version]
    error: str = ""


def pip_resolve(
    index_url: str, projects: Iterable[str], prior_to: datetime | None = None
) -> PipRun:
    """``pip install --dry-run --report`` for Linux x86_64 / CPython 3.12, wheels only."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            str(VENV_PYTHON), "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
            "--ignore-installed", "--no-cache-dir", "--report", str(report),
            "--index-url", index_url, "--only-binary=:all:", "--implementation", "cp",
            "--python-version", ".".join(map(str, PYTHON)),
            *(f"--platform={platform}" for platform in PLATFORMS),
        ]  # fmt: skip
        if prior_to is not None:
            command += ["--uploaded-prior-to", prior_to.strftime("%Y-%m-%dT%H:%M:%SZ")]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, *projects], env=clean_env(), capture_output=True, text=True, timeout=600
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            return PipRun(seconds, {}, (done.stdout + done.stderr).strip()[-600:])
        installed = json.loads(report.read_text())["install"]
    versions = {
        canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"])
        for i in installed
    }
    return PipRun(seconds, versions)


def differences(
    got: Mapping[NormalizedName, Version], wanted: Mapping[NormalizedName, Version]
) -> list[str]:
    return [
        f"{name} {got.get(name, 'none')} (want {version})"
        for name, version in sorted(wanted.items())
        if got.get(name) != version
    ]


# -- side measurements -------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every second: RSS of the server and of its vetting child (``vetting_worker =
    "child"``), PSS of everything else they started (the inspection pool)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.server_mb: list[float] = []
        self.child_mb: list[float] = []
        self.pool_mb: list[float] = []
        self.pool_processes = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.server_mb.append(_status_kb(self.pid, "VmRSS") / 1024)
            children = [pid for pid in _descendants(self.pid, depth=1) if _vetting_child(pid)]
            self.child_mb.append(sum(_status_kb(pid, "VmRSS") for pid in children) / 1024)
            pool = [pid for pid in _descendants(self.pid) if pid not in children]
            self.pool_processes = max(self.pool_processes, len(pool))
            self.pool_mb.append(sum(_pss_kb(pid) for pid in pool) / 1024)


def _vetting_child(pid: int) -> bool:
    """The server's vetting child: a spawned child leading a process group of its own
    (inspection workers in the server's process, as before it, lead none)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        pgid = int(stat[stat.rfind(")") + 2 :].split()[2])
        return pgid == pid and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _descendants(root: int, depth: int = 1_000) -> Iterator[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    frontier = [(root, 0)]
    while frontier:
        parent, level = frontier.pop()
        if level >= depth:
            continue
        for pid, ppid in parents.items():
            if ppid == parent:
                yield pid
                frontier.append((pid, level + 1))


class PageProbe(threading.Thread):
    """Times one page request after another (curl, JSON), round the projects the mirror
    has recorded a look at, from the first request on (beside the cold pip): warm pages
    and pages rebuilt after a change, never a cold miss (an upstream look, timed by the
    cold pip itself)."""

    def __init__(self, index_url: str, projects: list[str], started: float, data_dir: Path) -> None:
        super().__init__(name="page-probe", daemon=True)
        self.index_url, self.projects, self.started = index_url, projects, started
        self.data_dir = data_dir
        self.samples: list[tuple[float, float, int, str]] = []  # (at, seconds, status, name)
        self.stopping = threading.Event()

    def run(self) -> None:
        index, known, read_at = 0, [], 0.0
        while not self.stopping.wait(0.05):
            if time.monotonic() - read_at >= 1.0:
                recorded = set(recorded_projects(self.data_dir))
                known = [p for p in self.projects if p in recorded]
                read_at = time.monotonic()
            if not known:
                continue
            project = known[index % len(known)]
            index += 1
            at = time.monotonic() - self.started
            self.samples.append((at, *time_page(self.index_url, project), project))


# The probe's curl takes no gzip unless --probe-gzip says to, as pip and uv do (a mirror
# may keep a large page as its gzip variant only, and inflate it for a client like curl).
PROBE_HEADERS = [f"Accept: {JSON_ACCEPT}"]


def time_page(index_url: str, project: str) -> tuple[float, int]:
    """Seconds for one whole JSON page (curl), and its status (0: no answer)."""
    try:
        timing = curl_time(f"{index_url}{project}/", PROBE_HEADERS, timeout=60)
    except (OSError, ValueError, subprocess.SubprocessError):
        return float("inf"), 0
    return timing.total, timing.status


# -- the ledger (read only) --------------------------------------------------------------------


@dataclass(frozen=True)
class Vetting:
    inspected: int  # files with a content verdict
    first: datetime | None
    last: datetime | None
    waiting: int  # held, not established, not deferred, no content verdict yet
    states: dict[str, int]
    deferred: int = 0  # held and listed, vetted when first downloaded (none before the field)


def recorded_projects(data_dir: Path) -> list[str]:
    """The projects whose look the ledger holds (none while it is being created)."""
    path = data_dir / "ledger.sqlite3"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return [str(name) for (name,) in db.execute("SELECT name FROM projects")]
    except sqlite3.Error:
        return []


def read_ledger(data_dir: Path) -> Vetting:
    path = data_dir / "ledger.sqlite3"
    if not path.exists():
        return Vetting(0, None, None, 0, {})
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        count, first, last = db.execute(
            "SELECT COUNT(*), MIN(at), MAX(at) FROM evidence WHERE check_name = 'content'"
        ).fetchone()
        columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
        deferring = "deferral" in columns  # a tree from before deferral has no such column
        not_deferred = "AND deferral IS NOT 'until-download' " if deferring else ""
        (waiting,) = db.execute(
            f"SELECT COUNT(*) FROM files f WHERE state = 'held' AND established = 0 {not_deferred}"
            "AND NOT EXISTS (SELECT 1 FROM evidence e WHERE e.project = f.project AND "
            "e.filename = f.filename AND e.check_name = 'content')"
        ).fetchone()
        states = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        deferred = 0
        if deferring:
            (deferred,) = db.execute(
                "SELECT COUNT(*) FROM files WHERE state = 'held' AND deferral = 'until-download'"
            ).fetchone()
    return Vetting(
        int(count),
        datetime.fromisoformat(first) if first else None,
        datetime.fromisoformat(last) if last else None,
        int(waiting),
        {str(k): int(v) for k, v in states.items()},
        int(deferred),
    )


# -- one tree -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    describe: str
    tree: Path  # the source tree the mirror runs from
    program: str  # its ``lazaretto`` command ("" for this checkout's)


@dataclass
class Outcome:
    target: Target
    filters: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    selector_mismatch: list[str] = field(default_factory=list)
    direct: PipRun | None = None
    cold: PipRun | None = None
    cold_older: list[str] = field(default_factory=list)
    pages_agree: float | None = None
    pip_agree: float | None = None
    pip_checks: int = 0
    served: dict[str, int] = field(default_factory=dict)
    vetting: Vetting | None = None
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    pages: list[tuple[float, float, int, str]] = field(default_factory=list)
    quiet: list[tuple[float, int, str]] = field(default_factory=list)  # after the backlog
    agreed: dict[str, float] = field(default_factory=dict)  # project -> seconds
    backlog_end: float = 0.0
    server_mb: list[float] = field(default_factory=list)
    child_mb: list[float] = field(default_factory=list)
    pool_mb: list[float] = field(default_factory=list)
    pool_processes: int = 0
    seconds: float = 0.0
    ended: str = ""
    problems: list[str] = field(default_factory=list)


def before_target(commit: str) -> Target:
    tree = WORK / f"tree-{commit}"
    if not (tree / "mirror").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    launcher = tree / "lazaretto"
    launcher.write_text(
        f"#!{VENV_PYTHON}\nimport sys\nsys.path.insert(0, {str(tree)!r})\n"
        "from mirror.cli.main import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return Target("before", f"{commit} (git archive)", tree, str(launcher))


def after_target() -> Target:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Target("after", f"{head} (this checkout)", REPO, "")


def platform_filter(tree: Path) -> str:
    """The tree's default platform filter (``Policy.wheel_filter``), or that it has none."""
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(tree)!r})\n"
        "from quarantine.policy import Policy\n"
        "found = getattr(Policy(), 'wheel_filter', None)\n"
        "print(found.describe() if found is not None else '')\n"
    )
    done = subprocess.run(
        [str(VENV_PYTHON), "-c", probe], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return f"could not read the settings: {done.stderr.strip()[-200:]}"
    return "; ".join(done.stdout.strip().splitlines()) or "none (no `platforms` setting)"


def run_target(
    target: Target, shape: Shape, generated: Generated, args: argparse.Namespace
) -> Outcome:
    outcome = Outcome(target, platform_filter(target.tree), os.getloadavg())
    log(f"{target.label}: {target.describe}; platform filter: {outcome.filters}")
    projects = shape.projects
    started_at = datetime.now(UTC)
    upstream = replay(shape, generated, started_at)
    state = WORK / f"run-{target.label}"
    shutil.rmtree(state, ignore_errors=True)
    with upstream:
        cut = datetime.now(UTC) - COOLING
        outcome.direct = pip_resolve(upstream.url, projects, prior_to=cut)
        if outcome.direct.error:
            raise BenchError(f"direct pip failed: {outcome.direct.error}")
        wanted = Expected(shape, started_at)
        outcome.selector_mismatch = differences(outcome.direct.versions, wanted.before(cut))
        upstream.served.clear()
        spec = LazarettoSpec(state, state / "data", upstream.url, "72h", program=target.program)
        mirror = Lazaretto(spec)
        mirror.start()
        try:
            _measure(outcome, mirror, wanted, projects, args)
        finally:
            outcome.served = dict(upstream.served)
            outcome.problems = mirror.problems()
            mirror.stop()
            if not args.keep:
                shutil.rmtree(spec.data_dir, ignore_errors=True)
    outcome.load_after = os.getloadavg()
    return outcome


def _measure(
    outcome: Outcome,
    mirror: Lazaretto,
    wanted: Expected,
    projects: list[NormalizedName],
    args: argparse.Namespace,
) -> None:
    pid = mirror.pid
    assert pid is not None
    sampler = Sampler(pid)
    sampler.start()
    index_url = mirror.spec.index_url
    t0 = time.monotonic()
    t0_wall = datetime.now(UTC)
    probe = PageProbe(index_url, list(projects), t0, mirror.spec.data_dir)
    probe.start()
    cold = pip_resolve(index_url, projects)
    outcome.cold = cold
    want = wanted.before(datetime.now(UTC) - COOLING)
    outcome.cold_older = differences(cold.versions, want) if not cold.error else ["pip failed"]
    if cold.error:
        log(f"cold pip failed: {cold.error}")
    if not outcome.cold_older:
        outcome.pages_agree = outcome.pip_agree = cold.seconds
    pending = set(want)
    last_count, last_change = -1, time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < args.max_seconds:
            want = wanted.before(datetime.now(UTC) - COOLING)
            if outcome.pip_agree is None:
                for project in sorted(pending):
                    if listed_by(index_url, project) == want.get(project):
                        pending.discard(project)
                        outcome.agreed.setdefault(project, time.monotonic() - t0)
                if not pending and outcome.pages_agree is None:
                    outcome.pages_agree = time.monotonic() - t0
                if not pending:
                    check = pip_resolve(index_url, projects)
                    outcome.pip_checks += 1
                    if not check.error and not differences(check.versions, want):
                        outcome.pip_agree = time.monotonic() - t0
                    else:
                        pending = set(want)  # pip saw something else: look again
            vetting = read_ledger(mirror.spec.data_dir)
            outcome.timeline.append((elapsed, vetting.inspected, vetting.waiting))
            if vetting.inspected != last_count:
                last_count, last_change = vetting.inspected, time.monotonic()
            idle = time.monotonic() - last_change
            if outcome.pip_agree is not None and idle >= args.idle_seconds:
                outcome.ended = f"vetting idle for {args.idle_seconds:.0f} s after agreement"
                break
            time.sleep(args.poll_seconds)
        else:
            outcome.ended = f"--max-seconds {args.max_seconds:.0f} reached"
    finally:
        probe.stopping.set()
        sampler.stopping.set()
        probe.join(90)
        sampler.join(10)
    outcome.seconds = time.monotonic() - t0
    outcome.vetting = read_ledger(mirror.spec.data_dir)
    last = outcome.vetting.last
    outcome.backlog_end = (last - t0_wall).total_seconds() if last else outcome.seconds
    outcome.pages = probe.samples
    outcome.quiet = [(*time_page(index_url, project), project) for project in projects]
    outcome.server_mb, outcome.pool_mb = sampler.server_mb, sampler.pool_mb
    outcome.child_mb = sampler.child_mb
    outcome.pool_processes = sampler.pool_processes


# -- the table -------------------------------------------------------------------------------


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _s(value: float | None, limit: float) -> str:
    return f"{value:.0f} s" if value is not None else f"not within {limit:.0f} s"


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _list(items: list[str], first: int = 6) -> str:
    more = "…" if len(items) > first else ""
    return f"{len(items)}: " + ", ".join(items[:first]) + more if items else "0"


def rows(outcome: Outcome, shape: Shape, args: argparse.Namespace) -> list[tuple[str, str]]:
    sizes = recorded_sizes(shape)
    requested = set(shape.requested)
    real = sum(sizes[f][1] for f in outcome.served)
    six = sum(sizes[f][1] for f in outcome.served if sizes[f][0] in requested)
    synthetic = sum(outcome.served.values())
    vetting = outcome.vetting or Vetting(0, None, None, 0, {})
    per_minute = vetting.inspected / (max(outcome.backlog_end, 1.0) / 60)
    during = [(s, c, p) for at, s, c, p in outcome.pages if at <= outcome.backlog_end]
    server = outcome.server_mb or [0.0]
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(vetting.states.items()))
    direct = f"{outcome.direct.seconds:.0f} s" if outcome.direct else "-"
    cold = f"{outcome.cold.seconds:.0f} s" if outcome.cold else "-"
    pip_agree = _s(outcome.pip_agree, args.max_seconds) + f" ({outcome.pip_checks} pip checks)"
    load = f"{_load(outcome.load_before)} → {_load(outcome.load_after)}"
    pages_agree = _s(outcome.pages_agree, args.max_seconds)
    fetched = f"{synthetic / 1e9:.2f} / {real / 1e9:.2f} GB"
    rate = f"{per_minute:,.0f} ({outcome.backlog_end:.0f} s)"
    pool = f"{max(outcome.pool_mb, default=0):.0f} MB ({outcome.pool_processes})"
    kid = outcome.child_mb or [0.0]
    child = f"{max(kid):.0f} / {kid[-1]:.0f} MB" if max(kid) else "none"
    return [
        ("platform filter (the tree's default)", outcome.filters),
        ("direct pip, --uploaded-prior-to 72 h ago", direct),
        ("this script's page reading picks as direct pip", _list(outcome.selector_mismatch)),
        ("cold pip through the mirror (the first request)", cold),
        (f"cold pip: projects not as direct (of {len(shape.files)})", _list(outcome.cold_older)),
        ("pages list the direct versions, from the first request", pages_agree),
        ("pip through the mirror agrees (goal ≤ 60 s)", pip_agree),
        ("files fetched from the upstream", f"{len(outcome.served):,}"),
        ("bytes fetched: synthetic / at real sizes", fetched),
        ("… the six requested, at real sizes (goal < 2 GB)", f"{six / 1e9:.2f} GB"),
        ("files inspected (content verdicts)", f"{vetting.inspected:,}"),
        ("… per minute, first request to last verdict (goal ≥ 2,000)", rate),
        ("held, not established, no verdict at the end", f"{vetting.waiting:,}"),
        ("… deferred: listed, vetted when first downloaded", f"{vetting.deferred:,}"),
        ("file states at the end", states),
        ("page p50 / p99 / max during the backlog (goal p99 < 50 ms)", _pages(during)),
        ("… the same pages once each after the backlog", _pages(outcome.quiet)),
        ("server RSS peak / at the end", f"{max(server):.0f} / {server[-1]:.0f} MB"),
        ("vetting child RSS peak / at the end (none: vetting in the server)", child),
        ("inspection processes: peak PSS sum (processes)", pool),
        ("run length; why it ended", f"{outcome.seconds:.0f} s; {outcome.ended}"),
        ("load average 1/5/15 min, start → end", load),
        ("tracebacks and errors in the mirror's log", str(len(outcome.problems))),
    ]  # fmt: skip


def _pages(samples: list[tuple[float, int, str]]) -> str:
    seconds = [s for s, _, _ in samples]
    p50, p99, worst = _pct(seconds, 50), _pct(seconds, 99), max(seconds, default=0.0)
    bad = sum(1 for _, code, _ in samples if code != 200)
    slow = sorted(samples, reverse=True)[:3]
    names = ", ".join(f"{p} {s * 1e3:.0f}" for s, _, p in slow)
    return (
        f"{p50 * 1e3:.0f} / {p99 * 1e3:.0f} / {worst * 1e3:.0f} ms "
        f"({len(samples)} pages, {bad} not 200; slowest: {names})"
    )


def timeline(outcome: Outcome) -> str:
    """Verdicts and files waiting every 30 s; the last projects to list the direct versions."""
    marks, next_mark = [], 30.0
    for at, inspected, waiting in outcome.timeline:
        if at >= next_mark:
            marks.append(f"{at:.0f} s: {inspected:,} inspected, {waiting:,} waiting")
            next_mark += 30
    last = sorted(outcome.agreed.items(), key=lambda item: -item[1])[:4]
    agreed = ", ".join(f"{p} {s:.0f} s" for p, s in last)
    return ("; ".join(marks) or "(under 30 s)") + f". Last projects to agree: {agreed or '-'}"


def per_project(outcome: Outcome, shape: Shape) -> list[tuple[str, int, float]]:
    sizes = recorded_sizes(shape)
    files: Counter[str] = Counter()
    gb: Counter[str] = Counter()
    for filename in outcome.served:
        project, size = sizes[filename]
        files[project] += 1
        gb[project] += size
    return [(p, files[p], gb[p] / 1e9) for p, _ in gb.most_common(8)]


def report(
    outcomes: list[Outcome], shape: Shape, generated: Generated, args: argparse.Namespace
) -> str:
    head = ["", *(f"{o.target.label}: {o.target.describe}" for o in outcomes)]
    columns = [rows(o, shape, args) for o in outcomes]
    table = [[label, *(c[i][1] for c in columns)] for i, (label, _) in enumerate(columns[0])]
    files = sum(len(v) for v in shape.files.values())
    lines = [
        f"## First use at real-index scale ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/first_use.py', *sys.argv[1:]])}`",
        "",
        f"Replay of {len(shape.files)} projects, {files:,} files, recorded "
        f"{shape.recorded_at:%Y-%m-%d %H:%M} UTC from the index pip is set up for "
        f"(requested: {', '.join(shape.requested)}; the rest is what pip pulls with them for "
        f"Linux x86_64 / CPython 3.12). {len(generated.shaped):,} files are shaped (synthetic "
        f"bytes of the recorded size, capped at {shape.max_file_bytes / 2**20:.0f} MiB a file: "
        f"{generated.cache_bytes / 1e9:.2f} GB in all), {len(generated.placeholders):,} older "
        f"ones ~1.5 KB placeholders; bytes at real sizes count each fetched file at its "
        f"recorded size. Mirror: fresh data directory, defaults (72 h cooling, 30 d vetting "
        f"window). pip {_pip_version()}, resolving all {len(shape.files)} projects with "
        f"`--no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_39…` "
        f"(the synthetic wheels declare no dependencies). {os.cpu_count()} cores, shared.",
        "",
        markdown_table(head, table),
        "",
    ]
    for outcome in outcomes:
        lines.append(f"- {outcome.target.label}, timeline: {timeline(outcome)}")
        top = ", ".join(f"{p} {n} files {g:.2f} GB" for p, n, g in per_project(outcome, shape))
        lines.append(f"- {outcome.target.label}, fetched at real sizes, largest: {top}")
        for problem in outcome.problems[:3]:
            lines.append(f"- {outcome.target.label}, log: `{problem[:200]}`")
    return "\n".join(lines) + "\n"


def _pip_version() -> str:
    done = subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    return done.stdout.split()[1] if done.returncode == 0 else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the commit measured as 'before'")
    parser.add_argument("--only", choices=["before", "after"])
    parser.add_argument("--max-seconds", type=float, default=480.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the mirrors' data dirs")
    parser.add_argument(
        "--probe-gzip", action="store_true", help="time pages asked with gzip, as pip asks"
    )
    args = parser.parse_args()
    if args.probe_gzip:
        PROBE_HEADERS.append("Accept-Encoding: gzip")
    shape = load_shape()
    generated = generate(shape, WORK / "files")
    targets = []
    if args.only in (None, "before"):
        targets.append(before_target(args.before))
    if args.only in (None, "after"):
        targets.append(after_target())
    try:
        outcomes = [run_target(target, shape, generated, args) for target in targets]
    except BenchError as error:
        print(f"first_use: {error}", file=sys.stderr)
        return 1
    text = report(outcomes, shape, generated, args)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.only is None else f"-{args.only}"
    out = RESULTS / f"{datetime.now(UTC):%Y-%m-%d-%H%M}-first-use{suffix}.md"
    out.write_text(text)
    log(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
