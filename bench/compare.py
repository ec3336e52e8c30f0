"""Lazaretto side by side with nginx, proxpi and devpi-server (issue 5), plus the extras.

Run on demand (never in the test suite), from the repository root:

    .venv/bin/python bench/compare.py            # full: 3 reps x 10 s per wrk figure, ~35 min
    .venv/bin/python bench/compare.py --quick    # smoke: 1 rep x 3 s, ~12 min
    .venv/bin/python bench/compare.py --only ledger,bigfile

It uses the shared harness in ../shared/bench (never copied here): builds the local static
upstream if /tmp/mirror-bench/upstream is missing, starts nginx on 127.0.0.1:8000 unless it
already answers, runs `bench.py run` for nginx, proxpi, devpi and Lazaretto in one session,
then `bench.py report --baseline nginx --spread`, the issue's goal table, and the extra
measurements (bigproject, ledger, bigfile, vetting, load). Everything goes to stdout as
markdown and to bench/results/<date>-lazaretto[-quick].md. Every server started here is
stopped (by PID) at the end. Loopback only; every load loop is bounded in time.

Needs: nginx (apt-get install nginx-light), wrk, curl, ss, python3.
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from bench_support import (
    JSON_ACCEPT,
    REPO,
    SHARED_BENCH,
    VENV,
    VENV_PYTHON,
    BenchError,
    Lazaretto,
    LazarettoSpec,
    Row,
    fetch,
    log,
    markdown_table,
    require_tools,
    run_logged,
)

BENCH_DIR = Path("/tmp/mirror-bench")
UPSTREAM_ROOT = BENCH_DIR / "upstream"
UPSTREAM_DL = BENCH_DIR / "dl"
UPSTREAM_PORT = 8000
UPSTREAM_INDEX = f"http://127.0.0.1:{UPSTREAM_PORT}/simple/"
ANCHORS = ("nginx", "proxpi", "devpi")
TARGETS = (*ANCHORS, "lazaretto")
EXTRA_NAMES = ("bigproject", "ledger", "bigfile", "vetting", "load")
SCRIPT_ENV = {
    "BENCH_DIR": str(BENCH_DIR),
    "BENCH_RUN": str(BENCH_DIR / "run"),
    "UPSTREAM_ROOT": str(UPSTREAM_ROOT),
    "UPSTREAM_PORT": str(UPSTREAM_PORT),
    "UPSTREAM_INDEX": UPSTREAM_INDEX,
    "PROXPI_VENV": str(BENCH_DIR / "venv-proxpi"),
    "DEVPI_VENV": str(BENCH_DIR / "venv-devpi"),
}


# -- the harness's --reset-cmd / --pid-cmd ------------------------------------------------------


def ctl(argv: Sequence[str]) -> int:
    """``compare.py _ctl reset|stop STATE_DIR``: used by bench.py between its runs."""
    if len(argv) != 2 or argv[0] not in ("reset", "stop"):
        print("usage: compare.py _ctl reset|stop STATE_DIR", file=sys.stderr)
        return 2
    mirror = Lazaretto(LazarettoSpec.load(Path(argv[1])))
    if argv[0] == "reset":
        mirror.reset()
        print(f"lazaretto pid {mirror.pid} (reset, empty data dir)")
    else:
        mirror.stop()
    return 0


# -- cooling period -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cooling:
    period: str
    fresh_age: timedelta  # the oldest of the harness's fresh synthetic 2.1.0 files
    listed_age: timedelta  # the youngest of every other file
    built: datetime | None

    def describe(self) -> str:
        built = f"built {self.built:%Y-%m-%d %H:%M} UTC; " if self.built else ""
        return (
            f"`--cooling-period {self.period}` with `LAZARETTO_VETTING_WINDOW=0s` "
            f"(also `LAZARETTO_ACCESS_LOG=false LAZARETTO_LOG_LEVEL=warning "
            f"LAZARETTO_FILE_HOSTS=`). The upstream tree ({built}build_upstream.py dates real "
            f"files 30+ days back, synthetic 1.0.0/1.1.0/2.0.0 400/200/40 days, the fresh 2.1.0 "
            f"of every 10th synthetic project 1 hour) has fresh files aged at most "
            f"{_days(self.fresh_age)}, held because younger than {self.period}, and every other "
            f"file aged at least {_days(self.listed_age)}: older than cooling period + vetting "
            f"window at first sight, so established and listed at once (their bytes are fetched "
            f"and hash-checked on first download). The default 30-day vetting window would hold "
            f"the real projects (uploaded 30 days + a few hours back) for vetting."
        )


def _days(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def choose_cooling(root: Path) -> Cooling:
    now = datetime.now(UTC)
    fresh: list[timedelta] = []
    listed: list[timedelta] = []
    for page in (root / "simple").glob("*/index.v1json"):
        doc = json.loads(page.read_text())
        is_synth = re.fullmatch(r"synth-\d{4}", doc["name"]) is not None
        for entry in doc["files"]:
            uploaded = datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00"))
            target = fresh if is_synth and "-2.1.0" in entry["filename"] else listed
            target.append(now - uploaded)
    if not fresh or not listed:
        raise BenchError(f"{root} does not look like a build_upstream.py tree (no upload times)")
    built = None
    stamp = root / "simple" / "index.html"
    if stamp.exists():
        built = datetime.fromtimestamp(stamp.stat().st_mtime, UTC)
    margin = timedelta(hours=2)  # the run itself takes up to an hour
    for days in (7, 3, 14, 1, 21):
        period = timedelta(days=days)
        if max(fresh) + margin < period < min(listed) - margin:
            return Cooling(f"{days}d", max(fresh), min(listed), built)
    raise BenchError(
        f"no cooling period separates the fresh synthetic files (up to {_days(max(fresh))} old) "
        f"from the rest (from {_days(min(listed))}): the upstream tree is too old; "
        f"rebuild it with --rebuild-upstream"
    )


# -- the shared harness ---------------------------------------------------------------------


class Session:
    """Everything started in this run, stopped in reverse order at the end."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.results = BENCH_DIR / "results" / f"{self.stamp}-lazaretto"
        self.work = BENCH_DIR / "lazaretto-work" / self.stamp
        self.cleanups: list[tuple[str, Callable[[], None]]] = []
        self.problems: list[str] = []
        self.loadavg = os.getloadavg()
        self.notes: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "LAZARETTO_"))}
        self.env.update(SCRIPT_ENV)

    def on_exit(self, what: str, action: Callable[[], None]) -> None:
        self.cleanups.append((what, action))

    def close(self) -> None:
        while self.cleanups:
            what, action = self.cleanups.pop()
            try:
                log(f"stopping {what}")
                action()
            except Exception as error:  # noqa: BLE001 - keep stopping the others
                log(f"could not stop {what}: {error}")
        shutil.rmtree(self.work, ignore_errors=True)

    def script(self, name: str, *args: str, timeout: float = 900) -> None:
        """One of the harness's shell scripts; its output goes to the run's log."""
        path = SHARED_BENCH / name
        code = run_logged(
            [str(path), *args],
            self.results / "scripts.log",
            timeout,
            self.env,
            echo=False,
        )
        if code != 0:
            raise BenchError(
                f"{name} {' '.join(args)} failed ({code}); see {self.results}/scripts.log"
            )


