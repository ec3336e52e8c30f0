"""Files vetted per minute for ordinary wheels, and the ledger reads that costs (on demand).

    .venv/bin/python bench/vetting_throughput.py [--files 200] [--history 10000] [--workers 0]

In process, loopback free: a real SQLite ledger holding a big project's promoted history
(``--history`` rows, 50 wheels a release), then ``--files`` held wheels of a new release
(numpy-shaped: one wheel per platform and Python, the same ``.py`` members in each, a
compiled-looking blob), vetted by one ``Promoter.run_once`` with the real vetter. Prints
files per minute, ledger whole-project reads and rows read. Runs against older commits
too (it feature-tests the vetter's keyword arguments), to compare before and after.
"""

import argparse
import asyncio
import hashlib
import inspect
import io
import os
import random
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from quarantine.ledger.sqlite import SqliteLedger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import Policy
from quarantine.provenance.verify import ProvenanceVerifier
from quarantine.vetting.promoter import Promoter
from quarantine.vetting.worker import Vetter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.counting_ledger import CountingLedger


def _policy() -> Policy:
    """Every wheel vetted, whatever its platform: the measure is vetting, not filtering
    (trees from before the platform filter have no ``wheel_filter``)."""
    try:
        from quarantine.platforms import EVERYTHING
    except ImportError:
        return Policy()
    return Policy(wheel_filter=EVERYTHING)


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROJECT = NormalizedName("bigproj")
PER_RELEASE = 50
TAGS = [
    f"cp3{minor}-cp3{minor}-{platform}"
    for minor in range(8, 15)
    for platform in (
        "manylinux_2_17_x86_64",
        "manylinux_2_17_aarch64",
        "musllinux_1_2_x86_64",
        "macosx_11_0_arm64",
        "macosx_10_9_x86_64",
        "win_amd64",
        "win32",
    )
]


class FolderSource:
    def __init__(self, folder: Path, ledger: SqliteLedger) -> None:
        self.folder, self.ledger = folder, ledger

    async def fetch(self, record: FileRecord) -> FileRecord:
        return self.ledger.mark_stored(record)

    async def provenance(self, record: FileRecord) -> bytes | None:
        return None

    async def local_copy(self, record: FileRecord) -> Path:
        return self.folder / record.filename

    async def look(self, project: NormalizedName) -> None:
        return None


def _sources(rng: random.Random) -> dict[str, bytes]:
    """About 120 modules of a few KB; one in ten mentions eval/exec (so it is parsed)."""
    words = ["alpha", "beta", "gamma", "delta", "value", "result", "items", "count"]
    out = {}
    for index in range(120):
        lines = [f'"""Module {index}."""', "import os", ""]
        for fn in range(40):
            name = f"{rng.choice(words)}_{fn}"
            lines += [f"def {name}(x, y=1):", f"    return x * {fn} + y - len(os.sep)", ""]
        if index % 10 == 0:
            lines += ["def dyn(text):", "    return eval(text, {})", ""]
        out[f"bigproj/mod{index}.py"] = "\n".join(lines).encode()
    return out


def _wheel(version: str, tag: str, sources: dict[str, bytes], blob: bytes) -> tuple[str, bytes]:
    filename = f"bigproj-{version}-{tag}.whl"
    dist_info = f"bigproj-{version}.dist-info"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sources.items():
            archive.writestr(name, data)
        archive.writestr("bigproj/_core.so", blob)
        archive.writestr(
            f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: bigproj\nVersion: {version}\n"
        )
        archive.writestr(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
        archive.writestr(f"{dist_info}/RECORD", "")
    return filename, buffer.getvalue()


def _upstream(filename: str, data: bytes, uploaded: datetime) -> UpstreamFile:
    digest = hashlib.sha256(data).hexdigest()
    url = f"http://127.0.0.1:9/{filename}"
    return UpstreamFile(filename, url, digest, len(data), uploaded, None, None, None, None)


def _fill(ledger: SqliteLedger, folder: Path, files: int, history: int) -> None:
    rng = random.Random(7)
    sources = _sources(rng)
    blob = rng.randbytes(1 << 20)  # a compiled extension does not compress
    entries = []
    releases = max(1, history // PER_RELEASE)
    for release in range(releases):
        uploaded = NOW - timedelta(days=400 - release / releases * 300)
        for tag in TAGS[:PER_RELEASE]:
            filename = f"bigproj-0.{release}-{tag}.whl"
            entries.append(_upstream(filename, filename.encode(), uploaded))
    for index in range(files):
        tag = TAGS[index % len(TAGS)]
        version = f"9.{index // len(TAGS)}"
        filename, data = _wheel(version, tag, sources, blob)
        (folder / filename).write_bytes(data)
        entries.append(_upstream(filename, data, NOW - timedelta(days=5)))
    snapshot = Snapshot(PROJECT, tuple(entries), ProjectStatus.ACTIVE, None, 1)
    ledger.apply(observe(None, {}, snapshot, NOW, _policy()), None, "bench")
    for record in ledger.files(PROJECT):
        if record.version.startswith("0.") and record.state is not FileState.PROMOTED:
            ledger.transition(record, FileState.PROMOTED, "bench", "bench", NOW)


def _vetter(ledger: SqliteLedger, source: FolderSource, workers: int) -> tuple[Vetter, str]:
    policy = FixedPolicy(_policy())
    kwargs: dict[str, Any] = {}
    how = "threads"
    if "inspector" in inspect.signature(Vetter).parameters:
        from quarantine.inspect.pool import InspectionPool

        pool = InspectionPool(workers)
        kwargs["inspector"] = pool
        how = f"{pool.size} worker processes"
    return Vetter(ledger, source, policy, _Clock(), ProvenanceVerifier(), **kwargs), how


class _Clock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        ledger = CountingLedger(folder / "ledger.sqlite3")
        _fill(ledger, folder, args.files, args.history)
        source = FolderSource(folder, ledger)
        vetter, how = _vetter(ledger, source, args.workers)
        promoter = Promoter(
            ledger, source, FixedPolicy(_policy()), _Clock(), concurrency=4, vetter=vetter
        )
        ledger.files_calls = ledger.rows_read = 0
        started = time.perf_counter()
        result = asyncio.run(promoter.run_once())
        seconds = time.perf_counter() - started
        if hasattr(vetter, "close"):
            vetter.close()
        ledger.close()
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, inspection in {how}")
    print(f"history rows: {args.history}, held wheels vetted: {result.vetted}")
    print(f"seconds: {seconds:.1f}, files/min: {result.vetted / seconds * 60:,.0f}")
    print(f"ledger files() calls: {ledger.files_calls}, rows read: {ledger.rows_read:,}")


if __name__ == "__main__":
    main()
