"""False-positive check: vet the current wheels and sdists of popular real projects.

Run on demand (it downloads from the public index; never part of the test suite):

    .venv/bin/python bench/false_positives.py --top200 --cost --save   # issue 15's figures
    .venv/bin/python bench/false_positives.py [--cache DIR] [--projects FILE]   # the small corpus

``--top200``: the current and previous release of the 200 most-downloaded projects, the files
bench/false_positives_top200_versions.tsv names (chosen by bench/top_releases.py); the first
run downloads them (~1.5 GB) into ~/.cache/lazaretto-bench/top200. ``--cost`` then times the
inspection of a few of their wheels (bench/vetting_cost.py). Otherwise: the newest
release's wheel (for this interpreter) and sdist, plus the previous release's, of
bench/false_positives_projects.txt, downloaded to /tmp/lazaretto-fp.

Each current file is inspected exactly as the vetting worker does (compared with the
summary of the previous release's file of the same kind), several files at once: in the
mirror's worker processes (default) or in threads of this process, as the mirror did
before issue 14 (CPython gh-106905 shows there as `inspection-error`). Findings map to
actions as the default policy maps them. Provenance is not fetched here. It prints the
share of current releases held for review or blocked, each held file with the findings
that hold it, and every rule's firings by severity; ``--save`` also writes that to
bench/results/<date>-false-positives[-top200]-<commit>.md. Only public entry points are
used (InspectionPool, Inspection.evidence, Policy), so it runs unchanged on later rules.
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from false_positives_report import Run, render, verdict
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from result_file import commit_label, save, today
from top_releases import (
    CURRENT,
    DEFAULT_CACHE,
    PREVIOUS,
    download_all,
    is_cached,
    read_names,
    read_versions,
)
from vetting_cost import cost_report

from mirror.upstream.default_index import pip_index_url
from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import Inspection
from quarantine.inspect.pool import InspectionPool, Inspector, InThreadInspector

# A copy of the shared harness's projects.txt (its path is not the same from every worktree).
PROJECT_LIST = Path(__file__).resolve().parent / "false_positives_projects.txt"


def _page(index: str, project: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{index.rstrip('/')}/{canonicalize_name(project)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        page: dict[str, Any] = json.load(response)
    return page


def _releases(page: dict[str, Any]) -> list[str]:
    """Release versions newest first, skipping pre-releases and yanked-only ones."""
    versions = {}
    for entry in page["files"]:
        name = entry["filename"]
        try:
            version = (
                parse_wheel_filename(name)[1]
                if name.endswith(".whl")
                else parse_sdist_filename(name)[1]
            )
        except ValueError:
            continue
        if not version.is_prerelease and not entry.get("yanked"):
            versions[str(version)] = version
    return [key for key, _ in sorted(versions.items(), key=lambda item: item[1], reverse=True)]


def _pick(page: dict[str, Any], version: str, kind: str) -> dict[str, Any] | None:
    """The sdist, or the wheel this interpreter would install (pure wheels first)."""
    tags = list(sys_tags())
    best: tuple[int, dict[str, Any]] | None = None
    for entry in page["files"]:
        name = entry["filename"]
        try:
            if name.endswith(".whl"):
                parse_wheel_filename(name)
            elif name.endswith((".tar.gz", ".zip")):
                parse_sdist_filename(name)
        except ValueError:
            continue  # ancient files with names no installer accepts
        is_sdist = name.endswith((".tar.gz", ".zip"))
        if kind == "sdist" and is_sdist and str(parse_sdist_filename(name)[1]) == version:
            found: dict[str, Any] = entry
            return found
        if kind == "wheel" and name.endswith(".whl"):
            _, parsed, _, file_tags = parse_wheel_filename(name)
            if str(parsed) != version:
                continue
            ranks = [tags.index(tag) for tag in file_tags if tag in tags]
            if ranks and (best is None or min(ranks) < best[0]):
                best = (min(ranks), entry)
    return best[1] if best else None


def _download(page: dict[str, Any], version: str, target: Path, kind: str) -> list[Path]:
    entry = _pick(page, version, kind)
    if entry is None:
        return []
    target.mkdir(parents=True, exist_ok=True)
    path = target / entry["filename"]
    if not path.exists():
        url = urllib.parse.urljoin(page["_url"], entry["url"])
        data = urllib.request.urlopen(url, timeout=300).read()
        if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
            raise RuntimeError(f"{entry['filename']}: hash mismatch")
        path.write_bytes(data)
    return [path]


def _kind(path: Path) -> str:
    return "wheel" if path.name.endswith(".whl") else "sdist"


def _version_of(path: Path) -> str:
    if path.name.endswith(".whl"):
        return str(parse_wheel_filename(path.name)[1])
    return str(parse_sdist_filename(path.name)[1])


@dataclass(frozen=True)
class Pair:
    current: Path
    previous: Path | None

    @property
    def project(self) -> str:
        name = self.current.name
        if name.endswith(".whl"):
            return str(parse_wheel_filename(name)[0])
        return str(parse_sdist_filename(name)[0])

    @property
    def version(self) -> str:
        return _version_of(self.current)


def _pairs(index: str, names: list[str], cache: Path) -> list[Pair]:
    """For each project: its newest release's wheel and sdist, each with the previous one."""
    pairs = []
    for name in names:
        page = _page(index, name)
        page["_url"] = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
        versions = _releases(page)
        if len(versions) < 2:
            print(f"skip {name}: fewer than two releases", file=sys.stderr)
            continue
        current, previous = versions[0], versions[1]
        folder = cache / canonicalize_name(name)
        for kind in ("wheel", "sdist"):
            now = [p for p in folder.glob("*") if _kind(p) == kind and _version_of(p) == current]
            now = now or _download(page, current, folder, kind)
            before = [
                p for p in folder.glob("*") if _kind(p) == kind and _version_of(p) == previous
            ]
            before = before or _download(page, previous, folder, kind)
            if now:
                pairs.append(Pair(now[0], before[0] if before else None))
    return pairs


