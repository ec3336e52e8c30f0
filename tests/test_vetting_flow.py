"""The vetting side end to end: real archives, real provenance, real feeds, real pip.

LiteLLM-shaped releases (harmless stand-ins: a .pth whose import line only sets a
variable; an exec(base64...) of a print) are never promoted, however long they cool,
while ordinary releases of the same project are. Nothing from a test archive is run.
"""

import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from mirror.upstream.source import MirrorSource
from quarantine.admin import exempt
from quarantine.decide import hold_until
from quarantine.models import FileState
from quarantine.vetting.watcher import Watcher
from support.clock import FakeClock
from support.dists import Dist, build_sdist, build_wheel
from support.fixtures import provenance_bytes
from support.installers import installed, pip_install
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
PTH_LINE = 'import os; os.environ["LAZARETTO_STAND_IN"] = "1"\n'
PAYLOAD = 'import base64\nexec(base64.b64decode("cHJpbnQoJ2hlbGxvIGZyb20gYSB0ZXN0Jyk="))\n'


def _states(mirror: MirrorServer, project: str) -> dict[str, FileState]:
    assert mirror.services is not None
    return {r.filename: r.state for r in mirror.services.ledger.files(NormalizedName(project))}


def _age(mirror: MirrorServer, clock: FakeClock, days: float, rounds: int = 2) -> None:
    """Let time pass and the worker run, the way the background tasks would."""
    mirror.promote()
    clock.advance(timedelta(days=days))
    for _ in range(rounds):
        mirror.promote()


def _touch(mirror: MirrorServer, project: str) -> None:
    urllib.request.urlopen(mirror.url + project + "/").close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_litellm_shaped_releases_are_never_promoted(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    project = "llm-stand-in"
    upstream.add(project, UpstreamFile(build_wheel(project, "1.82.6"), OLD))
    _touch(mirror, project)
    # 1.82.7 hides an encoded payload in a module; 1.82.8 adds a startup .pth hook.
    module = {
        "llm_stand_in/__init__.py": "__version__ = '1.82.7'\n",
        "llm_stand_in/proxy.py": PAYLOAD,
    }
    upstream.add(
        project,
        UpstreamFile(build_wheel(project, "1.82.7", modules=module), NOW - timedelta(hours=1)),
    )
    hook = {"llm_stand_in_init.pth": PTH_LINE.encode()}
    upstream.add(
        project,
        UpstreamFile(build_wheel(project, "1.82.8", extra_files=hook), NOW - timedelta(minutes=50)),
    )
    upstream.add(project, UpstreamFile(build_wheel(project, "1.82.9"), NOW - timedelta(minutes=40)))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, project)
    _age(mirror, clock, days=10)
    states = _states(mirror, project)
    assert states["llm_stand_in-1.82.7-py3-none-any.whl"] is FileState.BLOCKED
    assert states["llm_stand_in-1.82.8-py3-none-any.whl"] is FileState.REVIEW
    assert states["llm_stand_in-1.82.9-py3-none-any.whl"] is FileState.PROMOTED
    assert "LAZARETTO_STAND_IN" not in os.environ
    outcome = pip_install(mirror.url, tmp_path / "t", project)
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {project: "1.82.9"}
    assert not pip_install(mirror.url, tmp_path / "u", f"{project}==1.82.8").ok
    assert mirror.services is not None
    found = mirror.services.ledger.evidence(NormalizedName(project))
    content = {e.check: e for e in found["llm_stand_in-1.82.8-py3-none-any.whl"]}["content"]
    assert any(f.rule == "pth-executable-new" for f in content.findings)
    payload = {e.check: e for e in found["llm_stand_in-1.82.7-py3-none-any.whl"]}["content"]
    hit = next(f for f in payload.findings if f.rule == "exec-encoded-payload")
    assert hit.path == "llm_stand_in/proxy.py" and hit.line == 2


def _fixture(name: str) -> bytes:
    return provenance_bytes(name)


def _real(filename: str) -> Dist:
    return Dist(filename=filename, data=_fixture(filename), metadata=b"")


@pytest.mark.parametrize(
    ("filename", "provenance"),
    [
        ("sampleproject-4.0.0.tar.gz", "sampleproject-4.0.0.tar.gz.provenance"),
        ("sigstore-3.6.1.tar.gz", "sigstore-3.6.1.tar.gz.provenance"),
        ("pypi_attestations-0.0.19.tar.gz", "pypi_attestations-0.0.19.tar.gz.provenance"),
        ("gcb_attestation_test-0.0.0.tar.gz", "gcb_attestation_test-0.0.0.tar.gz.provenance"),
    ],
)
def test_real_attested_files_promote_after_cooling(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, filename: str, provenance: str
) -> None:
    dist = _real(filename)
    project = dist.project
    upstream.add(
        project,
        UpstreamFile(
            dist, NOW - timedelta(hours=2), provenance=_fixture(provenance), with_metadata=False
        ),
    )
    _touch(mirror, project)
    _age(mirror, clock, days=1)
    assert _states(mirror, project)[filename] is FileState.HELD
    _age(mirror, clock, days=3)
    assert _states(mirror, project)[filename] is FileState.PROMOTED
    assert mirror.services is not None
    evidence = {
        e.check: e for e in mirror.services.ledger.evidence(NormalizedName(project))[filename]
    }
    assert evidence["provenance"].details["identity"]["kind"] in ("GitHub", "Google")
    record = mirror.services.ledger.file(NormalizedName(project), filename)
    assert record is not None
    url = f"{mirror.origin}/files/{record.sha256}/{filename}.provenance"
    with urllib.request.urlopen(url) as response:
        assert response.read() == _fixture(provenance)  # the exact bytes the upstream gave


