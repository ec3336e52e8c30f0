"""The vetting queue follows demand: what a client asked for is fetched and vetted first.

Real ledger, real vetter and inspector; the upstream is a folder whose bytes for the
backlog's project come slowly (``SlowSource``), so a round is still busy with that
backlog when a client asks for another project.
"""

import asyncio
import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName

from quarantine.evidence import Evidence
from quarantine.inspect.priority import BACKGROUND, Priority
from quarantine.ledger.interface import Ledger
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import AHEAD, Policy
from quarantine.provenance.verify import ProvenanceVerifier
from quarantine.vetting.promoter import Promoter
from quarantine.vetting.worker import Vetter
from support.clock import FakeClock
from support.dists import build_wheel
from support.ledger_backend import open_ledger
from support.local_source import LocalSource

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BACKLOG, ASKED = NormalizedName("backlog"), NormalizedName("asked")


class SlowSource(LocalSource):
    """Stores fetched files in the ledger; the backlog's bytes take a while to come."""

    def __init__(self, folder: Path, ledger: Ledger) -> None:
        super().__init__(folder)
        self.ledger = ledger

    async def fetch(self, record: FileRecord) -> FileRecord:
        if record.project == BACKLOG:
            await asyncio.sleep(0.05)
        await self.local_copy(record)
        return self.ledger.mark_stored(record)


def _look(
    ledger: Ledger,
    source: LocalSource,
    project: str,
    releases: dict[str, int],
    platforms: tuple[str, ...] = ("manylinux_2_17_x86_64",),
) -> None:
    """Record a first look at ``project``: ``releases`` maps versions to upload age in hours."""
    files = []
    for version, hours in releases.items():
        for minor, platform in itertools.product(range(10, 16), platforms):  # none filtered
            dist = build_wheel(project, version, tag=f"cp3{minor}-cp3{minor}-{platform}")
            source.add(dist.filename, dist.data)
            files.append(
                UpstreamFile(
                    dist.filename,
                    f"http://127.0.0.1:9/{dist.filename}",
                    hashlib.sha256(dist.data).hexdigest(),
                    len(dist.data),
                    NOW - timedelta(hours=hours),
                    None,
                    None,
                    None,
                    None,
                )
            )
    snapshot = Snapshot(NormalizedName(project), tuple(files), ProjectStatus.ACTIVE, None, 1)
    before = ledger.project(NormalizedName(project))
    # Every release vetted as it cools ("ahead"): the order of that work is tested here.
    eager = Policy(superseded_releases=AHEAD)
    ledger.apply(observe(before, {}, snapshot, NOW, eager), None, "system:test")


def _promoter(ledger: Ledger, source: LocalSource, concurrency: int) -> Promoter:
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = Vetter(ledger, source, policy, clock, ProvenanceVerifier())
    return Promoter(ledger, source, policy, clock, concurrency=concurrency, vetter=vetter)


def test_a_project_asked_for_during_a_backlog_is_vetted_before_the_backlog(
    tmp_path: Path,
) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = SlowSource(tmp_path / "files", ledger)
    _look(ledger, source, "backlog", {f"1.{n}": 1 for n in range(6)})  # 36 files
    promoter = _promoter(ledger, source, concurrency=2)

    async def scenario() -> list[str]:
        backlog = asyncio.create_task(promoter.run_once())
        while sum(r.stored for r in ledger.files(BACKLOG)) < 4:
            await asyncio.sleep(0.01)
        _look(ledger, source, "asked", {"1.0": 1})  # a client's request saw it first
        promoter.wake(ASKED, asked=True)
        return (await backlog).vetting_order

    order = asyncio.run(scenario())
    asked = [i for i, name in enumerate(order) if name.startswith("asked-")]
    assert len(asked) == 6  # vetted in the round already running
    assert max(asked) < 16  # ahead of most of the 36-file backlog
    assert len(order) == 42
    ledger.close()


def test_within_a_project_the_newest_cooled_release_goes_first(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "data")
    source = SlowSource(tmp_path / "files", ledger)
    _look(ledger, source, "asked", {"1.0": 24 * 5, "2.0": 24 * 4, "3.0": 1})
    for record in ledger.files(ASKED):
        ledger.mark_stored(record)
    promoter = _promoter(ledger, source, concurrency=1)
    order = asyncio.run(promoter.run_once()).vetting_order
    versions = [name.split("-")[1] for name in order]
    assert versions == ["2.0"] * 6 + ["1.0"] * 6 + ["3.0"] * 6  # 3.0 still cools
    ledger.close()


class StuckSource(LocalSource):
    """The backlog's one file is fetched only once ``release`` is set."""

    def __init__(self, folder: Path, ledger: SqliteLedger) -> None:
        super().__init__(folder)
        self.ledger = ledger
        self.release = asyncio.Event()
        self.stuck = asyncio.Event()

    async def fetch(self, record: FileRecord) -> FileRecord:
        if record.project == BACKLOG:
            self.stuck.set()
            await self.release.wait()
        await self.local_copy(record)
        return self.ledger.mark_stored(record)


