"""The vetting critical path: a file and its previous release are inspected side by side.

Real ledger and vetter, bytes from a folder (``support.local_source``). The inspector is a
test double for its seam only: the real inspection in a thread, after noting which files
were being inspected at the same time (serial code never has two).
"""

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName

from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import Inspected, Inspection
from quarantine.inspect.pool import Inspector, InThreadInspector
from quarantine.inspect.priority import BACKGROUND, Lane, Priority
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import Policy
from quarantine.provenance.verify import ProvenanceVerifier
from quarantine.source import FetchFailed
from quarantine.vetting.worker import Vetter
from support.clock import FakeClock
from support.dists import build_wheel
from support.ledger_backend import open_ledger
from support.local_source import LocalSource

DEMO = NormalizedName("demo")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux_2_17_aarch64", "macosx_11_0_arm64", "win_amd64")
PARTNER_PATIENCE_SECONDS = 10  # serial code never brings a partner: how long to wait for one


class Overlapping:
    """The inspector seam: inspection in a thread, noting what ran at the same time."""

    def __init__(self) -> None:
        self._real = InThreadInspector()
        self.calls: Counter[str] = Counter()
        self.together: set[frozenset[str]] = set()
        self._running: set[str] = set()
        self._partner: asyncio.Event | None = None
        self.hurried: list[tuple[str, Priority]] = []

    async def inspect_alone(
        self, path: Path, filename: str, limits: Limits, priority: Priority = BACKGROUND
    ) -> Inspected:
        self.calls[filename] += 1
        self._running.add(filename)
        partner = self._partner = self._partner or asyncio.Event()
        if len(self._running) > 1:
            self.together.add(frozenset(self._running))
            partner.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(partner.wait(), PARTNER_PATIENCE_SECONDS)
            return await self._real.inspect_alone(path, filename, limits, priority)
        finally:
            self._running.discard(filename)

    async def inspect(
        self,
        path: Path,
        filename: str,
        previous: ArchiveSummary | None,
        limits: Limits,
        priority: Priority = BACKGROUND,
    ) -> Inspection:
        return (await self.inspect_alone(path, filename, limits, priority)).against(previous)

    def hurry(self, filename: str, priority: Priority) -> None:
        self.hurried.append((filename, priority))

    def close(self) -> None:
        return None


def _upstream(filename: str, data: bytes, uploaded: datetime) -> UpstreamFile:
    digest = hashlib.sha256(data).hexdigest()
    url = f"http://127.0.0.1:9/{filename}"
    return UpstreamFile(filename, url, digest, len(data), uploaded, None, None, None, None)


def _project(ledger: Ledger, source: LocalSource) -> tuple[FileRecord, list[FileRecord]]:
    """demo 1.0 promoted but never inspected (an established release, on a new mirror), and
    the held, stored wheels of 2.0, one per platform."""
    older = build_wheel("demo", "1.0", modules={"demo/__init__.py": "import os\n"})
    source.add(older.filename, older.data)
    files = [_upstream(older.filename, older.data, NOW - timedelta(days=30))]
    for platform in PLATFORMS:
        dist = build_wheel(
            "demo", "2.0", modules={"demo/__init__.py": "import os\n"}, tag=f"py3-none-{platform}"
        )
        source.add(dist.filename, dist.data)
        files.append(_upstream(dist.filename, dist.data, NOW - timedelta(hours=1)))
    snapshot = Snapshot(DEMO, tuple(files), ProjectStatus.ACTIVE, None, 1)
    ledger.apply(observe(None, {}, snapshot, NOW, Policy()), None, "system:test")
    previous = ledger.file(DEMO, older.filename)
    assert previous is not None
    if previous.state is not FileState.PROMOTED:
        previous = ledger.transition(previous, FileState.PROMOTED, "test", "system:test", NOW)
    held = [ledger.mark_stored(r) for r in ledger.files(DEMO) if r.version == "2.0"]
    return previous, held


def _vetter(ledger: Ledger, source: LocalSource, inspector: Inspector) -> Vetter:
    policy = FixedPolicy(Policy())
    return Vetter(ledger, source, policy, FakeClock(NOW), ProvenanceVerifier(), inspector=inspector)