def _top200_pairs(cache: Path) -> tuple[list[Pair], list[str]]:
    """The current wheel and sdist of each top-200 project, each with its previous release's
    file of the same kind; and a line for each file or project left out."""
    chosen = read_versions()
    failures = download_all(pip_index_url(), chosen, cache, jobs=4)  # only what is missing
    if failures:
        raise SystemExit("could not fetch: " + "; ".join(failures))
    by_key = {(item.project, item.role, item.kind): item for item in chosen}
    listed = {str(canonicalize_name(name)) for name in read_names()}
    left_out = [
        f"{name}: fewer than two releases"
        for name in sorted(listed - {item.project for item in chosen})
    ]
    pairs = []
    for item in chosen:
        if item.role != CURRENT:
            continue
        if item.skipped:
            left_out.append(f"{item.filename}: {item.skipped}")
            continue
        before = by_key.get((item.project, PREVIOUS, item.kind))
        usable = before is not None and not before.skipped and is_cached(before, cache)
        pairs.append(Pair(item.path(cache), before.path(cache) if before and usable else None))
    return pairs, left_out


def _inspector(how: str, workers: int) -> Inspector:
    if how == "pool":
        return InspectionPool(workers)
    return InThreadInspector()


async def _inspect_all(
    pairs: list[Pair], inspector: Inspector, concurrency: int
) -> list[tuple[Pair, Inspection]]:
    """As the vetting worker does: the previous release first, then the current one."""
    gate = asyncio.Semaphore(concurrency)
    limits = Limits()

    async def one(pair: Pair) -> tuple[Pair, Inspection]:
        async with gate:
            base = None
            if pair.previous is not None:
                found = await inspector.inspect(pair.previous, pair.previous.name, None, limits)
                base = found.summary
            return pair, await inspector.inspect(pair.current, pair.current.name, base, limits)

    return await asyncio.gather(*(one(pair) for pair in pairs))


