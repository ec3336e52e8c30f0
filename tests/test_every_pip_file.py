"""Every file pip installs from the index installs through the mirror; nothing else shows.

Stand-ins named and versioned like the real releases (Twisted 20.3.0, a .tar.bz2 only;
cffi 1.2.0.post1, whose sdist is ``cffi-1.2.0-1.tar.gz``; email-validator 0.1.0rc1, as
``email_validator-0.1.0-rc1.tar.gz``) are real sdists with a build backend inside, so
real pip and uv build and install them from the mirror in front of the local upstream.
The eggs and Windows installers beside them never reach a page, and ``lazaretto
explain`` says why.

uv takes sdists only as ``.tar.gz`` and ``.zip`` (it refuses the other, pre-PEP 625
suffixes by design), so uv is tested on those and pip on every format.
"""

import json
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.evidence import Action
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import SDIST_SUFFIXES, Dist, build_sdist, opaque_file
from support.installers import Outcome, installed, pip_install, uv_install
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

Installer = Callable[..., Outcome]
INSTALLERS = pytest.mark.parametrize("install", [pip_install, uv_install], ids=["pip", "uv"])
OLD = NOW - timedelta(days=400)
UV_SDIST_SUFFIXES = (".tar.gz", ".zip")
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"

# Files of the real Twisted project that no installer takes, as the index lists them.
TWISTED_BINARIES = {
    "Twisted-11.0.0-py2.6-win32.egg": "pip cannot install .egg files",
    "Twisted-12.0.0.win32-py2.7.exe": "pip cannot install .exe files",
    "Twisted-10.1.0.winxp32-py2.5.msi": "pip cannot install .msi files",
    "Twisted-12.0.0-1.src.rpm": "pip cannot install .rpm files",
    "Twisted-12.0.0.linux-x86_64.tar.gz": "built by bdist_dumb",
}


def _legacy(dist: Dist) -> UpstreamFile:
    """An old upload: no PEP 658 metadata file, so installers must build the sdist."""
    return UpstreamFile(dist, OLD, with_metadata=False)


def _publish_twisted(upstream: Upstream) -> Dist:
    sdist = build_sdist(
        "Twisted", "20.3.0", suffix=".tar.bz2", stem="Twisted-20.3.0", buildable=True
    )
    upstream.add("twisted", _legacy(sdist))
    for filename in TWISTED_BINARIES:
        version = "12.0.0" if "12.0.0" in filename else "11.0.0"
        upstream.add("twisted", _legacy(opaque_file("Twisted", version, filename)))
    return sdist


def _page(mirror: MirrorServer, project: str) -> dict[str, object]:
    request = urllib.request.Request(mirror.url + project + "/", headers={"Accept": SIMPLE_JSON})
    with urllib.request.urlopen(request) as response:
        page: dict[str, object] = json.load(response)
    return page


def _listed(mirror: MirrorServer, project: str) -> set[str]:
    files = _page(mirror, project)["files"]
    assert isinstance(files, list)
    return {entry["filename"] for entry in files}


def test_twisted_20_3_0_installs_from_its_tar_bz2(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    sdist = _publish_twisted(upstream)
    outcome = pip_install(mirror.url, tmp_path / "t", "Twisted==20.3.0")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"twisted": "20.3.0"}
    assert _listed(mirror, "twisted") == {sdist.filename}


@INSTALLERS
@pytest.mark.parametrize(
    ("name", "version", "stem", "requirement"),
    [
        ("cffi", "1.2.0.post1", "cffi-1.2.0-1", "cffi==1.2.0.post1"),
        ("email-validator", "0.1.0rc1", "email_validator-0.1.0-rc1", "email-validator==0.1.0rc1"),
    ],
    ids=["cffi", "email-validator"],
)
def test_old_filename_spellings_install_as_their_version(
    install: Installer,
    upstream: Upstream,
    mirror: MirrorServer,
    tmp_path: Path,
    name: str,
    version: str,
    stem: str,
    requirement: str,
) -> None:
    sdist = build_sdist(name, version, stem=stem, buildable=True)
    assert sdist.filename == f"{stem}.tar.gz"
    upstream.add(name, _legacy(sdist))
    outcome = install(mirror.url, tmp_path / "t", requirement)
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {name: version}
    page = _page(mirror, name)
    assert page["versions"] == [version]


