"""Real pip and real uv against the mirror, in front of a real local upstream.

Each scenario is one of the promises in the foundation issue: what a developer running
``pip install`` or ``uv pip install`` sees while files wait out their cooling period.
"""

import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import build_sdist, build_wheel
from support.installers import Outcome, installed, pip_install, uv_install
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

Installer = Callable[..., Outcome]
INSTALLERS = pytest.mark.parametrize("install", [pip_install, uv_install], ids=["pip", "uv"])
OLD = NOW - timedelta(days=400)
TTL = timedelta(seconds=61)


def _publish(
    upstream: Upstream, project: str, version: str, uploaded: object, **extra: object
) -> None:
    upstream.add(project, UpstreamFile(build_wheel(project, version), uploaded, **extra))  # type: ignore[arg-type]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _file_url(mirror: MirrorServer, project: str, filename: str) -> str:
    assert mirror.services is not None
    record = mirror.services.ledger.file(project, filename)  # type: ignore[arg-type]
    assert record is not None, f"{filename} was never seen"
    return f"{mirror.origin}/files/{record.sha256}/{filename}"


@INSTALLERS
def test_old_releases_install_at_once(
    install: Installer, upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    _publish(upstream, "oldie", "1.0", OLD)
    _publish(upstream, "oldie", "1.1", OLD + timedelta(days=1))
    outcome = install(mirror.url, tmp_path / "t", "oldie")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"oldie": "1.1"}


@INSTALLERS
def test_newest_release_hours_old_is_skipped(
    install: Installer, upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    _publish(upstream, "fresh", "1.0", OLD)
    _publish(upstream, "fresh", "2.0", NOW - timedelta(hours=3))
    outcome = install(mirror.url, tmp_path / "t", "fresh")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"fresh": "1.0"}


@INSTALLERS
def test_pinned_held_version_fails(
    install: Installer, upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    _publish(upstream, "pinned", "1.0", OLD)
    _publish(upstream, "pinned", "2.0", NOW - timedelta(hours=3))
    outcome = install(mirror.url, tmp_path / "t", "pinned==2.0")
    assert not outcome.ok
    assert "2.0" in outcome.output
    assert not (tmp_path / "t").exists() or installed(tmp_path / "t") == {}


@INSTALLERS
def test_new_wheel_added_to_old_release_is_held(
    install: Installer, upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    upstream.add("addon", UpstreamFile(build_wheel("addon", "1.0"), OLD))
    assert install(mirror.url, tmp_path / "first", "addon").ok
    # A more specific wheel appears in the old release: installers would prefer it.
    late = build_wheel("addon", "1.0", tag="py311-none-any")
    upstream.add("addon", UpstreamFile(late, NOW - timedelta(hours=1)))
    mirror.clock.advance(TTL)
    outcome = install(mirror.url, tmp_path / "t", "addon==1.0", extra=("-v",))
    assert outcome.ok, outcome.output
    assert "addon-1.0-py3-none-any.whl" in outcome.output
    assert late.filename not in outcome.output
    assert _status(_file_url(mirror, "addon", late.filename)) == 404


@INSTALLERS
def test_file_ages_into_promotion(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "ageing", "1.0", OLD)
    _publish(upstream, "ageing", "2.0", NOW - timedelta(hours=1))
    assert install(mirror.url, tmp_path / "before", "ageing").ok
    assert installed(tmp_path / "before") == {"ageing": "1.0"}
    mirror.promote()  # fetches and verifies the held bytes; too early to promote
    clock.advance(timedelta(hours=70))
    assert mirror.promote().promoted == []
    clock.advance(timedelta(hours=1, minutes=1))
    assert mirror.promote().promoted == ["ageing-2.0-py3-none-any.whl"]
    outcome = install(mirror.url, tmp_path / "after", "ageing")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "after") == {"ageing": "2.0"}


@INSTALLERS
def test_backdated_file_is_held(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "backdated", "1.0", OLD)
    assert install(mirror.url, tmp_path / "first", "backdated").ok
    clock.advance(TTL)
    # Appears after the mirror's look, claiming to be a year old: that is not possible.
    _publish(upstream, "backdated", "1.5", NOW - timedelta(days=365))
    outcome = install(mirror.url, tmp_path / "t", "backdated")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"backdated": "1.0"}
    assert mirror.services is not None
    record = mirror.services.ledger.file("backdated", "backdated-1.5-py3-none-any.whl")  # type: ignore[arg-type]
    assert record is not None and record.state is FileState.HELD
    assert record.anomaly is not None and record.anomaly.startswith("backdated")
    assert record.clock_start == clock.now()
    anomalies = [e for e in mirror.services.ledger.events("backdated") if e.to_state == "anomaly"]  # type: ignore[arg-type]
    assert len(anomalies) == 1


