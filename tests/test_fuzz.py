"""Fuzzing the parsers that read hostile input, with hypothesis.

Each target must answer anything with a result or its own error, never another exception:
the upstream's project pages (arbitrary bytes, and near-valid documents whose accepted
files must then carry only checked fields), filenames and versions, archives (real wheels
and sdists, mutated: findings and verdicts only, in bounded memory), and the headers a
client sends (Accept, X-Forwarded-*, Range against a live mirror).

Bounded by default (the "fuzz-ci" profile); ``LAZARETTO_TEST_PROFILE=extended`` loads the
"fuzz-extended" profile, 25 times the examples. Hypothesis prints the failing input and
the ``@reproduce_failure`` blob of any crash.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import tracemalloc
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName
from packaging.version import Version

from mirror.errors import BadRequest, NotAcceptable, UpstreamRejected
from mirror.http.request_base import RequestBase
from mirror.simple.negotiate import PageFormat, negotiate
from mirror.upstream.parse import parse_project_page
from quarantine.evidence import Action
from quarantine.filenames import (
    UnservableFile,
    archive_suffix,
    file_version,
    sdist_compression,
    version_or_none,
)
from quarantine.inspect.archive.reader import ArchiveReader, Limits
from quarantine.inspect.check import inspect_file
from quarantine.models import FileState
from quarantine.observe import observe
from quarantine.policy import Policy
from support.counters import report
from support.dists import build_sdist, build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

EXTENDED = os.environ.get("LAZARETTO_TEST_PROFILE") == "extended"
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("fuzz-ci", max_examples=200, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "fuzz-extended", max_examples=5000, deadline=None, suppress_health_check=_QUIET
)
FUZZ = settings.get_profile("fuzz-extended" if EXTENDED else "fuzz-ci")

PROJECT = NormalizedName("demo-pkg")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHA256 = re.compile(r"[0-9a-f]{64}")
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Python's own allocations while reading one mutated archive of a few KB: far below this.
ARCHIVE_MEMORY_BYTES = 64 * 1024 * 1024

inputs: Counter[str] = Counter()  # examples run per target, reported to the selftest


@pytest.fixture(scope="module", autouse=True)
def _report_inputs() -> Iterator[None]:
    yield
    for target, count in sorted(inputs.items()):
        report(f"fuzz:{target}", inputs=count, crashes=0)


# -- upstream project pages -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
@example(b'{"name": "demo-pkg", "files": [], "meta": {}}')
@example(b"[" * 100_000)
def test_any_bytes_are_a_page_or_a_rejected_listing(body: bytes) -> None:
    inputs["page-bytes"] += 1
    try:
        snapshot = parse_project_page(body, PROJECT)
    except UpstreamRejected:
        return
    _only_checked_files(snapshot)


_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_filenames = st.one_of(
    st.sampled_from(
        [
            "demo_pkg-1.0-py3-none-any.whl",
            "demo-pkg-1.0.tar.gz",
            "demo_pkg-1.0+local-py3-none-any.whl",
            "demo_pkg-1.0-py3-none-any.whl\x00.exe",
            "../demo_pkg-1.0-py3-none-any.whl",
            "demo_pkg-1.0-1-py3-none-any.whl",
            "other-1.0.tar.gz",
            "demo-pkg-1.0.zip",
            "demo_pkg-1.0.egg",
        ]
    ),
    st.from_regex(
        r"demo[-_.]pkg-[0-9a-z.+!_-]{1,12}(-py3-none-any\.whl|\.tar\.gz|\.zip)", fullmatch=True
    ),
    st.text(max_size=40),
)
_digests = st.one_of(
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.from_regex(r"[0-9a-fA-F]{60,66}", fullmatch=True),
    _junk,
)
_times = st.one_of(
    st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.123456+00:00", "yesterday"]),
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
    _junk,
)


@st.composite
def _file_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": draw(st.just("demo_pkg-1.0-py3-none-any.whl") | _filenames),
        "url": draw(st.sampled_from(["https://files.example/x.whl", "", "x.whl"]) | _junk),
        "hashes": draw(st.fixed_dictionaries({"sha256": _digests}) | _junk),
    }
    optional = {
        "size": st.integers(min_value=-5, max_value=2**40) | _junk,
        "upload-time": _times,
        "requires-python": st.sampled_from([">=3.8", "\x1b[31m>=3"]) | _junk,
        "yanked": st.booleans() | st.text(max_size=20) | _junk,
        "core-metadata": st.fixed_dictionaries({"sha256": _digests}) | _junk,
        "provenance": st.just("https://files.example/p") | _junk,
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            entry[key] = draw(values)
    return entry


@st.composite
def _pages(draw: st.DrawFn) -> dict[str, Any]:
    page: dict[str, Any] = {
        "meta": draw(st.fixed_dictionaries({"api-version": st.just("1.1")}) | _junk),
        "name": draw(st.sampled_from(["demo-pkg", "Demo_Pkg", "demo.pkg", "other"]) | _junk),
        "files": draw(st.lists(_file_entries(), max_size=6) | _junk),
    }
    if draw(st.booleans()):
        page["versions"] = draw(st.lists(st.text(max_size=8), max_size=4) | _junk)
    if draw(st.booleans()):
        status = st.sampled_from(["active", "quarantined", "archived", "removed", "odd"])
        page["project-status"] = draw(st.fixed_dictionaries({"status": status}) | _junk)
    return page


_VALID_FILE = {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "https://files.example/x"}


@FUZZ
@given(_pages())
@example(
    {"name": "demo-pkg", "meta": {}, "files": [_VALID_FILE | {"hashes": {"sha256": "AB" * 32}}]}
)
@example(
    {"name": "demo-pkg", "meta": {}, "files": [_VALID_FILE | {"hashes": {"sha256": "ab" * 33}}]}
)
def test_near_valid_pages_give_only_checked_files(page: dict[str, Any]) -> None:
    inputs["page-structured"] += 1
    try:
        snapshot = parse_project_page(json.dumps(page).encode(), PROJECT)
    except UpstreamRejected:
        return
    _only_checked_files(snapshot)


def _only_checked_files(snapshot: Any) -> None:
    """What the parser let through, folded into records as a first look does: a file that
    may ever be served has a real digest, a version of this project and no control
    characters in what pages show."""
    for entry in snapshot.files:
        assert isinstance(entry.filename, str) and entry.filename
        assert entry.size is None or (isinstance(entry.size, int) and entry.size >= 0)
        assert entry.upload_time is None or entry.upload_time.tzinfo is not None
        for shown in (entry.requires_python, entry.yanked):
            assert shown is None or not CONTROLS.search(shown)
        assert entry.core_metadata_sha256 is None or SHA256.fullmatch(entry.core_metadata_sha256)
    observation = observe(None, {}, snapshot, NOW, Policy())
    for record in observation.new:
        if record.state is FileState.REJECTED:
            continue
        assert SHA256.fullmatch(record.sha256), record
        assert str(Version(record.version)) == record.version
        assert file_version(PROJECT, record.filename) == record.version


# -- filenames and versions --------------------------------------------------------------------

_project_names = st.sampled_from(["demo-pkg", "a", "zope-interface", "x-y-z"]).map(NormalizedName)


@FUZZ
@given(_project_names, _filenames | st.text(max_size=80))
@example(NormalizedName("demo-pkg"), "demo_pkg-1.0-py3-none-any.whl")
@example(NormalizedName("demo-pkg"), "demo_pkg-" + "9" * 5000 + "-py3-none-any.whl")
def test_a_filename_has_its_version_or_an_unservable_reason(
    project: NormalizedName, filename: str
) -> None:
    inputs["filenames"] += 1
    archive_suffix(filename)
    sdist_compression(filename)
    try:
        version = file_version(project, filename)
    except UnservableFile as reason:
        assert str(reason)
        return
    parsed = Version(version)
    assert str(parsed) == version and parsed.local is None


@FUZZ
@given(st.text(max_size=60))
def test_any_text_is_a_version_or_none(text: str) -> None:
    inputs["versions"] += 1
    version = version_or_none(text)
    assert version is None or isinstance(version, Version)


# -- archives ----------------------------------------------------------------------------------

_SEEDS = {
    "demo_pkg-1.0-py3-none-any.whl": build_wheel(
        "demo-pkg", "1.0", modules={"demo_pkg/core.py": "import os\nprint(os.getcwd())\n"}
    ).data,
    "demo_pkg-1.0.tar.gz": build_sdist("demo-pkg", "1.0").data,
}


@st.composite
def _mutated_archives(draw: st.DrawFn) -> tuple[str, bytes]:
    filename = draw(st.sampled_from(sorted(_SEEDS)))
    data = bytearray(_SEEDS[filename])
    # Places spread over the whole archive (hypothesis's integers favour the first bytes).
    places = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        at = places.randrange(len(data))
        how = draw(st.sampled_from(["flip", "flip", "flip", "cut", "insert", "zero", "max"]))
        if how == "flip":
            data[at] ^= 1 << places.randrange(8)
        elif how == "cut":
            del data[max(at, 1) :]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a size or offset field made 0 or huge
            data[at : at + 4] = b"\x00" * 4 if how == "zero" else b"\xff" * 4
    return filename, bytes(data)


@FUZZ
@given(_mutated_archives())
def test_a_mutated_archive_gives_findings_and_a_verdict(
    tmp_path: Path, archive: tuple[str, bytes]
) -> None:
    inputs["archives"] += 1
    filename, data = archive
    path = tmp_path / filename
    path.write_bytes(data)
    limits = Limits(max_total_bytes=64 * 1024 * 1024, max_entry_bytes=16 * 1024 * 1024)
    tracemalloc.start()
    try:
        reader = ArchiveReader(path, filename, limits)
        for member in reader:
            assert member.name is not None
        evidence = inspect_file(path, filename, None, limits).evidence()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert evidence.action in set(Action)
    assert peak < ARCHIVE_MEMORY_BYTES, f"{peak} bytes to read a {len(data)}-byte archive"


# -- request headers ---------------------------------------------------------------------------

_header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=120,
)


_media = st.sampled_from(
    ["application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.v1+html",
     "application/vnd.pypi.simple.latest+json", "text/html", "text/*", "*/*", "application/json",
     "", " ", "*"]
)  # fmt: skip
_params = st.lists(
    st.tuples(st.sampled_from(["q", "Q", " q ", "level", ""]), st.text(max_size=8)).map(
        lambda pair: f"{pair[0]}={pair[1]}"
    ),
    max_size=3,
)
_accepts = st.lists(
    st.tuples(_media, _params).map(lambda offer: ";".join([offer[0], *offer[1]])), max_size=4
).map(", ".join)


@FUZZ
@given(st.none() | _accepts | _header_text, st.none() | _media | _header_text)
@example("application/vnd.pypi.simple.v1+json;q=nan", None)
@example("text/html;q=1e999, */*;q=-1", None)
def test_any_accept_header_is_a_format_or_not_acceptable(
    accept: str | None, format_param: str | None
) -> None:
    inputs["accept"] += 1
    try:
        assert negotiate(accept, format_param) in set(PageFormat)
    except NotAcceptable as refusal:
        assert str(refusal)


_PROXY = RequestBase(trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
_headers = st.lists(
    st.tuples(
        st.sampled_from([b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]),
        _header_text.map(lambda text: text.encode("latin-1")),
    ),
    max_size=6,
)


@FUZZ
@given(_headers, st.sampled_from(["127.0.0.1", "10.1.2.3", "192.0.2.7"]))
@example([(b"x-forwarded-for", b"1.2.3.4, , 10.0.0.1")], "127.0.0.1")
@example([(b"x-forwarded-host", b"evil.example/path?x")], "127.0.0.1")
def test_forwarded_headers_give_an_address_and_a_base_or_a_bad_request(
    headers: list[tuple[bytes, bytes]], peer: str
) -> None:
    inputs["forwarded"] += 1
    scope = {"type": "http", "scheme": "http", "headers": headers, "client": (peer, 5000),
             "server": ("127.0.0.1", 8080), "root_path": ""}  # fmt: skip
    address = _PROXY.client_address(scope)
    assert address == peer or re.fullmatch(r"[0-9a-fA-F.:]+", address), address
    try:
        base = _PROXY.of(scope)
    except BadRequest:
        return
    assert re.fullmatch(r"https?://[^/?#\s]+/", base), base


_ranges = st.one_of(
    st.lists(
        st.tuples(st.integers(-5, 5000) | st.none(), st.integers(-5, 5000) | st.none()),
        min_size=1,
        max_size=4,
    ).map(
        lambda spans: (
            "bytes="
            + ",".join(f"{'' if a is None else a}-{'' if b is None else b}" for a, b in spans)
        )
    ),
    _header_text.map(lambda text: text.encode("ascii", "replace").decode("ascii")),
    st.sampled_from(["bytes=0-", "bytes=-1", "bytes=99999999999999999999-", "bytes=1-0"]),
)


@dataclass(frozen=True)
class ServedWheel:
    path: str  # on the live mirror
    data: bytes = field(repr=False)  # kept out of hypothesis's report of a failing case


@pytest.fixture
def served_wheel(upstream: Upstream, mirror: MirrorServer) -> ServedWheel:
    """A promoted wheel's path on the live mirror, and its bytes."""
    wheel = build_wheel("ranged", "1.0", extra_files={"ranged/blob.bin": os.urandom(3000)})
    upstream.add("ranged", UpstreamFile(wheel, NOW - timedelta(days=400)))
    request = urllib.request.Request(
        f"{mirror.url}ranged/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        (entry,) = json.loads(reply.read())["files"]
    path = urllib.parse.urljoin(f"{mirror.url}ranged/", entry["url"])
    with urllib.request.urlopen(path, timeout=10) as reply:
        assert reply.read() == wheel.data
    return ServedWheel(path.removeprefix(mirror.origin), wheel.data)


@FUZZ
@given(_ranges)
def test_any_range_header_gets_the_right_bytes_or_a_refusal(
    mirror: MirrorServer, served_wheel: ServedWheel, value: str
) -> None:
    inputs["range"] += 1
    path, data = served_wheel.path, served_wheel.data
    connection = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Range": value})
        reply = connection.getresponse()
        body = reply.read()
    finally:
        connection.close()
    # 400: a malformed header; 416: no satisfiable range. Never a server error.
    assert reply.status in (200, 206, 400, 416), (reply.status, body[:200])
    if reply.status == 200:
        assert body == data
    elif reply.status == 206 and not reply.getheader("content-type", "").startswith("multipart"):
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", reply.getheader("content-range", ""))
        assert found, reply.getheaders()
        first, last, total = map(int, found.groups())
        assert total == len(data) and body == data[first : last + 1]
    elif reply.status == 206:
        for first, last in re.findall(rb"Content-Range: bytes (\d+)-(\d+)/\d+\r\n\r\n", body):
            assert data[int(first) : int(last) + 1] in body
