"""What ``explain`` and ``audit`` read and how they order and cut it, below the CLI and API.

The end-to-end behaviour (a real mirror, the real command, the admin API) is tested in
test_admin_cli.py, test_cli.py and test_admin_api.py; here are the rules themselves.
"""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName
from packaging.version import Version
from test_ledger import DEMO, T0, look, snapshot, upstream_file
from test_osv import record as osv_record
from test_osv import write as write_osv

from mirror.cli.explain import parse_spec
from quarantine.admin import AdminError
from quarantine.explain import FeedStatus, explain
from quarantine.feeds.in_force import Feeds
from quarantine.file_release import newest_first, release_of, version_in_name
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.paging import MAX_LIMIT, InvalidPaging, parse_limit, parse_since
from quarantine.policy import Policy
from support.ledger_backend import open_ledger

OLD = T0 - timedelta(days=400)
NO_FEEDS = FeedStatus(configured=0)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path / "data")
    yield opened
    opened.close()


def _files(ledger: Ledger, *names: str) -> None:
    entries = [
        upstream_file(name, OLD, f"{number:064x}") for number, name in enumerate(names, start=1)
    ]
    look(ledger, snapshot(*entries), T0)


# -- which release a file belongs to, and the order ------------------------------------------
@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("demo-1.0-py2.7.egg", "1.0"),
        ("demo-1.0.win32.exe", "1.0"),
        ("demo-1.0.win32-py2.7.exe", "1.0"),
        ("demo-1.0.tar.bz2", "1.0"),
        ("demo-1.0.linux-x86_64.tar.gz", "1.0"),
        ("demo-1.0.post1.tar.xz", "1.0.post1"),
        ("demo-2.0rc1-1.noarch.rpm", "2.0rc1"),  # an rpm's release, not a post release
        ("demo-1.2.0-1.tar.zst", "1.2.0.post1"),  # as pip reads an sdist's name
        ("demo-1.0-1-py3-none-any.whl", "1.0"),  # a wheel's build tag
        ("Demo_Tool-3.1.msi", None),  # another project's name: not demo's release
        ("demo-.egg", None),
        ("demo.egg", None),
    ],
)
def test_the_release_a_rejected_name_belongs_to(filename: str, version: str | None) -> None:
    found = version_in_name(DEMO, filename)
    assert found == (Version(version) if version else None)


def test_the_name_of_a_project_with_dashes_and_underscores() -> None:
    assert version_in_name(NormalizedName("demo-tool"), "Demo_Tool-3.1.msi") == Version("3.1")
    assert version_in_name(NormalizedName("demo-tool"), "demo-tool-3.1-py2.7.egg") == Version("3.1")


def _record(filename: str, version: str) -> FileRecord:
    state = FileState.REJECTED if not version else FileState.PROMOTED
    return FileRecord(
        DEMO, filename, version, "a" * 64, None, OLD, T0, OLD, True, state, "r", "u",
        None, None, None, None, None, False, True, None, 0,
    )  # fmt: skip


def test_newest_release_first_as_versions_and_unreadable_names_last() -> None:
    records = [
        _record("demo-1.9-py3-none-any.whl", "1.9"),
        _record("demo-weird.exe", ""),
        _record("demo-10.0.tar.gz", "10.0"),
        _record("demo-1.10-py3-none-any.whl", "1.10"),
        _record("demo-10.0-py2.7.egg", ""),
        _record("demo-2.0rc1.tar.gz", "2.0rc1"),
        _record("demo-9.0.tar.gz", "9.0"),
        _record("demo-10.0-py3-none-any.whl", "10.0"),
        _record("demo-also-weird.exe", ""),
    ]
    expected = [
        "demo-10.0-py2.7.egg",
        "demo-10.0-py3-none-any.whl",
        "demo-10.0.tar.gz",
        "demo-9.0.tar.gz",
        "demo-2.0rc1.tar.gz",
        "demo-1.10-py3-none-any.whl",
        "demo-1.9-py3-none-any.whl",
        "demo-also-weird.exe",
        "demo-weird.exe",
    ]
    assert [r.filename for r in newest_first(records)] == expected
    assert [r.filename for r in newest_first(reversed(records))] == expected
    assert release_of(records[4]) == Version("10.0")


# -- limit and since ------------------------------------------------------------------------
def test_since_is_a_duration_before_now_or_a_time() -> None:
    assert parse_since("2h", T0) == T0 - timedelta(hours=2)
    assert parse_since("7d", T0) == T0 - timedelta(days=7)
    assert parse_since("1d12h", T0) == T0 - timedelta(hours=36)
    assert parse_since("P3D", T0) == T0 - timedelta(days=3)
    assert parse_since("2026-11-23T12:00:00Z", T0) == T0.replace(microsecond=0)
    assert parse_since("2026-11-23T13:00:00+01:00", T0) == T0.replace(microsecond=0)
    for wrong in ("yesterday", "72", "", "-2h", "2026-13-01", "99999999999d"):
        with pytest.raises(InvalidPaging, match="duration before now"):
            parse_since(wrong, T0)


def test_limit_is_a_whole_number_within_bounds() -> None:
    assert parse_limit("1") == 1 and parse_limit(str(MAX_LIMIT)) == MAX_LIMIT
    for wrong in ("0", "-1", "2.5", "all", "", str(MAX_LIMIT + 1)):
        with pytest.raises(InvalidPaging, match="whole number"):
            parse_limit(wrong)