def test_provenance_for_another_file_is_not_promoted(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    dist = _real("pypi_attestations-0.0.19.tar.gz")
    wrong = _fixture("sigstore-3.6.1.tar.gz.provenance")
    upstream.add(
        dist.project,
        UpstreamFile(dist, NOW - timedelta(hours=2), provenance=wrong, with_metadata=False),
    )
    _touch(mirror, dist.project)
    _age(mirror, clock, days=5)
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName(dist.project), dist.filename)
    assert record is not None and record.state is FileState.REVIEW
    assert "provenance" in record.reason


def test_release_without_provenance_after_attested_ones_goes_to_review(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    attested = _real("pypi_attestations-0.0.19.tar.gz")
    provenance = _fixture("pypi_attestations-0.0.19.tar.gz.provenance")
    upstream.add(
        attested.project, UpstreamFile(attested, OLD, provenance=provenance, with_metadata=False)
    )
    _touch(mirror, attested.project)
    # The ultralytics 8.3.45 pattern: a leaked token, and suddenly no provenance.
    unattested = build_sdist("pypi-attestations", "0.0.20")
    upstream.add(attested.project, UpstreamFile(unattested, NOW - timedelta(hours=1)))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, attested.project)
    _age(mirror, clock, days=5)
    states = _states(mirror, attested.project)
    assert states[attested.filename] is FileState.PROMOTED
    assert states[unattested.filename] is FileState.REVIEW
    assert mirror.services is not None
    evidence = mirror.services.ledger.evidence(NormalizedName(attested.project))[
        unattested.filename
    ]
    publisher = {e.check: e for e in evidence}["publisher"]
    assert any(f.rule == "provenance-dropped" for f in publisher.findings)


@pytest.fixture
def feed_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "osv"
    directory.mkdir()
    return directory


def _advisory(directory: Path, ident: str, project: str, versions: list[str]) -> None:
    record = {
        "id": ident,
        "modified": "2026-11-01T00:00:00Z",
        "summary": f"Malicious code in {project}",
        "affected": [{"package": {"ecosystem": "PyPI", "name": project}, "versions": versions}],
    }
    (directory / f"{ident}.json").write_text(json.dumps(record))


def test_osv_records_block_and_withdraw_only_matching_versions(
    upstream: Upstream, feed_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    project = "feedme"
    for version in ("1.0", "1.1", "2.0"):
        upstream.add(project, UpstreamFile(build_wheel(project, version), OLD))
    _advisory(feed_dir, "MAL-2026-0001", project, ["2.0"])
    settings = settings_for(tmp_path / "data", upstream.url, osv_feeds=(str(feed_dir),))
    with running_mirror(settings, clock) as mirror:
        outcome = pip_install(mirror.url, tmp_path / "a", project)
        assert outcome.ok, outcome.output
        assert installed(tmp_path / "a") == {project: "1.1"}
        states = _states(mirror, project)
        assert states["feedme-2.0-py3-none-any.whl"] is FileState.BLOCKED
        wheel = "feedme-1.1-py3-none-any.whl"
        url = f"{mirror.origin}/files/{_sha(mirror, project, wheel)}/{wheel}"
        assert _status(url) == 200
        # A new advisory names a promoted version: withdrawn at the next refresh.
        _advisory(feed_dir, "MAL-2026-0002", project, ["1.1"])
        assert mirror.services is not None
        mirror.call(mirror.services.refresher.refresh_once())
        assert _status(url) == 410
        states = _states(mirror, project)
        assert states["feedme-1.1-py3-none-any.whl"] is FileState.WITHDRAWN
        assert states["feedme-1.0-py3-none-any.whl"] is FileState.PROMOTED
        outcome = pip_install(mirror.url, tmp_path / "b", project)
        assert outcome.ok, outcome.output
        assert installed(tmp_path / "b") == {project: "1.0"}


def _sha(mirror: MirrorServer, project: str, filename: str) -> str:
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName(project), filename)
    assert record is not None
    return record.sha256


