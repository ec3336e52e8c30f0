"""A project's release history is read once and kept in step, never read again per file.

The ledger here is the real SQLite one, counting what it is asked for; the vetter and
the inspector are real; the bytes come from a folder (``support.local_source``).
"""

import asyncio
import hashlib
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.filenames import version_or_none
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import Policy
from quarantine.provenance.verify import ProvenanceVerifier
from quarantine.vetting.history import NOT_STANDING, TRUSTED, ReleaseHistory
from quarantine.vetting.worker import Vetter
from support.clock import FakeClock
from support.counting_ledger import CountingLedger
from support.dists import build_wheel
from support.local_source import LocalSource

BIG = NormalizedName("big")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACTOR = "system:test"
TAGS = [
    f"cp3{minor}-cp3{minor}-{plat}"
    for minor in range(8, 14)
    for plat in (
        "manylinux_2_17_x86_64",
        "manylinux_2_17_aarch64",
        "macosx_11_0_arm64",
        "win_amd64",
        "musllinux_1_2_x86_64",
    )
]


def _upstream(filename: str, data: bytes, uploaded: datetime) -> UpstreamFile:
    return UpstreamFile(
        filename=filename,
        url=f"http://127.0.0.1:9/{filename}",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        upload_time=uploaded,
        requires_python=None,
        yanked=None,
        core_metadata_sha256=None,
        provenance_url=None,
    )


def _fill(ledger: SqliteLedger, source: LocalSource, old: int, new: int) -> list[FileRecord]:
    """``old`` promoted releases of one wheel each, then ``new`` held wheels of 9.0."""
    files = []
    for minor in range(old):
        dist = build_wheel("big", f"1.{minor}")
        source.add(dist.filename, dist.data)
        files.append(_upstream(dist.filename, dist.data, NOW - timedelta(days=400 - minor)))
    for tag in TAGS[:new]:
        dist = build_wheel("big", "9.0", tag=tag)
        source.add(dist.filename, dist.data)
        files.append(_upstream(dist.filename, dist.data, NOW - timedelta(hours=1)))
    snapshot = Snapshot(BIG, tuple(files), ProjectStatus.ACTIVE, None, 1)
    ledger.apply(observe(None, {}, snapshot, NOW, Policy()), None, ACTOR)
    for record in ledger.files(BIG):
        if record.version != "9.0" and record.state is not FileState.PROMOTED:
            ledger.transition(record, FileState.PROMOTED, "test", ACTOR, NOW)
    held = [r for r in ledger.files(BIG) if r.version == "9.0"]
    return [ledger.mark_stored(record) for record in held]


def _vetter(ledger: SqliteLedger, source: LocalSource) -> Vetter:
    policy = FixedPolicy(Policy())
    return Vetter(ledger, source, policy, FakeClock(NOW), ProvenanceVerifier())


def test_vetting_the_files_of_a_project_reads_its_history_once(tmp_path: Path) -> None:
    ledger = CountingLedger(tmp_path / "ledger.sqlite3")
    source = LocalSource(tmp_path / "files")
    held = _fill(ledger, source, old=20, new=30)
    vetter = _vetter(ledger, source)
    ledger.files_calls = ledger.rows_read = 0

    async def vet_all() -> None:  # at once, as the promoter does: threads share the history
        await asyncio.gather(*(vetter.vet(record) for record in held))

    asyncio.run(vet_all())
    assert ledger.files_calls == 1  # was one per file: 30 reads of 50 rows
    assert ledger.rows_read <= 50 + 30  # the project once, then only rows that changed


def _naive_earlier(
    ledger: SqliteLedger, record: FileRecord, states: Collection[FileState] = TRUSTED
) -> list[tuple[Version, list[str]]]:
    """What vetting judged against before the history was kept: the whole project, read."""
    mine = version_or_none(record.version)
    assert mine is not None
    releases: dict[Version, list[str]] = {}
    for other in ledger.files(record.project):
        version = version_or_none(other.version)
        if version is None or version >= mine or other.state not in states:
            continue
        releases.setdefault(version, []).append(other.filename)
    return sorted(releases.items())


def _kept(
    history: ReleaseHistory, record: FileRecord, standing: bool = False
) -> list[tuple[Version, list[str]]]:
    earlier = history.earlier(record, recent=1_000)
    releases = earlier.standing if standing else earlier.recent
    return [(release.version, list(release.filenames)) for release in releases]