def ensure_upstream(session: Session) -> None:
    if session.args.rebuild_upstream and UPSTREAM_ROOT.exists():
        shutil.rmtree(UPSTREAM_ROOT)
    if not (UPSTREAM_ROOT / "simple" / "index.html").exists():
        log(f"building the upstream tree in {UPSTREAM_ROOT} (pip download of the real projects)")
        code = run_logged(
            [
                "python3",
                str(SHARED_BENCH / "build_upstream.py"),
                "--out",
                str(UPSTREAM_ROOT),
                "--dl",
                str(UPSTREAM_DL),
            ],
            session.results / "build_upstream.log",
            1800,
            session.env,
        )
        if code != 0:
            raise BenchError(f"build_upstream.py failed; see {session.results}/build_upstream.log")
    if _answers(UPSTREAM_INDEX):
        session.notes.append(f"the upstream on {UPSTREAM_INDEX} was already running: left alone")
        return
    session.script("upstream.sh", "start")
    session.on_exit("upstream nginx", lambda: session.script("upstream.sh", "stop"))
    if not _answers(UPSTREAM_INDEX):
        raise BenchError(f"nginx did not answer on {UPSTREAM_INDEX}; see {BENCH_DIR}/run")


def _answers(url: str) -> bool:
    try:
        return fetch(url, timeout=3).status == 200
    except OSError:
        return False


