"""The platforms and Pythons in use, end to end: a real upstream, the mirror as a real server,
the real ``lazaretto explain`` and real pip asking as a musl Linux client would.

Wheels outside the filter are never fetched, vetted or listed; ``explain`` says why. A
changed config file takes effect without a restart: a wider filter fetches and vets the
newly included files, each with its hold as it was; a narrower one unlists, withdraws
nothing.
"""

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import build_sdist, build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

PROJECT = "plat-demo"
OLD = NOW - timedelta(days=400)  # established at first sight
RECENT = NOW - timedelta(hours=1)  # cooling for 71 more hours
GLIBC = "cp312-cp312-manylinux_2_17_x86_64"
MUSL = "cp312-cp312-musllinux_1_2_x86_64"
WIN32 = "cp312-cp312-win32"
MUSL_CLIENT = (
    "--platform", "musllinux_1_2_x86_64", "--only-binary=:all:",
    "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
)  # fmt: skip


def _wheel(version: str, tag: str) -> str:
    return f"plat_demo-{version}-{tag}.whl"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "lazaretto.toml"
    path.write_text('platforms = ["default"]\n', encoding="utf-8")
    return path


@pytest.fixture
def filtered(
    tmp_path: Path, upstream: Upstream, clock: FakeClock, config_file: Path
) -> Iterator[MirrorServer]:
    for version, uploaded in (("1.0", OLD), ("2.0", RECENT)):
        for tag in (GLIBC, MUSL, WIN32):
            upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, version, tag=tag), uploaded))
        upstream.add(PROJECT, UpstreamFile(build_sdist(PROJECT, version), uploaded))
    settings = settings_for(tmp_path / "data", upstream.url, config_file=config_file)
    with running_mirror(settings, clock) as server:
        yield server


def _listed(mirror: MirrorServer) -> set[str]:
    request = urllib.request.Request(
        mirror.url + PROJECT + "/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request) as response:
        return {entry["filename"] for entry in json.load(response)["files"]}


def _explained(mirror: MirrorServer, requirement: str) -> dict[str, dict[str, Any]]:
    upstream = {"LAZARETTO_UPSTREAM": mirror.settings.upstream}
    done = subprocess.run(
        [LAZARETTO, "explain", requirement, "--json", "--data-dir", str(mirror.settings.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=lazaretto_env(mirror.settings.data_dir, upstream),
        timeout=120,
    )
    return {file["filename"]: file for file in json.loads(done.stdout)["files"]}


def _states(mirror: MirrorServer) -> dict[str, FileState]:
    assert mirror.services is not None
    return {r.filename: r.state for r in mirror.services.ledger.files(NormalizedName(PROJECT))}


def _fetched(upstream: Upstream, filename: str) -> bool:
    return any(path.endswith("/" + filename) for path in upstream.requests_for("/files/"))


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """The server looks at its config file every second."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the running mirror did not take the changed config file")
        time.sleep(0.1)


def _set_platforms(mirror: MirrorServer, config_file: Path, line: str) -> None:
    """Change the filter in the file, and wait until the mirror has put it in force: the
    new filter taken, then every project's pages marked to be built again."""
    assert mirror.services is not None
    services = mirror.services
    before = services.policy.base.wheel_filter
    seq_before = _seq(mirror)
    config_file.write_text(line + "\n", encoding="utf-8")
    _eventually(lambda: services.policy.base.wheel_filter != before)
    if seq_before is not None:  # a project seen already: its page is built again
        _eventually(lambda: (_seq(mirror) or 0) > seq_before)


def _seq(mirror: MirrorServer) -> int | None:
    assert mirror.services is not None
    project = mirror.services.ledger.project(NormalizedName(PROJECT))
    return project.seq if project is not None else None


def test_only_the_configured_platforms_are_listed_fetched_and_vetted(
    upstream: Upstream, filtered: MirrorServer, tmp_path: Path
) -> None:
    assert _listed(filtered) == {_wheel("1.0", GLIBC), "plat_demo-1.0.tar.gz"}
    filtered.promote()  # fetches and vets what cools: 2.0's glibc wheel and sdist only
    assert _fetched(upstream, _wheel("2.0", GLIBC))
    for tag in (MUSL, WIN32):
        assert not _fetched(upstream, _wheel("2.0", tag))
        assert not _fetched(upstream, _wheel("1.0", tag))
    explained = _explained(filtered, f"{PROJECT}==2.0")
    assert explained[_wheel("2.0", MUSL)]["reason"] == "outside the configured platforms"
    assert explained[_wheel("2.0", MUSL)]["hold_until"] is None
    assert explained[_wheel("2.0", MUSL)]["checks"][0]["check"] == "feeds"  # nothing vetted
    assert explained[_wheel("2.0", GLIBC)]["checks"][0]["check"] != "feeds"
    # A musl Linux client finds nothing it can install.
    outcome = pip_install(filtered.url, tmp_path / "musl", PROJECT, extra=MUSL_CLIENT)
    assert not outcome.ok, outcome.output


def test_a_wider_filter_takes_effect_without_a_restart_and_keeps_every_hold(
    upstream: Upstream,
    filtered: MirrorServer,
    clock: FakeClock,
    config_file: Path,
    tmp_path: Path,
) -> None:
    _listed(filtered)
    filtered.promote()
    _set_platforms(filtered, config_file, 'platforms = ["default", "musllinux_x86_64"]')
    # The round the change wakes lists the established 1.0 musl wheel; 2.0's is fetched
    # and vetted, but held: a filter shortens no hold.
    filtered.promote()
    listed = _listed(filtered)
    assert _wheel("1.0", MUSL) in listed and _wheel("2.0", MUSL) not in listed
    assert _wheel("1.0", WIN32) not in listed
    assert _fetched(upstream, _wheel("2.0", MUSL))
    assert _states(filtered)[_wheel("2.0", MUSL)] is FileState.HELD
    assert _wheel("2.0", MUSL) not in _listed(filtered)
    assert not _fetched(upstream, _wheel("2.0", WIN32))
    clock.advance(timedelta(hours=72))
    filtered.promote()
    assert _wheel("2.0", MUSL) in _listed(filtered)
    outcome = pip_install(filtered.url, tmp_path / "musl", PROJECT, extra=MUSL_CLIENT)
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "musl") == {PROJECT: "2.0"}


def test_a_narrower_filter_unlists_and_withdraws_nothing(
    filtered: MirrorServer, clock: FakeClock, config_file: Path
) -> None:
    _set_platforms(filtered, config_file, 'platforms = ["default", "musllinux_x86_64"]')
    _listed(filtered)
    filtered.promote()
    clock.advance(timedelta(hours=72))
    filtered.promote()
    musl = {_wheel("1.0", MUSL), _wheel("2.0", MUSL)}
    assert musl <= _listed(filtered)
    _set_platforms(filtered, config_file, 'platforms = ["default"]')
    assert not musl & _listed(filtered)
    assert {_states(filtered)[name] for name in musl} == {FileState.PROMOTED}
    assert _wheel("2.0", GLIBC) in _listed(filtered)


def test_a_config_file_that_no_longer_loads_keeps_the_filter(
    filtered: MirrorServer, config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert filtered.services is not None
    before = filtered.services.policy.base.wheel_filter
    config_file.write_text('platforms = ["default", "musl_x86_64"]\n', encoding="utf-8")
    _eventually(lambda: "does not load" in caplog.text)
    assert "line 1: platforms: 'musl_x86_64' is not a platform name" in caplog.text
    assert filtered.services.policy.base.wheel_filter == before
