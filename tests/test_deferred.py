"""Superseded releases are vetted when first downloaded, through the real mirror and pip.

At a project's first sight, the files of releases older than its newest cooled one are
listed but not fetched nor vetted; a client's download fetches and vets one at demand
rank and waits for the verdict. The promotion rounds run in a thread here, as the
background worker would run them, while pip waits on the server.
"""

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.decide import DEFERRED, decide, lists_deferred
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.models import Deferral, FileRecord, FileState, ProjectStatus, Snapshot
from quarantine.models import UpstreamFile as ListedFile
from quarantine.observe import observe
from quarantine.policy import AHEAD, Policy
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import ledger_env, open_ledger
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO, free_port, listed_versions, wait_until_up
from support.upstream import Upstream, UpstreamFile

PROJECT = "superseded"
OLD = "superseded-1.0-py3-none-any.whl"
NEWEST_COOLED = "superseded-2.0-py3-none-any.whl"
COOLING = "superseded-3.0-py3-none-any.whl"
PTH_LINE = 'import os; os.environ["LAZARETTO_STAND_IN"] = "1"\n'


def _releases(upstream: Upstream, old_extra: dict[str, bytes] | None = None) -> None:
    """1.0 cooled and superseded, 2.0 the newest cooled, 3.0 still cooling."""
    old = build_wheel(PROJECT, "1.0", extra_files=old_extra)
    upstream.add(PROJECT, UpstreamFile(old, NOW - timedelta(days=10)))
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "2.0"), NOW - timedelta(days=5)))
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "3.0"), NOW - timedelta(hours=1)))


def _first_look(mirror: MirrorServer) -> None:
    urllib.request.urlopen(f"{mirror.url}{PROJECT}/").close()
    for _ in range(2):
        mirror.promote()


def _fetched(upstream: Upstream) -> set[str]:
    """The files (not their metadata) the mirror fetched from the upstream."""
    paths = upstream.requests_for(f"/files/{PROJECT}/")
    return {path.rsplit("/", 1)[1] for path in paths if not path.endswith(".metadata")}


def _record(mirror: MirrorServer, filename: str) -> FileRecord:
    assert mirror.services is not None
    found = mirror.services.ledger.file(NormalizedName(PROJECT), filename)
    assert found is not None
    return found


def _file_url(mirror: MirrorServer, filename: str) -> str:
    return f"{mirror.origin}/files/{_record(mirror, filename).sha256}/{filename}"


def _listed_files(mirror: MirrorServer) -> set[str]:
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(f"{mirror.url}{PROJECT}/", headers=accept)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return {entry["filename"] for entry in json.loads(reply.read())["files"]}


@contextlib.contextmanager
def _promoting(mirror: MirrorServer) -> Iterator[None]:
    """Promotion rounds one after another, as the background worker runs them when woken."""
    stop = threading.Event()

    def rounds() -> None:
        while not stop.is_set():
            mirror.promote()
            stop.wait(0.1)

    worker = threading.Thread(target=rounds, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(30)


def test_a_superseded_release_is_listed_and_vetted_when_first_downloaded(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    _releases(upstream)
    _first_look(mirror)
    assert _fetched(upstream) == {NEWEST_COOLED, COOLING}  # 1.0 is not fetched
    old = _record(mirror, OLD)
    assert (old.state, old.reason, old.deferral) == (
        FileState.HELD,
        DEFERRED,
        Deferral.UNTIL_DOWNLOAD,
    )
    assert _record(mirror, NEWEST_COOLED).state is FileState.PROMOTED
    assert listed_versions(mirror.origin, PROJECT) == ["1.0", "2.0"]

    with _promoting(mirror):
        outcome = pip_install(mirror.url, tmp_path / "t", f"{PROJECT}==1.0")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {PROJECT: "1.0"}
    old = _record(mirror, OLD)
    assert (old.state, old.deferral) == (FileState.PROMOTED, Deferral.DOWNLOADED)
    assert mirror.services is not None
    checks = mirror.services.ledger.evidence(NormalizedName(PROJECT), OLD)[OLD]
    assert {item.check for item in checks} >= {"provenance", "publisher", "content"}
    events = mirror.services.ledger.events(NormalizedName(PROJECT))
    ended = [
        event for event in events if event.filename == OLD and event.actor == "client download"
    ]
    assert len(ended) == 1 and "vetting it now" in ended[0].reason


def test_a_deferred_file_held_for_review_is_refused_and_no_longer_listed(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    # An established 0.9 is the baseline the new startup .pth hooks are judged against.
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "0.9"), NOW - timedelta(days=400)))
    hook = {"superseded_init.pth": PTH_LINE.encode()}
    also = build_wheel(PROJECT, "1.1", extra_files=hook)
    upstream.add(PROJECT, UpstreamFile(also, NOW - timedelta(days=9)))
    _releases(upstream, old_extra=hook)
    _first_look(mirror)
    assert _record(mirror, OLD).deferral is Deferral.UNTIL_DOWNLOAD
    assert {OLD, also.filename} <= _listed_files(mirror)

    with _promoting(mirror):
        try:
            urllib.request.urlopen(_file_url(mirror, OLD), timeout=60)
            raise AssertionError("a file held for review was served")
        except urllib.error.HTTPError as error:
            body = error.read().decode()
            assert error.code == 403
        outcome = pip_install(mirror.url, tmp_path / "t", f"{PROJECT}==1.1")
    old = _record(mirror, OLD)
    assert old.state is FileState.REVIEW
    assert "pth-executable-new" in old.reason, old.reason
    assert body == f"refused: review: {old.reason}\n", body
    assert not outcome.ok
    assert "403 Client Error: Forbidden" in outcome.output, outcome.output
    assert _record(mirror, also.filename).state is FileState.REVIEW
    assert not {OLD, also.filename} & _listed_files(mirror)
    assert listed_versions(mirror.origin, PROJECT) == ["0.9", "2.0"]
    assert "LAZARETTO_STAND_IN" not in os.environ