class RecordingVetter(Vetter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.vetted: list[str] = []

    async def vet(self, record: FileRecord, priority: Priority = BACKGROUND) -> list[Evidence]:
        evidence = await super().vet(record, priority)
        self.vetted.append(record.filename)
        return evidence


def test_a_project_asked_for_once_the_queue_ran_dry_is_not_kept_behind_the_files_in_hand(
    tmp_path: Path,
) -> None:
    """The round's other workers found nothing more to do while one file was still in
    hand; the files of a project asked for then must not wait for that one."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = StuckSource(tmp_path / "files", ledger)
    _look(ledger, source, "backlog", {"1.0": 1})
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = RecordingVetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(ledger, source, policy, clock, concurrency=2, vetter=vetter)
    for record in ledger.files(BACKLOG)[1:]:
        ledger.mark_stored(record)  # one file left to fetch: in hand, stuck

    async def scenario() -> list[str]:
        backlog = asyncio.create_task(promoter.run_once())
        await asyncio.wait_for(source.stuck.wait(), 10)
        await asyncio.sleep(0.2)  # the other worker finds the queue empty meanwhile
        _look(ledger, source, "asked", {"1.0": 1})
        promoter.wake(ASKED, asked=True)
        try:
            async with asyncio.timeout(20):
                while sum(name.startswith("asked-") for name in vetter.vetted) < 6:
                    await asyncio.sleep(0.01)
            return list(vetter.vetted)
        finally:
            source.release.set()
            await backlog

    vetted = asyncio.run(scenario())
    assert sum(name.startswith("asked-") for name in vetted) == 6
    ledger.close()


class FirstThenStuckSource(StuckSource):
    """The first file fetched comes at once; every later one waits for ``release``."""

    def __init__(self, folder: Path, ledger: SqliteLedger) -> None:
        super().__init__(folder, ledger)
        self.fetched: list[str] = []

    async def fetch(self, record: FileRecord) -> FileRecord:
        self.fetched.append(record.filename)
        if len(self.fetched) > 1:
            self.stuck.set()
            await self.release.wait()
        await self.local_copy(record)
        return self.ledger.mark_stored(record)


def test_a_release_still_being_vetted_is_served_from_its_first_promoted_file(
    tmp_path: Path,
) -> None:
    """numpy's newest release has dozens of wheels: the first one vetted (a Linux x86_64
    wheel, the one most installs take) is promoted without waiting for the others."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = FirstThenStuckSource(tmp_path / "files", ledger)
    _look(ledger, source, "asked", {"1.0": 24 * 5})  # cooled: promoted once vetted
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = Vetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(ledger, source, policy, clock, concurrency=2, vetter=vetter)

    async def scenario() -> set[str]:
        promoter.wake(ASKED, asked=True)
        work = asyncio.create_task(promoter.run_once())
        try:
            async with asyncio.timeout(20):
                await source.stuck.wait()
                while not (promoted := _promoted(ledger)):
                    await asyncio.sleep(0.01)
            return promoted
        finally:
            source.release.set()
            await work

    promoted = asyncio.run(scenario())
    assert promoted == {source.fetched[0]}  # the others were still on their way
    assert "manylinux" in source.fetched[0] and "x86_64" in source.fetched[0]
    assert len(_promoted(ledger)) == 6  # and all of them once their bytes came
    ledger.close()


class OneByOneSource(StuckSource):
    """The first file fetched comes at once, the second once ``second`` is set, every
    later one waits for ``release``."""

    def __init__(self, folder: Path, ledger: SqliteLedger) -> None:
        super().__init__(folder, ledger)
        self.fetched: list[str] = []
        self.second = asyncio.Event()

    async def fetch(self, record: FileRecord) -> FileRecord:
        self.fetched.append(record.filename)
        if len(self.fetched) == 2:
            await self.second.wait()
        elif len(self.fetched) > 2:
            self.stuck.set()
            await self.release.wait()
        await self.local_copy(record)
        return self.ledger.mark_stored(record)