@pytest.mark.parametrize(
    ("install", "suffixes"),
    [(pip_install, SDIST_SUFFIXES), (uv_install, UV_SDIST_SUFFIXES)],
    ids=["pip", "uv"],
)
def test_every_sdist_format_installs(
    install: Installer,
    suffixes: tuple[str, ...],
    upstream: Upstream,
    mirror: MirrorServer,
    tmp_path: Path,
) -> None:
    projects = {f"fmt{index}": suffix for index, suffix in enumerate(suffixes)}
    for project, suffix in projects.items():
        upstream.add(project, _legacy(build_sdist(project, "1.0", suffix=suffix, buildable=True)))
    outcome = install(mirror.url, tmp_path / "t", *projects)
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == dict.fromkeys(projects, "1.0")


def test_new_sdists_in_every_format_are_vetted_then_served(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Held on first sight, downloaded and hash-checked, inspected, promoted after
    cooling, served: the same road as a .tar.gz, in every format."""
    fresh = NOW - timedelta(hours=1)
    dists = {
        suffix: build_sdist("vetted", f"1.{index}", suffix=suffix, buildable=True)
        for index, suffix in enumerate(SDIST_SUFFIXES)
    }
    for dist in dists.values():
        upstream.add("vetted", UpstreamFile(dist, fresh, with_metadata=False))
    # A release whose setup.py reaches the network, packed the legacy way.
    risky = build_sdist(
        "vetted",
        "2.0",
        suffix=".tar.bz2",
        modules={"setup.py": "import urllib.request\nurllib.request.urlopen('x')\n"},
    )
    upstream.add("vetted", UpstreamFile(risky, fresh, with_metadata=False))
    assert _listed(mirror, "vetted") == set()  # all held
    mirror.promote()
    clock.advance(timedelta(days=3, hours=1))
    mirror.promote()
    mirror.promote()

    assert mirror.services is not None
    ledger, blobs = mirror.services.ledger, mirror.services.blobs
    project = NormalizedName("vetted")
    evidence = ledger.evidence(project)
    for dist in dists.values():
        record = ledger.file(project, dist.filename)
        assert record is not None and record.state is FileState.PROMOTED, (dist.filename, record)
        assert record.sha256 == dist.sha256 and blobs.local_path(dist.sha256) is not None
        content = {e.check: e for e in evidence[dist.filename]}["content"]
        assert content.action is Action.PASS, (dist.filename, content)
        assert content.details["summary"]["kind"] == "sdist"
    held = ledger.file(project, risky.filename)
    assert held is not None and held.state is FileState.REVIEW, held
    assert "setup-network" in held.reason

    assert _listed(mirror, "vetted") == {d.filename for d in dists.values()}
    outcome = pip_install(mirror.url, tmp_path / "t", "vetted")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"vetted": f"1.{len(dists) - 1}"}


def test_explain_says_why_each_binary_format_stays_out(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    _publish_twisted(upstream)
    _listed(mirror, "twisted")
    done = subprocess.run(
        [LAZARETTO, "explain", "twisted", "--json", "--data-dir", str(mirror.settings.data_dir)],
        capture_output=True,
        text=True,
        check=False,
        env=lazaretto_env(mirror.settings.data_dir),
    )
    assert done.returncode == 0, done.stderr
    files = {f["filename"]: f for f in json.loads(done.stdout)["files"]}
    for filename, words in TWISTED_BINARIES.items():
        assert files[filename]["state"] == "rejected"
        assert files[filename]["reason"].startswith("unsupported_file_type: ")
        assert words in files[filename]["reason"]
    printed = subprocess.run(
        [LAZARETTO, "explain", "twisted", "--data-dir", str(mirror.settings.data_dir)],
        capture_output=True,
        text=True,
        check=False,
        env=lazaretto_env(mirror.settings.data_dir),
    )
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    for filename, words in TWISTED_BINARIES.items():
        heading = next(i for i, line in enumerate(lines) if line.startswith(filename))
        state = lines[heading + 1]
        assert "state: rejected" in state and words in state
        assert "hold" not in state  # never served, so no hold to wait out
    assert printed.stdout.count("checks: none (never vetted)") == len(TWISTED_BINARIES)
