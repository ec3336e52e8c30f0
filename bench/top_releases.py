"""The files of the top-200 false-positive corpus: chosen once, downloaded once, cached.

    .venv/bin/python bench/top_releases.py [--resolve] [--cache DIR] [--jobs 4] [--max-mb 300]

For each project of bench/false_positives_top200.txt it takes the newest final release and
the one before it (yanked files left out; pre-releases only for a project that has no final
release, as pip would), and of each release the sdist
(when there is one) and the one wheel a Linux x86_64 CPython 3.12 pip would install among
those the default platform filter keeps. The choice is written to
bench/false_positives_top200_versions.tsv (committed, so a later run inspects the very same
files); ``--resolve`` chooses again from the index pip is configured for (its address is
read at run time, never written down). Files larger than the cap are listed as skipped.

Downloads go to ~/.cache/lazaretto-bench/top200 (outside the repository), at most
``--jobs`` at once; a file already there with the right sha256 is not fetched again, and a
download is written under a temporary name and renamed only once its sha256 matched, so an
interrupted run resumes where it stopped.
"""

import argparse
import csv
import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from mirror.upstream.default_index import pip_index_url
from quarantine.policy import DEFAULT_FILTER

BENCH = Path(__file__).resolve().parent
PROJECTS = BENCH / "false_positives_top200.txt"
VERSIONS = BENCH / "false_positives_top200_versions.tsv"
DEFAULT_CACHE = Path.home() / ".cache" / "lazaretto-bench" / "top200"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
MB = 1_000_000
PYTHON = (3, 12)
NEWEST_GLIBC_MINOR = 39  # a current Linux distribution (Ubuntu 24.04 ships glibc 2.39)
CURRENT, PREVIOUS = "current", "previous"
WHEEL, SDIST = "wheel", "sdist"
SDIST_SUFFIXES = (".tar.gz", ".zip")
ATTEMPTS = 3


class FetchError(Exception):
    """A file or page could not be fetched intact; the message says which and why."""


@dataclass(frozen=True)
class Chosen:
    """One file of the corpus, as written to the versions file."""

    project: str
    role: str  # CURRENT or PREVIOUS
    version: str
    kind: str  # WHEEL or SDIST
    filename: str
    size: int
    sha256: str
    skipped: str  # why it is not downloaded ("" when it is)

    def path(self, cache: Path) -> Path:
        return cache / "files" / self.project / self.filename


def linux_cp312_tags() -> list[Tag]:
    """The tags pip on Linux x86_64 (glibc 2.39) with CPython 3.12 accepts, best first."""
    platforms = list(_linux_platforms())
    return [
        *cpython_tags(PYTHON, platforms=platforms),
        *compatible_tags(PYTHON, "cp312", platforms=platforms),
    ]


def _linux_platforms() -> Iterator[str]:
    # PEP 600's legacy aliases sit at their glibc versions, as pip orders them.
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    for minor in range(NEWEST_GLIBC_MINOR, 4, -1):
        yield f"manylinux_2_{minor}_x86_64"
        if minor in aliases:
            yield f"{aliases[minor]}_x86_64"
    yield "linux_x86_64"


def read_names(path: Path = PROJECTS) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# -- choosing --------------------------------------------------------------------------------


def _file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        if filename.endswith(SDIST_SUFFIXES):
            return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None  # ancient names no installer accepts
    return None


def _usable(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in page["files"]
        if not entry.get("yanked") and _file_version(entry["filename"]) is not None
    ]


def releases(page: dict[str, Any]) -> list[Version]:
    """Versions with at least one installable, non-yanked file, newest first: the final
    releases, or the pre-releases of a project that has none (pip installs those then)."""
    found = {v for v in (_file_version(entry["filename"]) for entry in _usable(page)) if v}
    finals = [version for version in found if not version.is_prerelease]
    return sorted(finals or found, reverse=True)


def pick_wheel(entries: list[dict[str, Any]], tags: list[Tag]) -> dict[str, Any] | None:
    rank = {tag: index for index, tag in enumerate(tags)}
    best: tuple[int, dict[str, Any]] | None = None
    for entry in entries:
        name = entry["filename"]
        if not name.endswith(".whl") or not DEFAULT_FILTER.admits(name):
            continue
        ranks = [rank[tag] for tag in parse_wheel_filename(name)[3] if tag in rank]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), entry)
    return best[1] if best else None


