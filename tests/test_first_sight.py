"""Publisher continuity on first sight of a project, whichever file is vetted first.

A new mirror sees an attested release (the real sampleproject 4.0.0 and its recorded PEP
740 provenance, 30 days old) and its unattested successor (4.0.1, 5 days old) in one look:
both cooled, neither promoted. The successor is held for review because provenance
disappeared, in either vetting order, with the promoter settling files in between or not.
The ledger, the vetter, the verifier and the decision are the real ones; the bytes and the
provenance come from a folder (``support.local_source``).
"""

import asyncio
import hashlib
import json
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.decide import DEFERRED, decide
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import FixedPolicy
from quarantine.models import FileRecord, FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import AHEAD, Policy
from quarantine.provenance.verify import ProvenanceVerifier
from quarantine.vetting.worker import Vetter
from support.clock import FakeClock
from support.dists import Dist, build_sdist
from support.fixtures import provenance_bytes
from support.ledger_backend import open_ledger
from support.local_source import LocalSource
from support.mirror import running_mirror, settings_for
from support.upstream import Upstream
from support.upstream import UpstreamFile as ServedFile

PROJECT = NormalizedName("sampleproject")
ATTESTED = "sampleproject-4.0.0.tar.gz"
UNATTESTED = "sampleproject-4.0.1.tar.gz"
ACTOR = "system:test"
LOST = (
    "review: publisher: no provenance, but release 4.0.0 was built by "
    "GitHub pypa/sampleproject .github/workflows/release.yml"
)


def _entry(filename: str, data: bytes, uploaded: datetime, attested: bool) -> UpstreamFile:
    url = f"http://127.0.0.1:9/files/{filename}"
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        upload_time=uploaded,
        requires_python=None,
        yanked=None,
        core_metadata_sha256=None,
        provenance_url=f"{url}.provenance" if attested else None,
    )


def _first_look(tmp_path: Path, attested_age: timedelta) -> tuple[Ledger, Vetter]:
    """One look at the project: both files recorded, their bytes stored, nothing decided."""
    ledger = open_ledger(tmp_path / "data")
    source = LocalSource(tmp_path / "files")
    old = provenance_bytes(ATTESTED)
    source.add(ATTESTED, old, provenance=provenance_bytes(f"{ATTESTED}.provenance"))
    new = build_sdist("sampleproject", "4.0.1").data
    source.add(UNATTESTED, new)
    files = (
        _entry(ATTESTED, old, NOW - attested_age, attested=True),
        _entry(UNATTESTED, new, NOW - timedelta(days=5), attested=False),
    )
    snapshot = Snapshot(PROJECT, files, ProjectStatus.ACTIVE, None, 1)
    # Both vetted as soon as they cool ("ahead"): the default would defer 4.0.0, a
    # superseded release, until a client downloads it (see the test through the mirror).
    eager = Policy(superseded_releases=AHEAD)
    ledger.apply(observe(None, {}, snapshot, NOW, eager), None, ACTOR)
    for record in ledger.files(PROJECT):
        ledger.mark_stored(record)
    vetter = Vetter(ledger, source, FixedPolicy(Policy()), FakeClock(NOW), ProvenanceVerifier())
    return ledger, vetter


def _file(ledger: Ledger, filename: str) -> FileRecord:
    record = ledger.file(PROJECT, filename)
    assert record is not None
    return record


def _settle(ledger: Ledger) -> None:
    """What the promoter does after vetting: decide every file and record the change."""
    project = ledger.project(PROJECT)
    assert project is not None
    for record in ledger.files(PROJECT):
        evidence = ledger.evidence(PROJECT, record.filename).get(record.filename, [])
        verdict = decide(record, project, Policy(), NOW, evidence=evidence)
        if (verdict.state, verdict.reason) != (record.state, record.reason):
            ledger.transition(record, verdict.state, verdict.reason, ACTOR, NOW)


