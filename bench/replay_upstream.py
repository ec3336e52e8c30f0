"""A local upstream that replays the recorded shape (bench/index_shape.py) on 127.0.0.1.

Shaped files are generated once into a cache directory (checked against the digests in
the shape file, so every run serves the same bytes) and sent from disk; placeholders are
generated in memory at start. Upload times are shifted so that the replay's "now" is the
moment of the recording: a file 5 days old then is 5 days old at the start of the run.
"""

import hashlib
import json
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from index_shape import Shape, ShapeFile
from static_upstream import StaticFile, StaticUpstream
from synthetic_dists import make


class ShapeMismatch(Exception):
    """The generator no longer makes the bytes the shape file recorded: record it again."""


@dataclass(frozen=True)
class Generated:
    shaped: dict[str, StaticFile]  # filename -> a file on disk (upload time not yet set)
    placeholders: dict[str, StaticFile]  # filename -> bytes in memory
    cache_bytes: int


def _log(message: str) -> None:
    print(f"[first_use {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _shape_key(shape: Shape) -> str:
    digests = sorted(f.sha256 or "" for files in shape.files.values() for f in files)
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def generate(shape: Shape, cache: Path) -> Generated:
    """Make (or reuse) every file's bytes."""
    key_path = cache / "shape.key"
    key = _shape_key(shape)
    reuse = key_path.exists() and key_path.read_text() == key
    if not reuse:
        _log(f"generating the shaped files into {cache} (once; ~1 min)")
        key_path.unlink(missing_ok=True)
    shaped: dict[str, StaticFile] = {}
    placeholders: dict[str, StaticFile] = {}
    total = 0
    for project, files in shape.files.items():
        folder = cache / project
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            static = _static(file, folder, shape.max_file_bytes, reuse)
            if file.shaped:
                shaped[file.filename] = static
                total += static.size
            else:
                placeholders[file.filename] = static
    key_path.write_text(key)
    return Generated(shaped, placeholders, total)


def _static(file: ShapeFile, folder: Path, max_file_bytes: int, reuse: bool) -> StaticFile:
    epoch = datetime.fromtimestamp(0).astimezone()
    if file.sha256 is None:
        made = StaticFile.from_bytes(file.filename, make(file.wanted(0)), epoch)
        return replace(made, requires_python=file.requires_python, yanked=file.yanked)
    path = folder / file.filename
    if not reuse or not path.exists():
        data = make(file.wanted(max_file_bytes))
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise ShapeMismatch(
                f"{file.filename}: the synthetic bytes differ from the recorded digest "
                f"(bench/synthetic_dists.py changed?): run bench/index_shape.py record again"
            )
        path.write_bytes(data)
    stored = StaticFile.from_path(path, epoch, sha256=file.sha256)
    return replace(stored, requires_python=file.requires_python, yanked=file.yanked)


def replay(shape: Shape, generated: Generated, now: datetime) -> StaticUpstream:
    """An upstream (not started) serving the shape as if ``now`` were the recording time."""
    upstream = StaticUpstream()
    for project, files in shape.files.items():
        statics = []
        for file in files:
            known = generated.shaped.get(file.filename) or generated.placeholders[file.filename]
            uploaded = now - timedelta(seconds=file.age_seconds)
            statics.append(replace(known, upload_time=uploaded))
        upstream.add_many(project, statics)
    return upstream


def recorded_sizes(shape: Shape) -> dict[str, tuple[str, int]]:
    """filename -> (project, size at the real index)."""
    return {f.filename: (p, f.recorded_size) for p, files in shape.files.items() for f in files}


def describe(shape: Shape, generated: Generated) -> str:
    files = sum(len(v) for v in shape.files.values())
    return json.dumps(
        {
            "projects": len(shape.files),
            "files": files,
            "shaped": len(generated.shaped),
            "shaped_synthetic_gb": round(generated.cache_bytes / 1e9, 2),
            "max_file_bytes": shape.max_file_bytes,
        }
    )
