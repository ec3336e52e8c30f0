"""pypi-simple, a client written by others, reads every page the mirror serves.

It parses the root index and each project page in both formats (PEP 503 HTML, PEP 691
JSON, and whichever its default Accept header gets), downloads every listed file and
metadata file with its own digest checks, and follows every PEP 740 provenance URL with
its own ``get_provenance``: real attested releases, promoted after real verification,
reached through two names of the mirror.
"""

import json
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from packaging.utils import NormalizedName, canonicalize_name
from pypi_attestations import Provenance
from pypi_simple import (
    ACCEPT_ANY,
    ACCEPT_HTML_ONLY,
    ACCEPT_JSON_ONLY,
    DistributionPackage,
    NoProvenanceError,
    PyPISimple,
)

from conftest import NOW
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import Dist, build_sdist, build_wheel
from support.fixtures import provenance_bytes
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
FRESH = NOW - timedelta(hours=2)
# Real releases and the provenance the index published for them (tests/fixtures/provenance).
ATTESTED = [
    ("sampleproject-4.0.0.tar.gz", "sampleproject-4.0.0.tar.gz.provenance"),
    ("sigstore-3.6.1.tar.gz", "sigstore-3.6.1.tar.gz.provenance"),
    ("pypi_attestations-0.0.19.tar.gz", "pypi_attestations-0.0.19.tar.gz.provenance"),
    ("gcb_attestation_test-0.0.0.tar.gz", "gcb_attestation_test-0.0.0.tar.gz.provenance"),
]
ACCEPTS = {"json": ACCEPT_JSON_ONLY, "html": ACCEPT_HTML_ONLY, "default": ACCEPT_ANY}


def _publish(upstream: Upstream) -> tuple[dict[str, set[str]], dict[str, bytes]]:
    """What the mirror should list per project once promoted, and the provenance each
    attested file should lead to."""
    listed: dict[str, set[str]] = {}
    provenance: dict[str, bytes] = {}

    def add(project: str, dist: Dist, uploaded: object, **options: object) -> None:
        upstream.add(project, UpstreamFile(dist, uploaded, **options))  # type: ignore[arg-type]
        listed.setdefault(canonicalize_name(project), set()).add(dist.filename)

    for filename, proof in ATTESTED:
        dist = Dist(filename=filename, data=provenance_bytes(filename), metadata=b"")
        add(dist.project, dist, FRESH, provenance=provenance_bytes(proof), with_metadata=False)
        provenance[filename] = provenance_bytes(proof)
    add("Demo_Pkg", build_wheel("Demo_Pkg", "1.0", requires_python=">=3.8,<4"), OLD)
    add("Demo_Pkg", build_sdist("Demo_Pkg", "1.0"), OLD)
    add("Demo_Pkg", build_wheel("Demo_Pkg", "1.1"), OLD, yanked="broken <b>build</b>")
    upstream.set_status("demo-pkg", "archived", "no longer maintained")
    return listed, provenance


def _promote(mirror: MirrorServer, clock: FakeClock, projects: set[str]) -> None:
    for project in projects:
        with requests.get(f"{mirror.url}{project}/", timeout=30) as reply:
            reply.raise_for_status()
    mirror.promote()
    clock.advance(timedelta(days=3, hours=1))  # past the 72 h cooling of the attested ones
    for _ in range(2):
        mirror.promote()
    mirror.sync()


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from this machine's environment
    return session


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_pypi_simple_reads_every_page_file_and_provenance_the_mirror_serves(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, tmp_path: Path, host: str
) -> None:
    listed, provenance = _publish(upstream)
    _promote(mirror, clock, set(listed))
    held = build_wheel("Demo_Pkg", "3.0")  # a new upload: held, on no page
    upstream.add("demo-pkg", UpstreamFile(held, clock.now() - timedelta(minutes=5)))
    clock.advance(timedelta(minutes=2))  # past the index TTL: the next page request looks
    assert mirror.services is not None
    for project in listed:
        states = {
            r.filename: r.state for r in mirror.services.ledger.files(NormalizedName(project))
        }
        assert {f for f, state in states.items() if state is FileState.PROMOTED} == listed[project]

    endpoint = f"http://{host}:{mirror.port}/simple/"
    followed: set[str] = set()
    for label, accept in ACCEPTS.items():
        with PyPISimple(endpoint, session=_session(), accept=accept) as client:
            index = client.get_index_page()
            assert sorted(index.projects) == sorted(listed)
            for project, filenames in listed.items():
                page = client.get_project_page(project)
                assert page.project == project
                assert {pkg.filename for pkg in page.packages} == filenames
                assert held.filename not in {pkg.filename for pkg in page.packages}
                if label != "html":  # the default header names JSON and HTML alike: JSON
                    assert page.versions is not None
                    assert {pkg.version for pkg in page.packages} <= set(page.versions)
                for pkg in page.packages:
                    _check_package(client, pkg, label, tmp_path / label / host)
                    if pkg.provenance_url is not None:
                        assert pkg.provenance_url.startswith(f"http://{host}:{mirror.port}/")
                        proof = client.get_provenance(pkg)
                        assert proof == json.loads(provenance[pkg.filename])
                        Provenance.model_validate(proof)  # a PEP 740 provenance object
                        followed.add(f"{label}:{pkg.filename}")
                    else:
                        assert pkg.filename not in provenance
                        with pytest.raises(NoProvenanceError):
                            client.get_provenance(pkg)
    assert followed == {f"{label}:{filename}" for label in ACCEPTS for filename in provenance}
    record = mirror.services.ledger.file(NormalizedName("demo-pkg"), held.filename)
    assert record is not None and record.state is FileState.HELD  # seen, and kept off


def _check_package(client: PyPISimple, pkg: DistributionPackage, label: str, into: Path) -> None:
    """The file and its metadata, fetched and checked against the page's digests."""
    assert pkg.digests.get("sha256")
    if label != "html":
        assert pkg.size is not None and pkg.size > 0
        assert pkg.upload_time is not None
    target = into / pkg.filename
    client.download_package(pkg, target, verify=True)  # raises on a digest mismatch
    if label != "html":
        assert target.stat().st_size == pkg.size
    if pkg.has_metadata:
        assert pkg.metadata_digests
        metadata = client.get_package_metadata(pkg, verify=True)
        assert metadata.startswith("Metadata-Version:")
    if pkg.filename.startswith("demo_pkg-1.1"):
        assert pkg.is_yanked and pkg.yanked_reason == "broken <b>build</b>"
