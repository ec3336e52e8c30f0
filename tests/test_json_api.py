"""The index's JSON API subset lock tools read hashes from: ``/pypi/<project>[/<version>]/json``.

Real mirror, real local upstream, real sockets; pip-tools itself drives the last test.
Only vetted (promoted) files ever appear, at the URLs the simple page gives them.
"""

import gzip
import http.client
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import pytest
from packaging.utils import NormalizedName
from starlette.routing import Route

from mirror.simple.json_api import JsonApi
from mirror.simple.page import MAX_BASES_KEPT
from quarantine import admin
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import Dist, build_sdist, build_wheel
from support.installers import clean_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.upstream import Upstream, UpstreamFile

OLD = timedelta(days=200)  # past cooling + vetting window at first sight: promoted at once
FRESH = timedelta(hours=1)  # held for the cooling period
TTL = timedelta(seconds=61)  # past the index TTL: the next request looks upstream again
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
ADMIN = "admin:test"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        return json.loads(self.body)


def get(
    mirror: MirrorServer,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
) -> Reply:
    """One request over a real socket; redirects are not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def publish(upstream: Upstream, dist: Dist, uploaded: datetime, **options: Any) -> Dist:
    upstream.add(dist.project, UpstreamFile(dist, uploaded, **options))
    return dist


def simple_urls(mirror: MirrorServer, project: str) -> dict[str, str]:
    """filename -> the absolute URL an installer resolves from the simple page's link."""
    page = get(mirror, f"/simple/{project}/", {"Accept": SIMPLE_JSON}).json()
    base = f"{mirror.origin}/simple/{project}/"
    return {entry["filename"]: urljoin(base, entry["url"]) for entry in page["files"]}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


@pytest.fixture
def demo(upstream: Upstream, clock: FakeClock) -> dict[str, Dist]:
    old, fresh = clock.now() - OLD, clock.now() - FRESH
    python = ">=3.9"
    return {
        "wheel": publish(upstream, build_wheel("Hash_Me", "1.0", requires_python=python), old),
        "native": publish(
            upstream,
            build_wheel(
                "Hash_Me", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", requires_python=python
            ),
            old,
        ),
        "sdist": publish(upstream, build_sdist("Hash_Me", "1.0", requires_python=python), old),
        "yanked": publish(upstream, build_wheel("Hash_Me", "1.1"), old, yanked="broken build"),
        "pre": publish(upstream, build_wheel("Hash_Me", "2.0rc1"), old),
        "held": publish(upstream, build_wheel("Hash_Me", "3.0"), fresh),
    }


def test_project_json_lists_vetted_files_with_the_fields_tools_read(
    mirror: MirrorServer, demo: dict[str, Dist], clock: FakeClock
) -> None:
    reply = get(mirror, "/pypi/hash-me/json")
    assert reply.headers["content-type"] == "application/json"
    document = reply.json()
    # The latest release is the newest neither yanked nor a pre-release, as the index has it.
    assert document["info"] == {
        "name": "hash-me",
        "version": "1.0",
        "requires_python": ">=3.9",
        "yanked": False,
        "yanked_reason": None,
    }
    assert list(document["releases"]) == ["1.0", "1.1", "2.0rc1"]  # 3.0 is held
    assert document["urls"] == document["releases"]["1.0"]

    urls = simple_urls(mirror, "hash-me")
    uploaded = clock.now() - OLD
    by_name = {
        entry["filename"]: entry for files in document["releases"].values() for entry in files
    }
    assert set(by_name) == set(urls)
    kinds = {"wheel": "py3", "native": "cp311", "sdist": "source", "yanked": "py3", "pre": "py3"}
    for key, python_version in kinds.items():
        dist = demo[key]
        entry = by_name[dist.filename]
        assert entry == {
            "filename": dist.filename,
            "packagetype": "sdist" if key == "sdist" else "bdist_wheel",
            "python_version": python_version,
            "url": urls[dist.filename],
            "digests": {"sha256": dist.sha256},  # no md5: the upstream never gave one
            "size": len(dist.data),
            "upload_time": uploaded.strftime("%Y-%m-%dT%H:%M:%S"),
            "upload_time_iso_8601": iso(uploaded),
            "requires_python": ">=3.9" if dist.version.release == (1, 0) else None,
            "yanked": key == "yanked",
            "yanked_reason": "broken build" if key == "yanked" else None,
        }
        assert entry["url"].startswith(f"{mirror.origin}/files/{dist.sha256}/")
        assert get(mirror, entry["url"].removeprefix(mirror.origin)).body == dist.data