def test_a_download_waits_for_the_verdict_up_to_a_bound_then_503(
    upstream: Upstream, tmp_path: Path, clock: FakeClock
) -> None:
    settings = settings_for(tmp_path / "data", upstream.url, deferred_vetting_wait_seconds=1.0)
    _releases(upstream)
    with running_mirror(settings, clock) as mirror:
        _first_look(mirror)
        url = _file_url(mirror, OLD)
        # No promotion round runs now: the vetting side does not answer in time.
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError("served before it was vetted")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert error.headers["Retry-After"]
            assert "vetting" in error.read().decode()
        assert OLD in _fetched(upstream)  # fetched on the download, not by the background
        old = _record(mirror, OLD)
        assert (old.state, old.deferral, old.stored) == (
            FileState.HELD,
            Deferral.DOWNLOADED,
            True,
        )
        assert OLD in _listed_files(mirror)  # listed while it is vetted, so a retry finds it
        mirror.promote()  # the vetting side catches up; the retry is served
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
        assert _record(mirror, OLD).state is FileState.PROMOTED


def test_concurrent_downloads_are_served_after_one_fetch_and_one_vetting(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    _releases(upstream)
    _first_look(mirror)
    url = _file_url(mirror, OLD)
    statuses: list[int] = []

    def download() -> None:
        with urllib.request.urlopen(url, timeout=60) as reply:
            reply.read()
            statuses.append(reply.status)

    with _promoting(mirror):
        clients = [threading.Thread(target=download) for _ in range(4)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
    assert statuses == [200] * 4
    fetches = upstream.requests_for(f"/files/{PROJECT}/{OLD}")
    assert fetches.count(f"/files/{PROJECT}/{OLD}") == 1
    assert mirror.services is not None
    events = mirror.services.ledger.events(NormalizedName(PROJECT))
    assert [e.to_state for e in events if e.filename == OLD] == ["held", "held", "promoted"]


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_a_deferred_file_s_failed_fetch_is_counted_and_backed_off(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    _releases(upstream)
    _first_look(mirror)
    url = _file_url(mirror, OLD)
    upstream.fail_file(OLD, "gzip")
    status, body = _status(url)
    assert status == 504 and "encoded_file" in body, body
    for _ in range(3):  # a client retrying: the backoff answers, no download
        status, body = _status(url)
        assert status == 503 and "next try after" in body, body
    assert upstream.file_requests(OLD) == 1
    assert mirror.services is not None
    attempts = mirror.services.ledger.fetch_attempt(NormalizedName(PROJECT), OLD)
    assert attempts is not None and attempts.attempts == 1
    assert _record(mirror, OLD).deferral is Deferral.UNTIL_DOWNLOAD  # still to be vetted


def test_a_deferred_file_the_policy_now_leaves_out_is_never_fetched(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    _releases(upstream)
    _first_look(mirror)
    assert mirror.services is not None
    deferred = mirror.services.deferred
    old = _record(mirror, OLD)
    assert deferred.applies(old)
    windows_only = replace(old, filename="superseded-1.0-cp27-cp27m-win32.whl")
    assert mirror.services.policy.current().exclusion(windows_only.filename) is not None
    assert not deferred.applies(windows_only)


def test_ahead_fetches_and_vets_superseded_releases_at_once(
    upstream: Upstream, tmp_path: Path, clock: FakeClock
) -> None:
    base = settings_for(tmp_path / "data", upstream.url)
    settings = replace(base, policy=replace(base.policy, superseded_releases=AHEAD))
    _releases(upstream)
    with running_mirror(settings, clock) as mirror:
        _first_look(mirror)
        assert _fetched(upstream) == {OLD, NEWEST_COOLED, COOLING}
        old = _record(mirror, OLD)
        assert (old.state, old.deferral) == (FileState.PROMOTED, None)


def test_files_first_seen_on_a_later_look_are_not_deferred(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "2.0"), NOW - timedelta(days=5)))
    _first_look(mirror)
    # Releases older than 2.0, first listed now (uploaded late, or backports).
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "1.0"), NOW - timedelta(days=4)))
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "1.5"), NOW - timedelta(days=4)))
    clock.advance(timedelta(seconds=61))  # past index_ttl: the next request looks again
    _first_look(mirror)
    assert {OLD, "superseded-1.5-py3-none-any.whl"} <= _fetched(upstream)
    assert _record(mirror, OLD).deferral is None