def harness_options(args: argparse.Namespace) -> list[str]:
    if args.quick:
        return ["--reps", "1", "--duration", "3", "--warmup", "1"]
    return ["--reps", str(args.reps), "--duration", str(args.duration)]


def run_target(session: Session, label: str, index_url: str, extra: Sequence[str]) -> Path:
    out = session.results / f"{label}.json"
    command = [
        str(SHARED_BENCH / "run.sh"),
        index_url,
        "--label",
        label,
        "--out",
        str(out),
        *extra,
        *harness_options(session.args),
    ]
    log(f"harness: {label} ({' '.join(command[1:])})")
    timeout = 900 if session.args.quick else 2700
    code = run_logged(command, session.results / f"{label}.log", timeout, session.env)
    if code != 0 or not out.exists():
        raise BenchError(
            f"the harness failed for {label} ({code}); see {session.results}/{label}.log"
        )
    return out


def run_anchor(session: Session, label: str) -> Path:
    if label == "nginx":
        # nginx has no cache: a no-op reset gives its "cold" pip figure 3 runs too
        return run_target(session, "nginx", UPSTREAM_INDEX, ["--reset-cmd", "true"])
    script = f"mirrors/{label}.sh"
    session.script(script, "install", timeout=900)
    if label == "devpi":
        session.script(script, "init", timeout=300)
    session.script(script, "start", timeout=120)
    try:
        port = os.environ.get(f"{label.upper()}_PORT") or ("5000" if label == "proxpi" else "3141")
        path = "/index/" if label == "proxpi" else "/root/pypi/+simple/"
        reset = f"{SHARED_BENCH / script} reset"
        pid = f"{SHARED_BENCH / script} pid"
        return run_target(
            session,
            label,
            f"http://127.0.0.1:{port}{path}",
            ["--reset-cmd", reset, "--pid-cmd", pid],
        )
    finally:
        session.script(script, "stop", timeout=60)


def lazaretto_spec(session: Session, cooling: Cooling, name: str) -> LazarettoSpec:
    return LazarettoSpec(
        state_dir=session.work / name,
        data_dir=session.work / name / "data",
        upstream=UPSTREAM_INDEX,
        cooling_period=cooling.period,
        env={"LAZARETTO_VETTING_WINDOW": "0s"},
    )


def run_lazaretto(session: Session, cooling: Cooling) -> Path:
    mirror = Lazaretto(lazaretto_spec(session, cooling, "harness"))
    session.on_exit("lazaretto (harness)", mirror.stop)
    try:
        mirror.start()
        _check_cooling(session, mirror)
        state = str(mirror.spec.state_dir)
        reset = f"{VENV_PYTHON} {Path(__file__).resolve()} _ctl reset {state}"
        out = run_target(
            session,
            "lazaretto",
            mirror.spec.index_url,
            ["--reset-cmd", reset, "--pid-cmd", f"cat {mirror.spec.pid_path}"],
        )
        if not mirror.alive():
            session.problems.append("lazaretto died during the harness run")
        return out
    finally:
        mirror.stop()
        for line in mirror.problems()[:20]:
            session.problems.append(f"lazaretto log (harness): {line}")
        trace = mirror.first_traceback()
        if trace:
            session.problems.append("first traceback in the harness run:\n```\n" + trace + "\n```")


def _check_cooling(session: Session, mirror: Lazaretto) -> None:
    """The fresh 2.1.0 of synth-0000 is held, the real projects are listed."""
    index = mirror.spec.index_url
    held = fetch(index + "synth-0000/", JSON_ACCEPT)
    real = fetch(index + "requests/", JSON_ACCEPT)
    versions = json.loads(held.body).get("versions", []) if held.status == 200 else []
    listed = real.body.count(b'"filename"') if real.status == 200 else 0
    ok = "2.0.0" in versions and "2.1.0" not in versions and listed > 0
    message = (
        f"check before the run: synth-0000 lists {versions} (2.1.0 held: "
        f"{'yes' if '2.1.0' not in versions else 'NO'}), requests lists {listed} file(s)"
    )
    session.notes.append(message)
    if not ok:
        raise BenchError("the cooling settings do not give the intended listing: " + message)