def test_a_file_vetted_between_its_projects_decisions_is_promoted_at_once(
    tmp_path: Path,
) -> None:
    """A project with files in flight is decided at most every ``settle_every`` seconds;
    a file vetted in between is decided alone at once. On the real index pydantic-core's
    cp312 wheel otherwise waited 18 s, and regex's a minute, for another of their files
    (the still-cooling ones come last) to be done."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = OneByOneSource(tmp_path / "files", ledger)
    _look(ledger, source, "asked", {"1.0": 24 * 5})
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = Vetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(
        ledger, source, policy, clock, concurrency=2, vetter=vetter, settle_every_seconds=3600
    )

    async def scenario() -> set[str]:
        promoter.wake(ASKED, asked=True)
        work = asyncio.create_task(promoter.run_once())
        try:
            async with asyncio.timeout(20):
                while not _promoted(ledger):
                    await asyncio.sleep(0.01)
                source.second.set()
                while len(promoted := _promoted(ledger)) < 2:
                    await asyncio.sleep(0.01)
            return promoted
        finally:
            source.second.set()
            source.release.set()
            await work

    promoted = asyncio.run(scenario())
    assert promoted == set(source.fetched[:2])  # the rest were still on their way
    assert len(_promoted(ledger)) == 6
    ledger.close()


def _promoted(ledger: SqliteLedger) -> set[str]:
    return {r.filename for r in ledger.files(ASKED) if r.state is FileState.PROMOTED}


def test_a_likely_file_finds_a_worker_while_every_background_worker_is_stuck(
    tmp_path: Path,
) -> None:
    """The background's files hold as many workers as they ever could (their fetches
    stuck); the newest release of a project a client asks for is vetted meanwhile."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = StuckSource(tmp_path / "files", ledger)
    _look(ledger, source, "backlog", {"1.0": 24 * 5, "1.1": 24 * 4})  # 12 files to fetch
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = RecordingVetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(ledger, source, policy, clock, concurrency=1, vetter=vetter)

    async def scenario() -> list[str]:
        backlog = asyncio.create_task(promoter.run_once())
        await asyncio.wait_for(source.stuck.wait(), 10)
        await asyncio.sleep(0.2)  # the other workers take what they may meanwhile
        _look(ledger, source, "asked", {"1.0": 24 * 5})  # cooled: Linux x86_64 wheels
        promoter.wake(ASKED, asked=True)
        try:
            async with asyncio.timeout(20):
                while sum(name.startswith("asked-") for name in vetter.vetted) < 6:
                    await asyncio.sleep(0.01)
            return list(vetter.vetted)
        finally:
            source.release.set()
            await backlog

    vetted = asyncio.run(scenario())
    assert all(name.startswith("asked-") for name in vetted[:6])  # none of the backlog's yet
    ledger.close()


class WindowsStuckSource(StuckSource):
    """Every Windows wheel's fetch waits for ``release``."""

    async def fetch(self, record: FileRecord) -> FileRecord:
        if "win_amd64" in record.filename:
            self.stuck.set()
            await self.release.wait()
        await self.local_copy(record)
        return self.ledger.mark_stored(record)


def test_each_likely_file_is_promoted_once_vetted_not_at_the_next_settling(tmp_path: Path) -> None:
    """pydantic-core's wheel for CPython 3.12 waited 44 s on the real index for its release's
    Windows wheels to be vetted, though vetted itself in seconds."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = WindowsStuckSource(tmp_path / "files", ledger)
    platforms = ("manylinux_2_17_x86_64", "win_amd64")
    _look(ledger, source, "asked", {"1.0": 24 * 5}, platforms)  # cooled: promoted once vetted
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = Vetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(
        ledger, source, policy, clock, concurrency=2, vetter=vetter, settle_every_seconds=3600
    )

    async def scenario() -> set[str]:
        promoter.wake(ASKED, asked=True)
        work = asyncio.create_task(promoter.run_once())
        try:
            async with asyncio.timeout(20):
                await source.stuck.wait()
                while len(promoted := _promoted(ledger)) < 6:
                    await asyncio.sleep(0.01)
            return promoted
        finally:
            source.release.set()
            await work

    promoted = asyncio.run(scenario())
    assert all("manylinux" in name for name in promoted)  # the Windows wheels still wait
    assert len(_promoted(ledger)) == 12
    ledger.close()


class FirstStuckVetter(RecordingVetter):
    """The vetting of every file of ``first`` waits for ``release`` (an inspection line)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = asyncio.Event()

    async def vet(self, record: FileRecord, priority: Priority = BACKGROUND) -> list[Evidence]:
        if record.project == "first":
            await self.release.wait()
        return await super().vet(record, priority)


def test_a_likely_file_asked_for_later_is_fetched_while_many_wait_for_inspection(
    tmp_path: Path,
) -> None:
    """On the real index sixteen workers all held files waiting for an inspection worker,
    and litellm's wheel, asked for meanwhile, was not even fetched for 8 s: it could not
    join the pool's line, where the largest goes first."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    source = SlowSource(tmp_path / "files", ledger)
    first = [f"1.{n}" for n in range(3)]  # three releases cooling: 18 files, none likely
    _look(ledger, source, "first", {**{v: 1 for v in first}, "2.0": 24 * 5})  # 6 likely
    policy, clock = FixedPolicy(Policy()), FakeClock(NOW)
    vetter = FirstStuckVetter(ledger, source, policy, clock, ProvenanceVerifier())
    promoter = Promoter(ledger, source, policy, clock, concurrency=1, vetter=vetter)
    promoter.wake(NormalizedName("first"), asked=True)

    async def scenario() -> list[str]:
        round_ = asyncio.create_task(promoter.run_once())
        await asyncio.sleep(0.3)  # every worker it may use holds a file of "first"
        _look(ledger, source, "asked", {"1.0": 24 * 5})
        promoter.wake(ASKED, asked=True)
        try:
            async with asyncio.timeout(20):
                while sum(name.startswith("asked-") for name in vetter.vetted) < 6:
                    await asyncio.sleep(0.01)
            return list(vetter.vetted)
        finally:
            vetter.release.set()
            await round_

    vetted = asyncio.run(scenario())
    assert all(name.startswith("asked-") for name in vetted[:6])
    ledger.close()
