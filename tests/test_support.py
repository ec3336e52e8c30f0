"""Self-checks for the test-support package: real dists, real upstream index."""

from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

# tests/ is not a package, so pytest and mypy both see tests/support as "support".
from support.dists import Dist, build_sdist, build_wheel
from support.upstream import SIMPLE_JSON, Upstream, UpstreamFile

UPLOADED = datetime(2024, 1, 2, 3, 4, 5, 678, tzinfo=UTC)

Fetched = tuple[int, Message, bytes]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def fetch(upstream: Upstream, path: str, headers: Mapping[str, str] | None = None) -> Fetched:
    """GET without following redirects, so tests see exactly what was sent."""
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def fetch_url(upstream: Upstream, url: str) -> bytes:
    assert url.startswith(upstream.origin + "/"), url
    status, _, body = fetch(upstream, url.removeprefix(upstream.origin))
    assert status == 200, url
    return body


def project_json(upstream: Upstream, project: str) -> dict[str, object]:
    status, headers, body = fetch(upstream, f"/simple/{project}/")
    assert status == 200
    assert headers["Content-Type"] == SIMPLE_JSON
    doc = json.loads(body)
    assert isinstance(doc, dict)
    return doc


def only_file(doc: Mapping[str, object]) -> dict[str, object]:
    files = doc["files"]
    assert isinstance(files, list) and len(files) == 1
    entry = files[0]
    assert isinstance(entry, dict)
    return entry


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# -- distributions -----------------------------------------------------------