@INSTALLERS
def test_hash_mismatch_is_never_served(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    good = build_wheel("tampered", "1.0")
    upstream.add("tampered", UpstreamFile(good, OLD, serve_bytes=good.data[:-10] + b"X" * 10))
    outcome = install(mirror.url, tmp_path / "t", "tampered")
    assert not outcome.ok
    assert not (tmp_path / "t").exists() or installed(tmp_path / "t") == {}
    # The established file was refused on first download and left the index.
    assert mirror.services is not None
    record = mirror.services.ledger.file("tampered", good.filename)  # type: ignore[arg-type]
    assert record is not None and record.state is FileState.REJECTED
    assert record.reason.startswith("hash_mismatch")
    assert mirror.services.blobs.local_path(good.sha256) is None


def test_held_file_with_wrong_bytes_is_never_promoted(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "swapped", "1.0", OLD)
    new = build_wheel("swapped", "2.0")
    evil = new.data[:-4] + b"evil"  # the listed size: a true digest mismatch
    upstream.add("swapped", UpstreamFile(new, NOW - timedelta(hours=2), serve_bytes=evil))
    assert pip_install(mirror.url, tmp_path / "first", "swapped").ok
    clock.advance(timedelta(days=4))
    mirror.promote()
    mirror.promote()
    outcome = pip_install(mirror.url, tmp_path / "t", "swapped")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"swapped": "1.0"}
    assert _status(_file_url(mirror, "swapped", new.filename)) == 404
    assert mirror.services is not None
    events = mirror.services.ledger.events("swapped")  # type: ignore[arg-type]
    assert any(e.to_state == "rejected" and e.reason.startswith("hash_mismatch") for e in events)


@INSTALLERS
def test_upstream_removal_withdraws_a_promoted_file(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "removed", "1.0", OLD)
    _publish(upstream, "removed", "2.0", OLD + timedelta(days=2))
    assert installed_after(install, mirror, tmp_path / "a", "removed") == {"removed": "2.0"}
    url = _file_url(mirror, "removed", "removed-2.0-py3-none-any.whl")
    upstream.remove("removed", "removed-2.0-py3-none-any.whl")
    clock.advance(TTL)
    assert installed_after(install, mirror, tmp_path / "b", "removed") == {"removed": "1.0"}
    assert _status(url) == 410


def installed_after(
    install: Installer, mirror: MirrorServer, target: Path, *reqs: str
) -> dict[str, str]:
    outcome = install(mirror.url, target, *reqs)
    assert outcome.ok, outcome.output
    return installed(target)