def test_recent_events_are_the_latest_ones_with_a_count_of_the_rest(ledger: Ledger) -> None:
    _files(ledger, "demo-1.0.tar.gz", "demo-1.1.tar.gz", "demo-1.2.tar.gz")
    everything = list(ledger.events(DEMO))
    events, total = ledger.recent_events(DEMO, None, 2)
    assert total == len(everything) and events == everything[-2:]
    assert ledger.recent_events(None, T0 + timedelta(seconds=1), 5) == ([], 0)
    assert ledger.recent_events(NormalizedName("other"), None, 5) == ([], 0)


# -- explain ---------------------------------------------------------------------------------
def test_a_release_includes_its_rejected_files_with_the_reason(ledger: Ledger) -> None:
    _files(ledger, "demo-1.0.tar.gz", "demo-1.0-py2.7.egg", "demo-1.1.tar.gz", "demo-1.0.exe")
    found = explain(ledger, Policy(), DEMO, Version("1.0.0"), NO_FEEDS)
    assert found is not None
    by_name = {file["filename"]: file for file in found.files}
    assert set(by_name) == {"demo-1.0-py2.7.egg", "demo-1.0.exe", "demo-1.0.tar.gz"}
    rejected = by_name["demo-1.0-py2.7.egg"]
    assert rejected["state"] == "rejected" and rejected["reason"]
    assert rejected["version"] == "1.0"
    assert explain(ledger, Policy(), DEMO, Version("3.0"), NO_FEEDS) is None
    assert explain(ledger, Policy(), NormalizedName("never"), None, NO_FEEDS) is None


def test_a_page_of_files_and_how_many_were_left_out(ledger: Ledger) -> None:
    _files(ledger, *(f"demo-1.{minor}.tar.gz" for minor in range(12)))
    found = explain(ledger, Policy(), DEMO, None, NO_FEEDS, limit=3)
    assert found is not None and found.left_out == 9
    assert [f["version"] for f in found.files] == ["1.11", "1.10", "1.9"]
    later = T0 + timedelta(hours=1)
    look(ledger, snapshot(upstream_file("demo-2.0.tar.gz", later, "f" * 64)), later)
    recent = explain(ledger, Policy(), DEMO, None, NO_FEEDS, since=later)
    assert recent is not None and [f["filename"] for f in recent.files] == ["demo-2.0.tar.gz"]
    assert recent.left_out == 0


def _feed_summary(ledger: Ledger, status: FeedStatus, version: str = "1.0") -> tuple[str, str]:
    found = explain(ledger, Policy(), DEMO, Version(version), status)
    assert found is not None
    (file,) = found.files
    (check,) = [check for check in file["checks"] if check["check"] == "feeds"]
    return check["action"], check["summary"]


def test_the_feed_check_says_when_no_feed_is_configured_or_loaded(
    ledger: Ledger, tmp_path: Path
) -> None:
    _files(ledger, "demo-1.0.tar.gz", "demo-6.6.6.tar.gz")
    action, summary = _feed_summary(ledger, NO_FEEDS)
    assert action == "not-checked" and "no malware feed is configured" in summary
    action, summary = _feed_summary(ledger, FeedStatus(1, Feeds()))
    assert action == "not-checked" and "no advisory is loaded" in summary
    write_osv(tmp_path / "feed", osv_record("MAL-2026-9", name="demo", versions=["6.6.6"]))
    feeds = Feeds([tmp_path / "feed"])
    feeds.reload()
    action, summary = _feed_summary(ledger, FeedStatus(1, feeds))
    assert action == "pass" and "no advisory names this release" in summary
    action, summary = _feed_summary(ledger, FeedStatus(1, feeds), "6.6.6")
    assert action == "block" and "MAL-2026-9" in summary


def test_a_recorded_feed_verdict_is_shown_as_recorded(ledger: Ledger) -> None:
    """Evidence the feeds left on a file stays its word, whatever is configured now."""
    from quarantine.evidence import Action, Evidence

    _files(ledger, "demo-1.0.tar.gz")
    record = ledger.file(DEMO, "demo-1.0.tar.gz")
    assert record is not None
    ledger.record_evidence(record, Evidence("feeds", Action.BLOCK, "malware advisory X"), T0)
    assert _feed_summary(ledger, NO_FEEDS) == ("block", "malware advisory X")


# -- what the commands accept ----------------------------------------------------------------
def test_a_spec_is_a_project_or_one_exact_release() -> None:
    assert parse_spec("Requests") == ("requests", None)
    assert parse_spec("requests == 2.32.3") == ("requests", Version("2.32.3"))
    assert parse_spec("Zope.Interface==5.0") == ("zope-interface", Version("5.0"))
    for wrong in (
        "boto3>=1",
        "boto3==1.*",
        "boto3===1.0",
        "boto3[s3]==1.0",
        "boto3==1.0; python_version > '3'",
        "boto3 @ https://files.example/boto3-1.0.tar.gz",
        "boto3>=1,<2",
        "boto3==1.0,==1.1",
        "-boto3",
        "",
    ):
        with pytest.raises(AdminError, match="give NAME or NAME==VERSION") as refused:
            parse_spec(wrong)
        assert refused.value.status == 400 and "\n" not in str(refused.value)