def test_release_json_describes_one_version(mirror: MirrorServer, demo: dict[str, Dist]) -> None:
    project = get(mirror, "/pypi/hash-me/json").json()
    one_reply = get(mirror, "/pypi/hash-me/1.1/json")
    one = one_reply.json()
    assert one["info"] == {
        "name": "hash-me",
        "version": "1.1",
        "requires_python": None,
        "yanked": True,
        "yanked_reason": "broken build",
    }
    assert one["urls"] == project["releases"]["1.1"]
    assert "releases" not in one
    # A PEP 440-equal spelling finds the release, which keeps its own spelling.
    same = get(mirror, "/pypi/hash-me/1.0.0/json").json()
    assert same["info"]["version"] == "1.0"
    assert same["urls"] == project["releases"]["1.0"]
    head = get(mirror, "/pypi/hash-me/1.1/json", method="HEAD")
    assert (head.status, head.body, head.headers["etag"]) == (200, b"", one_reply.headers["etag"])
    # The index answers with a trailing slash too.
    assert get(mirror, "/pypi/hash-me/json/").json() == project
    assert get(mirror, "/pypi/hash-me/1.1/json/").json() == one
    for missing in ("3.0", "9.9", "not a version", "1.0%0d%0aX-Evil:%201"):
        reply = get(mirror, f"/pypi/hash-me/{quote(missing, safe='%')}/json")
        assert reply.status == 404, missing
        assert reply.body.count(b"\n") == 1 and b"X-Evil" not in reply.body


def test_held_rejected_blocked_and_withdrawn_files_never_appear(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    old, fresh = clock.now() - OLD, clock.now() - FRESH
    kept = publish(upstream, build_wheel("gated", "1.0"), old)
    removed = publish(upstream, build_wheel("gated", "1.0", tag="py311-none-any"), old)
    withdrawn = publish(upstream, build_wheel("gated", "1.1"), old)
    blocked = publish(upstream, build_wheel("gated", "1.2"), fresh)
    rejected = publish(upstream, build_wheel("gated", "1.3"), fresh, yanked="bad")
    held = publish(upstream, build_wheel("gated", "1.4"), fresh)
    assert list(get(mirror, "/pypi/gated/json").json()["releases"]) == ["1.0", "1.1"]

    ledger = mirror.services.ledger if mirror.services else None
    assert ledger is not None
    name = NormalizedName("gated")
    for version in ("1.1", "1.2"):
        admin.block(ledger, name, version, "malware report from the test", ADMIN, clock.now())
    upstream.remove("gated", removed.filename)
    clock.advance(TTL)
    mirror.sync()
    document = get(mirror, "/pypi/gated/json").json()  # its look sees the removal
    assert mirror.services is not None
    mirror.call(mirror.services.catalog.writes_done())  # the answer does not wait for it

    states = {record.filename: record.state for record in ledger.files(name)}
    assert states == {
        kept.filename: FileState.PROMOTED,
        removed.filename: FileState.WITHDRAWN,
        withdrawn.filename: FileState.WITHDRAWN,
        blocked.filename: FileState.BLOCKED,
        rejected.filename: FileState.REJECTED,
        held.filename: FileState.HELD,
    }
    assert {
        version: [f["filename"] for f in files] for version, files in document["releases"].items()
    } == {"1.0": [kept.filename]}
    for version in ("1.1", "1.2", "1.3", "1.4"):
        assert get(mirror, f"/pypi/gated/{version}/json").status == 404, version
    assert get(mirror, "/pypi/gated/1.0/json").json()["urls"] == document["urls"]


def test_projects_and_versions_without_vetted_files_are_404(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    late = publish(upstream, build_wheel("all-held", "1.0"), clock.now() - FRESH)
    for path in ("/pypi/all-held/json", "/pypi/all-held/1.0/json", "/pypi/no-such/json"):
        reply = get(mirror, path)
        assert reply.status == 404, path
        assert reply.body.endswith(b"\n") and reply.body.count(b"\n") == 1

    mirror.promote()  # the same project once its file is vetted
    clock.advance(timedelta(hours=72))
    assert mirror.promote().promoted == [late.filename]
    mirror.sync()
    clock.advance(TTL)
    assert get(mirror, "/pypi/all-held/json").json()["info"]["version"] == "1.0"
    assert get(mirror, "/pypi/all-held/1.0/json").status == 200


def test_reserved_names_are_404_without_asking_upstream(
    tmp_path: Path, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("acme-secret", "1.0"), clock.now() - OLD)
    settings = settings_for(tmp_path / "data", upstream.url, reserved_names=("acme-*",))
    with running_mirror(settings, clock) as mirror:
        for path in ("/pypi/acme-secret/json", "/pypi/acme-secret/1.0/json", "/acme-secret/json"):
            reply = get(mirror, path)
            assert reply.status == 404, path
            assert b"reserved" in reply.body
    assert upstream.requests_for("/simple/acme") == []


def test_a_project_never_seen_gets_the_simple_pages_first_look(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("first-look", "1.0"), clock.now() - OLD)
    document = get(mirror, "/pypi/first-look/1.0/json").json()
    assert [entry["filename"] for entry in document["urls"]] == [dist.filename]
    assert upstream.requests_for("/simple/first-look/") == ["/simple/first-look/"]
    assert upstream.requests_for("/pypi/") == []  # never the upstream's JSON API


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/pypi/Hash_Me/json", "../hash-me/json"),
        ("/pypi/Hash_Me/json/", "../../hash-me/json/"),
        ("/pypi/Hash.Me/1.0/json", "../../hash-me/1.0/json"),
        ("/pypi/HASH-ME/1.0/json/", "../../../hash-me/1.0/json/"),
        ("/Hash_Me/json", "../hash-me/json"),
    ],
)
def test_unnormalised_names_redirect_like_the_index(
    mirror: MirrorServer, demo: dict[str, Dist], path: str, location: str
) -> None:
    reply = get(mirror, path)
    assert (reply.status, reply.headers["location"]) == (301, location)
    target = urljoin(f"{mirror.origin}{path}", location).removeprefix(mirror.origin)
    assert get(mirror, target).status == 200


