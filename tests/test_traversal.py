"""Path traversal, generated: every route prefix x every dot-dot spelling x depth x target.

Against a live mirror holding a promoted file (so a slip would have bytes to leak), each
request target is sent byte for byte; each must be a 404 with a one-line body that holds
none of the stored bytes and nothing of the ledger, and none may reach the upstream.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from test_http import AGE_OLD, file_path, get, listed, publish, raw_get

from mirror.ledger_backend import is_postgres
from support.clock import FakeClock
from support.counters import report
from support.dists import build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream

# How a client may spell "one directory up" so that some layer decodes it to "../".
DOT_DOTS = (
    b"../", b"..%2f", b"..%2F", b"%2e%2e/", b"%2e%2e%2f", b"%2E%2E%2F", b".%2e/", b"%2e./",
    b"%252e%252e%252f", b"..%252f", b"..\\", b"..%5c", b"%2e%2e%5c", b"%c0%ae%c0%ae/",
    b"..%c0%af", b"..%e0%80%af", b"....//", b"..;/", b"..%00/", b"%u002e%u002e/",
)  # fmt: skip
TARGETS = (b"etc/passwd", b"ledger.sqlite3", b"blobs/tmp", b"data/ledger.sqlite3")
DEPTHS = (1, 3, 6)


def _vectors(sha256: bytes, filename: bytes) -> list[bytes]:
    prefixes = (
        b"/files/" + sha256 + b"/",
        b"/files/",
        b"/files/" + sha256 + b"/" + filename + b"/",
        b"/simple/",
        b"/simple/tricky/",
        b"/",
    )
    return [
        prefix + dot_dot * depth + target
        for prefix, dot_dot, depth, target in itertools.product(prefixes, DOT_DOTS, DEPTHS, TARGETS)
    ]


def test_generated_traversal_vectors_are_all_404_and_leak_nothing(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = publish(upstream, build_wheel("tricky", "1.0"), clock.now() - AGE_OLD)
    assert listed(mirror, "tricky") == {dist.filename}
    assert get(mirror, file_path(dist)).body == dist.data  # stored: a slip would show
    assert raw_get(mirror, file_path(dist).encode()).status == 200  # the probe sees a 200
    secrets = [dist.data[:64]]
    if not is_postgres(mirror.settings):  # a PostgreSQL ledger has no file to leak
        secrets.append((Path(mirror.settings.data_dir) / "ledger.sqlite3").read_bytes()[:16])
    upstream.clear_journal()

    vectors = _vectors(dist.sha256.encode(), dist.filename.encode())
    failures: list[tuple[bytes, int | str]] = []
    for target in vectors:
        reply = raw_get(mirror, target)
        if reply.status != 404:
            failures.append((target, reply.status))
        elif any(secret in reply.body for secret in secrets):
            failures.append((target, "leaked bytes"))
        elif reply.body.count(b"\n") != 1:
            failures.append((target, "not one line"))
    report("traversal", vectors=len(vectors), non_404=len(failures))
    assert len(vectors) >= 1000
    assert failures == []
    assert upstream.journal == []
