"""False-positive check: vet the current wheels and sdists of popular real projects.

Run on demand (it downloads ~300 MB from the public index; never part of the test
suite):  .venv/bin/python bench/false_positives.py [--cache DIR] [--projects FILE]

For each project it downloads the newest release's wheel (for this interpreter) and its
sdist, plus the previous release's, and runs the content inspection exactly as the
vetting worker does (the current file compared with the previous release). Provenance
is not fetched here (the index reachable from these machines serves no attestations).
It prints every file that would be held for review or blocked, with the rules that
fired, and the false-positive rate.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from mirror.default_index import pip_index_url
from quarantine.evidence import Action
from quarantine.inspect import Inspection, inspect_file

SHARED_LIST = Path(__file__).resolve().parents[2] / "shared" / "bench" / "projects.txt"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lazaretto-fp")
    parser.add_argument("--projects", type=Path, default=SHARED_LIST)
    parser.add_argument("--limit", type=int, default=69)
    args = parser.parse_args()
    names = [
        line.strip() for line in args.projects.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ][: args.limit]  # fmt: skip
    index = pip_index_url()  # the index pip is set up for; no address written here
    results: list[dict[str, object]] = []
    timings: list[float] = []
    peak = 0
    for name in names:
        page = _page(index, name)
        page["_url"] = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
        versions = _releases(page)
        if len(versions) < 2:
            print(f"skip {name}: fewer than two releases", file=sys.stderr)
            continue
        current, previous = versions[0], versions[1]
        folder = args.cache / canonicalize_name(name)
        for kind in ("wheel", "sdist"):
            now = [p for p in folder.glob("*") if _kind(p) == kind and _version_of(p) == current]
            now = now or _download(page, current, folder, kind)
            before = [
                p for p in folder.glob("*") if _kind(p) == kind and _version_of(p) == previous
            ]
            before = before or _download(page, previous, folder, kind)
            if not now:
                continue
            base = inspect_file(before[0], before[0].name, None) if before else None
            tracemalloc.start()
            started = time.perf_counter()
            result: Inspection = inspect_file(now[0], now[0].name, base.summary if base else None)
            timings.append(time.perf_counter() - started)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            evidence = result.evidence()
            results.append(
                {
                    "file": now[0].name,
                    "size": now[0].stat().st_size,
                    "action": evidence.action.value,
                    "rules": sorted({f"{f.rule}({f.severity.value})" for f in result.findings}),
                    "held_by": [
                        f"{f.rule} {f.path or ''}:{f.line or ''} {f.message}"
                        for f in result.findings
                        if evidence.action in (Action.REVIEW, Action.BLOCK)
                        and f.severity.value in ("medium", "high", "critical")
                    ][:5],
                }
            )
    held = [r for r in results if r["action"] in ("review", "block")]
    print(f"\n## False-positive check: {len(results)} files of {len(names)} popular projects\n")
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
    print(
        f"inspection: {len(timings)} files, {total / 1e6:.0f} MB in {sum(timings):.1f} s "
        f"({len(timings) / max(sum(timings), 1e-9):.1f} files/s, "
        f"{total / 1e6 / max(sum(timings), 1e-9):.0f} MB/s); "
        f"peak traced memory {peak / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
