"""The cost of vetting: how long content inspection takes for a typical and a ~100 MB wheel.

    .venv/bin/python bench/top_releases.py          # once: fills the cache
    .venv/bin/python bench/vetting_cost.py [--runs 7] [--save]

Real wheels, for Linux x86_64 CPython 3.12:
- typical: the median-size pure-Python wheel among the current releases of the top-200 corpus;
- the median platform (compiled) wheel among the corpus's current wheels;
- the largest current wheel of the corpus (the corpus holds none near 100 MB);
- ~100 MB: the current catboost wheel (97 MB when chosen), with its previous release's,
  chosen once into bench/vetting_cost_large.tsv and fetched into the same cache.

Each current wheel is inspected as the vetting worker does: the previous release's wheel is
inspected first (untimed) for its summary, then ``inspect_file`` on the current wheel,
``--runs`` times in this process, one at a time. It prints the median wall and CPU seconds
(CPU time is less disturbed by other work on a shared machine); ``--save`` also writes the
table to bench/results/<date>-vetting-cost-<commit>.md. ``bench/false_positives.py --top200
--cost`` runs it after the false-positive check.
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_wheel_filename
from result_file import commit_label, save, today
from top_releases import (
    CURRENT,
    DEFAULT_CACHE,
    MB,
    PREVIOUS,
    WHEEL,
    Chosen,
    choose,
    download_all,
    fetch_page,
    is_cached,
    read_versions,
    write_versions,
)

from mirror.upstream.default_index import pip_index_url
from quarantine.inspect.check import inspect_file
from quarantine.inspect.release_diff import ArchiveSummary

BENCH = Path(__file__).resolve().parent
LARGE_CHOICE = BENCH / "vetting_cost_large.tsv"
LARGE_PROJECT = "catboost"
CAP_BYTES = 300 * MB


@dataclass(frozen=True)
class Subject:
    label: str
    current: Chosen
    previous: Chosen | None


@dataclass(frozen=True)
class Timing:
    subject: Subject
    wall: list[float]
    cpu: list[float]
    findings: int


def _is_pure(item: Chosen) -> bool:
    return all(tag.platform == "any" for tag in parse_wheel_filename(item.filename)[3])


def _previous_of(item: Chosen, chosen: list[Chosen]) -> Chosen | None:
    for other in chosen:
        if (other.project, other.role, other.kind) == (item.project, PREVIOUS, WHEEL):
            return other if not other.skipped else None
    return None


def corpus_subjects(chosen: list[Chosen]) -> list[Subject]:
    wheels = [c for c in chosen if c.role == CURRENT and c.kind == WHEEL and not c.skipped]
    pure = sorted((c for c in wheels if _is_pure(c)), key=lambda c: c.size)
    binary = sorted((c for c in wheels if not _is_pure(c)), key=lambda c: c.size)
    picks = [
        ("typical: the median pure-Python wheel of the corpus", pure[len(pure) // 2]),
        ("the median platform wheel of the corpus", binary[len(binary) // 2]),
        ("the largest wheel of the corpus", max(wheels, key=lambda c: c.size)),
    ]
    return [Subject(label, item, _previous_of(item, chosen)) for label, item in picks]


def large_subject(index: str, cache: Path) -> Subject:
    """The ~100 MB wheel: chosen once (then read from the committed choice) and cached."""
    if not LARGE_CHOICE.exists():
        page = fetch_page(index, LARGE_PROJECT, cache)
        wheels = [c for c in choose(LARGE_PROJECT, page, CAP_BYTES) if c.kind == WHEEL]
        write_versions(wheels, LARGE_CHOICE)
    chosen = read_versions(LARGE_CHOICE)
    failures = download_all(index, chosen, cache, jobs=2)
    if failures:
        raise SystemExit("; ".join(failures))
    current = next(c for c in chosen if c.role == CURRENT)
    return Subject("~100 MB wheel", current, _previous_of(current, chosen))


def _summary(item: Chosen | None, cache: Path) -> ArchiveSummary | None:
    if item is None or not is_cached(item, cache):
        return None
    return inspect_file(item.path(cache), item.filename, None).summary


def measure(subject: Subject, cache: Path, runs: int) -> Timing:
    previous = _summary(subject.previous, cache)
    path, name = subject.current.path(cache), subject.current.filename
    wall, cpu, findings = [], [], 0
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = inspect_file(path, name, previous)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        findings = len(result.findings)
    return Timing(subject, wall, cpu, findings)


def render(timings: list[Timing], runs: int, commit: str, today: str) -> str:
    lines = [
        f"## Vetting cost: lazaretto {commit}, {today}",
        "",
        f"Python {sys.version.split()[0]}; `inspect_file` in one process, compared with the "
        f"previous release's wheel; median of {runs} runs (min-max in brackets).",
        "",
        "| wheel | file | size | previous | wall s | CPU s | MB/s (wall) | findings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        wall, cpu = statistics.median(t.wall), statistics.median(t.cpu)
        size = t.subject.current.size / MB
        previous = t.subject.previous.version if t.subject.previous else "none"
        lines.append(
            f"| {t.subject.label} | `{t.subject.current.filename}` | {size:.1f} MB | {previous} "
            f"| {wall:.3f} [{min(t.wall):.3f}-{max(t.wall):.3f}] "
            f"| {cpu:.3f} [{min(t.cpu):.3f}-{max(t.cpu):.3f}] | {size / wall:.0f} | {t.findings} |"
        )
    return "\n".join(lines) + "\n"


def cost_report(cache: Path, runs: int) -> str:
    subjects = corpus_subjects(read_versions())
    subjects.append(large_subject(pip_index_url(), cache))
    missing = [s.current.filename for s in subjects if not is_cached(s.current, cache)]
    if missing:
        raise SystemExit(f"not in {cache}: {', '.join(missing)}; run bench/top_releases.py")
    load = os.getloadavg()[0]  # the machine may be shared: the wall times depend on it
    timings = [measure(subject, cache, runs) for subject in subjects]
    report = render(timings, runs, commit_label(), today())
    return report + f"\nLoad average at the start: {load:.1f} ({os.cpu_count()} cores).\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--save", action="store_true", help="also write it to bench/results/")
    args = parser.parse_args()
    report = cost_report(args.cache, args.runs)
    print(report)
    if args.save:
        save("vetting-cost", report)


if __name__ == "__main__":
    main()