def test_ahead_taken_from_a_changed_config_file_vets_deferred_files_without_a_restart(
    upstream: Upstream, tmp_path: Path, clock: FakeClock
) -> None:
    config_file = tmp_path / "lazaretto.toml"
    config_file.write_text('superseded_releases = "on-download"\n', encoding="utf-8")
    settings = settings_for(tmp_path / "data", upstream.url, config_file=config_file)
    _releases(upstream)
    with running_mirror(settings, clock) as mirror:
        _first_look(mirror)
        assert OLD not in _fetched(upstream)
        assert mirror.services is not None
        policy = mirror.services.policy
        config_file.write_text('superseded_releases = "ahead"\n', encoding="utf-8")
        deadline = time.monotonic() + 10
        while policy.base.superseded_releases != AHEAD:
            assert time.monotonic() < deadline, "the running mirror did not take the change"
            time.sleep(0.1)
        mirror.sync()
        assert OLD not in _listed_files(mirror)  # ahead: listed once vetted, like the rest
        for _ in range(2):
            mirror.promote()
        assert OLD in _fetched(upstream)
        assert _record(mirror, OLD).state is FileState.PROMOTED
        assert OLD in _listed_files(mirror)


# -- the rule at first sight, and the ledger's field ------------------------------------------


def _entry(filename: str, age: timedelta, size: int | None = 10) -> ListedFile:
    return ListedFile(
        filename=filename,
        url=f"http://127.0.0.1:9/files/{filename}",
        sha256="a" * 64,
        size=size,
        upload_time=NOW - age,
        requires_python=None,
        yanked=None,
        core_metadata_sha256=None,
        provenance_url=None,
    )


def _deferred(
    *entries: ListedFile, policy: Policy | None = None, max_file_bytes: int | None = None
) -> set[str]:
    snapshot = Snapshot(NormalizedName(PROJECT), entries, ProjectStatus.ACTIVE, None, 1)
    seen = observe(None, {}, snapshot, NOW, policy or Policy(), max_file_bytes=max_file_bytes)
    return {record.filename for record in seen.new if record.deferral is not None}


def _wheel(version: str) -> str:
    return f"superseded-{version}-py3-none-any.whl"


def test_only_cooled_releases_older_than_the_newest_cooled_one_are_deferred() -> None:
    found = _deferred(
        _entry(_wheel("0.1"), timedelta(days=400)),  # established: listed as it always was
        _entry(_wheel("1.0"), timedelta(days=10)),
        _entry("superseded-1.0.tar.gz", timedelta(days=10)),
        _entry(_wheel("1.1"), timedelta(days=9), size=None),  # no size: no listing before bytes
        _entry(_wheel("2.0"), timedelta(days=5)),
        _entry(_wheel("3.0"), timedelta(hours=1)),  # still cooling
        _entry(_wheel("2.5"), timedelta(hours=2)),  # still cooling, though older than 3.0
    )
    assert found == {_wheel("1.0"), "superseded-1.0.tar.gz"}


def test_a_file_over_max_file_bytes_is_not_deferred() -> None:
    found = _deferred(
        _entry(_wheel("1.0"), timedelta(days=10), size=2048),  # never fetched: not listed
        _entry(_wheel("1.1"), timedelta(days=9), size=1024),
        _entry(_wheel("2.0"), timedelta(days=5)),
        max_file_bytes=1024,
    )
    assert found == {_wheel("1.1")}


