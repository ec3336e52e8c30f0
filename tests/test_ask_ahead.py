"""Dependencies asked for ahead: the release a client is about to install brings its
requirements, which are looked at and vetted before any client asks for them.

The end-to-end tests run the real mirror in front of a real local index; nothing asks the
mirror for the dependencies but the mirror itself.
"""

import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.models import FileState
from quarantine.platforms import PlatformFilter
from quarantine.vetting import ahead
from quarantine.vetting import promoter as promoter_module
from quarantine.vetting.ahead import environments, needed, wheel_requirements
from support.dists import build_sdist, build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

OLD, COOLED = NOW - timedelta(days=400), NOW - timedelta(days=4)
LINUX_ONLY = PlatformFilter(platforms=("manylinux_x86_64",), pythons=("3.12",))


def _names(lines: list[str], wheels: PlatformFilter = LINUX_ONLY, *extras: str) -> set[str]:
    return set(needed(lines, environments(wheels), extras))


def test_only_what_a_configured_platform_and_python_installs_is_needed() -> None:
    lines = [
        "plain>=1",
        "for-windows; sys_platform == 'win32'",
        "for-old-pythons; python_version < '3.8'",
        "for-an-extra; extra == 'cli'",
        "not a requirement ((",
    ]
    assert _names(lines) == {"plain"}
    assert _names(lines, PlatformFilter()) == {"plain", "for-windows"}  # the default has it
    assert _names(lines, LINUX_ONLY, "cli") == {"plain", "for-an-extra"}


def test_the_extras_asked_of_a_dependency_go_with_it() -> None:
    wanted = needed(["HTTPX[http2,Brotli]>=0.28"], environments(LINUX_ONLY))
    assert wanted == {"httpx": frozenset({"http2", "brotli"})}


def test_requirements_are_read_from_the_wheels_own_metadata(tmp_path: Path) -> None:
    wheel = build_wheel("App.Name", "2.0", requires_dist=["dep>=2", 'other; extra == "x"'])
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    assert wheel_requirements(path, wheel.filename) == ["dep>=2", 'other; extra == "x"']
    sdist = build_sdist("app", "2.0")
    (tmp_path / sdist.filename).write_bytes(sdist.data)
    assert wheel_requirements(tmp_path / sdist.filename, sdist.filename) == []
    broken = tmp_path / "app-2.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    assert wheel_requirements(broken, broken.name) == []


def test_a_wheel_with_too_many_entries_is_not_listed_to_read_its_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zipfile reads the whole central directory into memory before anything else: an
    unvetted wheel declaring millions of entries must not get that far."""
    wheel = build_wheel("app", "2.0", requires_dist=["dep>=2"])
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    assert wheel_requirements(path, wheel.filename) == ["dep>=2"]
    monkeypatch.setattr(ahead, "MAX_ENTRIES", 2)  # this wheel has more
    assert wheel_requirements(path, wheel.filename) == []


def test_metadata_too_large_is_not_read(tmp_path: Path) -> None:
    wheel = build_wheel("app", "2.0", requires_dist=[f"dep{n}" for n in range(60_000)])
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    assert wheel_requirements(path, wheel.filename) == []  # over a megabyte


def _states(mirror: MirrorServer, project: str) -> dict[str, FileState]:
    assert mirror.services is not None
    return {r.filename: r.state for r in mirror.services.ledger.files(NormalizedName(project))}


def _publish(upstream: Upstream, project: str, requires: list[str]) -> str:
    """An old release and a cooled newest one (needing vetting) requiring ``requires``."""
    upstream.add(project, UpstreamFile(build_wheel(project, "1.0"), OLD))
    newest = build_wheel(project, "2.0", requires_dist=requires)
    upstream.add(project, UpstreamFile(newest, COOLED))
    return newest.filename


def test_a_dependency_of_the_release_being_vetted_is_vetted_before_anyone_asks(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    _publish(upstream, "app", ["dep>=2", "extra-only; extra == 'cli'"])
    dep = _publish(upstream, "dep", [])
    _publish(upstream, "extra-only", [])
    urllib.request.urlopen(mirror.url + "app/").close()  # the client asks for app alone

    mirror.promote()

    assert _states(mirror, "app")["app-2.0-py3-none-any.whl"] is FileState.PROMOTED
    assert _states(mirror, "dep")[dep] is FileState.PROMOTED  # in the same round
    assert upstream.requests_for("/simple/extra-only") == []  # nobody installs the extra


def test_asking_ahead_stops_a_few_steps_from_what_a_client_asked_for(
    upstream: Upstream, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(promoter_module, "MAX_DEPTH", 2)
    _publish(upstream, "first", ["second"])
    _publish(upstream, "second", ["third"])
    third = _publish(upstream, "third", ["fourth"])
    _publish(upstream, "fourth", [])
    urllib.request.urlopen(mirror.url + "first/").close()

    mirror.promote()

    assert _states(mirror, "third")[third] is FileState.PROMOTED  # two steps away
    assert upstream.requests_for("/simple/fourth") == []  # a third step is not taken