def _content(ledger: Ledger, filename: str) -> list[Mapping[str, Any]]:
    evidence = ledger.evidence(DEMO, filename).get(filename, [])
    return [item.details for item in evidence if item.check == "content"]


def test_a_file_and_its_previous_release_are_inspected_at_the_same_time(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = LocalSource(tmp_path / "files")
    previous, held = _project(ledger, source)
    inspector = Overlapping()
    vetter = _vetter(ledger, source, inspector)

    asyncio.run(vetter.vet(held[0]))

    # Serially (the previous release's inspection first) the two never overlapped.
    assert frozenset({previous.filename, held[0].filename}) in inspector.together
    (content,) = _content(ledger, held[0].filename)
    assert content["compared_with"] == previous.filename  # compared, once both were done
    assert len(_content(ledger, previous.filename)) == 1  # kept for the next file
    ledger.close()


def test_the_files_of_a_release_share_one_inspection_of_their_previous_release(
    tmp_path: Path,
) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = LocalSource(tmp_path / "files")
    previous, held = _project(ledger, source)
    inspector = Overlapping()
    vetter = _vetter(ledger, source, inspector)

    async def all_at_once() -> None:  # as the promoter vets them
        await asyncio.gather(*(vetter.vet(record) for record in held))

    asyncio.run(all_at_once())

    assert inspector.calls[previous.filename] == 1  # was one per file vetted at once
    assert all(inspector.calls[record.filename] == 1 for record in held)
    for record in held:
        (content,) = _content(ledger, record.filename)
        assert content["compared_with"] == previous.filename
    assert len(_content(ledger, previous.filename)) == 1
    ledger.close()


class HeldPrevious(Overlapping):
    """The previous release's inspection waits for ``release``."""

    def __init__(self, previous: str) -> None:
        super().__init__()
        self.previous = previous
        self.release: asyncio.Event | None = None

    async def inspect_alone(
        self, path: Path, filename: str, limits: Limits, priority: Priority = BACKGROUND
    ) -> Inspected:
        if filename == self.previous and self.release is not None:
            self.calls[filename] += 1
            await self.release.wait()
            return await self._real.inspect_alone(path, filename, limits, priority)
        return await super().inspect_alone(path, filename, limits, priority)


def test_a_shared_previous_release_inspection_waits_at_its_most_urgent_askers_priority(
    tmp_path: Path,
) -> None:
    """A background file asked for the previous release's inspection first; a file a
    client is about to install then waits for the same one: it must not wait at the
    background's place in the pool's line."""
    ledger = open_ledger(tmp_path / "data")
    source = LocalSource(tmp_path / "files")
    previous, held = _project(ledger, source)
    inspector = HeldPrevious(previous.filename)
    vetter = _vetter(ledger, source, inspector)
    likely = Priority(Lane.LIKELY, 7)

    async def background_then_likely() -> None:
        inspector.release = asyncio.Event()
        first = asyncio.create_task(vetter.vet(held[0], BACKGROUND))
        while inspector.calls[previous.filename] == 0:  # its inspection is under way
            await asyncio.sleep(0.01)
        second = asyncio.create_task(vetter.vet(held[1], likely))
        await asyncio.sleep(0.1)
        inspector.release.set()
        await asyncio.gather(first, second)

    asyncio.run(background_then_likely())

    assert (previous.filename, likely) in inspector.hurried
    assert inspector.calls[previous.filename] == 1
    ledger.close()


def test_a_file_gone_from_the_store_fails_its_vetting_as_a_fetch_failure(tmp_path: Path) -> None:
    """Raised as itself, not in a group: the promoter lets such a file wait for the next
    round instead of counting a broken file."""
    ledger = open_ledger(tmp_path / "data")
    source = LocalSource(tmp_path / "files")
    previous, held = _project(ledger, source)
    (source.folder / held[0].filename).unlink()
    vetter = _vetter(ledger, source, InThreadInspector())
    with pytest.raises(FetchFailed):
        asyncio.run(vetter.vet(held[0]))
    assert _content(ledger, held[0].filename) == []
    assert len(_content(ledger, previous.filename)) == 1  # inspected to its end all the same
    ledger.close()