def test_the_newest_cooled_final_release_stays_eager_beside_a_newer_pre_release() -> None:
    found = _deferred(
        _entry(_wheel("1.0"), timedelta(days=10)),
        _entry(_wheel("2.0"), timedelta(days=6)),
        _entry(_wheel("3.0rc1"), timedelta(days=5)),
    )
    assert found == {_wheel("1.0")}


def test_nothing_is_deferred_ahead_nor_on_a_later_look() -> None:
    entries = (_entry(_wheel("1.0"), timedelta(days=10)), _entry(_wheel("2.0"), timedelta(days=5)))
    assert _deferred(*entries) == {_wheel("1.0")}
    assert _deferred(*entries, policy=Policy(superseded_releases=AHEAD)) == set()
    newest_only = Snapshot(NormalizedName(PROJECT), entries[1:], ProjectStatus.ACTIVE, None, 1)
    first = observe(None, {}, newest_only, NOW, Policy())
    # Two cooled releases first listed on the second look (a tolerance keeps them from
    # counting as backdated, which would restart their hold): neither is deferred.
    later_entries = (*entries, _entry(_wheel("1.5"), timedelta(days=4)))
    later = observe(
        first.project,
        {record.filename: record for record in first.new},
        Snapshot(NormalizedName(PROJECT), later_entries, ProjectStatus.ACTIVE, None, 2),
        NOW,
        Policy(backdate_tolerance=timedelta(days=30)),
    )
    assert [(record.filename, record.deferral) for record in later.new] == [
        (_wheel("1.0"), None),
        (_wheel("1.5"), None),
    ]


def test_a_deferred_file_waits_for_a_download_and_ahead_fetches_it() -> None:
    entries = (_entry(_wheel("1.0"), timedelta(days=10)), _entry(_wheel("2.0"), timedelta(days=5)))
    snapshot = Snapshot(NormalizedName(PROJECT), entries, ProjectStatus.ACTIVE, None, 1)
    seen = observe(None, {}, snapshot, NOW, Policy())
    old = next(record for record in seen.new if record.deferral is not None)
    assert (old.state, old.reason) == (FileState.HELD, DEFERRED)
    ahead = decide(old, seen.project, Policy(superseded_releases=AHEAD), NOW)
    assert ahead.needs_bytes and ahead.reason != DEFERRED
    asked = decide(replace(old, deferral=Deferral.DOWNLOADED), seen.project, Policy(), NOW)
    assert asked.needs_bytes