@pytest.mark.parametrize("settle_between", [False, True], ids=["together", "settled-between"])
@pytest.mark.parametrize("first", [UNATTESTED, ATTESTED], ids=["successor-first", "attested-first"])
def test_provenance_lost_on_first_sight_is_held_whichever_is_vetted_first(
    tmp_path: Path, first: str, settle_between: bool
) -> None:
    ledger, vetter = _first_look(tmp_path, attested_age=timedelta(days=30))
    assert not _file(ledger, ATTESTED).established  # 30 days: inside cooling + vetting window
    second = ATTESTED if first == UNATTESTED else UNATTESTED
    asyncio.run(vetter.vet(_file(ledger, first)))
    if settle_between:
        _settle(ledger)
    asyncio.run(vetter.vet(_file(ledger, second)))
    _settle(ledger)

    assert _file(ledger, ATTESTED).state is FileState.PROMOTED
    successor = _file(ledger, UNATTESTED)
    assert successor.state is FileState.REVIEW
    assert successor.reason == LOST
    publisher = {e.check: e for e in ledger.evidence(PROJECT)[UNATTESTED]}["publisher"]
    assert [f.rule for f in publisher.findings] == ["provenance-dropped"]
    assert publisher.details["expected_from"] == "4.0.0"


def test_an_established_attested_release_is_verified_on_demand(tmp_path: Path) -> None:
    """Older than cooling + vetting window at first sight, 4.0.0 is promoted without being
    vetted; its provenance is verified when 4.0.1 needs the expected publisher."""
    ledger, vetter = _first_look(tmp_path, attested_age=timedelta(days=40))
    assert _file(ledger, ATTESTED).established
    _settle(ledger)
    assert _file(ledger, ATTESTED).state is FileState.PROMOTED
    assert ledger.evidence(PROJECT, ATTESTED) == {}  # established: never vetted
    asyncio.run(vetter.vet(_file(ledger, UNATTESTED)))
    _settle(ledger)
    assert _file(ledger, UNATTESTED).reason == LOST
    # the verification is kept with 4.0.0, for the next file that asks
    kept = {e.check: e for e in ledger.evidence(PROJECT, ATTESTED)[ATTESTED]}
    assert kept["provenance"].details["identity"]["repository"] == "pypa/sampleproject"


@pytest.mark.parametrize("superseded", ["ahead", "on-download"])
def test_first_sight_through_the_real_mirror(
    upstream: Upstream, clock: FakeClock, tmp_path: Path, superseded: str
) -> None:
    """The same two files from a real upstream, in the order the promoter picks; with
    "on-download", the superseded 4.0.0 is only listed, and 4.0.1 is held all the same."""
    attested = Dist(ATTESTED, provenance_bytes(ATTESTED), b"")
    provenance = provenance_bytes(f"{ATTESTED}.provenance")
    entry = ServedFile(attested, NOW - timedelta(days=30), provenance=provenance)
    upstream.add(PROJECT, replace(entry, with_metadata=False))
    unattested = build_sdist("sampleproject", "4.0.1")
    upstream.add(PROJECT, ServedFile(unattested, NOW - timedelta(days=5)))
    base = settings_for(tmp_path / "data", upstream.url)
    settings = replace(base, policy=replace(base.policy, superseded_releases=superseded))
    with running_mirror(settings, clock) as mirror:
        urllib.request.urlopen(f"{mirror.url}{PROJECT}/").close()  # the first look: both
        order = []
        for _ in range(3):
            order += mirror.promote().vetting_order
        assert mirror.services is not None
        ledger = mirror.services.ledger
        states = {r.filename: (r.state, r.reason) for r in ledger.files(PROJECT)}
        request = urllib.request.Request(
            f"{mirror.url}{PROJECT}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(request) as response:
            listed = [item["filename"] for item in json.load(response)["files"]]
    if superseded == "ahead":
        assert sorted(order) == [ATTESTED, UNATTESTED]
        assert states[ATTESTED][0] is FileState.PROMOTED
    else:
        assert order == [UNATTESTED]
        assert states[ATTESTED] == (FileState.HELD, DEFERRED)
    assert states[UNATTESTED] == (FileState.REVIEW, LOST)
    assert listed == [ATTESTED]