STANDING = set(FileState) - set(NOT_STANDING)


def test_the_standing_history_is_every_state_but_rejected_and_blocked(tmp_path: Path) -> None:
    ledger = CountingLedger(tmp_path / "ledger.sqlite3")
    source = LocalSource(tmp_path / "files")
    held = _fill(ledger, source, old=6, new=8)
    for record in ledger.files(BIG):  # 1.5 still held, as on first sight of a project
        if record.version == "1.5":
            ledger.transition(record, FileState.HELD, "test", ACTOR, NOW)
    history, judged = ReleaseHistory(ledger), held[0]
    older = sorted(
        (r for r in ledger.files(BIG) if r.version != "9.0"), key=lambda r: Version(r.version)
    )
    steps = [
        (older[-2], FileState.REVIEW),
        (older[-2], FileState.BLOCKED),  # leaves
        (older[1], FileState.REJECTED),  # leaves
        (older[3], FileState.WITHDRAWN),  # stays: it was served once, by its publisher
        (held[2], FileState.REVIEW),  # 9.0 is not earlier than 9.0: never in its history
    ]
    whole_reads = ledger.files_calls
    assert _kept(history, judged, standing=True) == _naive_earlier(ledger, judged, STANDING)
    assert [version for version, _ in _kept(history, judged)] == [
        Version(f"1.{minor}") for minor in range(5)
    ]
    assert Version("1.5") in [version for version, _ in _kept(history, judged, standing=True)]
    for before, state in steps:
        current = ledger.file(BIG, before.filename)
        assert current is not None
        ledger.transition(current, state, "test", ACTOR, NOW)
        assert _kept(history, judged, standing=True) == _naive_earlier(ledger, judged, STANDING)
        assert _kept(history, judged) == _naive_earlier(ledger, judged)
    standing = [version for version, _ in _kept(history, judged, standing=True)]
    assert standing == [Version(v) for v in ("1.0", "1.2", "1.3", "1.5")]
    naive_reads = 1 + 2 * len(steps)
    assert ledger.files_calls - whole_reads - naive_reads == 1  # the history read it once


def test_the_kept_history_is_the_ledger_s_after_promotions_and_withdrawals(
    tmp_path: Path,
) -> None:
    ledger = CountingLedger(tmp_path / "ledger.sqlite3")
    source = LocalSource(tmp_path / "files")
    held = _fill(ledger, source, old=6, new=8)
    history, judged = ReleaseHistory(ledger), held[0]
    older = sorted(
        (r for r in ledger.files(BIG) if r.version != "9.0"), key=lambda r: Version(r.version)
    )
    # Withdraw the newest trusted release, promote one of 9.0's wheels (not earlier than
    # 9.0, so not in its history), and withdraw then promote an old one again.
    steps = [
        (older[-1], FileState.WITHDRAWN),
        (held[3], FileState.PROMOTED),
        (older[2], FileState.WITHDRAWN),
        (older[2], FileState.PROMOTED),
    ]
    whole_reads = ledger.files_calls
    assert _kept(history, judged) == _naive_earlier(ledger, judged)
    for before, state in steps:
        current = ledger.file(BIG, before.filename)
        assert current is not None
        ledger.transition(current, state, "test", ACTOR, NOW)
        assert _kept(history, judged) == _naive_earlier(ledger, judged)
    naive_reads = 1 + len(steps)
    assert ledger.files_calls - whole_reads - naive_reads == 1  # the history read it once
    assert _naive_earlier(ledger, judged)[-1][0] == Version(older[-2].version)


def test_previous_summary_of_the_same_kind_comes_from_the_newest_release_with_one(
    tmp_path: Path,
) -> None:
    ledger = CountingLedger(tmp_path / "ledger.sqlite3")
    source = LocalSource(tmp_path / "files")
    held = _fill(ledger, source, old=4, new=2)
    history = ReleaseHistory(ledger)
    newest = max(
        (r for r in ledger.files(BIG) if r.version != "9.0"), key=lambda r: Version(r.version)
    )
    assert history.earlier(held[0], recent=3).previous == newest.filename
    sdist = replace(held[0], filename="big-9.0.tar.gz")
    assert history.earlier(sdist, recent=3).previous is None  # no earlier sdist