@INSTALLERS
def test_quarantined_project_is_withdrawn(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    # The LiteLLM shape: an old promoted release, two fresh ones, then the index
    # quarantines the project (PEP 792).
    _publish(upstream, "litellm-like", "1.82.6", OLD)
    _publish(upstream, "litellm-like", "1.82.7", NOW - timedelta(minutes=30))
    _publish(upstream, "litellm-like", "1.82.8", NOW - timedelta(minutes=15))
    assert installed_after(install, mirror, tmp_path / "a", "litellm-like") == {
        "litellm-like": "1.82.6"
    }
    url = _file_url(mirror, "litellm-like", "litellm_like-1.82.6-py3-none-any.whl")
    upstream.set_status("litellm-like", "quarantined")
    clock.advance(TTL)
    outcome = install(mirror.url, tmp_path / "b", "litellm-like")
    assert not outcome.ok
    assert _status(url) == 410
    clock.advance(timedelta(days=5))
    mirror.promote()
    assert mirror.services is not None
    states = {r.filename: r.state for r in mirror.services.ledger.files("litellm-like")}  # type: ignore[arg-type]
    assert FileState.PROMOTED not in states.values()


@INSTALLERS
def test_upstream_down_still_installs_what_was_promoted(
    install: Installer, upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "steady", "1.0", OLD)
    assert installed_after(install, mirror, tmp_path / "a", "steady") == {"steady": "1.0"}
    upstream.stop()
    clock.advance(TTL)
    assert installed_after(install, mirror, tmp_path / "b", "steady") == {"steady": "1.0"}
    with urllib.request.urlopen(mirror.url + "steady/") as response:
        assert response.headers["X-Mirror-Upstream"] == "unreachable"
        assert int(response.headers["X-Mirror-Stale"]) >= 61


def test_no_promotion_while_the_upstream_is_down(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "paused", "1.0", OLD)
    _publish(upstream, "paused", "2.0", NOW - timedelta(hours=1))
    assert installed_after(pip_install, mirror, tmp_path / "a", "paused") == {"paused": "1.0"}
    mirror.promote()  # bytes fetched while the upstream is up
    upstream.stop()
    clock.advance(timedelta(days=4))
    result = mirror.promote()
    assert result.promoted == [] and result.look_failures == 1
    upstream.start()
    assert mirror.promote().promoted == ["paused-2.0-py3-none-any.whl"]


def test_restart_keeps_every_decision(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _publish(upstream, "durable", "1.0", OLD)
    _publish(upstream, "durable", "2.0", NOW - timedelta(hours=1))
    _publish(upstream, "durable", "3.0", NOW - timedelta(minutes=5))
    assert installed_after(pip_install, mirror, tmp_path / "a", "durable") == {"durable": "1.0"}
    mirror.promote()
    clock.advance(timedelta(hours=71, minutes=30))  # 2.0 has cooled, 3.0 has not
    mirror.promote()
    assert mirror.services is not None
    before = {r.filename: (r.state, r.reason) for r in mirror.services.ledger.files("durable")}  # type: ignore[arg-type]
    events_before = len(mirror.services.ledger.events("durable"))  # type: ignore[arg-type]
    assert before["durable-2.0-py3-none-any.whl"][0] is FileState.PROMOTED
    assert before["durable-3.0-py3-none-any.whl"][0] is FileState.HELD
    mirror.restart()
    assert mirror.services is not None
    after = {r.filename: (r.state, r.reason) for r in mirror.services.ledger.files("durable")}  # type: ignore[arg-type]
    assert after == before
    assert len(mirror.services.ledger.events("durable")) == events_before  # type: ignore[arg-type]
    upstream.stop()  # what is installable now comes from the ledger and the blobs alone
    clock.advance(TTL)
    assert installed_after(pip_install, mirror, tmp_path / "b", "durable") == {"durable": "2.0"}


def test_client_cooldowns_keep_working_through_the_mirror(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    _publish(upstream, "cooldown", "1.0", OLD)
    _publish(upstream, "cooldown", "1.1", OLD + timedelta(days=100))
    cutoff = (OLD + timedelta(days=50)).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_pip = pip_install(
        mirror.url, tmp_path / "pip", "cooldown", extra=("--uploaded-prior-to", cutoff)
    )
    assert by_pip.ok, by_pip.output
    assert installed(tmp_path / "pip") == {"cooldown": "1.0"}
    by_uv = uv_install(mirror.url, tmp_path / "uv", "cooldown", extra=("--exclude-newer", cutoff))
    assert by_uv.ok, by_uv.output
    assert installed(tmp_path / "uv") == {"cooldown": "1.0"}


def test_sdists_and_wheels_side_by_side(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    upstream.add("both", UpstreamFile(build_sdist("both", "1.0"), OLD))
    upstream.add("both", UpstreamFile(build_wheel("both", "1.0"), OLD))
    upstream.add("both", UpstreamFile(build_sdist("both", "2.0"), NOW - timedelta(hours=2)))
    outcome = pip_install(mirror.url, tmp_path / "t", "both", extra=("--only-binary", ":all:"))
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"both": "1.0"}


@INSTALLERS
def test_large_compressed_index_pages_install(
    install: Installer, upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    for minor in range(120):  # a page large enough to be served gzip-compressed
        _publish(upstream, "sizable", f"1.{minor}", OLD + timedelta(hours=minor))
    outcome = install(mirror.url, tmp_path / "t", "sizable")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"sizable": "1.119"}