def test_wheel_is_a_valid_zip_whose_record_matches() -> None:
    dist = build_wheel("Foo.Bar_baz", "1.0", requires_python=">=3.8", requires_dist=["attrs>=22"])
    name, version, _, tags = parse_wheel_filename(dist.filename)
    assert (name, version) == ("foo-bar-baz", Version("1.0"))
    assert dist.filename == "foo_bar_baz-1.0-py3-none-any.whl"
    assert {str(t) for t in tags} == {"py3-none-any"}

    with zipfile.ZipFile(io.BytesIO(dist.data)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        record = archive.read("foo_bar_baz-1.0.dist-info/RECORD").decode()
        rows = list(csv.reader(io.StringIO(record)))
        assert sorted(row[0] for row in rows) == sorted(names)
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                assert (digest, size) == ("", "")
                continue
            data = archive.read(path)
            assert (digest, int(size)) == (record_hash(data), len(data)), path
        assert archive.read("foo_bar_baz-1.0.dist-info/METADATA") == dist.metadata
        assert archive.read("foo_bar_baz/__init__.py") == b'__version__ = "1.0"\n'

    meta = Metadata.from_email(dist.metadata, validate=True)
    assert (meta.name, meta.version) == ("Foo.Bar_baz", Version("1.0"))
    assert [str(r) for r in meta.requires_dist or []] == ["attrs>=22"]


def test_builds_are_deterministic() -> None:
    assert build_wheel("demo", "1.0") == build_wheel("demo", "1.0")
    assert build_sdist("demo", "1.0") == build_sdist("demo", "1.0")
    assert build_wheel("demo", "1.0").data != build_wheel("demo", "1.1").data


def test_sdist_is_well_formed() -> None:
    dist = build_sdist("Foo.Bar", "2.0", requires_python=">=3.9")
    name, version = parse_sdist_filename(dist.filename)
    assert (dist.filename, name, version) == ("foo_bar-2.0.tar.gz", "foo-bar", Version("2.0"))

    with tarfile.open(fileobj=io.BytesIO(dist.data), mode="r:gz") as archive:
        assert all(m.name.split("/")[0] == "foo_bar-2.0" for m in archive.getmembers())
        pkg_info = archive.extractfile("foo_bar-2.0/PKG-INFO")
        pyproject = archive.extractfile("foo_bar-2.0/pyproject.toml")
        assert pkg_info is not None and pyproject is not None
        assert pkg_info.read() == dist.metadata
        config = tomllib.loads(pyproject.read().decode())
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"
    assert config["project"] == {"name": "Foo.Bar", "version": "2.0", "requires-python": ">=3.9"}
    assert Metadata.from_email(dist.metadata, validate=True).requires_python is not None


# -- upstream index ----------------------------------------------------------


def test_project_page_describes_files(upstream: Upstream) -> None:
    dist = build_wheel("Foo.Bar", "1.0", requires_python=">=3.8")
    upstream.add("Foo.Bar", UpstreamFile(dist, UPLOADED))
    upstream.add("foo-bar", UpstreamFile(build_sdist("foo-bar", "0.9"), None, yanked="broken"))

    doc = project_json(upstream, "foo-bar")
    assert doc["name"] == "foo-bar"
    assert doc["versions"] == ["0.9", "1.0"]
    assert "project-status" not in doc
    files = doc["files"]
    assert isinstance(files, list)
    wheel, sdist = files
    assert wheel["hashes"] == {"sha256": hashlib.sha256(dist.data).hexdigest()}
    assert wheel["size"] == len(dist.data)
    assert wheel["upload-time"] == "2024-01-02T03:04:05.000678Z"
    assert wheel["requires-python"] == ">=3.8"
    assert wheel["yanked"] is False
    assert wheel["provenance"] is None
    assert wheel["core-metadata"] == {"sha256": hashlib.sha256(dist.metadata).hexdigest()}
    assert wheel["data-dist-info-metadata"] == wheel["core-metadata"]
    assert fetch_url(upstream, wheel["url"]) == dist.data
    assert fetch_url(upstream, wheel["url"] + ".metadata") == dist.metadata
    assert sdist["yanked"] == "broken"
    assert "upload-time" not in sdist


def test_status_provenance_and_metadata_switch(upstream: Upstream) -> None:
    dist = build_wheel("demo", "1.0")
    upstream.add("demo", UpstreamFile(dist, UPLOADED, provenance=b"{}", with_metadata=False))
    upstream.set_status("demo", "quarantined", "under review")

    doc = project_json(upstream, "demo")
    assert doc["project-status"] == {"status": "quarantined", "reason": "under review"}
    entry = only_file(doc)
    assert entry["core-metadata"] is False
    assert fetch(upstream, f"/files/demo/{dist.filename}.metadata")[0] == 404
    provenance = entry["provenance"]
    assert isinstance(provenance, str) and provenance.endswith(f"/1.0/{dist.filename}/provenance")
    assert fetch_url(upstream, provenance) == b"{}"

    upstream.delete_project("demo")
    assert fetch(upstream, "/simple/demo/")[0] == 404
    assert fetch(upstream, f"/files/demo/{dist.filename}")[0] == 404


def test_etag_gives_304_until_the_listing_changes(upstream: Upstream) -> None:
    upstream.add("demo", UpstreamFile(build_wheel("demo", "1.0"), UPLOADED))
    status, headers, _ = fetch(upstream, "/simple/demo/")
    etag = headers["ETag"]
    assert status == 200 and etag.startswith('"') and etag.endswith('"')

    status, _, body = fetch(upstream, "/simple/demo/", {"If-None-Match": etag})
    assert (status, body) == (304, b"")

    upstream.add("demo", UpstreamFile(build_wheel("demo", "1.1"), UPLOADED))
    assert fetch(upstream, "/simple/demo/", {"If-None-Match": etag})[0] == 200


def test_non_normalized_name_redirects(upstream: Upstream) -> None:
    upstream.add("foo-bar", UpstreamFile(build_wheel("foo-bar", "1.0"), UPLOADED))
    status, headers, _ = fetch(upstream, "/simple/Foo_Bar/")
    assert (status, headers["Location"]) == (301, "/simple/foo-bar/")
    assert fetch(upstream, "/simple/nope/")[0] == 404


def test_serve_bytes_breaks_the_declared_hash(upstream: Upstream) -> None:
    dist = build_wheel("demo", "1.0")
    upstream.add("demo", UpstreamFile(dist, UPLOADED, serve_bytes=b"tampered"))
    entry = only_file(project_json(upstream, "demo"))
    assert entry["hashes"] == {"sha256": dist.sha256}
    assert entry["size"] == len(dist.data)
    assert fetch_url(upstream, str(entry["url"])) == b"tampered"


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [("html", 200, "text/html"), ("malformed", 200, SIMPLE_JSON), ("500", 500, "text/plain")],
)
def test_faults(upstream: Upstream, fault: str, status: int, content_type: str) -> None:
    upstream.add("demo", UpstreamFile(build_wheel("demo", "1.0"), UPLOADED))
    upstream.set_fault("demo", fault)
    got_status, headers, body = fetch(upstream, "/simple/demo/")
    assert got_status == status
    assert headers.get_content_type() == content_type
    with pytest.raises(ValueError):  # none of them is a usable JSON document
        json.loads(body)
    upstream.set_fault("demo", None)
    assert fetch(upstream, "/simple/demo/")[0] == 200


def test_slow_fault_does_not_hold_up_stop() -> None:
    upstream = Upstream()
    upstream.start()
    upstream.set_fault("demo", "slow")
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=0.3)
    try:
        conn.request("GET", "/simple/demo/")
        with pytest.raises(TimeoutError):
            conn.getresponse()
    finally:
        conn.close()
    began = time.monotonic()
    upstream.stop()
    assert time.monotonic() - began < 5


