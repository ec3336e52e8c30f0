"""A one-off upstream glitch never refuses a file for good (issue 17, item 1).

The real local upstream answers a file's download badly once (gzip-encoded, a 500, more
bytes than listed, a redirect to a host the mirror does not fetch from), then well. The
established path (a client's first download) and the held path (the promoter's
background fetch) both try again after a backoff kept in the ledger, across a restart;
only a complete transfer whose digest differs refuses the file, until the listing moves.
"""

from __future__ import annotations

import hashlib
import http.client
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.models import FileRecord, FileState
from quarantine.vetting.fetch_retry import FIRST_DELAY, MAX_ATTEMPTS, FailureKind, delay_after
from support.clock import FakeClock
from support.dists import Dist, build_wheel
from support.mirror import MirrorServer, running_mirror
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=200)
FRESH = NOW - timedelta(hours=1)
PAST_BACKOFF = FIRST_DELAY + timedelta(seconds=1)


def _get(mirror: MirrorServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _eventually(check: Callable[[], bool]) -> None:
    """The stored mark follows the answer (the bytes are made durable after it starts)."""
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def _file_path(dist: Dist) -> str:
    return f"/files/{dist.sha256}/{quote(dist.filename)}"


def _listed(mirror: MirrorServer, upstream: Upstream, dist: Dist, uploaded: object) -> None:
    upstream.add(dist.project, UpstreamFile(dist, uploaded))  # type: ignore[arg-type]
    status, _ = _get(mirror, f"/simple/{dist.project}/")
    assert status == 200


def _record(mirror: MirrorServer, dist: Dist) -> FileRecord:
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName(dist.project), dist.filename)
    assert record is not None
    return record


def _attempts(mirror: MirrorServer, dist: Dist) -> int:
    assert mirror.services is not None
    found = mirror.services.ledger.fetch_attempt(NormalizedName(dist.project), dist.filename)
    return 0 if found is None else found.attempts


