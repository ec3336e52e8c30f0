"""False-positive check: vet the current wheels and sdists of popular real projects.

Run on demand (it downloads ~300 MB from the public index; never part of the test
suite):  .venv/bin/python bench/false_positives.py [--cache DIR] [--projects FILE]
                                                   [--inspector pool|threads]

For each project it downloads the newest release's wheel (for this interpreter) and its
sdist, plus the previous release's, and runs the content inspection exactly as the
vetting worker does (the current file compared with the previous release), several files
at once: in the mirror's worker processes (default) or in threads of this process, as
the mirror did before issue 14 (CPython gh-106905 shows there as `inspection-error`). Provenance
is not fetched here (the index reachable from these machines serves no attestations).
It prints every file that would be held for review or blocked, with the rules that
fired, and the false-positive rate.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from mirror.default_index import pip_index_url
from quarantine.archive import Limits
from quarantine.evidence import Action
from quarantine.inspect import INSPECTION_ERROR, Inspection
from quarantine.inspect_pool import InspectionPool, Inspector, InThreadInspector

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lazaretto-fp")
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
    args = parser.parse_args()
    names = [
        line.strip() for line in args.projects.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ][: args.limit]  # fmt: skip
    index = pip_index_url()  # the index pip is set up for; no address written here
    pairs = _pairs(index, names, args.cache)
    inspector = _inspector(args.inspector, args.workers)
    started = time.perf_counter()
    try:
        inspected = asyncio.run(_inspect_all(pairs, inspector, args.concurrency))
    finally:
        inspector.close()
    seconds = time.perf_counter() - started
    results: list[dict[str, object]] = []
    for pair, result in inspected:
        evidence = result.evidence()
        results.append(
            {
                "file": pair.current.name,
                "size": pair.current.stat().st_size,
                "action": evidence.action.value,
                "rules": sorted({f"{f.rule}({f.severity.value})" for f in result.findings}),
                "crashed": [f.message for f in result.findings if f.rule == INSPECTION_ERROR],
                "held_by": [
                    f"{f.rule} {f.path or ''}:{f.line or ''} {f.message}"
                    for f in result.findings
                    if evidence.action in (Action.REVIEW, Action.BLOCK)
                    and f.severity.value in ("medium", "high", "critical")
                ][:5],
            }
        )
    held = [r for r in results if r["action"] in ("review", "block")]
    crashed = [r for r in results if r["crashed"]]
    print(f"\n## False-positive check: {len(results)} files of {len(names)} popular projects\n")
    print(
        f"python {sys.version.split()[0]} ({sys.executable}); inspection in "
        + (f"{args.workers or os.cpu_count()} worker processes" if args.inspector == "pool"
           else "threads")
        + f", {args.concurrency} files at once\n"
    )  # fmt: skip
    print("| file | verdict | rules that fired |")
    print("|---|---|---|")
    for row in results:
        if row["action"] != "pass":
            print(f"| {row['file']} | {row['action']} | {', '.join(row['rules'])} |")  # type: ignore[arg-type]
    rate = 100 * len(held) / max(1, len(results))
    total = sum(int(r["size"]) for r in results)  # type: ignore[call-overload]
    print(f"\nheld for review or blocked: {len(held)} of {len(results)} files ({rate:.1f}%)")
    for row in held:
        print(f"- {row['file']}: {json.dumps(row['held_by'])}")
    print(f"inspection-error (a crash or a limit, not the file): {len(crashed)} files")
    for row in crashed:
        print(f"- {row['file']}: {json.dumps(row['crashed'])}")
    print(
        f"inspection: {len(results)} files and their previous releases, {total / 1e6:.0f} MB "
        f"(current files) in {seconds:.1f} s wall"
    )


if __name__ == "__main__":
    main()
