"""An upstream that lies about files or sends broken pages: nothing unverified is ever served.

Each case makes the local upstream misbehave for one project, asks the live mirror for its
page, its files and their metadata (and runs promotion rounds for fresh files), and counts
the bytes of every answer that do not hash to the digest the honest file has: zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from test_http import AGE_OLD, get, local_path

from support.clock import FakeClock
from support.counters import report
from support.dists import Dist, build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
AGE_COOLED = timedelta(days=4)  # fresh at first sight, past cooling after the clock moves


def _lie(**change: object) -> Callable[[UpstreamFile], UpstreamFile]:
    return lambda honest: replace(honest, **change)  # type: ignore[arg-type]


def _served_as(make: Callable[[bytes], bytes]) -> Callable[[UpstreamFile], UpstreamFile]:
    return lambda honest: replace(honest, serve_bytes=make(honest.dist.data))


# name -> how the upstream's file differs from the honest one
FILE_LIES: dict[str, Callable[[UpstreamFile], UpstreamFile]] = {
    "other bytes": _served_as(lambda data: data[::-1]),
    "truncated": _served_as(lambda data: data[:-10]),
    "one byte more": _served_as(lambda data: data + b"\x00"),
    "empty body": _served_as(lambda data: b""),
    "one bit flipped": _served_as(lambda data: bytes([data[0] ^ 1]) + data[1:]),
    "listed digest of other bytes": _lie(declared_sha256=hashlib.sha256(b"x").hexdigest()),
    "listed digest in capitals": lambda honest: replace(
        honest, declared_sha256=honest.dist.sha256.upper()
    ),
    "listed digest too short": lambda honest: replace(
        honest, declared_sha256=honest.dist.sha256[:63]
    ),
    "listed digest empty": _lie(declared_sha256=""),
    "metadata of other bytes": _lie(serve_metadata=b"Metadata-Version: 2.1\nName: evil\n"),
    "no upload time": _lie(upload_time=None),
}
PAGE_FAULTS = ("html", "malformed", "500")
CASES = [*(("file", lie) for lie in FILE_LIES), *(("page", fault) for fault in PAGE_FAULTS)]
_unverified: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield None
    report("hostile-upstream", cases=len(_unverified), unverified_bytes=sum(_unverified.values()))


@pytest.mark.parametrize("age", [AGE_OLD, AGE_COOLED], ids=["established", "fresh"])
@pytest.mark.parametrize(("kind", "case"), CASES)
def test_a_lying_upstream_gets_no_unverified_byte_served(
    mirror: MirrorServer,
    upstream: Upstream,
    clock: FakeClock,
    kind: str,
    case: str,
    age: timedelta,
) -> None:
    project = "hostile"
    honest = UpstreamFile(build_wheel(project, "1.0"), clock.now() - age)
    if kind == "file":
        upstream.add(project, FILE_LIES[case](honest))
    else:
        upstream.add(project, honest)
        upstream.set_fault(project, case)
    unverified = _unverified_bytes(mirror, project, honest.dist)
    clock.advance(timedelta(days=5))  # a fresh file is cooled now: vetted, maybe promoted
    mirror.promote()
    mirror.promote()
    unverified += _unverified_bytes(mirror, project, honest.dist)
    _unverified[f"{kind}:{case}:{age.days}"] = unverified
    assert unverified == 0


def _unverified_bytes(mirror: MirrorServer, project: str, dist: Dist) -> int:
    """Bytes answered for the project's file or metadata that are not the honest ones."""
    reply = get(mirror, f"/simple/{project}/", JSON)
    assert reply.status < 500 or reply.status in (502, 503, 504), reply.status
    paths = [
        f"/files/{dist.sha256}/{dist.filename}",
        f"/files/{dist.sha256}/{dist.filename}.metadata",
    ]
    if reply.status == 200:
        for entry in reply.json()["files"]:
            paths.append(local_path(mirror, project, entry["url"]))
    wrong = 0
    for path in paths:
        answer = get(mirror, path)
        if answer.status != 200:
            continue
        honest = dist.metadata_sha256 if path.endswith(".metadata") else dist.sha256
        if hashlib.sha256(answer.body).hexdigest() != honest:
            wrong += len(answer.body) or 1
    return wrong