@pytest.mark.sqlite_only("a SQLite ledger file from before the deferral column")
def test_an_existing_ledger_gains_the_field_and_its_files_are_not_deferred(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    entries = (_entry(_wheel("1.0"), timedelta(days=10)), _entry(_wheel("2.0"), timedelta(days=5)))
    snapshot = Snapshot(NormalizedName(PROJECT), entries, ProjectStatus.ACTIVE, None, 1)
    ledger = SqliteLedger(path)
    ledger.apply(observe(None, {}, snapshot, NOW, Policy(superseded_releases=AHEAD)), None, "t")
    ledger.close()
    with sqlite3.connect(path) as db:  # as a ledger from before the field has it
        db.execute("ALTER TABLE files DROP COLUMN deferral")
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")  # step 4 adds it
    ledger = SqliteLedger(path)
    try:
        assert [r.deferral for r in ledger.files(NormalizedName(PROJECT))] == [None, None]
        old = _entry("other-1.0-py3-none-any.whl", timedelta(days=10))
        new = _entry("other-2.0-py3-none-any.whl", timedelta(days=5))
        other = Snapshot(NormalizedName("other"), (old, new), ProjectStatus.ACTIVE, None, 1)
        ledger.apply(observe(None, {}, other, NOW, Policy()), None, "t")
        record = ledger.file(NormalizedName("other"), old.filename)
        assert record is not None and record.deferral is Deferral.UNTIL_DOWNLOAD
        after = ledger.end_deferral(record, "asked", "client download", NOW)
        assert after.deferral is Deferral.DOWNLOADED
        assert ledger.end_deferral(after, "asked", "client download", NOW) == after  # once
    finally:
        ledger.close()


def test_serve_with_a_vetting_child_vets_a_deferred_file_on_pip_s_download(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The real ``lazaretto serve``: the download's demand reaches the child on its pipe,
    and the server serves once the child's verdict is in the ledger."""
    now = datetime.now(UTC)
    for version, age in (("1.0", timedelta(days=10)), ("2.0", timedelta(days=5))):
        upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, version), now - age))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    env |= {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_PROMOTE_INTERVAL": "600s",  # only the demand wakes a round in time
        **ledger_env(tmp_path / "data"),
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [LAZARETTO, "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(origin, server)
        # 1.0 is listed once 2.0, cooled when first seen, is vetted: a cold resolver then
        # takes 2.0 rather than wait for 1.0's vetting.
        assert listed_versions(origin, PROJECT) == []
        deadline = time.monotonic() + 60
        while listed_versions(origin, PROJECT) != ["1.0", "2.0"]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        outcome = pip_install(f"{origin}/simple/", tmp_path / "t", f"{PROJECT}==1.0")
    finally:
        server.terminate()
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert outcome.ok, outcome.output + log.read_text()
    assert installed(tmp_path / "t") == {PROJECT: "1.0"}
    ledger = open_ledger(tmp_path / "data")
    try:
        old = ledger.file(NormalizedName(PROJECT), OLD)
        assert old is not None
        assert (old.state, old.deferral) == (FileState.PROMOTED, Deferral.DOWNLOADED)
    finally:
        ledger.close()


def test_deferred_files_wait_off_the_page_until_the_newest_cooled_release_is_vetted(
    upstream: Upstream, mirror: MirrorServer, tmp_path: Path
) -> None:
    """A cold resolver must find the newest cooled release, not a superseded one it would
    have to wait for: until 2.0 (cooled when first seen) is vetted, 1.0 is not listed."""
    _releases(upstream)
    assert _listed_files(mirror) == set()  # the first look, and no promotion round yet
    assert mirror.services is not None
    ledger, deadline = mirror.services.ledger, time.monotonic() + 10
    while ledger.file(NormalizedName(PROJECT), OLD) is None:  # the look is written after
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _record(mirror, OLD).deferral is Deferral.UNTIL_DOWNLOAD
    assert _listed_files(mirror) == set()
    mirror.promote()
    mirror.promote()
    assert _record(mirror, NEWEST_COOLED).state is FileState.PROMOTED
    assert _listed_files(mirror) == {OLD, NEWEST_COOLED}
    outcome = pip_install(mirror.url, tmp_path / "t", PROJECT)  # unpinned: the newest
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {PROJECT: "2.0"}
    assert _record(mirror, OLD).deferral is Deferral.UNTIL_DOWNLOAD  # never asked for


def test_a_newest_release_held_for_review_lets_the_superseded_ones_be_listed(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    # An established 0.9 is the baseline a new startup .pth hook in 2.0 is judged against.
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "0.9"), NOW - timedelta(days=400)))
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "1.0"), NOW - timedelta(days=10)))
    hooked = build_wheel(PROJECT, "2.0", extra_files={"superseded_init.pth": PTH_LINE.encode()})
    upstream.add(PROJECT, UpstreamFile(hooked, NOW - timedelta(days=5)))
    _first_look(mirror)
    assert _record(mirror, NEWEST_COOLED).state is FileState.REVIEW
    assert _listed_files(mirror) == {"superseded-0.9-py3-none-any.whl", OLD}


def _held_record(filename: str, *, cooled_when_seen: bool, **changes: object) -> FileRecord:
    seen = NOW - timedelta(days=1)
    start = seen - timedelta(days=5) if cooled_when_seen else seen - timedelta(hours=1)
    record = FileRecord(
        project=NormalizedName(PROJECT),
        filename=filename,
        version=filename.split("-")[1],
        sha256="0" * 64,
        size=10,
        upload_time=start,
        first_seen=seen,
        clock_start=start,
        established=False,
        state=FileState.HELD,
        reason="waiting for vetting",
        url=f"https://files.example/{filename}",
        requires_python=None,
        yanked=None,
        core_metadata_sha256=None,
        provenance_url=None,
        provenance_sha256=None,
        stored=True,
        listed=True,
        anomaly=None,
        state_version=1,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def test_lists_deferred_asks_only_about_releases_cooled_when_first_seen() -> None:
    deferred = _held_record(OLD, cooled_when_seen=True, deferral=Deferral.UNTIL_DOWNLOAD)
    newest = _held_record(NEWEST_COOLED, cooled_when_seen=True)
    cooling_then = _held_record(COOLING, cooled_when_seen=False)
    policy = Policy()
    assert not lists_deferred([deferred, newest, cooling_then], policy)
    promoted = replace(newest, state=FileState.PROMOTED)
    assert lists_deferred([deferred, promoted, cooling_then], policy)
    review = replace(newest, state=FileState.REVIEW)
    assert lists_deferred([deferred, review], policy)
    assert not lists_deferred([deferred, promoted], Policy(superseded_releases=AHEAD))