def pick_sdist(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    sdists = [entry for entry in entries if entry["filename"].endswith(SDIST_SUFFIXES)]
    # .tar.gz is the standard (PEP 625); a .zip only when it is all there is.
    sdists.sort(key=lambda entry: not entry["filename"].endswith(".tar.gz"))
    return sdists[0] if sdists else None


def choose(project: str, page: dict[str, Any], max_bytes: int) -> list[Chosen]:
    versions = releases(page)
    if len(versions) < 2:
        print(f"{project}: fewer than two releases; left out", file=sys.stderr)
        return []
    tags = linux_cp312_tags()
    chosen = []
    for role, version in ((CURRENT, versions[0]), (PREVIOUS, versions[1])):
        entries = [e for e in _usable(page) if _file_version(e["filename"]) == version]
        for kind, entry in ((WHEEL, pick_wheel(entries, tags)), (SDIST, pick_sdist(entries))):
            if entry is None:
                continue
            size = int(entry.get("size") or 0)
            over = f"{size / MB:.0f} MB, over the {max_bytes / MB:.0f} MB cap"
            skipped = over if size > max_bytes else ""
            sha256 = entry["hashes"]["sha256"]
            chosen.append(
                Chosen(project, role, str(version), kind, entry["filename"], size, sha256, skipped)
            )
    return chosen


# -- the index -------------------------------------------------------------------------------


def _page_path(cache: Path, project: str) -> Path:
    return cache / "pages" / f"{project}.json"


def fetch_page(index: str, project: str, cache: Path) -> dict[str, Any]:
    """The project's PEP 691 page, kept in the cache for the file URLs."""
    url = f"{index.rstrip('/')}/{project}/"
    request = urllib.request.Request(url, headers={"Accept": JSON_ACCEPT})
    with urllib.request.urlopen(request, timeout=120) as response:
        page: dict[str, Any] = json.load(response)
    page["_url"] = url
    target = _page_path(cache, project)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, json.dumps(page).encode())
    return page


def _write_atomically(target: Path, data: bytes) -> None:
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    os.replace(part, target)


def resolve(index: str, names: list[str], cache: Path, max_bytes: int, jobs: int) -> list[Chosen]:
    projects = [str(canonicalize_name(name)) for name in names]
    with ThreadPoolExecutor(jobs) as pool:
        pages = list(pool.map(lambda project: fetch_page(index, project, cache), projects))
    return [item for project, page in zip(projects, pages, strict=True) for item in choose(
        project, page, max_bytes
    )]  # fmt: skip


def write_versions(chosen: list[Chosen], path: Path = VERSIONS) -> None:
    with path.open("w", newline="") as out:
        out.write("# Chosen by bench/top_releases.py; a row per file (the cap's skips noted).\n")
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow([f.name for f in fields(Chosen)])
        writer.writerows(astuple(item) for item in chosen)


def read_versions(path: Path = VERSIONS) -> list[Chosen]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    return [
        Chosen(
            row["project"],
            row["role"],
            row["version"],
            row["kind"],
            row["filename"],
            int(row["size"]),
            row["sha256"],
            row["skipped"] or "",
        )
        for row in rows
    ]


# -- downloading -----------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(item: Chosen, cache: Path) -> bool:
    path = item.path(cache)
    return path.is_file() and path.stat().st_size == item.size and sha256_of(path) == item.sha256


def _file_url(index: str, item: Chosen, cache: Path) -> str:
    page_path = _page_path(cache, item.project)
    page = json.loads(page_path.read_text()) if page_path.exists() else None
    for attempt in (page, None):
        current = attempt or fetch_page(index, item.project, cache)
        for entry in current["files"]:
            if entry["filename"] == item.filename:
                return urllib.parse.urljoin(str(current["_url"]), str(entry["url"]))
    raise FetchError(f"{item.filename}: no longer listed on the {item.project} page")


def _stream(url: str, target: Path, expected: str) -> None:
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as response, part.open("wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != expected:
        part.unlink()
        raise FetchError(f"{target.name}: sha256 {digest.hexdigest()} is not {expected}")
    os.replace(part, target)


def download(index: str, item: Chosen, cache: Path) -> str:
    """Fetch one file unless it is already cached intact; returns what happened."""
    if is_cached(item, cache):
        return "cached"
    target = item.path(cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _file_url(index, item, cache)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _stream(url, target, item.sha256)
            return "fetched"
        except (OSError, FetchError) as error:
            if attempt == ATTEMPTS:
                raise FetchError(f"{item.filename}: {error}") from error
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def download_all(index: str, chosen: list[Chosen], cache: Path, jobs: int) -> list[str]:
    """Download every file not skipped; returns the failures (one line each)."""
    wanted = [item for item in chosen if not item.skipped]

    def one(item: Chosen) -> str | None:
        try:
            how = download(index, item, cache)
        except FetchError as error:
            return str(error)
        print(f"{how:8} {item.size / MB:8.1f} MB  {item.filename}", file=sys.stderr, flush=True)
        return None

    with ThreadPoolExecutor(jobs) as pool:
        return [failed for failed in pool.map(one, wanted) if failed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--projects", type=Path, default=PROJECTS)
    parser.add_argument("--resolve", action="store_true", help="choose the versions again")
    parser.add_argument("--jobs", type=int, default=4, help="downloads at once")
    parser.add_argument("--max-mb", type=int, default=300, help="skip files larger than this")
    args = parser.parse_args()
    index = pip_index_url()  # the index pip is set up for; no address written here
    if args.resolve or not VERSIONS.exists():
        chosen = resolve(index, read_names(args.projects), args.cache, args.max_mb * MB, args.jobs)
        write_versions(chosen)
    chosen = read_versions()
    failures = download_all(index, chosen, args.cache, args.jobs)
    wanted = [item for item in chosen if not item.skipped]
    total = sum(item.size for item in wanted)
    print(f"{len(wanted)} files, {total / MB:.0f} MB in {args.cache}")
    for item in chosen:
        if item.skipped:
            print(f"skipped {item.filename}: {item.skipped}")
    for failure in failures:
        print(f"FAILED {failure}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