def test_invalid_names_are_404(mirror: MirrorServer, demo: dict[str, Dist]) -> None:
    assert get(mirror, "/pypi/hash-me/json").status == 200
    for path in ("/pypi/-bad-/json", "/pypi/a%20b/json", "/pypi/a%00b/json", "/-bad-/json"):
        reply = get(mirror, path)
        assert reply.status == 404, path
        assert reply.body == b"invalid project name\n", path


def test_etag_revalidates_and_changes_when_a_file_is_promoted(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("tagged", "1.0"), clock.now() - OLD)
    late = publish(upstream, build_wheel("tagged", "1.1"), clock.now() - FRESH)
    first = get(mirror, "/pypi/tagged/json")
    etag = first.headers["etag"]
    again = get(mirror, "/pypi/tagged/json", {"If-None-Match": etag})
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)

    mirror.promote()  # fetches the held file's bytes
    clock.advance(timedelta(hours=72))
    assert late.filename in mirror.promote().promoted
    mirror.sync()
    clock.advance(TTL)
    changed = get(mirror, "/pypi/tagged/json", {"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["etag"] != etag
    assert list(changed.json()["releases"]) == ["1.0", "1.1"]


def test_a_big_answer_is_sent_gzipped_to_who_accepts_it(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    for minor in range(60):
        publish(upstream, build_wheel("roomy", f"1.{minor}"), clock.now() - OLD)
    plain = get(mirror, "/pypi/roomy/json")
    packed = get(mirror, "/pypi/roomy/json", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.body) == plain.body
    # Each encoding its own strong ETag, each revalidated as itself.
    assert packed.headers["etag"] != plain.headers["etag"]
    for reply, extra in ((plain, {}), (packed, {"Accept-Encoding": "gzip"})):
        again = get(mirror, "/pypi/roomy/json", {"If-None-Match": reply.headers["etag"], **extra})
        assert again.status == 304
    assert len(plain.json()["releases"]) == 60


# -- pip-tools ---------------------------------------------------------------------------------


def test_with_public_base_url_the_urls_start_with_it_whatever_the_host(
    tmp_path: Path, upstream: Upstream, demo: dict[str, Dist]
) -> None:
    public = "https://pypi.example.org/mirror"
    settings = settings_for(tmp_path / "data", upstream.url, public_base_url=public)
    with running_mirror(settings, FakeClock()) as server:
        for headers in ({}, {"Host": "elsewhere.example"}, {"Host": "a b"}):
            document = get(server, "/pypi/hash-me/json", headers).json()
            entry = next(e for e in document["urls"] if e["filename"] == demo["wheel"].filename)
            assert entry["url"].startswith(f"{public}/files/{demo['wheel'].sha256}/"), headers


def test_a_new_host_on_every_request_keeps_a_few_answers_and_drops_no_kept_one(
    tmp_path: Path,
    upstream: Upstream,
    clock: FakeClock,
    demo: dict[str, Dist],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[JsonApi] = []
    real_routes = JsonApi.routes

    def routes(api: JsonApi) -> list[Route]:
        made.append(api)
        return real_routes(api)

    monkeypatch.setattr(JsonApi, "routes", routes)
    with running_mirror(settings_for(tmp_path / "data", upstream.url), clock) as server:
        first = get(server, "/pypi/hash-me/json").json()
        (api,) = made
        kept = api._kept[NormalizedName("hash-me")]
        answer = kept.get(f"{server.origin}/")
        for number in range(30):
            host = f"host{number}.example"
            urls = [
                e["url"] for e in get(server, "/pypi/hash-me/json", {"Host": host}).json()["urls"]
            ]
            assert all(url.startswith(f"http://{host}/files/") for url in urls)
            assert len(kept.made()) <= MAX_BASES_KEPT + 1
        assert kept.get(f"{server.origin}/") is answer
        assert get(server, "/pypi/hash-me/json").json() == first


@pytest.fixture
def pip_compile() -> Iterator[list[str]]:
    if importlib.util.find_spec("piptools") is None:
        pytest.fail("pip-tools is not installed: the test lock needs pip-tools>=7.6.1")
    yield [sys.executable, "-m", "piptools", "compile"]


def test_pip_compile_generate_hashes_reads_the_api_and_downloads_no_file(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    tmp_path: Path,
    pip_compile: list[str],
) -> None:
    old = clock.now() - OLD
    wanted = [
        publish(upstream, build_wheel("lock-me", "1.0", requires_dist=["lock-dep>=1"]), old),
        publish(upstream, build_wheel("lock-me", "1.0", tag="cp311-cp311-win_amd64"), old),
        publish(upstream, build_sdist("lock-me", "1.0"), old),
        publish(upstream, build_wheel("lock-dep", "1.0"), old),
        publish(upstream, build_sdist("lock-dep", "1.0"), old),
    ]
    publish(upstream, build_wheel("lock-dep", "2.0"), clock.now() - FRESH)  # held: not 2.0
    (tmp_path / "requirements.in").write_text("lock-me\n")
    mirror.journal.clear()
    command = [
        *pip_compile, "--generate-hashes", "--no-header", "--no-annotate", "--quiet",
        "--index-url", mirror.url, "--cache-dir", str(tmp_path / "cache"),
        "--output-file", "requirements.txt", "requirements.in",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    locked = _hashes((tmp_path / "requirements.txt").read_text())
    assert locked == {
        "lock-me==1.0": {dist.sha256 for dist in wanted[:3]},
        "lock-dep==1.0": {dist.sha256 for dist in wanted[3:]},
    }
    paths = [path for method, path in mirror.journal if method == "GET"]
    assert any(path.endswith("/lock-me/json") for path in paths), paths
    downloads = [p for p in paths if p.startswith("/files/") and not p.endswith(".metadata")]
    assert downloads == [], "pip-compile downloaded files to hash them"


def _hashes(lock: str) -> dict[str, set[str]]:
    """``name==version`` -> its ``--hash=sha256:`` values, from a pip-compile output."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in lock.splitlines():
        text = line.strip().rstrip("\\").strip()
        if text and not text.startswith(("#", "-")):
            current = text
            found[current] = set()
        elif text.startswith("--hash=sha256:"):
            found[current].add(text.removeprefix("--hash=sha256:"))
    return found