def test_an_established_file_served_gzip_encoded_once_is_served_after_the_backoff(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("glitchy", "1.0")
    _listed(mirror, upstream, dist, OLD)
    upstream.fail_file(dist.filename, "gzip")

    status, body = _get(mirror, _file_path(dist))
    assert status == 502 and b"file_unavailable: encoded_file" in body, body
    record = _record(mirror, dist)
    assert record.state is FileState.PROMOTED and not record.stored  # not refused
    assert _attempts(mirror, dist) == 1

    # Within the backoff the upstream is not asked again, whoever retries.
    status, body = _get(mirror, _file_path(dist))
    assert status == 503 and b"next try after" in body
    assert upstream.file_requests(dist.filename) == 1

    clock.advance(PAST_BACKOFF)
    status, body = _get(mirror, _file_path(dist))
    assert status == 200 and body == dist.data
    _eventually(lambda: _record(mirror, dist).stored and _attempts(mirror, dist) == 0)


def _refused_as_other_bytes(mirror: MirrorServer, dist: Dist) -> None:
    status, body = _get(mirror, _file_path(dist))
    assert status == 502 and b"file_rejected" in body, body
    record = _record(mirror, dist)
    assert record.state is FileState.REJECTED
    assert record.reason.startswith(FailureKind.DIGEST.value + ": size_mismatch"), record.reason


def test_an_established_file_longer_than_listed_is_refused_as_other_bytes(
    mirror: MirrorServer, upstream: Upstream
) -> None:
    dist = build_wheel("long-once", "1.0")
    _listed(mirror, upstream, dist, OLD)
    upstream.fail_file(dist.filename, "long")  # its Content-Length declares the longer body
    _refused_as_other_bytes(mirror, dist)


def test_a_complete_chunked_body_shorter_than_listed_is_refused_as_other_bytes(
    mirror: MirrorServer, upstream: Upstream
) -> None:
    dist = build_wheel("short-chunked", "1.0")
    _listed(mirror, upstream, dist, OLD)
    upstream.fail_file(dist.filename, "short_chunked")
    _refused_as_other_bytes(mirror, dist)


def test_a_body_cut_short_without_any_size_is_a_transfer_failure_not_a_digest_one(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("cut-unsized", "1.0")
    # No size listed: held until its bytes are fetched, which the promoter does.
    upstream.add(dist.project, UpstreamFile(dist, FRESH, with_size=False))
    assert _get(mirror, f"/simple/{dist.project}/")[0] == 200
    upstream.fail_file(dist.filename, "cut_unframed")
    first = mirror.promote()
    assert first.fetch_failures == 1 and first.rejected == 0
    assert _record(mirror, dist).state is FileState.HELD  # not refused
    assert mirror.services is not None
    found = mirror.services.ledger.fetch_attempt(NormalizedName(dist.project), dist.filename)
    assert found is not None and found.kind is FailureKind.TRANSIENT, found
    assert "hash_mismatch" not in found.reason and "cut short" in found.reason, found.reason
    clock.advance(PAST_BACKOFF)
    mirror.promote()
    _eventually(lambda: _record(mirror, dist).stored)


def test_a_held_file_whose_fetch_fails_once_is_fetched_after_the_backoff(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("held-glitch", "1.0")
    _listed(mirror, upstream, dist, FRESH)
    upstream.fail_file(dist.filename, "500")

    first = mirror.promote()
    assert first.fetch_failures == 1 and first.rejected == 0
    record = _record(mirror, dist)
    assert record.state is FileState.HELD and not record.stored
    mirror.promote()  # inside the backoff: not asked again
    assert upstream.file_requests(dist.filename) == 1

    clock.advance(PAST_BACKOFF)
    again = mirror.promote()
    assert again.fetched == 1
    _eventually(lambda: _record(mirror, dist).stored and _attempts(mirror, dist) == 0)


def test_the_backoff_carries_on_across_a_restart(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("restarted", "1.0")
    _listed(mirror, upstream, dist, FRESH)
    upstream.fail_file(dist.filename, "gzip", "500")
    mirror.promote()
    clock.advance(PAST_BACKOFF)
    mirror.promote()
    assert _attempts(mirror, dist) == 2

    mirror.restart()
    assert _attempts(mirror, dist) == 2  # kept in the ledger
    mirror.promote()  # the second delay (40 s) has not passed: not asked
    assert upstream.file_requests(dist.filename) == 2
    clock.advance(delay_after(2))
    mirror.promote()
    assert _record(mirror, dist).stored


def test_failures_that_never_end_refuse_the_file_with_their_kind_then_retry_brings_it_back(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("always-500", "1.0")
    _listed(mirror, upstream, dist, FRESH)
    upstream.fail_file(dist.filename, *["500"] * MAX_ATTEMPTS)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        mirror.promote()
        assert _attempts(mirror, dist) == attempt or attempt == MAX_ATTEMPTS
        clock.advance(delay_after(attempt))
    record = _record(mirror, dist)
    assert record.state is FileState.REJECTED
    assert record.reason.startswith(FailureKind.TRANSIENT.value + ": "), record.reason
    assert upstream.file_requests(dist.filename) == MAX_ATTEMPTS

    assert mirror.services is not None
    from quarantine import admin

    changes = admin.retry(
        mirror.services.ledger,
        NormalizedName(dist.project),
        "1.0",
        None,
        "the upstream is healthy again",
        "cli:alice",
        clock.now(),
    )
    assert [(c.before, c.after) for c in changes] == [("rejected", "held")]
    mirror.promote()
    assert _record(mirror, dist).stored


def test_a_size_cap_refusal_is_tried_again_at_once_when_the_cap_is_raised(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("big-one", "1.0", extra_files={"big_one/blob.bin": bytes(range(256)) * 16})
    mirror.stop()
    small = replace(mirror.settings, max_file_bytes=1024)
    with running_mirror(small, clock) as capped:
        _listed(capped, upstream, dist, OLD)
        status, body = _get(capped, _file_path(dist))
        assert status == 502 and b"too_large" in body, body
        found = _attempts(capped, dist)
        assert found == 1
        assert capped.services is not None
        kind = capped.services.ledger.fetch_attempt(NormalizedName(dist.project), dist.filename)
        assert kind is not None and kind.kind is FailureKind.CONFIG
    mirror.restart()  # the default cap: the refusal under the old one says nothing now
    status, body = _get(mirror, _file_path(dist))
    assert status == 200 and body == dist.data


def test_a_config_refused_file_comes_back_by_itself_under_fixed_settings(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("redirected", "1.0")
    _listed(mirror, upstream, dist, FRESH)
    upstream.fail_file(dist.filename, *["offhost"] * MAX_ATTEMPTS)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        mirror.promote()
        clock.advance(delay_after(attempt))
    record = _record(mirror, dist)
    assert record.state is FileState.REJECTED
    assert record.reason.startswith(FailureKind.CONFIG.value + ": offhost_url"), record.reason

    mirror.stop()
    fixed = replace(mirror.settings, file_hosts=("files.invalid",))
    with running_mirror(fixed, clock) as again:
        again.promote()
        assert _record(again, dist).stored  # held again, fetched, no admin needed


def test_a_true_digest_mismatch_stays_refused_until_the_listing_changes(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    dist = build_wheel("swapped-bytes", "1.0")
    wrong = dist.data[:-8] + b"X" * 8  # the listed size, another digest
    upstream.add(dist.project, UpstreamFile(dist, FRESH, serve_bytes=wrong))
    assert _get(mirror, f"/simple/{dist.project}/")[0] == 200
    assert mirror.promote().rejected == 1
    record = _record(mirror, dist)
    assert record.state is FileState.REJECTED and record.reason.startswith("hash_mismatch: ")
    clock.advance(timedelta(days=2))
    mirror.promote()
    assert upstream.file_requests(dist.filename) == 1  # refused: not fetched again

    assert mirror.services is not None
    catalog = mirror.services.catalog
    upstream.remove(dist.project, dist.filename)
    mirror.call(catalog.look(NormalizedName(dist.project)))
    assert not _record(mirror, dist).listed
    upstream.add(dist.project, UpstreamFile(dist, FRESH))  # re-listed, right bytes now
    mirror.call(catalog.look(NormalizedName(dist.project)))
    assert _record(mirror, dist).state is FileState.HELD
    mirror.promote()
    assert _record(mirror, dist).stored


def test_a_refused_file_whose_listing_changes_its_digest_is_never_fetched_again(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    """A filename is immutable upstream: after a digest mismatch, a listing that now declares
    another digest is tampering, not a reason to try again."""
    dist = build_wheel("digest-moved", "1.0")
    wrong = dist.data[:-8] + b"X" * 8  # the listed size, another digest
    upstream.add(dist.project, UpstreamFile(dist, FRESH, serve_bytes=wrong))
    assert _get(mirror, f"/simple/{dist.project}/")[0] == 200
    assert mirror.promote().rejected == 1
    assert _record(mirror, dist).reason.startswith("hash_mismatch: ")

    moved = hashlib.sha256(wrong).hexdigest()
    upstream.remove(dist.project, dist.filename)
    upstream.add(dist.project, UpstreamFile(dist, FRESH, serve_bytes=wrong, declared_sha256=moved))
    assert mirror.services is not None
    for _ in range(3):  # every later look leaves it refused
        mirror.call(mirror.services.catalog.look(NormalizedName(dist.project)))
        clock.advance(timedelta(days=1))
        mirror.promote()
    record = _record(mirror, dist)
    assert (record.state, record.reason) == (FileState.REJECTED, "digest_changed")
    assert record.anomaly is not None and moved in record.anomaly
    assert record.sha256 == dist.sha256  # the digest first listed is kept
    assert upstream.file_requests(dist.filename) == 1