def _version_list(pairs: list[Pair]) -> list[str]:
    seen: dict[str, str] = {}
    for pair in pairs:
        previous = _version_of(pair.previous) if pair.previous else "none"
        seen.setdefault(pair.project, f"{pair.project} {pair.version} ({previous})")
    return list(seen.values())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--top200",
        action="store_true",
        help="the 200 most-downloaded projects (their files are fetched once, into --cache)",
    )
    parser.add_argument("--cache", type=Path, help="default: /tmp/lazaretto-fp, or for --top200 "
                        f"{DEFAULT_CACHE}")  # fmt: skip
    parser.add_argument("--projects", type=Path, default=PROJECT_LIST)
    parser.add_argument("--limit", type=int, default=69)
    parser.add_argument(
        "--inspector",
        choices=["pool", "threads"],
        default="pool",
        help="worker processes, as the mirror inspects (default), or threads of this process",
    )
    parser.add_argument("--workers", type=int, default=0, help="pool processes; 0: one per core")
    parser.add_argument("--concurrency", type=int, default=4, help="files inspected at once")
    parser.add_argument("--save", action="store_true", help="also write it to bench/results/")
    parser.add_argument(
        "--cost", action="store_true", help="then bench/vetting_cost.py's timings (with --top200)"
    )
    parser.add_argument("--cost-runs", type=int, default=7, help="runs per wheel for --cost")
    return parser


def _corpus(args: argparse.Namespace) -> tuple[list[Pair], Run]:
    if args.top200:
        pairs, left_out = _top200_pairs(args.cache or DEFAULT_CACHE)
        corpus = (
            "The current and previous release of the 200 most-downloaded projects "
            "(bench/false_positives_top200.txt, names and source; the files, with their "
            "sha256: bench/false_positives_top200_versions.tsv): each one's sdist and the "
            "wheel a Linux x86_64 CPython 3.12 pip installs among those the default platform "
            "filter keeps, each compared with the previous release's file of the same kind."
        )
        return pairs, Run("", corpus, "", 0.0, left_out, _version_list(pairs))
    names = [
        line.strip() for line in args.projects.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ][: args.limit]  # fmt: skip
    index = pip_index_url()  # the index pip is set up for; no address written here
    pairs = _pairs(index, names, args.cache or Path(tempfile.gettempdir()) / "lazaretto-fp")
    corpus = f"{len(names)} projects of {args.projects.name}: the newest release's wheel for "
    corpus += "this interpreter and its sdist, each compared with the previous release's."
    return pairs, Run("", corpus, "", 0.0, [], [])


def main() -> None:
    args = _parser().parse_args()
    if args.cost and not args.top200:
        raise SystemExit("--cost measures wheels of the top-200 corpus: add --top200")
    pairs, run = _corpus(args)
    inspector = _inspector(args.inspector, args.workers)
    load = os.getloadavg()[0]  # the machine may be shared: the wall time depends on it
    started = time.perf_counter()
    try:
        inspected = asyncio.run(_inspect_all(pairs, inspector, args.concurrency))
    finally:
        inspector.close()
    seconds = time.perf_counter() - started
    where = (
        f"{args.workers or os.cpu_count()} worker processes" if args.inspector == "pool"
        else "threads of one process"
    )  # fmt: skip
    run = replace(
        run,
        title=f"False positives{' on the top 200' if args.top200 else ''}: lazaretto "
        f"{commit_label()}, {today()}",
        inspection=f"Python {sys.version.split()[0]}; inspected in {where}, "
        f"{args.concurrency} files at once (load average {load:.1f} at the start); actions from "
        "the default policy (no configuration).",
        seconds=seconds,
    )
    verdicts = [verdict(p.project, p.version, p.current, found) for p, found in inspected]
    report = render(run, verdicts)
    print(report)
    if args.save:
        save("false-positives-top200" if args.top200 else "false-positives", report)
    if args.cost:
        cost = cost_report(args.cache or DEFAULT_CACHE, args.cost_runs)
        print(cost)
        if args.save:
            save("vetting-cost", cost)


if __name__ == "__main__":
    main()