def test_watcher_vets_new_releases_before_anyone_asks(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    upstream.add("watched", UpstreamFile(build_wheel("watched", "1.0"), OLD))
    _touch(mirror, "watched")
    upstream.add("watched", UpstreamFile(build_wheel("watched", "1.1"), NOW + timedelta(minutes=1)))
    clock.advance(timedelta(minutes=11))
    assert mirror.watch() == 1
    assert mirror.services is not None
    mirror.promote()
    evidence = mirror.services.ledger.evidence(NormalizedName("watched"))
    assert {e.check for e in evidence["watched-1.1-py3-none-any.whl"]} >= {
        "provenance",
        "publisher",
        "content",
    }


def test_explain_shows_state_and_every_check(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    hook = {"explained_init.pth": PTH_LINE.encode()}
    upstream.add("explained", UpstreamFile(build_wheel("explained", "1.0"), OLD))
    _touch(mirror, "explained")
    upstream.add("explained", UpstreamFile(build_wheel("explained", "2.0", extra_files=hook), NOW))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, "explained")
    _age(mirror, clock, days=1)
    data_dir = str(mirror.settings.data_dir)
    env = lazaretto_env(mirror.settings.data_dir)
    done = subprocess.run(
        [LAZARETTO, "explain", "explained==2.0", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    for word in (
        "review",
        "pth-executable-new",
        "explained_init.pth",
        "provenance",
        "publisher",
        "content",
    ):
        assert word in done.stdout
    as_json = subprocess.run(
        [LAZARETTO, "explain", "explained", "--json", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    files = {f["filename"]: f for f in json.loads(as_json.stdout)["files"]}
    assert files["explained-2.0-py3-none-any.whl"]["state"] == "review"
    assert files["explained-1.0-py3-none-any.whl"]["established"] is True
    missing = subprocess.run(
        [LAZARETTO, "explain", "never-seen", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert missing.returncode == 4 and "has not seen" in missing.stderr


def test_a_round_leaves_cooling_projects_alone_until_something_changes(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    assert mirror.services is not None
    ledger = mirror.services.ledger
    upstream.add("cooler", UpstreamFile(build_wheel("cooler", "1.0"), OLD))
    _touch(mirror, "cooler")
    upstream.add("cooler", UpstreamFile(build_wheel("cooler", "1.1"), NOW))
    upstream.add("warmer", UpstreamFile(build_wheel("warmer", "1.0"), OLD))
    _touch(mirror, "warmer")
    upstream.add("warmer", UpstreamFile(build_wheel("warmer", "1.1"), NOW))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, "cooler")
    _touch(mirror, "warmer")
    assert mirror.promote().decided == 2  # fetched, vetted, still cooling
    assert mirror.promote().decided == 0  # nothing changed: nobody is decided again
    clock.advance(timedelta(minutes=2))
    assert mirror.promote().decided == 2  # the safety net: at least once a minute
    assert mirror.promote().decided == 0

    # An admin's exemption changes the policy: decided at once, promoted at once.
    exempt(ledger, NormalizedName("warmer"), "built by the platform team", None, "admin:t", NOW)
    exempted = mirror.promote()
    assert exempted.decided == 2
    assert exempted.promoted == ["warmer-1.1-py3-none-any.whl"]

    # The end of a hold is noticed on time, not at the next safety recheck.
    record = ledger.file(NormalizedName("cooler"), "cooler-1.1-py3-none-any.whl")
    assert record is not None
    ends = hold_until(record, mirror.services.policy.current())
    clock.advance(ends - clock.now() - timedelta(seconds=30))
    assert mirror.promote().promoted == []
    _touch(mirror, "cooler")  # a fresh look, so only the hold stands in the way
    clock.advance(timedelta(seconds=31))
    assert mirror.promote().promoted == ["cooler-1.1-py3-none-any.whl"]
    assert _states(mirror, "cooler")["cooler-1.1-py3-none-any.whl"] is FileState.PROMOTED


def test_watcher_goes_on_at_once_while_a_backlog_is_due_but_not_when_looks_fail(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    assert mirror.services is not None
    services = mirror.services
    names = [f"backlog-{index}" for index in range(5)]
    for name in names:
        upstream.add(name, UpstreamFile(build_wheel(name, "1.0"), OLD))
        _touch(mirror, name)
    clock.advance(timedelta(minutes=11))  # all five are due for a re-read
    source = MirrorSource(services.artifacts, services.catalog)
    # Batches of two and a tick far longer than the test: only going on at once covers all.
    watcher = Watcher(services.ledger, source, clock, timedelta(minutes=10), batch=2)

    def last_looks() -> list[datetime | None]:
        records = [services.ledger.project(NormalizedName(name)) for name in names]
        return [record.last_look_ok if record else None for record in records]

    async def watch_until_all_looked(seconds: float) -> bool:
        task = asyncio.create_task(watcher.run_forever(tick_seconds=3600))
        try:
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                if all(look == clock.now() for look in last_looks()):
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            task.cancel()

    assert mirror.call(watch_until_all_looked(20))

    clock.advance(timedelta(minutes=11))
    for name in names:
        upstream.set_fault(name, "500")  # every look fails: one batch, then the hour's tick
    asked_before = sum(len(upstream.requests_for(f"/simple/{name}/")) for name in names)
    assert not mirror.call(watch_until_all_looked(1.5))
    assert sum(look == clock.now() for look in last_looks()) == 0
    asked = sum(len(upstream.requests_for(f"/simple/{name}/")) for name in names)
    assert asked - asked_before == 2  # one batch of two, not a loop hammering the upstream