def test_stop_then_start_reuses_the_port(upstream: Upstream) -> None:
    dist = build_wheel("demo", "1.0")
    upstream.add("demo", UpstreamFile(dist, UPLOADED))
    url, port = upstream.url, upstream.port
    assert url == f"http://127.0.0.1:{port}/simple/"

    upstream.stop()
    with pytest.raises(ConnectionRefusedError):
        fetch(upstream, "/simple/demo/")

    upstream.start()
    assert (upstream.url, upstream.port) == (url, port)
    assert only_file(project_json(upstream, "demo"))["size"] == len(dist.data)


def test_journal_records_every_request(upstream: Upstream) -> None:
    dist = build_wheel("demo", "1.0")
    upstream.add("demo", UpstreamFile(dist, UPLOADED))
    fetch(upstream, "/simple/demo/")
    fetch(upstream, f"/files/demo/{dist.filename}")
    fetch(upstream, "/simple/missing/")

    assert upstream.journal == [
        ("GET", "/simple/demo/"),
        ("GET", f"/files/demo/{dist.filename}"),
        ("GET", "/simple/missing/"),
    ]
    assert upstream.requests_for("/files/") == [f"/files/demo/{dist.filename}"]


# -- real pip ----------------------------------------------------------------


def pip_env() -> dict[str, str]:
    """The environment minus any pip configuration of this machine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    # A proxy configured in the environment must not intercept loopback traffic.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    return env


def run_pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        env=pip_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def serve_demo(upstream: Upstream) -> Dist:
    dist = build_wheel("Lazaretto-Demo", "1.2.3", requires_python=">=3.8")
    upstream.add("lazaretto-demo", UpstreamFile(build_wheel("Lazaretto-Demo", "1.0"), UPLOADED))
    upstream.add("lazaretto-demo", UpstreamFile(dist, UPLOADED))
    return dist


def test_pip_downloads_from_upstream(upstream: Upstream, tmp_path: Path) -> None:
    dist = serve_demo(upstream)
    run_pip(
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--index-url",
        upstream.url,
        "-d",
        str(tmp_path),
        "Lazaretto_Demo",
    )
    assert (tmp_path / dist.filename).read_bytes() == dist.data
    assert upstream.requests_for("/files/") == [
        f"/files/lazaretto-demo/{dist.filename}.metadata",
        f"/files/lazaretto-demo/{dist.filename}",
    ]


def test_pip_installs_from_upstream(upstream: Upstream, tmp_path: Path) -> None:
    serve_demo(upstream)
    target = tmp_path / "site"
    run_pip(
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--index-url",
        upstream.url,
        "--target",
        str(target),
        "lazaretto-demo==1.2.3",
    )
    init = target / "lazaretto_demo" / "__init__.py"
    assert init.read_text() == '__version__ = "1.2.3"\n'
    assert (target / "lazaretto_demo-1.2.3.dist-info" / "RECORD").is_file()


def test_without_postgres_binaries_ci_fails_where_a_laptop_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from support import postgres

    monkeypatch.setattr(postgres, "server_binaries", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        postgres.require_binaries()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        postgres.require_binaries()


# -- the test ledger switch (LAZARETTO_TEST_LEDGER) ------------------------------------------


def test_mirrors_and_commands_get_the_ledger_the_switch_names(tmp_path: Path) -> None:
    from mirror.ledger_backend import is_postgres
    from quarantine.ledger.postgres import PostgresLedger
    from quarantine.ledger.sqlite import SqliteLedger
    from support import ledger_backend
    from support.mirror import settings_for

    a, b = tmp_path / "a", tmp_path / "b"
    first = settings_for(a, "http://127.0.0.1:9/simple/")
    assert is_postgres(first) == ledger_backend.on_postgres()
    assert settings_for(a, "http://127.0.0.1:9/simple/").ledger == first.ledger
    env = ledger_backend.command_env(["holds", "--data-dir", str(a)], {})
    assert env.get("LAZARETTO_LEDGER", "sqlite") == first.ledger
    named = ledger_backend.command_env([], {"LAZARETTO_DATA_DIR": str(a)})
    assert named.get("LAZARETTO_LEDGER", "sqlite") == first.ledger
    ledger = ledger_backend.open_ledger(a)
    try:
        assert isinstance(ledger, PostgresLedger if is_postgres(first) else SqliteLedger)
    finally:
        ledger.close()
    if ledger_backend.on_postgres():  # a database per data directory
        assert settings_for(b, "http://127.0.0.1:9/simple/").ledger != first.ledger


@pytest.mark.sqlite_only("checks that the marker keeps SQLite")
def test_a_test_marked_sqlite_only_runs_on_sqlite(tmp_path: Path) -> None:
    from support.mirror import settings_for

    assert settings_for(tmp_path, "http://127.0.0.1:9/simple/").ledger == "sqlite"
