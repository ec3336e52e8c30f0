"""The mirror's HTTP surface, driven over real sockets only.

Every request here goes through ``http.client`` or a raw socket to the mirror running as a
real uvicorn server, in front of the real local upstream index. Time moves only through the
fake clock; promotion rounds run when a test says so (``mirror.promote()``).

Response catalogue: ``threat-model.md`` section 1.6, and items A1, B6, B7, C1, C3, C5, C7,
E1 and E2.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName

from mirror.simple import catalog as catalog_module
from mirror.simple import page as page_module
from mirror.simple.negotiate import PageFormat
from mirror.simple.page import PageTemplate
from mirror.upstream import client as upstream_module
from mirror.upstream.parse import parse_project_page
from quarantine.models import FileRecord, FileState

# tests/ is not a package, so pytest and mypy both see tests/support as "support".
from support.clock import FakeClock
from support.dists import Dist, build_sdist, build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import open_ledger
from support.mirror import MirrorServer, running_mirror, settings_for
from support.upstream import Upstream, UpstreamFile

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
LEGACY_HTML = "text/html"
INTEGRITY_TYPE = "application/vnd.pypi.integrity.v1+json"
PROVENANCE = b'{"version":1,"attestation_bundles":[]}'

TTL = timedelta(seconds=61)  # just past the 60 s index TTL: the next page request looks again
COOLING = timedelta(hours=72)
AGE_OLD = timedelta(days=200)  # older than cooling + vetting window: established at first sight
AGE_FRESH = timedelta(hours=1)  # held until upload-time + 72 h


# -- HTTP over real sockets --------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    status_lines: int = 1

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def media_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip()

    def json(self) -> dict[str, Any]:
        doc = json.loads(self.body)
        assert isinstance(doc, dict)
        return doc


def get(
    mirror: MirrorServer,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
    timeout: float = 10,
) -> Reply:
    """One request with http.client; redirects are not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=timeout)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def raw_get(
    mirror: MirrorServer,
    target: bytes,
    extra_headers: Iterable[bytes] = (),
    *,
    host: bytes | None = None,
) -> Reply:
    """Send ``target`` byte for byte as the request target, over a plain socket."""
    lines = [
        b"GET " + target + b" HTTP/1.1",
        b"Host: " + (b"127.0.0.1:%d" % mirror.port if host is None else host),
        *extra_headers,
        b"Connection: close",
    ]
    with socket.create_connection(("127.0.0.1", mirror.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    reply = Reply(status, headers, body, status_lines=data.count(b"HTTP/1."))
    if (reply.header("Transfer-Encoding") or "").lower() == "chunked":
        reply = Reply(status, headers, _dechunk(body), reply.status_lines)
    return reply


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def page(mirror: MirrorServer, project: str, accept: str = JSON_TYPE) -> Reply:
    reply = get(mirror, f"/simple/{project}/", {"Accept": accept})
    assert reply.status == 200, (reply.status, reply.body)
    return reply


def page_json(mirror: MirrorServer, project: str) -> dict[str, Any]:
    reply = page(mirror, project)
    assert reply.media_type == JSON_TYPE
    return reply.json()


def listed(mirror: MirrorServer, project: str) -> set[str]:
    return {entry["filename"] for entry in page_json(mirror, project)["files"]}


def local_path(mirror: MirrorServer, project: str, url: str) -> str:
    """The path of a URL found on a project page; it must stay on the mirror."""
    absolute = urljoin(f"{mirror.origin}/simple/{project}/", url)
    parts = urlsplit(absolute)
    assert f"{parts.scheme}://{parts.netloc}" == mirror.origin, url
    return parts.path


def file_path(dist: Dist, suffix: str = "") -> str:
    """Where the mirror serves a file: guessable from the digest and the filename."""
    return f"/files/{dist.sha256}/{quote(dist.filename)}{suffix}"


def assert_one_line_error(reply: Reply, *, status: int | None = None) -> str:
    """A 4xx/5xx with one ASCII line as its body (catalogue 1.6); returns that line."""
    if status is not None:
        assert reply.status == status, (reply.status, reply.body)
    assert reply.status >= 400, (reply.status, reply.body)
    assert reply.body.endswith(b"\n"), reply.body
    assert reply.body.count(b"\n") == 1, reply.body
    assert reply.body.isascii(), reply.body
    assert reply.header("Content-Encoding") is None
    return reply.body.decode().rstrip("\n")


# -- the upstream's contents ---------------------------------------------------------------


def publish(
    upstream: Upstream,
    dist: Dist,
    uploaded: datetime | None,
    **options: Any,
) -> Dist:
    upstream.add(dist.project, UpstreamFile(dist, uploaded, **options))
    return dist


def promote_after_cooling(mirror: MirrorServer, clock: FakeClock) -> list[str]:
    """Fetch held bytes, let the cooling period pass, run the round that promotes."""
    mirror.promote()
    clock.advance(COOLING)
    promoted = mirror.promote().promoted
    mirror.sync()  # the page cache follows the ledger within a second; do not wait for it
    return promoted


def blob_files(mirror: MirrorServer) -> list[Path]:
    return [path for path in Path(mirror.settings.data_dir).rglob("*") if path.is_file()]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self.meta: dict[str, str | None] = {}
        self.tags: list[str] = []
        self._in_anchor = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag == "a":
            self.anchors.append(attributes)
            self.texts.append("")
            self._in_anchor = True
        elif tag == "meta" and attributes.get("name"):
            self.meta[str(attributes["name"])] = attributes.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor:
            self.texts[-1] += data


def parse_html(body: bytes) -> _PageParser:
    parser = _PageParser()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser


# -- /simple/<project>/: JSON and HTML --------------------------------------------------------

# As the metadata writes it (packaging orders the clauses), with both < and > to escape.
PYTHON_SPEC = str(SpecifierSet(">=3.8,<4"))
YANK_REASON = 'broken <script>alert(1)</script> & "quoted"'


@dataclass(frozen=True)
class Demo:
    served: dict[str, Dist]
    held: dict[str, Dist]
    yanked: Dist
    provenance: Dist
    with_python: Dist


@pytest.fixture(params=["small", "big"])
def project_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test as it is, then with every project big: observed and rendered in a thread."""
    if request.param == "big":
        monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 1)
    return str(request.param)


# On PostgreSQL, a ledger other processes share, the catalog writes first:
# test_with_other_serving_processes_a_page_waits_for_its_write.
LONE = pytest.mark.sqlite_only("a lone mirror on SQLite hands a page over before its write")


def publish_demo(upstream: Upstream, clock: FakeClock) -> Demo:
    old, fresh = clock.now() - AGE_OLD, clock.now() - AGE_FRESH
    with_python = publish(
        upstream, build_wheel("Demo_Pkg", "1.0", requires_python=PYTHON_SPEC), old
    )
    sdist = publish(upstream, build_sdist("Demo_Pkg", "1.0"), old)
    yanked = publish(upstream, build_wheel("Demo_Pkg", "1.1"), old, yanked=YANK_REASON)
    provenance = publish(upstream, build_wheel("Demo_Pkg", "1.2"), old, provenance=PROVENANCE)
    # A new wheel added to an old release is held on its own; 2.0 is held entirely.
    late = build_wheel("Demo_Pkg", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    held = [publish(upstream, late, fresh)]
    held.append(publish(upstream, build_wheel("Demo_Pkg", "2.0"), fresh))
    held.append(publish(upstream, build_sdist("Demo_Pkg", "2.0"), fresh))
    upstream.set_status("demo-pkg", "archived", "no longer maintained")
    served = [with_python, sdist, yanked, provenance]
    return Demo(
        served={dist.filename: dist for dist in served},
        held={dist.filename: dist for dist in held},
        yanked=yanked,
        provenance=provenance,
        with_python=with_python,
    )


def _api_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_json_page_lists_established_files_with_every_field(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    demo = publish_demo(upstream, clock)
    reply = page(mirror, "demo-pkg")
    assert reply.media_type == JSON_TYPE
    doc = reply.json()

    assert _api_version(doc["meta"]["api-version"]) >= (1, 1)
    assert doc["name"] == "demo-pkg"
    assert doc["versions"] == ["1.0", "1.1", "1.2"]  # 2.0 is all held
    assert doc["project-status"] == {"status": "archived", "reason": "no longer maintained"}
    entries = {entry["filename"]: entry for entry in doc["files"]}
    assert set(entries) == set(demo.served)
    assert not set(entries) & set(demo.held)

    for filename, dist in demo.served.items():
        entry = entries[filename]
        assert entry["hashes"] == {"sha256": dist.sha256}
        assert entry["size"] == len(dist.data)
        uploaded = datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00"))
        assert uploaded == clock.now() - AGE_OLD
        assert entry["upload-time"].endswith("Z")
        assert entry["core-metadata"] == {"sha256": dist.metadata_sha256}
        assert entry["dist-info-metadata"] == {"sha256": dist.metadata_sha256}
        assert local_path(mirror, "demo-pkg", entry["url"]) == file_path(dist)
        expected_python = PYTHON_SPEC if dist is demo.with_python else None
        assert entry["requires-python"] == expected_python
        assert entry["yanked"] == (YANK_REASON if dist is demo.yanked else False)
        if dist is demo.provenance:
            assert local_path(mirror, "demo-pkg", entry["provenance"]) == file_path(
                dist, ".provenance"
            )
        else:
            assert entry["provenance"] is None


def test_versions_are_spelled_as_the_upstream_lists_them_once_each(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    old, fresh = clock.now() - AGE_OLD, clock.now() - AGE_FRESH
    publish(upstream, build_wheel("spelled", "1.0.0"), old)
    publish(upstream, build_sdist("spelled", "1.0"), old)  # the same version, spelled shorter
    publish(upstream, build_wheel("spelled", "2.0rc1"), old)
    publish(upstream, build_wheel("spelled", "3.0"), fresh)  # held: its version is not listed
    upstream.set_versions("spelled", ["1.0", "2.0-RC1", "3.0", "4.0"])
    assert page_json(mirror, "spelled")["versions"] == ["1.0", "2.0-RC1"]
    mirror.restart()  # the spellings are in the ledger: a 304 from the upstream keeps them
    assert page_json(mirror, "spelled")["versions"] == ["1.0", "2.0-RC1"]
    assert upstream.requests_for("/simple/spelled/")  # looked again after the restart
    # An upstream that gives none: each version once, spelled as its files spell it.
    upstream.set_versions("spelled", None)
    clock.advance(TTL)
    assert page_json(mirror, "spelled")["versions"] == ["1.0", "2.0rc1"]


def test_every_json_entry_gives_a_size_also_where_the_upstream_gives_none(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    old, fresh = clock.now() - AGE_OLD, clock.now() - AGE_FRESH
    sized = publish(upstream, build_wheel("sizeless", "1.0"), old)
    established = publish(upstream, build_wheel("sizeless", "1.1"), old, with_size=False)
    new = publish(upstream, build_wheel("sizeless", "2.0"), fresh, with_size=False)

    def sizes() -> dict[str, int]:
        return {
            entry["filename"]: entry["size"] for entry in page_json(mirror, "sizeless")["files"]
        }

    # Old enough to be listed at once, but with no size to give: its bytes first.
    assert sizes() == {sized.filename: len(sized.data)}
    mirror.promote()
    assert sizes() == {sized.filename: len(sized.data), established.filename: len(established.data)}
    assert promote_after_cooling(mirror, clock) == [new.filename]
    assert sizes() == {dist.filename: len(dist.data) for dist in (sized, established, new)}


def test_html_page_lists_the_same_files_as_json(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    demo = publish_demo(upstream, clock)
    as_json = page_json(mirror, "demo-pkg")
    reply = page(mirror, "demo-pkg", accept=LEGACY_HTML)
    assert reply.media_type == LEGACY_HTML
    parsed = parse_html(reply.body)

    assert parsed.meta["pypi:repository-version"] is not None
    assert _api_version(str(parsed.meta["pypi:repository-version"])) >= (1, 0)
    assert "base" not in parsed.tags  # pip honours <base>; it must never appear
    assert "script" not in parsed.tags
    assert parsed.texts == [str(a["href"]).split("#")[0].rsplit("/", 1)[1] for a in parsed.anchors]
    anchors = dict(zip(parsed.texts, parsed.anchors, strict=True))
    assert set(anchors) == {entry["filename"] for entry in as_json["files"]}
    assert set(anchors) == set(demo.served)

    for filename, dist in demo.served.items():
        anchor = anchors[filename]
        href = str(anchor["href"])
        url, _, fragment = href.partition("#")
        assert fragment == f"sha256={dist.sha256}"
        assert local_path(mirror, "demo-pkg", url) == file_path(dist)
        assert anchor["data-core-metadata"] == f"sha256={dist.metadata_sha256}"
        assert anchor["data-dist-info-metadata"] == f"sha256={dist.metadata_sha256}"
        if dist is demo.with_python:
            assert anchor["data-requires-python"] == PYTHON_SPEC
        else:
            assert "data-requires-python" not in anchor
        if dist is demo.yanked:
            assert anchor["data-yanked"] == YANK_REASON
        else:
            assert "data-yanked" not in anchor
        if dist is demo.provenance:
            provenance = str(anchor["data-provenance"])
            assert local_path(mirror, "demo-pkg", provenance) == file_path(dist, ".provenance")
        else:
            assert "data-provenance" not in anchor

    # Attribute values are escaped in the bytes, not just tolerated by a lenient parser.
    assert f'data-requires-python="{escape(PYTHON_SPEC)}"'.encode() in reply.body
    assert escape(PYTHON_SPEC) != PYTHON_SPEC
    assert b"<script>" not in reply.body
    # The PEP 691 HTML flavour is the same document.
    modern = page(mirror, "demo-pkg", accept=HTML_TYPE)
    assert modern.media_type == HTML_TYPE
    assert modern.body == reply.body


def test_held_files_appear_on_neither_page_until_promoted(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    demo = publish_demo(upstream, clock)
    assert listed(mirror, "demo-pkg") == set(demo.served)
    html = parse_html(page(mirror, "demo-pkg", accept=LEGACY_HTML).body)
    assert set(html.texts) == set(demo.served)
    for dist in demo.held.values():
        assert dist.filename.encode() not in page(mirror, "demo-pkg").body

    assert sorted(promote_after_cooling(mirror, clock)) == sorted(demo.held)
    doc = page_json(mirror, "demo-pkg")
    assert {entry["filename"] for entry in doc["files"]} == set(demo.served) | set(demo.held)
    assert doc["versions"] == ["1.0", "1.1", "1.2", "2.0"]
    html = parse_html(page(mirror, "demo-pkg", accept=LEGACY_HTML).body)
    assert set(html.texts) == set(demo.served) | set(demo.held)


# -- content negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, LEGACY_HTML),
        ("*/*", LEGACY_HTML),
        (JSON_TYPE, JSON_TYPE),
        (HTML_TYPE, HTML_TYPE),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        (f"{JSON_TYPE};q=0.5, text/html;q=0.9", LEGACY_HTML),
        (f"text/html;q=0.1, {JSON_TYPE}", JSON_TYPE),
        (f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01", JSON_TYPE),
        (f"{JSON_TYPE};q=0, text/html", LEGACY_HTML),
        ("application/*;q=0.2, text/html;q=0", HTML_TYPE),
        (f"text/html;q=0, {HTML_TYPE};q=0, */*;q=0.1", JSON_TYPE),
        # pypi-simple's default: JSON and HTML named with the same weight.
        (f"{JSON_TYPE}, {HTML_TYPE}, text/html;q=0.01", JSON_TYPE),
    ],
)
def test_accept_header_picks_the_format(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, accept: str | None, expected: str
) -> None:
    publish(upstream, build_wheel("nego", "1.0"), clock.now() - AGE_OLD)
    headers = {} if accept is None else {"Accept": accept}
    reply = get(mirror, "/simple/nego/", headers)
    assert reply.status == 200
    assert reply.media_type == expected
    assert "Accept" in [part.strip() for part in (reply.header("Vary") or "").split(",")]
    if expected == JSON_TYPE:
        assert reply.json()["name"] == "nego"
    else:
        assert parse_html(reply.body).texts == ["nego-1.0-py3-none-any.whl"]


def test_format_query_parameter_overrides_accept(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("nego", "1.0"), clock.now() - AGE_OLD)
    as_json = get(mirror, "/simple/nego/?format=json", {"Accept": "text/html"})
    assert (as_json.status, as_json.media_type) == (200, JSON_TYPE)
    spelled = get(mirror, f"/simple/nego/?format={quote(JSON_TYPE)}", {"Accept": "text/html"})
    assert (spelled.status, spelled.media_type) == (200, JSON_TYPE)
    as_html = get(mirror, f"/simple/nego/?format={quote(HTML_TYPE)}", {"Accept": JSON_TYPE})
    assert (as_html.status, as_html.media_type) == (200, HTML_TYPE)
    # Typed by hand, the "+" stays literal (form decoding makes it a space).
    literal = get(mirror, f"/simple/nego/?format={JSON_TYPE}", {"Accept": "text/html"})
    assert (literal.status, literal.media_type) == (200, JSON_TYPE)
    root = get(mirror, f"/simple/?format={JSON_TYPE}", {"Accept": "text/html"})
    assert (root.status, root.media_type) == (200, JSON_TYPE)
    for reply in (as_json, spelled, as_html, literal, root):
        assert "Accept" in (reply.header("Vary") or "")


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/simple/nego/", "image/png"),
        ("/simple/nego/", "application/json"),
        ("/simple/nego/", f"{JSON_TYPE};q=0, text/html;q=0, {HTML_TYPE};q=0"),
        ("/simple/nego/", "*/*;q=0"),
        ("/simple/nego/?format=xml", JSON_TYPE),
        ("/simple/?format=yaml", "text/html"),
        ("/simple/", "image/png"),
    ],
)
def test_nothing_acceptable_is_406(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, path: str, accept: str
) -> None:
    publish(upstream, build_wheel("nego", "1.0"), clock.now() - AGE_OLD)
    reply = get(mirror, path, {"Accept": accept})
    assert_one_line_error(reply, status=406)


def test_root_lists_known_projects_in_both_formats(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("Root_Seen", "1.0"), clock.now() - AGE_OLD)
    page(mirror, "root-seen")
    as_json = get(mirror, "/simple/", {"Accept": JSON_TYPE})
    assert as_json.status == 200
    assert as_json.json()["projects"] == [{"name": "root-seen"}]
    as_html = get(mirror, "/simple/")
    assert (as_html.status, as_html.media_type) == (200, LEGACY_HTML)
    parsed = parse_html(as_html.body)
    assert parsed.texts == ["root-seen"]
    assert urljoin(f"{mirror.origin}/simple/", str(parsed.anchors[0]["href"])) == (
        f"{mirror.origin}/simple/root-seen/"
    )
    assert "Accept" in (as_html.header("Vary") or "")


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/simple/Demo_Pkg/",
        "/simple/Demo_Pkg",
        "/simple/DEMO.pkg/",
        "/simple/demo__pkg/",
        "/simple/demo-pkg",
    ],
)
def test_non_normalized_or_slashless_name_is_301_to_the_normalized_page(
    mirror: MirrorServer, upstream: Upstream, path: str
) -> None:
    reply = get(mirror, path, {"Accept": JSON_TYPE})
    assert reply.status == 301
    location = reply.header("Location")
    assert location is not None
    target = urljoin(mirror.origin + path, location)
    assert target == f"{mirror.origin}/simple/demo-pkg/"
    assert upstream.journal == []  # a redirect needs no upstream look


@pytest.mark.parametrize(
    "path", ["/simple/Demo_Pkg/", "/simple/demo-pkg", "/simple", "/simple/demo-pkg//"]
)
def test_redirects_stay_on_the_mirror_whatever_the_host_header(
    mirror: MirrorServer, path: str
) -> None:
    """C5: absolute URLs are never built from Host or X-Forwarded-Host."""
    forwarded = raw_get(mirror, path.encode(), [b"X-Forwarded-Host: evil.example"])
    hostile = raw_get(mirror, path.encode(), host=b"evil.example")
    for reply in (forwarded, hostile):
        assert b"evil.example" not in reply.body
        if 300 <= reply.status < 400:
            location = reply.header("Location")
            assert location is not None
            assert "evil.example" not in location, location
            assert urlsplit(location).netloc in ("", f"127.0.0.1:{mirror.port}"), location


def test_page_urls_ignore_a_hostile_host_header(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("hosty", "1.0"), clock.now() - AGE_OLD)
    for accept in (JSON_TYPE, LEGACY_HTML):
        headers = [b"Accept: " + accept.encode(), b"X-Forwarded-Host: evil.example"]
        reply = raw_get(mirror, b"/simple/hosty/", headers, host=b"evil.example")
        assert reply.status == 200
        assert reply.media_type == accept
        assert b"evil.example" not in reply.body
        assert dist.sha256.encode() in reply.body


# -- ETag, 304, Cache-Control ------------------------------------------------------------------


def test_etag_revalidation_and_a_new_etag_after_promotion(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    old = publish(upstream, build_wheel("etagged", "1.0"), clock.now() - AGE_OLD)
    new = publish(upstream, build_wheel("etagged", "1.1"), clock.now() - AGE_FRESH)
    first = page(mirror, "etagged")
    etag = first.header("ETag")
    assert etag is not None and etag.startswith('"')
    assert "max-age" in (first.header("Cache-Control") or "")
    assert {entry["filename"] for entry in first.json()["files"]} == {old.filename}

    for candidate in (etag, f"W/{etag}", f'"something-else", {etag}'):
        revalidated = get(
            mirror, "/simple/etagged/", {"Accept": JSON_TYPE, "If-None-Match": candidate}
        )
        assert revalidated.status == 304, candidate
        assert revalidated.body == b""
        assert revalidated.header("ETag") == etag
        assert "Accept" in (revalidated.header("Vary") or "")
        assert revalidated.header("Cache-Control") is not None
    other = get(mirror, "/simple/etagged/", {"Accept": JSON_TYPE, "If-None-Match": '"nope"'})
    assert other.status == 200 and other.body == first.body

    # The HTML page is a different representation with its own validator.
    html = page(mirror, "etagged", accept=LEGACY_HTML)
    assert html.header("ETag") not in (None, etag)
    assert "max-age" in (html.header("Cache-Control") or "")

    assert promote_after_cooling(mirror, clock) == [new.filename]
    changed = get(mirror, "/simple/etagged/", {"Accept": JSON_TYPE, "If-None-Match": etag})
    assert changed.status == 200
    assert changed.header("ETag") not in (None, etag)
    assert {entry["filename"] for entry in changed.json()["files"]} == {
        old.filename,
        new.filename,
    }
    html_after = get(
        mirror,
        "/simple/etagged/",
        {"Accept": LEGACY_HTML, "If-None-Match": str(html.header("ETag"))},
    )
    assert html_after.status == 200
    assert set(parse_html(html_after.body).texts) == {old.filename, new.filename}


# -- the file route -----------------------------------------------------------------------------


def test_promoted_file_is_served_as_exact_bytes(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("filey", "1.0"), clock.now() - AGE_OLD)
    (entry,) = page_json(mirror, "filey")["files"]
    path = local_path(mirror, "filey", entry["url"])
    assert path == file_path(dist)

    reply = get(mirror, path, {"Accept-Encoding": "gzip, deflate, br"})
    assert reply.status == 200
    assert reply.body == dist.data
    assert reply.media_type == "application/octet-stream"
    assert reply.header("ETag") == f'"{dist.sha256}"'
    assert reply.header("Content-Encoding") is None
    assert reply.header("X-Content-Type-Options") == "nosniff"
    assert "immutable" in (reply.header("Cache-Control") or "")
    assert reply.header("Content-Length") == str(len(dist.data))

    again = get(mirror, path, {"Accept-Encoding": "gzip"})  # now from the store
    assert again.status == 200 and again.body == dist.data
    assert again.header("Content-Encoding") is None

    metadata = get(mirror, path + ".metadata", {"Accept-Encoding": "gzip"})
    assert metadata.status == 200
    assert metadata.body == dist.metadata
    assert hashlib.sha256(metadata.body).hexdigest() == entry["core-metadata"]["sha256"]
    assert metadata.header("Content-Encoding") is None


def test_held_file_is_404_with_its_release_time_never_its_bytes(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    uploaded = clock.now() - AGE_FRESH
    dist = publish(upstream, build_wheel("holdy", "1.0"), uploaded)
    assert listed(mirror, "holdy") == set()
    mirror.promote()  # the bytes are now in the store; that is not permission to serve them
    assert any(path.name == dist.sha256 for path in blob_files(mirror))

    for suffix in ("", ".metadata", ".provenance"):
        reply = get(mirror, file_path(dist, suffix))
        line = assert_one_line_error(reply, status=404)
        assert dist.data not in reply.body and dist.metadata not in reply.body
        assert reply.header("Cache-Control") == "no-store"
        if suffix == "":
            assert "held until" in line
            assert (uploaded + COOLING).strftime("%Y-%m-%dT%H:%M:%S") in line

    head = get(mirror, file_path(dist), method="HEAD")
    assert head.status == 404


def test_file_removed_upstream_after_promotion_is_410(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    keep = publish(upstream, build_wheel("removy", "1.0"), clock.now() - AGE_OLD)
    gone = publish(upstream, build_wheel("removy", "1.1"), clock.now() - AGE_OLD)
    assert listed(mirror, "removy") == {keep.filename, gone.filename}
    assert get(mirror, file_path(gone)).body == gone.data

    upstream.remove("removy", gone.filename)
    assert get(mirror, file_path(gone)).status == 200  # nothing new seen yet
    clock.advance(TTL)
    assert listed(mirror, "removy") == {keep.filename}
    for suffix in ("", ".metadata"):
        reply = get(mirror, file_path(gone, suffix))
        line = assert_one_line_error(reply, status=410)
        assert "withdrawn" in line
        assert reply.header("Cache-Control") == "no-store"
    assert get(mirror, file_path(keep)).body == keep.data


def test_provenance_is_served_byte_exact_once_promoted_and_404_while_held(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    old = publish(
        upstream, build_wheel("prov", "1.0"), clock.now() - AGE_OLD, provenance=PROVENANCE
    )
    new_provenance = PROVENANCE[:-1] + b',"x":"new"}'
    new = publish(
        upstream, build_wheel("prov", "1.1"), clock.now() - AGE_FRESH, provenance=new_provenance
    )
    (entry,) = page_json(mirror, "prov")["files"]
    assert entry["filename"] == old.filename
    reply = get(mirror, local_path(mirror, "prov", entry["provenance"]))
    assert reply.status == 200
    assert reply.body == PROVENANCE
    assert reply.media_type == INTEGRITY_TYPE

    held = get(mirror, file_path(new, ".provenance"))
    assert_one_line_error(held, status=404)
    assert new_provenance not in held.body
    mirror.promote()  # fetches the bytes and the provenance early; still held
    assert_one_line_error(get(mirror, file_path(new, ".provenance")), status=404)

    # These bytes are no valid attestation: vetting holds the file for review, so its
    # provenance stays unserved. (Real attested files promote and serve their exact
    # provenance bytes: tests/test_vetting_flow.py.)
    assert promote_after_cooling(mirror, clock) == []
    assert_one_line_error(get(mirror, file_path(new, ".provenance")), status=404)


def test_file_without_provenance_has_no_provenance_url(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("noprov", "1.0"), clock.now() - AGE_OLD)
    (entry,) = page_json(mirror, "noprov")["files"]
    assert entry["provenance"] is None
    assert_one_line_error(get(mirror, file_path(dist, ".provenance")), status=404)


# -- PEP 740: provenance URLs are fully qualified ---------------------------------------------


def provenance_urls(reply: Reply) -> list[str]:
    """Every provenance URL a page gives, JSON or HTML."""
    if reply.media_type == JSON_TYPE:
        return [entry["provenance"] for entry in reply.json()["files"] if entry["provenance"]]
    return [
        str(a["data-provenance"]) for a in parse_html(reply.body).anchors if "data-provenance" in a
    ]


def publish_attested(upstream: Upstream, clock: FakeClock) -> Dist:
    publish(upstream, build_wheel("attested", "1.0"), clock.now() - AGE_OLD)
    return publish(
        upstream, build_wheel("attested", "1.1"), clock.now() - AGE_OLD, provenance=PROVENANCE
    )


@pytest.mark.parametrize("accept", [JSON_TYPE, LEGACY_HTML])
@pytest.mark.parametrize("query", ["", "?format=json"])  # the fast path, and the app's route
def test_provenance_urls_name_the_host_each_request_reached(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    project_size: str,
    accept: str,
    query: str,
) -> None:
    dist = publish_attested(upstream, clock)
    path = f"/simple/attested/{query}"
    if query:
        accept = JSON_TYPE
    expected = f"{mirror.origin}{file_path(dist, '.provenance')}"
    first = get(mirror, path, {"Accept": accept})
    assert provenance_urls(first) == [expected]
    assert get(mirror, expected).body == PROVENANCE  # and it leads to the bytes

    # The same page asked for through other names: each its own URLs and ETag, whichever
    # was asked for first and however often they alternate.
    other = {"Accept": accept, "Host": "mirror.example:8443"}
    ipv6 = {"Accept": accept, "Host": "[::1]:8070"}
    for _ in range(3):
        renamed = get(mirror, path, other)
        assert provenance_urls(renamed) == [
            f"http://mirror.example:8443{file_path(dist, '.provenance')}"
        ]
        assert provenance_urls(get(mirror, path, ipv6)) == [
            f"http://[::1]:8070{file_path(dist, '.provenance')}"
        ]
        again = get(mirror, path, {"Accept": accept})
        assert again.body == first.body and again.header("ETag") == first.header("ETag")
        assert renamed.header("ETag") != first.header("ETag")
        # A cache revalidating one host's page with the other's ETag gets the page.
        crossed = get(mirror, path, {**other, "If-None-Match": str(first.header("ETag"))})
        assert crossed.status == 200 and crossed.body == renamed.body
        assert (
            get(mirror, path, {**other, "If-None-Match": str(renamed.header("ETag"))}).status == 304
        )
    # File URLs stay relative to the page: they never depend on the host.
    if accept == JSON_TYPE:
        assert [entry["url"] for entry in first.json()["files"]] == [
            entry["url"] for entry in renamed.json()["files"]
        ]


@pytest.mark.parametrize("large", [False, True])
def test_a_large_page_is_filled_for_a_new_host_off_the_event_loop(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    large: bool,
) -> None:
    publish_attested(upstream, clock)
    page(mirror, "attested")
    monkeypatch.setattr(page_module, "THREAD_FILL_BYTES", 0 if large else 10**9)
    threads: list[threading.Thread] = []
    real_fill = PageTemplate.fill

    def fill(template: PageTemplate, base: str) -> Any:
        threads.append(threading.current_thread())
        return real_fill(template, base)

    monkeypatch.setattr(PageTemplate, "fill", fill)
    for query in ("", "?format=json"):
        host = f"host{len(threads)}.example"
        reply = get(mirror, f"/simple/attested/{query}", {"Accept": JSON_TYPE, "Host": host})
        assert provenance_urls(reply)[0].startswith(f"http://{host}/files/")
    assert len(threads) == 2
    on_the_loop = [thread is mirror.loop_thread for thread in threads]
    assert on_the_loop == [not large, not large]


def test_a_page_without_provenance_is_the_same_for_every_host(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("plain", "1.0"), clock.now() - AGE_OLD)
    first = page(mirror, "plain")
    renamed = get(mirror, "/simple/plain/", {"Accept": JSON_TYPE, "Host": "mirror.example"})
    assert (renamed.body, renamed.header("ETag")) == (first.body, first.header("ETag"))


@pytest.mark.parametrize(
    "host",
    [b'evil"><a href="x', b"a b", b"evil.example/path", b"user@evil.example", b"a:b"],
)
def test_a_host_that_names_no_host_gets_no_provenance_page(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, host: bytes
) -> None:
    publish_attested(upstream, clock)
    page(mirror, "attested")  # warm
    for target in (b"/simple/attested/", b"/simple/attested/?format=json"):
        reply = raw_get(mirror, target, [b"Accept: " + JSON_TYPE.encode()], host=host)
        line = assert_one_line_error(reply, status=400)
        assert "public_base_url" in line
        assert b"evil" not in reply.body


def test_an_empty_host_gives_the_address_the_request_came_in_at(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish_attested(upstream, clock)
    reply = raw_get(mirror, b"/simple/attested/", [b"Accept: " + JSON_TYPE.encode()], host=b"")
    assert provenance_urls(reply) == [f"{mirror.origin}{file_path(dist, '.provenance')}"]


def test_forwarded_proto_and_host_count_only_from_trusted_proxies(
    tmp_path: Path, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish_attested(upstream, clock)
    suffix = file_path(dist, ".provenance")
    forwarded = {
        "Accept": JSON_TYPE,
        "X-Forwarded-Proto": "https",
        # A client's own claim first, then the one the proxy appends: the proxy's counts.
        "X-Forwarded-Host": "client-says.example, pypi.internal.example",
    }
    with running_mirror(settings_for(tmp_path / "a", upstream.url), clock) as untrusting:
        assert provenance_urls(get(untrusting, "/simple/attested/", forwarded)) == [
            f"{untrusting.origin}{suffix}"
        ]
    settings = settings_for(tmp_path / "b", upstream.url, trusted_proxies=("127.0.0.0/8",))
    with running_mirror(settings, clock) as behind_proxy:
        for path in ("/simple/attested/", "/simple/attested/?format=json"):
            assert provenance_urls(get(behind_proxy, path, forwarded)) == [
                f"https://pypi.internal.example{suffix}"
            ]
            # The proxy's requests without the headers, and a bad scheme, use the request's own.
            assert provenance_urls(get(behind_proxy, path, {"Accept": JSON_TYPE})) == [
                f"{behind_proxy.origin}{suffix}"
            ]
            bad = get(behind_proxy, path, {**forwarded, "X-Forwarded-Proto": "gopher"})
            assert_one_line_error(bad, status=400)
    settings = settings_for(tmp_path / "c", upstream.url, trusted_proxies=("10.0.0.1",))
    with running_mirror(settings, clock) as other_proxy:  # 127.0.0.1 is not that proxy
        assert provenance_urls(get(other_proxy, "/simple/attested/", forwarded)) == [
            f"{other_proxy.origin}{suffix}"
        ]


def test_public_base_url_is_the_base_of_provenance_urls_whatever_the_host(
    tmp_path: Path, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish_attested(upstream, clock)
    public = "https://pypi.example.org/mirror"
    settings = settings_for(tmp_path / "data", upstream.url, public_base_url=public)
    with running_mirror(settings, clock) as server:
        for headers in ({}, {"Host": "elsewhere.example"}, {"Host": "a b"}):
            for accept in (JSON_TYPE, LEGACY_HTML):
                reply = get(server, "/simple/attested/", {"Accept": accept, **headers})
                assert reply.status == 200
                assert provenance_urls(reply) == [f"{public}{file_path(dist, '.provenance')}"]


# -- PEP 658/714: a metadata file that is not its listed digest --------------------------------

WRONG_METADATA = b"Metadata-Version: 2.1\nName: badmeta\nVersion: 6.6.6\nRequires-Dist: evil\n"


def metadata_offered(mirror: MirrorServer, project: str) -> dict[str, object]:
    """Each listed file's metadata offer, JSON and HTML alike."""
    files = page_json(mirror, project)["files"]
    anchors = parse_html(page(mirror, project, accept=LEGACY_HTML).body).anchors
    for entry, anchor in zip(files, anchors, strict=True):
        assert entry["core-metadata"] == entry["dist-info-metadata"]
        html = anchor.get("data-core-metadata")
        assert html == anchor.get("data-dist-info-metadata")
        expected = entry["core-metadata"] and f"sha256={entry['core-metadata']['sha256']}"
        assert html == (expected or None)
    return {entry["filename"]: entry["core-metadata"] for entry in files}


def test_a_vetted_file_whose_metadata_is_not_its_digest_is_installed_from_the_wheel(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    dist = publish(
        upstream,
        build_wheel("badmeta", "1.0"),
        clock.now() - AGE_FRESH,
        serve_metadata=WRONG_METADATA,
    )
    assert listed(mirror, "badmeta") == set()
    assert promote_after_cooling(mirror, clock) == [dist.filename]  # vetting fetched it
    assert metadata_offered(mirror, "badmeta") == {dist.filename: False}
    refused = get(mirror, file_path(dist, ".metadata"))
    assert_one_line_error(refused, status=404)
    outcome = pip_install(mirror.url, tmp_path / "t", "badmeta")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"badmeta": "1.0"}
    assert mirror.services is not None
    (incident,) = [e for e in mirror.services.ledger.events() if e.to_state == "incident"]
    assert incident.filename == dist.filename and incident.reason.startswith("metadata_mismatch")


def test_an_established_files_wrong_metadata_is_refused_then_offered_no_more(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    dist = publish(
        upstream,
        build_wheel("badmeta", "1.0"),
        clock.now() - AGE_OLD,
        serve_metadata=WRONG_METADATA,
    )
    good = publish(upstream, build_wheel("badmeta", "0.9"), clock.now() - AGE_OLD)
    # Listed at once, without its bytes: the offer is the upstream's until it is fetched.
    assert metadata_offered(mirror, "badmeta") == {
        good.filename: {"sha256": good.metadata_sha256},
        dist.filename: {"sha256": dist.metadata_sha256},
    }
    first = get(mirror, file_path(dist, ".metadata"))
    assert_one_line_error(first, status=502)
    assert WRONG_METADATA not in first.body
    assert metadata_offered(mirror, "badmeta") == {
        good.filename: {"sha256": good.metadata_sha256},
        dist.filename: False,
    }
    assert_one_line_error(get(mirror, file_path(dist, ".metadata")), status=404)
    assert get(mirror, file_path(good, ".metadata")).body == good.metadata
    outcome = pip_install(mirror.url, tmp_path / "t", "badmeta==1.0")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"badmeta": "1.0"}


# -- invalid names, CRLF -------------------------------------------------------------------------

INVALID_NAMES = [
    b"/simple/%00x/",
    b"/simple/x%00/",
    b"/simple/-x/",
    b"/simple/x-/",
    b"/simple/.x/",
    b"/simple/x_/",
    b"/simple/_/",
    b"/simple/caf%C3%A9/",
    b"/simple/%E2%80%AEevil/",
    b"/simple/evil%E2%80%AE/",
    b"/simple/a%20b/",
    b"/simple/a+b/",
    b"/simple/%3Cscript%3Ealert(1)%3C/",
    b"/simple/" + b"a" * 300 + b"/",
    b"/simple/" + b"a" * 256 + b"/",
    b"/simple/-x",
    b"/simple/caf%C3%A9",
    b"/simple/%2e%2e/",
    b"/simple/../",
    b"/simple/x%09y/",
]


def test_invalid_project_names_are_404_without_asking_upstream(
    mirror: MirrorServer, upstream: Upstream
) -> None:
    failures = []
    for target in INVALID_NAMES:
        reply = raw_get(mirror, target)
        if reply.status != 404 or reply.body != b"invalid project name\n":
            failures.append((target, reply.status, reply.body))
    assert failures == []
    assert upstream.journal == []


def test_longest_valid_name_is_accepted(mirror: MirrorServer, upstream: Upstream) -> None:
    """The counterpart of the 256/300-char cases above: 255 characters still reach upstream."""
    name = "a" * 255
    reply = raw_get(mirror, f"/simple/{name}/".encode())
    assert_one_line_error(reply, status=404)
    assert reply.body != b"invalid project name\n"
    assert upstream.requests_for(f"/simple/{name}") != []


CRLF_VECTORS = [
    b"/simple/Foo%0d%0aSet-Cookie:x=1/",
    b"/simple/Foo%0d%0aSet-Cookie:x=1",
    b"/simple/Foo%0aSet-Cookie:x=1/",
    b"/simple/Foo%0dSet-Cookie:x=1/",
    b"/simple/Foo%0d%0a%0d%0a<html>/",
    b"/simple/Foo%E2%80%A8Set-Cookie:x=1/",
    b"/simple/Foo%C2%85Set-Cookie:x=1/",
    b"/simple/Foo%00Set-Cookie:x=1/",
    b"/files/" + b"0" * 64 + b"/x%0d%0aSet-Cookie:x=1",
    b"/files/" + b"0" * 64 + b"/x.whl%0d%0aLocation:%20http://evil.example/",
]


def test_crlf_in_the_path_never_becomes_a_header(mirror: MirrorServer, upstream: Upstream) -> None:
    failures = []
    for target in CRLF_VECTORS:
        reply = raw_get(mirror, target)
        problems = []
        if reply.status != 404:
            problems.append(f"status {reply.status}")
        if reply.all("Set-Cookie"):
            problems.append("Set-Cookie header")
        if reply.status_lines != 1:
            problems.append(f"{reply.status_lines} status lines")
        if any("evil.example" in value for _, value in reply.headers):
            problems.append("injected header value")
        if problems:
            failures.append((target, problems))
        else:
            assert_one_line_error(reply)
    assert failures == []
    assert upstream.journal == []


# -- path tricks on /files/ ----------------------------------------------------------------------


def _path_tricks(dist: Dist, other: Dist, held: Dist) -> list[bytes]:
    s, f = dist.sha256.encode(), dist.filename.encode()
    return [
        b"/files/" + s + b"/..%2f..%2f..%2fetc%2fpasswd",
        b"/files/" + s + b"/%2e%2e/%2e%2e/etc/passwd",
        b"/files/" + s + b"/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        b"/files/" + s + b"/%252e%252e%252fetc%252fpasswd",
        b"/files/%252e%252e/" + s + b"/" + f,
        b"/files/" + s + b"/..\\..\\etc\\passwd",
        b"/files/" + s + b"/..%5c..%5cetc%5cpasswd",
        b"/files/" + s + b"/" + f + b"%00",
        b"/files/" + s + b"/" + f + b"%00.txt",
        b"/files/" + s + b"/%00" + f,
        b"/files/" + s.upper() + b"/" + f,
        b"/files/" + s[:40] + s[40:].upper() + b"/" + f,
        b"/files/" + s[:63] + b"/" + f,
        b"/files/" + s + b"0/" + f,
        b"/files/" + s + b"/../../etc/passwd",
        b"/files/" + s + b"/../" + s + b"/" + f,
        b"/files/" + s + b"/./" + f,
        b"/files/" + s + b"//" + f,
        b"//files/" + s + b"/" + f,
        b"/files//" + s + b"/" + f,
        b"/files/" + s + b"/" + f + b"/..",
        b"/files/" + s + b"/%2F%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        b"/files/%2F%2F.....%2F.....%2Fetc%2Fpasswd",
        b"/files/" + s + b"/%C0%AE%C0%AE%C0%AFetc%C0%AFpasswd",
        b"/files/" + s + b"/" + f + b"%E2%80%AE",
        b"/files/" + s + b"/" + f + b"%20",
        b"/files/" + s + b"/" + f.upper(),
        b"/files/" + s + b"/wrong-1.0-py3-none-any.whl",
        b"/files/" + s + b"/" + other.filename.encode(),
        b"/files/" + other.sha256.encode() + b"/" + f,
        b"/files/" + s + b"/" + f + b".metadata.metadata",
        b"/files/" + s + b"/" + f + b".provenance.metadata",
        b"/files/" + s,
        b"/files/" + s + b"/.",
        b"/files/" + s + b"/..",
        b"/files/" + s + b"/%2e%2e",
        b"/files/" + held.sha256.encode() + b"/" + held.filename.encode(),
        b"/files/" + held.sha256.upper().encode() + b"/" + held.filename.encode(),
        b"/files/../blobs/" + s[:2] + b"/" + s[2:4] + b"/" + s,
        b"/files/" + s + b"/%2e%2e%2fledger.sqlite3",
        b"/files/" + s + b"/..%2f..%2fblobs%2f" + s[:2] + b"%2f" + s[2:4] + b"%2f" + s,
    ]


def _assert_never_served(mirror: MirrorServer, targets: list[bytes], secret: bytes) -> None:
    failures: list[tuple[bytes, int, str]] = []
    for target in targets:
        reply = raw_get(mirror, target)
        if reply.status != 404:
            failures.append((target, reply.status, f"Location: {reply.header('Location')}"))
        elif secret in reply.body or reply.body.count(b"\n") != 1:
            failures.append((target, reply.status, repr(reply.body[:80])))
    assert failures == []


def test_path_tricks_on_file_routes_are_404_without_upstream_requests(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("tricky", "1.0"), clock.now() - AGE_OLD)
    other = publish(upstream, build_wheel("tricky", "1.1"), clock.now() - AGE_OLD)
    held = publish(upstream, build_wheel("tricky", "2.0"), clock.now() - AGE_FRESH)
    assert listed(mirror, "tricky") == {dist.filename, other.filename}
    assert get(mirror, file_path(dist)).body == dist.data  # in the store, so a slip would show
    mirror.promote()  # the held file's bytes too
    upstream.clear_journal()

    targets = _path_tricks(dist, other, held)
    assert len(targets) >= 30
    _assert_never_served(mirror, targets, dist.data[:64])
    assert upstream.journal == []


def test_trailing_slash_on_a_file_url_is_404_not_a_redirect(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """E1: every path trick on /files/ answers 404, never a 3xx (the router must not help)."""
    dist = publish(upstream, build_wheel("slashy", "1.0"), clock.now() - AGE_OLD)
    assert listed(mirror, "slashy") == {dist.filename}
    upstream.clear_journal()
    s, f = dist.sha256.encode(), dist.filename.encode()
    targets = [
        b"/files/" + s + b"/" + f + b"/",
        b"/files/" + s + b"/" + f + b"%2f",
        b"/files/" + s + b"/" + f + b"//",
        b"/files/" + s + b"/x%0d%0aSet-Cookie:x=1/",
    ]
    _assert_never_served(mirror, targets, dist.data[:64])
    assert upstream.journal == []


# -- upstream faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [JSON_TYPE, LEGACY_HTML])
@pytest.mark.parametrize("fault", ["malformed", "html"])
def test_bad_upstream_answer_for_an_unknown_project_is_502(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, fault: str, accept: str
) -> None:
    publish(upstream, build_wheel("faulty", "1.0"), clock.now() - AGE_OLD)
    upstream.set_fault("faulty", fault)
    reply = get(mirror, "/simple/faulty/", {"Accept": accept})
    line = assert_one_line_error(reply, status=502)
    assert line.startswith("upstream response rejected")
    assert b"<html" not in reply.body.lower()
    assert upstream.requests_for("/simple/faulty/") != []


@pytest.mark.parametrize(
    ("fault", "status"), [("malformed", 502), ("html", 502), ("500", 504), ("down", 504)]
)
def test_a_failed_first_look_is_not_turned_into_not_found(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, fault: str, status: int
) -> None:
    """Catalogue 1.6: 404 means the upstream said so; a failure must not read as "no such
    project" (pip then reports no matching distribution) for the rest of the index TTL."""
    publish(upstream, build_wheel("faulty", "1.0"), clock.now() - AGE_OLD)
    if fault == "down":
        upstream.stop()
    else:
        upstream.set_fault("faulty", fault)
    first = get(mirror, "/simple/faulty/", {"Accept": JSON_TYPE})
    assert_one_line_error(first, status=status)
    clock.advance(timedelta(seconds=5))  # well inside the 60 s TTL
    again = get(mirror, "/simple/faulty/", {"Accept": JSON_TYPE})
    assert_one_line_error(again, status=status)


@pytest.mark.parametrize("fault", ["malformed", "html", "500"])
def test_bad_upstream_answer_for_a_known_project_serves_the_stale_page(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, fault: str
) -> None:
    dist = publish(upstream, build_wheel("faulty", "1.0"), clock.now() - AGE_OLD)
    fresh = page(mirror, "faulty")
    assert fresh.header("X-Mirror-Stale") is None
    assert fresh.header("X-Mirror-Upstream") is None

    upstream.set_fault("faulty", fault)
    clock.advance(TTL)
    looks = len(upstream.requests_for("/simple/faulty/"))
    stale = page(mirror, "faulty")
    assert len(upstream.requests_for("/simple/faulty/")) == looks + 1  # it did ask
    assert stale.body == fresh.body
    assert stale.header("X-Mirror-Upstream") == "unreachable"
    assert int(stale.header("X-Mirror-Stale") or "-1") >= int(TTL.total_seconds())
    assert get(mirror, file_path(dist)).body == dist.data

    upstream.set_fault("faulty", None)
    clock.advance(TTL)
    recovered = page(mirror, "faulty")
    assert recovered.header("X-Mirror-Stale") is None
    assert recovered.header("X-Mirror-Upstream") is None


def test_upstream_down_keeps_serving_what_was_promoted_and_promotes_nothing(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    old = publish(upstream, build_wheel("steady", "1.0"), clock.now() - AGE_OLD)
    new = publish(upstream, build_wheel("steady", "1.1"), clock.now() - AGE_FRESH)
    before = page(mirror, "steady")
    assert get(mirror, file_path(old, ".metadata")).body == old.metadata  # as pip would
    assert get(mirror, file_path(old)).body == old.data
    mirror.promote()  # the new file's bytes are fetched; it stays held

    upstream.stop()
    clock.advance(TTL)
    stale = page(mirror, "steady")
    assert stale.body == before.body
    assert stale.header("X-Mirror-Upstream") == "unreachable"
    first_age = int(stale.header("X-Mirror-Stale") or "-1")
    assert first_age >= int(TTL.total_seconds())
    html = page(mirror, "steady", accept=LEGACY_HTML)
    assert html.header("X-Mirror-Upstream") == "unreachable"
    assert get(mirror, file_path(old)).body == old.data
    assert get(mirror, file_path(old, ".metadata")).body == old.metadata

    # Cooling ends during the outage: no fresh look, so no promotion (B6, INV-5b).
    clock.advance(COOLING)
    assert mirror.promote().promoted == []
    mirror.sync()
    later = page(mirror, "steady")
    assert {entry["filename"] for entry in later.json()["files"]} == {old.filename}
    assert int(later.header("X-Mirror-Stale") or "-1") > first_age
    assert_one_line_error(get(mirror, file_path(new)), status=404)

    # The upstream returns without that file: it is never promoted.
    upstream.remove("steady", new.filename)
    upstream.start()
    mirror.promote()
    clock.advance(TTL)
    back = page(mirror, "steady")
    assert back.header("X-Mirror-Stale") is None
    assert {entry["filename"] for entry in back.json()["files"]} == {old.filename}
    assert_one_line_error(get(mirror, file_path(new)), status=404)


def test_metadata_of_a_file_served_before_an_outage_is_served_during_it(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """The page advertises core-metadata for a file the mirror holds and serves; the
    metadata must not depend on the upstream once the file itself was fetched (B6)."""
    dist = publish(upstream, build_wheel("lazy-meta", "1.0"), clock.now() - AGE_OLD)
    (entry,) = page_json(mirror, "lazy-meta")["files"]
    assert entry["core-metadata"] == {"sha256": dist.metadata_sha256}
    assert get(mirror, file_path(dist)).body == dist.data
    upstream.stop()
    assert get(mirror, file_path(dist)).body == dist.data
    reply = get(mirror, file_path(dist, ".metadata"))
    assert (reply.status, reply.body) == (200, dist.metadata)


def test_project_the_upstream_does_not_have_is_404_and_the_miss_is_cached(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    reply = get(mirror, "/simple/no-such-thing/", {"Accept": JSON_TYPE})
    assert_one_line_error(reply, status=404)
    assert len(upstream.requests_for("/simple/no-such-thing/")) == 1
    clock.advance(timedelta(seconds=30))
    assert_one_line_error(get(mirror, "/simple/no-such-thing/"), status=404)
    assert len(upstream.requests_for("/simple/no-such-thing/")) == 1
    publish(upstream, build_wheel("no-such-thing", "1.0"), clock.now() - AGE_OLD)
    clock.advance(TTL)
    assert listed(mirror, "no-such-thing") == {"no_such_thing-1.0-py3-none-any.whl"}


def test_unknown_project_with_upstream_down_is_504(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("never-seen", "1.0"), clock.now() - AGE_OLD)
    upstream.stop()
    reply = get(mirror, "/simple/never-seen/", {"Accept": JSON_TYPE})
    line = assert_one_line_error(reply, status=504)
    assert "never-seen" in line
    assert reply.header("Retry-After") is not None


def test_cold_page_refusals_read_the_same_through_either_door(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """A plain GET is answered by the front door, one with a query string by the app."""
    publish(upstream, build_wheel("never-seen", "1.0"), clock.now() - AGE_OLD)
    upstream.stop()
    front = get(mirror, "/simple/never-seen/", {"Accept": JSON_TYPE})
    app = get(mirror, "/simple/never-seen/?format=" + JSON_TYPE.replace("+", "%2B"))
    missing = get(mirror, "/simple/not-there-either/")
    for reply in (front, app):
        assert assert_one_line_error(reply, status=504).startswith("upstream")
    assert front.body == app.body
    for header in ("Cache-Control", "Retry-After", "Content-Type", "X-Content-Type-Options"):
        assert front.header(header) == app.header(header), header
    assert missing.status == 504 and missing.header("Cache-Control") == "no-store"


def test_slow_upstream_for_an_unknown_project_is_504_within_the_request_wait(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("sluggish", "1.0"), clock.now() - AGE_OLD)
    upstream.slow_seconds = 5.0
    upstream.set_fault("sluggish", "slow")
    started = time.monotonic()
    reply = get(mirror, "/simple/sluggish/", {"Accept": JSON_TYPE}, timeout=15)
    elapsed = time.monotonic() - started
    line = assert_one_line_error(reply, status=504)
    assert line == "upstream timeout; no cached data for sluggish"
    assert reply.header("Retry-After") is not None
    assert 2.5 <= elapsed <= 4.5, elapsed


# -- hash mismatch (A1) ---------------------------------------------------------------------------


def _tampered(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_established_file_with_wrong_bytes_is_refused_and_dropped(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, same_size: bool
) -> None:
    good = publish(upstream, build_wheel("tampered", "1.0"), clock.now() - AGE_OLD)
    dist = build_wheel("tampered", "1.1")
    bad = _tampered(dist.data) if same_size else dist.data + b"\x00evil"
    publish(upstream, dist, clock.now() - AGE_OLD, serve_bytes=bad)
    assert listed(mirror, "tampered") == {good.filename, dist.filename}

    reply = get(mirror, file_path(dist))
    line = assert_one_line_error(reply)
    assert 500 <= reply.status < 600
    assert bad not in reply.body and dist.data not in reply.body
    assert line.startswith("upstream response rejected")
    # A whole body of another size than listed is other bytes, as surely as another digest.
    assert listed(mirror, "tampered") == {good.filename}
    html = parse_html(page(mirror, "tampered", accept=LEGACY_HTML).body)
    assert html.texts == [good.filename]
    again = get(mirror, file_path(dist))
    assert_one_line_error(again)
    assert again.status in (404, 410)
    clock.advance(TTL)  # a new look does not bring it back
    assert listed(mirror, "tampered") == {good.filename}

    bad_digest = hashlib.sha256(bad).hexdigest()
    for path in blob_files(mirror):
        assert path.name not in (bad_digest, dist.sha256), path
        assert path.read_bytes() != bad, path
    assert get(mirror, file_path(good)).body == good.data


def test_concurrent_downloads_of_a_tampered_file_all_get_the_one_line_refusal(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """Clients arriving while the first download is being checked share its outcome: a
    502 (or 404 once rejected), never a 500 from the race to record the rejection."""
    payload = random.Random(7).randbytes(4_000_000)  # a few MB: the download takes a while
    dist = build_wheel("tampered", "1.0", extra_files={"tampered/blob.bin": payload})
    bad = _tampered(dist.data)
    publish(upstream, dist, clock.now() - AGE_OLD, serve_bytes=bad)
    assert listed(mirror, "tampered") == {dist.filename}

    clients = 8
    barrier = threading.Barrier(clients)

    def download(_: int) -> Reply:
        barrier.wait(10)
        return get(mirror, file_path(dist), timeout=30)

    with ThreadPoolExecutor(clients) as pool:
        replies = list(pool.map(download, range(clients)))
    statuses = sorted(reply.status for reply in replies)
    assert set(statuses) <= {404, 502}, statuses
    assert 502 in statuses
    for reply in replies:
        assert_one_line_error(reply)
        assert bad[:4096] not in reply.body
    assert listed(mirror, "tampered") == set()


def test_held_file_with_wrong_bytes_is_never_listed_or_served(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    good = publish(upstream, build_wheel("tampered", "1.0"), clock.now() - AGE_OLD)
    dist = build_wheel("tampered", "1.1")
    bad = _tampered(dist.data)
    publish(upstream, dist, clock.now() - AGE_FRESH, serve_bytes=bad)
    assert listed(mirror, "tampered") == {good.filename}

    assert promote_after_cooling(mirror, clock) == []
    clock.advance(timedelta(days=1))
    assert mirror.promote().promoted == []
    mirror.sync()
    clock.advance(TTL)
    assert listed(mirror, "tampered") == {good.filename}
    assert page_json(mirror, "tampered")["versions"] == ["1.0"]
    reply = get(mirror, file_path(dist))
    assert_one_line_error(reply, status=404)
    assert bad not in reply.body
    assert_one_line_error(get(mirror, file_path(dist, ".metadata")), status=404)
    for path in blob_files(mirror):
        assert path.read_bytes() != bad, path


# -- upstream takedowns (B7) ----------------------------------------------------------------------


def test_pep792_quarantine_withdraws_promoted_files(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    old = publish(upstream, build_wheel("quarry", "1.0"), clock.now() - AGE_OLD)
    new = publish(upstream, build_wheel("quarry", "1.1"), clock.now() - AGE_FRESH)
    page(mirror, "quarry")
    assert get(mirror, file_path(old)).body == old.data
    assert promote_after_cooling(mirror, clock) == [new.filename]
    assert listed(mirror, "quarry") == {old.filename, new.filename}
    assert get(mirror, file_path(new)).body == new.data

    upstream.set_status("quarry", "quarantined", "malware report")
    clock.advance(TTL)
    doc = page_json(mirror, "quarry")
    assert doc["files"] == []
    assert doc["versions"] == []
    assert doc["project-status"]["status"] == "quarantined"
    html = page(mirror, "quarry", accept=LEGACY_HTML)
    assert parse_html(html.body).anchors == []
    for dist in (old, new):
        for suffix in ("", ".metadata"):
            reply = get(mirror, file_path(dist, suffix))
            assert_one_line_error(reply, status=410)
            assert dist.data not in reply.body


def test_project_deleted_upstream_is_404_and_its_files_410(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("vanishing", "1.0"), clock.now() - AGE_OLD)
    held = publish(upstream, build_wheel("vanishing", "1.1"), clock.now() - AGE_FRESH)
    page(mirror, "vanishing")
    assert get(mirror, file_path(dist)).body == dist.data

    upstream.delete_project("vanishing")
    clock.advance(TTL)
    for accept in (JSON_TYPE, LEGACY_HTML):
        reply = get(mirror, "/simple/vanishing/", {"Accept": accept})
        assert_one_line_error(reply, status=404)
    reply = get(mirror, file_path(dist))
    assert_one_line_error(reply, status=410)
    assert dist.data not in reply.body
    assert_one_line_error(get(mirror, file_path(held)), status=404)
    clock.advance(TTL)
    assert get(mirror, "/simple/vanishing/").status == 404


# -- error bodies ----------------------------------------------------------------------------------

MARK = "zq<img src=x onerror=alert(7)>zq"  # no "/": it must reach the handlers


def test_error_bodies_are_one_line_and_never_echo_the_request(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("echo", "1.0"), clock.now() - AGE_OLD)
    held = publish(upstream, build_wheel("echo", "1.1"), clock.now() - AGE_FRESH)
    page(mirror, "echo")
    mark = quote(MARK, safe="")
    requests: list[tuple[str, dict[str, str], str]] = [
        (f"/simple/{mark}/", {}, "GET"),
        (f"/simple/echo/?format={mark}", {}, "GET"),
        ("/simple/echo/", {"Accept": MARK}, "GET"),
        (f"/simple/?format={mark}", {}, "GET"),
        (f"/files/{dist.sha256}/{mark}.whl", {}, "GET"),
        (f"/files/{dist.sha256}/{mark}.whl.metadata", {}, "GET"),
        (f"/files/{dist.sha256}/{mark}", {}, "GET"),
        (f"/files/{mark}/{dist.filename}", {}, "GET"),
        (f"{file_path(held)}?{mark}", {"X-Mark": MARK}, "GET"),
        (f"/{mark}", {}, "GET"),
        (f"/files/{dist.sha256}/{dist.filename}", {"X-Mark": MARK}, "POST"),
        (f"/simple/echo/?{mark}=1", {"Accept": "image/png"}, "GET"),
    ]
    for path, headers, method in requests:
        reply = get(mirror, path, headers, method=method)
        assert_one_line_error(reply)
        for needle in (b"zq", b"<img", b"onerror", b"alert"):
            assert needle not in reply.body.lower(), (path, reply.body)


def test_large_pages_have_a_gzip_variant_and_files_never_do(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    import gzip
    import json as json_module

    from mirror.simple.routes import accepts_gzip

    for minor in range(120):  # a page well over the 16 KiB threshold
        publish(upstream, build_wheel("biggish", f"1.{minor}"), clock.now() - AGE_OLD)
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    plain = get(mirror, "/simple/biggish/", accept)
    packed = get(mirror, "/simple/biggish/", {**accept, "Accept-Encoding": "gzip"})
    assert plain.status == packed.status == 200
    assert plain.header("Content-Encoding") is None
    assert packed.header("Content-Encoding") == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) < len(plain.body) // 3
    assert packed.header("ETag") != plain.header("ETag")
    for reply in (plain, packed):
        assert "Accept-Encoding" in (reply.header("Vary") or "")
    revalidated = get(
        mirror, "/simple/biggish/", {**accept, "Accept-Encoding": "gzip",
                                     "If-None-Match": packed.header("ETag") or ""}
    )  # fmt: skip
    assert revalidated.status == 304
    refused = get(mirror, "/simple/biggish/", {**accept, "Accept-Encoding": "gzip;q=0"})
    assert refused.header("Content-Encoding") is None
    entry = json_module.loads(plain.body)["files"][0]
    path = local_path(mirror, "biggish", entry["url"])
    wheel = get(mirror, path, {"Accept-Encoding": "gzip"})
    assert wheel.status == 200 and wheel.header("Content-Encoding") is None
    assert accepts_gzip("br, gzip;q=0.5") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=nan") and accepts_gzip("*")


def test_a_cold_page_is_byte_identical_to_the_same_page_rendered_from_the_ledger(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    """A cold miss renders from what its look just wrote; a restart renders from the ledger."""
    publish_demo(upstream, clock)
    cold = {
        kind: get(mirror, "/simple/demo-pkg/", {"Accept": accept})
        for kind, accept in (("json", JSON_TYPE), ("html", "text/html"))
    }
    mirror.restart()
    for kind, accept in (("json", JSON_TYPE), ("html", "text/html")):
        again = get(mirror, "/simple/demo-pkg/", {"Accept": accept})
        assert again.status == cold[kind].status == 200
        assert again.body == cold[kind].body, kind
        assert again.header("ETag") == cold[kind].header("ETag")
    assert b"_lazaretto" in cold["json"].body  # held files were in what was written, too


def test_a_cold_miss_keeps_none_of_its_looks_records_once_written_and_rendered(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, project_size: str
) -> None:
    """The records a cold page is rendered from are dropped once the ledger has them: a
    first-seen project's whole listing must not stay in the server's memory for good."""
    publish_demo(upstream, clock)
    first = page(mirror, "demo-pkg")
    assert mirror.services is not None
    catalog = mirror.services.catalog
    mirror.call(catalog.writes_done())
    live = catalog._live[NormalizedName("demo-pkg")]
    deadline = time.monotonic() + 5  # the write's last step runs on the loop after it
    while live.written is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.written is None
    assert page(mirror, "demo-pkg").body == first.body  # warm, as it was
    html = page(mirror, "demo-pkg", "text/html")  # another format: read from the ledger
    assert b"demo_pkg-1.0" in html.body


@LONE
def test_a_cold_page_goes_out_before_the_write_and_a_refused_write_is_not_served_again(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    project_size: str,
) -> None:
    """The look hands its page over first; if the ledger then refuses it, nothing of it stays."""
    demo = publish_demo(upstream, clock)
    assert mirror.services is not None
    ledger = mirror.services.ledger
    refused: list[str] = []
    real_apply = ledger.apply

    def refusing(observation: Any, etag: str | None, actor: str) -> int:
        refused.append(observation.project.name)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ledger, "apply", refusing)
    first = get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE})
    assert first.status == 200  # sent before the write was tried
    assert {entry["filename"] for entry in json.loads(first.body)["files"]} == set(demo.served)
    url = json.loads(first.body)["files"][0]["url"]
    # The server's loop tries the write right after sending the page, before it reads
    # any later request: once this one is answered, the write has been tried.
    assert get(mirror, local_path(mirror, "demo-pkg", url)).status == 404  # no record, no bytes
    assert refused == ["demo-pkg"]
    assert ledger.project(NormalizedName("demo-pkg")) is None
    monkeypatch.setattr(ledger, "apply", real_apply)
    again = get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE})
    assert again.status == 200 and again.body == first.body
    assert get(mirror, local_path(mirror, "demo-pkg", url)).status == 200
    assert refused == ["demo-pkg"]  # the second request looked anew, and that write went through
    assert ledger.project(NormalizedName("demo-pkg")) is not None


def test_with_other_serving_processes_a_page_waits_for_its_write(
    upstream: Upstream,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    project_size: str,
) -> None:
    """Beside other serving processes (``--workers``, replicas on one PostgreSQL) a file on
    a page may be asked of another process, which knows only what the ledger has: so no
    page goes out before its records are committed, and a refused write sends none."""
    demo = publish_demo(upstream, clock)
    settings = settings_for(tmp_path / "data", upstream.url, workers=2)
    with running_mirror(settings, clock) as mirror:
        assert mirror.services is not None
        ledger = mirror.services.ledger
        real_apply = ledger.apply

        def refusing(observation: Any, etag: str | None, actor: str) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(ledger, "apply", refusing)
        first = get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE})
        assert first.status == 503, first.body  # nothing listed that no process could serve
        assert b"could not record the look at demo-pkg in the ledger" in first.body
        monkeypatch.setattr(ledger, "apply", real_apply)
        again = get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE})
        assert again.status == 200
        assert {entry["filename"] for entry in json.loads(again.body)["files"]} == set(demo.served)
        # What this page lists is in the ledger the other processes read, before it is sent.
        other = open_ledger(settings)
        try:
            for entry in json.loads(again.body)["files"]:
                assert other.file(NormalizedName("demo-pkg"), entry["filename"]) is not None
        finally:
            other.close()


def test_beside_other_serving_processes_a_slow_ledger_write_is_not_an_upstream_timeout(
    upstream: Upstream,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The upstream answered within request_wait; the write that must end before the page
    goes out has a bound of its own, and past it the answer names the ledger, not the
    upstream (pip gives up on a 504 for a page). Big projects are written in a thread,
    so the server goes on while the write runs."""
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 1)
    publish_demo(upstream, clock)
    settings = settings_for(
        tmp_path / "data", upstream.url, workers=2, request_wait=timedelta(seconds=1)
    )
    with running_mirror(settings, clock) as mirror:
        assert mirror.services is not None
        ledger = mirror.services.ledger
        real_apply = ledger.apply

        def slow(observation: Any, etag: str | None, actor: str) -> int:
            time.sleep(2)  # longer than request_wait
            return real_apply(observation, etag, actor)

        monkeypatch.setattr(ledger, "apply", slow)
        assert get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE}).status == 200
        monkeypatch.setattr(catalog_module, "LEDGER_WRITE_WAIT_SECONDS", 0.5)
        publish(upstream, build_wheel("other-pkg", "1.0"), clock.now() - AGE_OLD)
        reply = get(mirror, "/simple/other-pkg/", {"Accept": JSON_TYPE})
        assert reply.status == 503, reply.body
        assert reply.body.startswith(b"the ledger is slow to record the look at other-pkg")


@LONE
def test_a_file_asked_for_while_its_big_project_is_being_written_waits_for_the_write(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big project's page goes out before its records are written (in a thread); pip
    asks for a file at once, and must get it, not a 404, while the write goes on."""
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 3)
    demo = publish_demo(upstream, clock)  # 7 files: big
    assert mirror.services is not None
    ledger = mirror.services.ledger
    real_apply = ledger.apply

    def slow_apply(observation: Any, etag: str | None, actor: str) -> int:
        time.sleep(0.5)  # in the worker thread: a ten-thousand-row write takes this long
        return real_apply(observation, etag, actor)

    monkeypatch.setattr(ledger, "apply", slow_apply)
    page = get(mirror, "/simple/demo-pkg/", {"Accept": JSON_TYPE})
    assert page.status == 200
    assert ledger.project(NormalizedName("demo-pkg")) is None  # still being written
    url = json.loads(page.body)["files"][0]["url"]
    reply = get(mirror, local_path(mirror, "demo-pkg", url))
    assert reply.status == 200
    assert reply.body in {dist.data for dist in demo.served.values()}


def test_every_project_is_observed_written_and_rendered_off_the_event_loop(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of files take a second of CPU and of writes, and any ledger call may wait
    for the GIL once per row or for the database's write lock: other requests must not."""
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 3)
    publish_demo(upstream, clock)  # 7 files: big
    publish(upstream, build_wheel("tiny", "1.0"), clock.now() - AGE_OLD)  # 1 file: small
    assert mirror.services is not None
    catalog = mirror.services.catalog
    ran: list[tuple[str, str, bool]] = []
    for step in ("_observe", "_build"):
        real = getattr(catalog, step)

        def traced(*args: Any, _real: Any = real, _step: str = step, **options: Any) -> Any:
            result = _real(*args, **options)
            on_loop = threading.current_thread() is mirror.loop_thread
            project = args[0] if _step == "_build" else args[1].name
            ran.append((_step, str(project), on_loop))
            return result

        monkeypatch.setattr(catalog, step, traced)
    real_apply = mirror.services.ledger.apply

    def traced_apply(observation: Any, etag: str | None, actor: str) -> int:
        on_loop = threading.current_thread() is mirror.loop_thread
        ran.append(("apply", str(observation.project.name), on_loop))
        return real_apply(observation, etag, actor)

    monkeypatch.setattr(mirror.services.ledger, "apply", traced_apply)
    for project in ("demo-pkg", "tiny"):
        for accept in (JSON_TYPE, "text/html"):
            assert get(mirror, f"/simple/{project}/", {"Accept": accept}).status == 200
    assert sorted(set(ran)) == [
        ("_build", "demo-pkg", False),
        ("_build", "tiny", False),
        ("_observe", "demo-pkg", False),
        ("_observe", "tiny", False),
        ("apply", "demo-pkg", False),
        ("apply", "tiny", False),
    ]
    before = len(ran)
    for accept in (JSON_TYPE, "text/html"):  # warm: nothing is built again
        assert get(mirror, "/simple/demo-pkg/", {"Accept": accept}).status == 200
    assert len(ran) == before


@pytest.mark.sqlite_only("SQLite's write lock, which the vetting process takes in turn")
def test_a_warm_page_is_answered_while_a_looks_write_waits_for_the_database_lock(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """Another process (the vetting child) holds SQLite's write lock; a look's write waits
    for it, up to the busy timeout. The event loop must answer everyone else meanwhile,
    and the write goes in once the lock is let go."""
    publish(upstream, build_wheel("warm", "1.0"), clock.now() - AGE_OLD)
    publish(upstream, build_wheel("cold", "1.0"), clock.now() - AGE_OLD)
    warm = page(mirror, "warm")
    assert mirror.services is not None
    catalog, ledger = mirror.services.catalog, mirror.services.ledger
    mirror.call(catalog.writes_done())
    holder = sqlite3.connect(Path(mirror.settings.data_dir) / "ledger.sqlite3")
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")  # as a vetting round does while it writes
    try:
        assert listed(mirror, "cold") == {"cold-1.0-py3-none-any.whl"}  # out before its write
        assert page(mirror, "warm").body == warm.body  # while the write waits for the lock
        assert catalog.writing(NormalizedName("cold"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    mirror.call(catalog.writes_done())
    assert ledger.project(NormalizedName("cold")) is not None


def big_demo_after_a_restart(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Demo:
    """The demo project, big, looked at once; then a restart, so no page is in memory and
    the next build reads the ledger."""
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 1)
    demo = publish_demo(upstream, clock)
    assert listed(mirror, "demo-pkg") == set(demo.served)
    mirror.restart()
    return demo


def test_a_big_page_is_rebuilt_from_the_rows_that_changed(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart a big page is read whole once; each change after that (a decision,
    a look that finds a new upload) reads only the rows it wrote, and gives the bytes a
    whole read renders."""
    demo = big_demo_after_a_restart(mirror, upstream, clock, monkeypatch)
    assert mirror.services is not None
    catalog, ledger = mirror.services.catalog, mirror.services.ledger
    reads: list[str] = []
    real_read, real_files, real_changed = catalog._read, ledger.files, ledger.files_changed_since

    def whole(name: NormalizedName) -> Any:
        reads.append("whole")
        return real_read(name)

    def every_file(name: NormalizedName) -> list[FileRecord]:
        reads.append("every file")
        return real_files(name)

    def changed(name: NormalizedName, seq: int) -> list[FileRecord]:
        rows = real_changed(name, seq)
        reads.extend(row.filename for row in rows)
        return rows

    monkeypatch.setattr(catalog, "_read", whole)
    monkeypatch.setattr(ledger, "files", every_file)
    monkeypatch.setattr(ledger, "files_changed_since", changed)

    def both_pages() -> tuple[bytes, bytes]:
        return page(mirror, "demo-pkg").body, page(mirror, "demo-pkg", accept=LEGACY_HTML).body

    def rendered_whole() -> tuple[bytes, bytes]:
        """Both pages as the renderer gives them from every record, without any parts."""
        name = NormalizedName("demo-pkg")
        project, files = ledger.project(name), real_files(name)
        assert project is not None
        pages = [
            catalog._rendered_whole(name, fmt, project, files, catalog._policies.current())[0]
            for fmt in (PageFormat.JSON, PageFormat.LEGACY_HTML)
        ]
        # The demo links provenance: a page kept as a template, sent filled for the base.
        assert all(isinstance(page, PageTemplate) for page in pages)
        json_page, html_page = (
            page.for_base(f"{mirror.origin}/") for page in pages if isinstance(page, PageTemplate)
        )
        return json_page.body, html_page.body

    assert both_pages() == rendered_whole()
    assert reads == ["whole", "every file"]  # HTML was joined from the parts JSON kept
    promoted = promote_after_cooling(mirror, clock)
    assert set(promoted) == set(demo.held)
    reads.clear()
    json_after, html_after = both_pages()
    assert (json_after, html_after) == rendered_whole()
    # The promoted rows and those whose bytes were marked stored; not the untouched ones.
    assert "whole" not in reads and set(demo.held) <= set(reads)
    assert demo.yanked.filename not in reads and demo.with_python.filename not in reads
    assert listed(mirror, "demo-pkg") == set(demo.served) | set(demo.held)

    # A decision by another process (the CLI): one more row, read on its own.
    yanked = demo.yanked.filename
    other = open_ledger(mirror.settings)
    try:
        record = other.file(NormalizedName("demo-pkg"), yanked)
        assert record is not None
        other.transition(
            record, FileState.WITHDRAWN, "operator: bad build", "admin:cli", clock.now()
        )
    finally:
        other.close()
    mirror.sync()
    reads.clear()
    json_blocked, html_blocked = both_pages()
    assert (json_blocked, html_blocked) == rendered_whole()
    assert reads == [yanked]
    assert yanked not in listed(mirror, "demo-pkg")

    # A new upload: the look takes the records it compares with from the parts as well.
    fresh = publish(upstream, build_wheel("Demo_Pkg", "3.0"), clock.now())
    clock.advance(TTL)
    reads.clear()
    json_looked, html_looked = both_pages()
    assert "every file" not in reads and fresh.filename in reads
    assert json.loads(json_looked)["_lazaretto"]["held-files"] == 1
    assert (json_looked, html_looked) == rendered_whole()
    assert len({json_after, json_blocked, json_looked}) == 3


def test_a_refused_write_of_a_big_projects_look_leaves_the_page_last_recorded(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = big_demo_after_a_restart(mirror, upstream, clock, monkeypatch)
    before = page(mirror, "demo-pkg").body  # built from a whole read: kept in parts
    fresh = publish(upstream, build_wheel("Demo_Pkg", "3.0"), clock.now())
    clock.advance(TTL)
    assert mirror.services is not None
    ledger = mirror.services.ledger
    real_apply = ledger.apply

    def refusing(observation: Any, etag: str | None, actor: str) -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(ledger, "apply", refusing)
    assert page(mirror, "demo-pkg").body == before
    assert ledger.file(NormalizedName("demo-pkg"), fresh.filename) is None
    monkeypatch.setattr(ledger, "apply", real_apply)
    again = page(mirror, "demo-pkg").json()  # looked at anew, without waiting for the TTL
    assert again["_lazaretto"]["held-files"] == len(demo.held) + 1


def test_a_page_built_before_a_look_is_not_taken_for_the_looks_page(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTML build from the ledger, begun before a look, ends while the look's write goes
    on; the look's new seq must not be stamped on that older page."""
    demo = big_demo_after_a_restart(mirror, upstream, clock, monkeypatch)
    monkeypatch.setattr(catalog_module, "KEPT_PARTS_FILES", 0)  # the look hands over
    assert set(promote_after_cooling(mirror, clock)) == set(demo.held)
    page(mirror, "demo-pkg")  # looked at: the HTML page is out of date, the TTL is not
    assert mirror.services is not None
    catalog, ledger = mirror.services.catalog, mirror.services.ledger
    building, release, html_done = threading.Event(), threading.Event(), threading.Event()
    real_build, real_apply = catalog._build, ledger.apply

    def late_html(*args: Any, **options: Any) -> Any:
        if args[1] is PageFormat.LEGACY_HTML and not release.is_set():
            building.set()
            release.wait(10)
        return real_build(*args, **options)

    def slow_write(observation: Any, etag: str | None, actor: str) -> int:
        release.set()  # the HTML build reads the ledger as it is before this write
        html_done.wait(10)
        return real_apply(observation, etag, actor)

    monkeypatch.setattr(catalog, "_build", late_html)
    monkeypatch.setattr(ledger, "apply", slow_write)
    with ThreadPoolExecutor(1) as pool:
        html = pool.submit(page, mirror, "demo-pkg", LEGACY_HTML)
        html.add_done_callback(lambda _done: html_done.set())
        assert building.wait(10)  # asked for before the TTL ends: built from the ledger
        fresh = publish(upstream, build_wheel("Demo_Pkg", "3.0"), clock.now())
        clock.advance(TTL)
        page(mirror, "demo-pkg")  # the look: its page goes out, then the write
        assert b"file(s) held" not in html.result(10).body
    name = NormalizedName("demo-pkg")
    deadline = time.monotonic() + 10
    while ledger.file(name, fresh.filename) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    mirror.sync()  # after the write's last step on the loop
    assert b"<!-- lazaretto: 1 file(s) held" in page(mirror, "demo-pkg", LEGACY_HTML).body


def test_big_pages_kept_in_parts_stay_within_their_file_budget(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 1)
    monkeypatch.setattr(catalog_module, "KEPT_PARTS_FILES", 4)
    for project, files in (("one", 1), ("three", 3), ("two", 2)):
        for number in range(files):
            publish(upstream, build_wheel(project, f"1.{number}"), clock.now() - AGE_OLD)
        assert len(listed(mirror, project)) == files
    mirror.restart()  # pages are kept in parts from their first read of the ledger
    assert mirror.services is not None
    kept = mirror.services.catalog._kept
    for project in ("one", "three"):
        page(mirror, project)
    assert list(kept) == ["one", "three"]  # 4 files
    page(mirror, "two")
    assert list(kept) == ["two"]  # the least recently built went first, then the next
    assert page(mirror, "one").status == 200  # its page bytes are kept apart from the parts
    assert list(kept) == ["two"]


def _stall_big_builds(mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Big page builds (in threads) wait until the returned event is set."""
    assert mirror.services is not None
    catalog = mirror.services.catalog
    release = threading.Event()
    real = catalog._build

    def stalled(*args: Any, **options: Any) -> Any:
        if options.get("with_parts"):
            assert release.wait(20)
        return real(*args, **options)

    monkeypatch.setattr(catalog, "_build", stalled)
    return release


def _two_old_files_of_a_big_project(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[Dist, Dist]:
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 2)
    first = publish(upstream, build_wheel("busy", "1.0"), clock.now() - AGE_OLD)
    second = publish(upstream, build_wheel("busy", "1.1"), clock.now() - AGE_OLD)
    assert listed(mirror, "busy") == {first.filename, second.filename}
    assert mirror.services is not None
    ledger, live = mirror.services.ledger, mirror.services.catalog._live[NormalizedName("busy")]
    deadline = time.monotonic() + 10  # the page went out before the look's write
    while ledger.file(NormalizedName("busy"), first.filename) is None or live.unwritten:
        assert time.monotonic() < deadline, "the look was never written"
        time.sleep(0.01)
    return first, second


def test_a_big_page_being_rebuilt_after_a_promotion_is_answered_with_the_one_before(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While vetting runs, a big project changes every second and its rebuild takes one:
    a file promoted since is only missing from the page before, which goes out meanwhile."""
    first, second = _two_old_files_of_a_big_project(mirror, upstream, clock, monkeypatch)
    fresh = publish(upstream, build_wheel("busy", "1.2"), clock.now() - AGE_FRESH)
    clock.advance(timedelta(seconds=mirror.settings.index_ttl.total_seconds() + 1))
    before = page(mirror, "busy")  # looked again: 1.2 is held
    assert fresh.filename.encode() not in before.body
    release = _stall_big_builds(mirror, monkeypatch)
    assert mirror.services is not None
    ledger = mirror.services.ledger
    deadline = time.monotonic() + 10  # the page went out before the look's write
    live = mirror.services.catalog._live[NormalizedName("busy")]
    while (record := ledger.file(NormalizedName("busy"), fresh.filename)) is None or live.unwritten:
        assert time.monotonic() < deadline, "the look was never written"
        time.sleep(0.01)
    ledger.transition(record, FileState.PROMOTED, "promoted early by a test", "test", clock.now())
    mirror.sync()
    answer = page(mirror, "busy")  # the rebuild is stalled: the page before goes out
    assert answer.body == before.body
    release.set()
    deadline = time.monotonic() + 10
    while fresh.filename not in listed(mirror, "busy"):
        assert time.monotonic() < deadline, "the rebuilt page never came"
        time.sleep(0.05)
    assert listed(mirror, "busy") == {first.filename, second.filename, fresh.filename}


def test_a_big_page_is_rebuilt_when_the_ledger_tells_of_a_promotion_before_anyone_asks(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else the next request gets the page before (still right, but without the file just
    promoted): on the real index pip's next run missed litellm's newest wheel for 12 s."""
    _two_old_files_of_a_big_project(mirror, upstream, clock, monkeypatch)
    fresh = publish(upstream, build_wheel("busy", "1.2"), clock.now() - AGE_FRESH)
    clock.advance(timedelta(seconds=mirror.settings.index_ttl.total_seconds() + 1))
    assert fresh.filename.encode() not in page(mirror, "busy").body  # looked again: held
    assert mirror.services is not None
    ledger, catalog = mirror.services.ledger, mirror.services.catalog
    name = NormalizedName("busy")
    deadline = time.monotonic() + 10  # the page went out before the look's write
    while (record := ledger.file(name, fresh.filename)) is None or catalog._live[name].unwritten:
        assert time.monotonic() < deadline, "the look was never written"
        time.sleep(0.01)
    ledger.transition(record, FileState.PROMOTED, "promoted early by a test", "test", clock.now())

    async def follow_once() -> None:
        await catalog._follow_once(lambda: None)  # as the ledger follower's next tick
        await asyncio.gather(*catalog._rebuilding)

    mirror.call(follow_once())
    kept = catalog._live[name].pages
    assert kept and all(kept_page.seq == catalog._seq[name] for kept_page in kept.values())
    assert fresh.filename.encode() in page(mirror, "busy").body


def test_a_catch_up_read_before_a_write_never_takes_a_projects_seq_back(
    mirror: MirrorServer,
) -> None:
    """The follower reads the ledger in a thread; a look's write that ended meanwhile set
    a newer seq. Taking the older one back would let a page kept at it pass for current,
    listing a file withdrawn since."""
    assert mirror.services is not None
    catalog = mirror.services.catalog
    name = NormalizedName("raced")
    seen = catalog._seen_seq
    catalog._seq[name] = seen + 9  # the write that ended while the read was in its thread
    assert catalog._take_changes(seen, seen + 5, {name: seen + 5})
    assert catalog._seq[name] == seen + 9


def test_a_big_page_listing_a_file_taken_back_since_waits_for_its_rebuild(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page before a withdrawal is never sent again: the request waits for the new one."""
    first, second = _two_old_files_of_a_big_project(mirror, upstream, clock, monkeypatch)
    release = _stall_big_builds(mirror, monkeypatch)
    assert mirror.services is not None
    ledger = mirror.services.ledger
    record = ledger.file(NormalizedName("busy"), first.filename)
    assert record is not None
    ledger.transition(record, FileState.WITHDRAWN, "withdrawn by a test", "test", clock.now())
    mirror.sync()
    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(listed, mirror, "busy")
        time.sleep(0.5)
        assert not asking.done()  # not the page before: it lists the withdrawn file
        release.set()
        assert asking.result(10) == {second.filename}


def test_a_small_page_is_never_built_behind_a_big_pages_parts(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """Only a big page's build, in a thread, takes the kept parts' lock: a small page
    built on the event loop must not wait while a big build holds it."""
    old = publish(upstream, build_wheel("tiny", "1.0"), clock.now() - AGE_OLD)
    new = publish(upstream, build_wheel("tiny", "1.1"), clock.now() - AGE_FRESH)
    assert listed(mirror, "tiny") == {old.filename}
    assert promote_after_cooling(mirror, clock) == [new.filename]  # rebuilt from the ledger
    assert mirror.services is not None
    lock = mirror.services.catalog._kept_lock
    # The lock is let go first on the way out: a request stuck behind it still ends.
    with ThreadPoolExecutor(1) as pool, lock:  # held as a thread building a big page would
        asked = pool.submit(listed, mirror, "tiny")
        assert asked.result(timeout=10) == {old.filename, new.filename}


@pytest.mark.parametrize(("threshold", "off_the_loop"), [(0, True), (10**9, False)])
def test_a_large_upstream_listing_is_parsed_off_the_event_loop(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    threshold: int,
    off_the_loop: bool,
) -> None:
    monkeypatch.setattr(upstream_module, "PARSE_IN_THREAD_BYTES", threshold)
    publish(upstream, build_wheel("tiny", "1.0"), clock.now() - AGE_OLD)
    parsed_off_the_loop: list[bool] = []
    real = parse_project_page

    def traced(body: bytes, name: NormalizedName) -> Any:
        parsed_off_the_loop.append(threading.current_thread() is not mirror.loop_thread)
        return real(body, name)

    monkeypatch.setattr(upstream_module, "parse_project_page", traced)
    assert listed(mirror, "tiny") == {"tiny-1.0-py3-none-any.whl"}
    assert parsed_off_the_loop == [off_the_loop]


def test_concurrent_requests_for_a_big_page_share_one_build(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    big_demo_after_a_restart(mirror, upstream, clock, monkeypatch)
    assert mirror.services is not None
    catalog = mirror.services.catalog
    release = threading.Event()
    builds: list[str] = []
    real = catalog._build

    def held_back(*args: Any, **options: Any) -> Any:
        builds.append(args[1].name)
        release.wait(10)
        return real(*args, **options)

    monkeypatch.setattr(catalog, "_build", held_back)
    path = "/simple/demo-pkg/"
    with ThreadPoolExecutor(4) as pool:
        replies = [pool.submit(get, mirror, path, {"Accept": JSON_TYPE}) for _ in range(4)]
        time.sleep(0.3)  # all four are waiting on the build by now
        release.set()
        answers = [reply.result() for reply in replies]
    assert builds == ["JSON"]
    assert {answer.status for answer in answers} == {200}
    assert len({answer.body for answer in answers}) == 1


def _still_open_under(directory: Path, wait_seconds: float = 5.0) -> list[str]:
    """Files under ``directory`` this process (the server's) still has open once the
    download had time to settle (the blob is made durable after the answer)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        held = []
        for entry in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):  # a descriptor closed while listing
                target = os.readlink(entry)
                if target.startswith(str(directory)):
                    held.append(target)
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.02)


def test_a_large_file_is_served_whole_by_get_and_head_and_in_ranges(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """Past the memory cache, files are sent from memory-mapped windows (several here): the
    first time from the verified temporary file while it is made durable."""
    payload = os.urandom(9 * 1024 * 1024 + 12345)  # incompressible: the wheel stays this big
    dist = publish(
        upstream,
        build_wheel("hefty", "1.0", extra_files={"hefty/blob.bin": payload}),
        clock.now() - AGE_OLD,
    )
    assert len(dist.data) > 9 * 1024 * 1024
    assert listed(mirror, "hefty") == {dist.filename}
    for attempt in ("fetched, verified, then sent", "from the store"):
        whole = get(mirror, file_path(dist))
        assert whole.status == 200, attempt
        assert whole.body == dist.data, attempt
        assert whole.header("Content-Length") == str(len(dist.data))
        assert whole.header("Accept-Ranges") == "bytes"
        assert whole.header("ETag") == f'"{dist.sha256}"'
        assert _still_open_under(Path(mirror.settings.data_dir) / "blobs") == [], attempt
    head = get(mirror, file_path(dist), method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(dist.data))
    middle = get(mirror, file_path(dist), {"Range": "bytes=4194300-4194400"})
    assert middle.status == 206
    assert middle.body == dist.data[4194300:4194401]
    tail = get(mirror, file_path(dist), {"Range": "bytes=-10"})
    assert tail.status == 206 and tail.body == dist.data[-10:]


def test_a_file_another_replica_just_promoted_is_served_not_refused_from_memory(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """Replicas share one ledger; each keeps a copy of file states that follows it within
    a second. A file one of them promoted must not be refused by another meanwhile."""
    dist = publish(upstream, build_wheel("shared", "1.0"), clock.now())
    with running_mirror(mirror.settings, clock) as other:  # same data dir, same ledger
        assert listed(other, "shared") == set()
        held = get(other, file_path(dist))
        assert held.status == 404  # and "held" is now in its copy of the file states
        assert sorted(promote_after_cooling(mirror, clock)) == [dist.filename]
        reply = get(other, file_path(dist))  # at once: before the other follows the ledger
        assert reply.status == 200 and reply.body == dist.data
