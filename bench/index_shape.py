"""The recorded shape of real projects, replayed by bench/first_use.py (issue 14).

Record it once, by hand (it reads the index pip is set up for; no address is written):

    .venv/bin/python bench/index_shape.py record

That resolves litellm, numpy, pydantic-core, boto3, botocore and fastapi with pip for
Linux x86_64 / CPython 3.12 to find the projects pip would pull, reads each project's JSON
page, and writes bench/first_use_shape.tsv.xz: one line per upstream file (project,
filename, recorded size, age at recording in seconds, requires-python, yanked, sha256 of
the synthetic bytes). Files younger than ``SHAPED_DAYS`` (beyond the 72 h cooling plus the
30-day vetting window) and each project's newest older release are "shaped": synthetic
bytes of the recorded size up to ``max_file_bytes``. Every older file is a placeholder
(a valid archive of ~1.5 KB; no digest recorded, it is computed when generated): those
files are established at first sight and only count for page and ledger size.
"""

import argparse
import hashlib
import json
import lzma
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version
from synthetic_dists import Wanted, make

SHAPE_FILE = Path(__file__).resolve().parent / "first_use_shape.tsv.xz"
REQUESTED = ("litellm", "numpy", "pydantic-core", "boto3", "botocore", "fastapi")
SHAPED_DAYS = 40
MAX_FILE_BYTES = 1 << 20
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
# The machine pip resolves for: glibc 2.39 on x86_64, CPython 3.12.
PYTHON = (3, 12)
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(39, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)


@dataclass(frozen=True)
class ShapeFile:
    project: NormalizedName
    filename: str
    recorded_size: int
    age_seconds: int  # before the recording
    requires_python: str | None
    yanked: bool
    sha256: str | None  # of the synthetic bytes; None for a placeholder

    @property
    def shaped(self) -> bool:
        return self.sha256 is not None

    def wanted(self, max_file_bytes: int) -> Wanted:
        if self.shaped:
            size = min(self.recorded_size, max_file_bytes)
            return Wanted(self.filename, size, self.recorded_size, self.requires_python)
        return Wanted(self.filename, 0, 0, self.requires_python)


@dataclass(frozen=True)
class Shape:
    recorded_at: datetime
    requested: tuple[NormalizedName, ...]
    max_file_bytes: int
    files: dict[NormalizedName, list[ShapeFile]]

    @property
    def projects(self) -> list[NormalizedName]:
        return sorted(self.files)


# -- reading -------------------------------------------------------------------------------------


def load_shape(path: Path = SHAPE_FILE) -> Shape:
    header: dict[str, str] = {}
    files: dict[NormalizedName, list[ShapeFile]] = defaultdict(list)
    with lzma.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                key, _, value = line[1:].strip().partition(" ")
                header[key] = value
                continue
            project, filename, size, age, requires, yanked, sha256 = line.rstrip("\n").split("\t")
            name = canonicalize_name(project)
            files[name].append(
                ShapeFile(
                    name,
                    filename,
                    int(size),
                    int(age),
                    None if requires == "-" else requires,
                    yanked == "1",
                    None if sha256 == "-" else sha256,
                )
            )
    return Shape(
        recorded_at=datetime.fromisoformat(header["recorded_at"]),
        requested=tuple(canonicalize_name(n) for n in header["requested"].split()),
        max_file_bytes=int(header["max_file_bytes"]),
        files=dict(files),
    )


# -- recording (by hand, once) -------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def resolve_with_pip(index: str, requirements: Iterable[str]) -> dict[NormalizedName, str]:
    """What pip installs for Linux x86_64 / CPython 3.12: {project: version}."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
            "--report", str(report), "--index-url", index, "--only-binary=:all:",
            "--python-version", ".".join(map(str, PYTHON)), "--implementation", "cp",
            *(f"--platform={platform}" for platform in PLATFORMS), *requirements,
        ]  # fmt: skip
        subprocess.run(command, env=clean_env(), check=True, timeout=600)
        installed = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in installed
    }


def _page(index: str, project: str) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{index.rstrip('/')}/{project}/", headers={"Accept": JSON_ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        files: list[dict[str, object]] = json.load(response)["files"]
    return files


def _version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _shaped(entries: list[tuple[str, int]]) -> set[str]:
    """(filename, age) -> the filenames to shape: the young, and the newest older release."""
    cutoff = SHAPED_DAYS * 86400
    shaped = {name for name, age in entries if age < cutoff}
    older = [(v, name) for name, age in entries if age >= cutoff and (v := _version(name))]
    if older:
        newest = max(v for v, _ in older)
        shaped |= {name for v, name in older if v == newest}
    return shaped


def record(out: Path, max_file_bytes: int) -> None:
    from mirror.upstream.default_index import pip_index_url

    index = pip_index_url()  # the index pip is set up for; its address is never written
    picked = resolve_with_pip(index, REQUESTED)
    now = datetime.now(UTC)
    lines = [
        f"#recorded_at {now.isoformat()}",
        f"#requested {' '.join(REQUESTED)}",
        f"#pip_picked {' '.join(f'{k}=={v}' for k, v in sorted(picked.items()))}",
        f"#max_file_bytes {max_file_bytes}",
        f"#shaped_days {SHAPED_DAYS}",
        "#columns project filename size age_seconds requires_python yanked synthetic_sha256",
    ]
    for project in sorted(picked):
        entries = []
        for entry in _page(index, project):
            uploaded = datetime.fromisoformat(str(entry["upload-time"]).replace("Z", "+00:00"))
            age = int((now - uploaded).total_seconds())
            entries.append((entry, age))
        shaped = _shaped([(str(e["filename"]), age) for e, age in entries])
        for entry, age in sorted(entries, key=lambda item: -item[1]):
            filename, size = str(entry["filename"]), int(str(entry["size"]))
            requires = _requires_python(entry)
            digest = "-"
            if filename in shaped:
                wanted = Wanted(filename, min(size, max_file_bytes), size, requires)
                digest = hashlib.sha256(make(wanted)).hexdigest()
            yanked = "1" if entry.get("yanked") else "0"
            row = [project, filename, str(size), str(age), requires or "-", yanked, digest]
            lines.append("\t".join(row))
        print(f"{project}: {len(entries)} files, {len(shaped)} shaped", file=sys.stderr)
    with lzma.open(out, "wt", encoding="utf-8", preset=9) as sink:
        sink.write("\n".join(lines) + "\n")


def _requires_python(entry: dict[str, object]) -> str | None:
    value = entry.get("requires-python")
    return str(value) if value else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["record", "show"])
    parser.add_argument("--out", type=Path, default=SHAPE_FILE)
    parser.add_argument("--max-file-bytes", type=int, default=MAX_FILE_BYTES)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out, args.max_file_bytes)
    shape = load_shape(args.out)
    for project in shape.projects:
        files = shape.files[project]
        shaped = [f for f in files if f.shaped]
        recent = [f for f in files if f.age_seconds < 33 * 86400]
        print(
            f"{project:28} {len(files):6} files {sum(f.recorded_size for f in files) / 1e9:7.2f} "
            f"GB; {len(shaped):4} shaped; {len(recent):4} younger than 33 d "
            f"({sum(f.recorded_size for f in recent) / 1e9:.2f} GB)"
        )
    held = timedelta(days=33)
    print(f"recorded {shape.recorded_at:%Y-%m-%d %H:%M} UTC; vetting window + cooling: {held}")


if __name__ == "__main__":
    main()
