"""``lazaretto fsck``: every stored blob re-hashed and compared with the ledger.

A blob is named for its sha256, so a blob whose bytes hash to anything else is damaged
(a disk, a hand, a bug). Damaged blobs and blobs no record refers to are moved aside
into ``fsck-quarantine/<time>/`` under the data directory, never deleted: they are
evidence. Files whose bytes were moved, or whose stored bytes are missing, are marked
not stored, so the mirror fetches and verifies them again before serving them. Hashing
streams each blob in chunks: memory stays flat whatever the file sizes.
"""

import hashlib
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from quarantine.blob_references import BlobReference
from quarantine.ledger.interface import Ledger

QUARANTINE_DIR = "fsck-quarantine"
ACTOR = "system:fsck"
CHUNK = 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SKIPPED = frozenset({"tmp"})  # downloads in flight; the blob store's own sweep settles them


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # digest_mismatch, orphan_blob, missing_blob, size_differs, stray_file
    path: str  # under the data directory
    detail: str
    sha256: str | None = None
    moved_to: str | None = None  # under the data directory
    files: tuple[str, ...] = ()  # the files marked not stored (fetched again)


@dataclass
class Report:
    blobs_checked: int = 0
    bytes_hashed: int = 0
    findings: list[Finding] = field(default_factory=list)


def _blob_files(root: Path) -> Iterator[Path]:
    for folder, directories, names in os.walk(root):
        if Path(folder) == root:
            directories[:] = [name for name in directories if name not in _SKIPPED]
        directories.sort()
        for name in sorted(names):
            yield Path(folder) / name


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _Checker:
    def __init__(self, data_dir: Path, ledger: Ledger, now: datetime) -> None:
        self._data_dir = data_dir
        self._blobs = data_dir / "blobs"
        self._ledger = ledger
        self._now = now
        self._aside = data_dir / QUARANTINE_DIR / now.strftime("%Y%m%dT%H%M%SZ")
        self.report = Report()

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self._data_dir))

    def _move_aside(self, path: Path) -> str:
        self._aside.mkdir(parents=True, exist_ok=True)
        target = self._aside / path.name
        counter = 1
        while target.exists():  # a stray name seen twice: keep both
            target = self._aside / f"{path.name}.{counter}"
            counter += 1
        shutil.move(path, target)
        return self._shown(target)

    def _forget(self, sha256: str, why: str) -> tuple[str, ...]:
        return tuple(self._ledger.forget_blob(sha256, f"fsck: {why}", ACTOR, self._now))

    def hash_blobs(self) -> dict[str, int]:
        """Every blob hashed; the sizes of those whose bytes match their name."""
        sound: dict[str, int] = {}
        for path in _blob_files(self._blobs):
            digest, size = _sha256_and_size(path)
            self.report.blobs_checked += 1
            self.report.bytes_hashed += size
            name = path.name
            expected = self._blobs / name[:2] / name[2:4] / name
            if not _DIGEST.fullmatch(name) or path != expected:
                moved = self._move_aside(path)
                self._found("stray_file", path, "not where the store keeps a blob", None, moved)
            elif digest != name:
                moved = self._move_aside(path)
                why = f"stored bytes hash to {digest}, not {name}; moved to {moved}"
                files = self._forget(name, why)
                self._found("digest_mismatch", path, why, name, moved, files)
            else:
                sound[name] = size
        return sound

    def compare(self, sound: dict[str, int], references: list[BlobReference]) -> None:
        by_digest: dict[str, list[BlobReference]] = defaultdict(list)
        for reference in references:
            by_digest[reference.sha256].append(reference)
        for name in sorted(sound.keys() - by_digest.keys()):
            path = self._blobs / name[:2] / name[2:4] / name
            moved = self._move_aside(path)
            self._found("orphan_blob", path, "no ledger record refers to it", name, moved)
        for digest, refs in sorted(by_digest.items()):
            if digest in sound:
                self._check_sizes(digest, sound[digest], refs)
            elif any(ref.stored or ref.role == "provenance" for ref in refs):
                path = self._blobs / digest[:2] / digest[2:4] / digest
                if path.is_file():  # stored since the walk passed its folder
                    continue
                files = self._forget(digest, "its stored blob is missing; fetched again")
                if files:
                    self._found("missing_blob", path, "marked stored, no blob", digest, None, files)

    def _check_sizes(self, digest: str, size: int, refs: list[BlobReference]) -> None:
        for ref in refs:
            if ref.role == "file" and ref.size is not None and ref.size != size:
                path = self._blobs / digest[:2] / digest[2:4] / digest
                detail = f"{ref.filename}: the ledger says {ref.size} bytes, the blob has {size}"
                self._found("size_differs", path, detail, digest)

    def _found(
        self,
        kind: str,
        path: Path,
        detail: str,
        sha256: str | None,
        moved_to: str | None = None,
        files: tuple[str, ...] = (),
    ) -> None:
        shown = self._shown(path)
        self.report.findings.append(Finding(kind, shown, detail, sha256, moved_to, files))


def check(data_dir: Path, ledger: Ledger, now: datetime) -> Report:
    """Hash every blob, compare with the ledger, move the bad and the unknown aside."""
    checker = _Checker(data_dir, ledger, now)
    sound = checker.hash_blobs()
    # Read after the walk: a record always exists before its blob, so a blob the walk saw
    # has its record by now, and is no orphan.
    checker.compare(sound, ledger.blob_references())
    return checker.report
