"""The vetting queue follows demand: what a client asked for is fetched and vetted first.

Real ledger, real vetter and inspector; the upstream is a folder whose bytes for the
backlog's project come slowly (``SlowSource``), so a round is still busy with that
backlog when a client asks for another project.
"""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import NormalizedName

from quarantine.ledger.interface import Ledger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, ProjectStatus, Snapshot, UpstreamFile
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


def _look(ledger: Ledger, source: LocalSource, project: str, releases: dict[str, int]) -> None:
    """Record a first look at ``project``: ``releases`` maps versions to upload age in hours."""
    files = []
    for version, hours in releases.items():
        for minor in range(10, 16):  # the default Pythons: none filtered out
            dist = build_wheel(project, version, tag=f"cp3{minor}-cp3{minor}-manylinux_2_17_x86_64")
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