# -- tables ----------------------------------------------------------------------------------------


def load_bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shared_bench", SHARED_BENCH / "bench.py")
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {SHARED_BENCH / 'bench.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_table(results: dict[str, Path]) -> str:
    command = ["python3", str(SHARED_BENCH / "bench.py"), "report"]
    command += [str(results[t]) for t in TARGETS if t in results]
    command += ["--baseline", "nginx" if "nginx" in results else next(iter(results)), "--spread"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"bench.py report failed: {done.stderr[-500:]}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Goal:
    metric: str
    key: str
    goal: str
    check: Callable[[dict[str, float | None]], tuple[str, bool] | None]


def _vs(value: float | None, other: float | None) -> float | None:
    return value / other if value is not None and other else None


def _goal_small_json(v: dict[str, float | None]) -> tuple[str, bool] | None:
    proxpi, nginx = _vs(v["lazaretto"], v["proxpi"]), _vs(v["lazaretto"], v["nginx"])
    if proxpi is None or nginx is None:
        return None
    return f"{proxpi:.1f}x proxpi, {nginx:.1%} of nginx", proxpi >= 10 and nginx >= 0.10


def _times_proxpi(limit: float) -> Callable[[dict[str, float | None]], tuple[str, bool] | None]:
    def check(v: dict[str, float | None]) -> tuple[str, bool] | None:
        ratio = _vs(v["lazaretto"], v["proxpi"])
        return None if ratio is None else (f"{ratio:.1f}x proxpi", ratio >= limit)

    return check


def _goal_big_wheel(v: dict[str, float | None]) -> tuple[str, bool] | None:
    ratio = _vs(v["lazaretto"], v["nginx"])
    return None if ratio is None else (f"{ratio:.0%} of nginx", ratio >= 0.8)


def _goal_cold(v: dict[str, float | None]) -> tuple[str, bool] | None:
    mine, nginx = v["lazaretto"], v["nginx"]
    if mine is None or nginx is None:
        return None
    return f"{mine - nginx:+.2f} ms over nginx", mine - nginx <= 3.0


def _goal_pip(v: dict[str, float | None]) -> tuple[str, bool] | None:
    ratio = _vs(v["lazaretto"], v["nginx"])
    return None if ratio is None else (f"{ratio - 1:+.1%} vs nginx", ratio <= 1.10)


def _goal_rss(v: dict[str, float | None]) -> tuple[str, bool] | None:
    mine = v["lazaretto"]
    return None if mine is None else (f"{mine:.0f} MB", mine <= 120)


GOALS = (
    Goal("small project page, JSON, req/s", "page_small_json.rps",
         ">= 10x proxpi, >= 10% of nginx", _goal_small_json),
    Goal("300-file project page, JSON, req/s", "page_big_json.rps", ">= 10x proxpi",
         _times_proxpi(10)),
    Goal("300-file project page, HTML, req/s", "page_big_html.rps", ">= 10x proxpi",
         _times_proxpi(10)),
    Goal("~100 KB wheel, req/s", "file_small.rps", ">= 5x proxpi", _times_proxpi(5)),
    Goal("~17 MB wheel, MB/s", "file_big.mb_s", ">= 80% of nginx", _goal_big_wheel),
    Goal("cold miss, project page JSON, ms", "cold.page_json_ms",
         "<= 3 ms over the upstream's own time (nginx)", _goal_cold),
    Goal("pip install --no-compile (19 dists), warm, s", "pip.warm_nc_s", "within 10% of nginx",
         _goal_pip),
    Goal("RSS after the run, MB", "rss.rss_mb", "<= 120", _goal_rss),
)  # fmt: skip


def _number(value: float | None, key: str) -> str:
    if value is None:
        return "n/a"
    if key.endswith(".rps") or key.endswith("mb_s"):
        return f"{value:,.0f}"
    if key.endswith("_ms"):
        return f"{value:.2f}"
    if key.endswith("_s"):
        return f"{value:.2f}"
    return f"{value:.0f}"


def goal_table(results: dict[str, Path]) -> str:
    bench = load_bench_module()
    summaries: dict[str, dict[str, Any]] = {}
    for label, path in results.items():
        summaries[label] = dict(bench.summarize(json.loads(path.read_text())))
    rows = []
    for goal in GOALS:
        values: dict[str, float | None] = {}
        for label in TARGETS:
            raw = summaries.get(label, {}).get(goal.key)
            values[label] = float(raw) if isinstance(raw, int | float) else None
        checked = goal.check(values)
        ratio, verdict = (
            ("n/a", "n/a") if checked is None else (checked[0], "PASS" if checked[1] else "MISS")
        )
        rows.append(
            [
                goal.metric,
                goal.goal,
                *(_number(values[t], goal.key) for t in TARGETS),
                ratio,
                verdict,
            ]
        )
    head = ["metric", "goal", "**Lazaretto**", "nginx", "proxpi", "devpi", "ratio", "verdict"]
    ordered = [[r[0], r[1], f"**{r[5]}**", r[2], r[3], r[4], r[6], r[7]] for r in rows]
    return markdown_table(head, ordered)


def extras_table(rows: Sequence[Row]) -> str:
    return markdown_table(
        ["area", "measurement", "Lazaretto", "goal", "verdict"],
        [[r.area, r.measurement, r.value, r.goal, r.verdict] for r in rows],
    )


# -- environment ----------------------------------------------------------------------------------


def _output(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"({error})"
    return (done.stdout + done.stderr).strip()


def versions() -> list[str]:
    cpu = _output(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).strip()
    dirty = _output(["git", "-C", str(REPO), "status", "--short", "mirror", "quarantine"])
    changed = ", ".join(line.split(maxsplit=1)[-1] for line in dirty.splitlines()) or "none"
    fast = _output(
        [str(VENV_PYTHON), "-c", "import importlib.util as u;"
         "print(', '.join(m + (' yes' if u.find_spec(m) else ' no') for m in "
         "('uvloop', 'httptools')))"]
    )  # fmt: skip
    return [
        f"date: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; kernel {os.uname().release}; "
        f"{os.cpu_count()} CPUs ({cpu})",
        f"lazaretto: git {_output(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'])}; "
        f"uncommitted files in mirror/ and quarantine/ at the start: {changed}",
        f"lazaretto venv: {_output([str(VENV_PYTHON), '--version'])}; {fast}",
        f"tools: {_output(['nginx', '-v'])}; "
        f"{' '.join(_output(['wrk', '--version']).split()[:2])}; "
        f"{' '.join(_output(['curl', '--version']).split()[:2])}; "
        f"system {_output(['python3', '--version'])}",
    ]


# -- main ------------------------------------------------------------------------------------


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 rep, short runs: a smoke test")
    parser.add_argument("--reps", type=int, default=3, help="harness reps (full mode)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (full)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma list of parts: harness, {', '.join(EXTRA_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="harness targets (default: nginx,proxpi,devpi,lazaretto)",
    )
    parser.add_argument("--rebuild-upstream", action="store_true", help="rebuild the tree first")
    parser.add_argument(
        "--out-dir", type=Path, default=REPO / "bench" / "results", help="where the .md goes"
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()] or ["harness", *EXTRA_NAMES]
    unknown = set(parts) - {"harness", *EXTRA_NAMES}
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown or set(targets) - set(TARGETS):
        parser.error(f"unknown part or target: {sorted(unknown | (set(targets) - set(TARGETS)))}")
    args.parts = parts
    args.target_list = targets
    return args


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["_ctl"]:
        return ctl(argv[1:])
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    require_tools(
        {
            "wrk": "apt-get install wrk",
            "curl": "apt-get install curl",
            "ss": "apt-get install iproute2",
            "python3": "the system Python 3 runs the shared harness",
            "nginx": "apt-get install nginx-light (or nginx); upstream.sh needs it",
        }
    )
    if not (SHARED_BENCH / "bench.py").exists():
        raise BenchError(f"the shared harness is not at {SHARED_BENCH}")
    from extras import EXTRAS, Context  # imports mirror and quarantine: after the checks

    started = time.monotonic()
    session = Session(args)
    session.results.mkdir(parents=True, exist_ok=True)
    session.work.mkdir(parents=True, exist_ok=True)
    mode = "quick: 1 rep x 3 s" if args.quick else f"full: {args.reps} reps x {args.duration} s"
    sections: list[str] = []
    extra_rows: list[Row] = []
    env_lines = versions()
    cooling: Cooling | None = None
    try:
        ensure_upstream(session)
        cooling = choose_cooling(UPSTREAM_ROOT)
        log(f"cooling: {cooling.period} (fresh files up to {_days(cooling.fresh_age)} old)")
        if "harness" in args.parts:
            results: dict[str, Path] = {}
            for label in args.target_list:
                try:
                    if label == "lazaretto":
                        results[label] = run_lazaretto(session, cooling)
                    else:
                        results[label] = run_anchor(session, label)
                except BenchError as error:
                    session.problems.append(f"harness {label}: {error}")
                    log(f"harness {label} failed: {error}")
            if results:
                sections.append(
                    "## Harness: `bench.py report --baseline nginx --spread` (same session)\n\n"
                    + report_table(results)
                )
                sections.append(
                    "## Goals of issue 5 (medians of this run)\n\n" + goal_table(results)
                )
        context = Context(
            quick=args.quick,
            work=session.work / "extras",
            cooling=cooling.period,
            upstream_index=UPSTREAM_INDEX,
            upstream_dl=UPSTREAM_DL,
        )
        for name in EXTRA_NAMES:
            if name not in args.parts:
                continue
            log(f"extra: {name}")
            began = time.monotonic()
            try:
                rows = EXTRAS[name](context)
            except Exception as error:  # noqa: BLE001 - one failure must not hide the rest
                trace = traceback.format_exc()
                log(trace)
                rows = [Row(name, "ERROR", f"{type(error).__name__}: {error}", "", "ERROR")]
                session.problems.append(f"{name}: {type(error).__name__}: {error}")
            for row in rows:
                log(f"  {row.area} | {row.measurement} | {row.value} | {row.verdict}")
            extra_rows += rows
            log(f"extra {name}: {time.monotonic() - began:.0f} s")
        if extra_rows:
            sections.append("## Extra measurements\n\n" + extras_table(extra_rows))
        for title, text in context.attachments:
            sections.append(f"### {title}\n\n```\n{text}\n```")
    finally:
        session.close()
    document = _document(args, mode, cooling, env_lines, sections, session, started)
    print(document)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if set(args.parts) == {"harness", *EXTRA_NAMES} else "-" + "-".join(args.parts)
    suffix = ("-quick" if args.quick else "") + suffix
    target = args.out_dir / f"{datetime.now():%Y-%m-%d}-lazaretto{suffix}.md"
    target.write_text(document + "\n")
    (session.results / target.name).write_text(document + "\n")
    log(f"wrote {target} (raw harness output in {session.results})")
    return 0


def _document(
    args: argparse.Namespace,
    mode: str,
    cooling: Cooling | None,
    env_lines: list[str],
    sections: list[str],
    session: Session,
    started: float,
) -> str:
    head = [
        f"# Lazaretto vs nginx, proxpi, devpi-server: {datetime.now():%Y-%m-%d} ({mode})",
        "",
        f"`{' '.join(['.venv/bin/python bench/compare.py', *sys.argv[1:]])}`",
        f"took {(time.monotonic() - started) / 60:.1f} min; raw harness JSON and logs: "
        f"{session.results}",
        "",
        "Load generator (wrk) and servers share this machine's CPUs; loopback only. "
        "Compare ratios within one run, not absolute numbers across runs.",
        "",
    ]
    if cooling is not None:
        head += ["**Cooling settings:** " + cooling.describe(), ""]
    load_start, load_end = session.loadavg, os.getloadavg()
    env_lines = [
        *env_lines,
        "load average (1/5/15 min) at the start: "
        + "/".join(f"{x:.2f}" for x in load_start)
        + ", at the end: "
        + "/".join(f"{x:.2f}" for x in load_end)
        + " (other work on this machine skews absolute numbers)",
    ]
    head += [f"- {line}" for line in env_lines + session.notes]
    tail = []
    if session.problems:
        tail = ["## Problems", ""] + [f"- {p}" for p in session.problems]
    return "\n".join([*head, "", "\n\n".join(sections), "", *tail]).rstrip()


def _reexec_in_venv() -> None:
    """The extras import the project: run under the project's venv."""
    if Path(sys.prefix).resolve() != VENV.resolve() and VENV_PYTHON.exists():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    _reexec_in_venv()
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as failure:
        print(f"compare.py: {failure}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("compare.py: interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
