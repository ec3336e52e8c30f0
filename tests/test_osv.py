"""Malware feeds: OSV records read from directories and zip exports, matched strictly."""

import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from quarantine.evidence import Action, Severity
from quarantine.feeds.osv import (
    SUMMARY_CHARS,
    FeedError,
    FeedIndex,
    clean_line,
    feed_evidence,
    load_feed,
    load_feed_bytes,
    merge,
)

MODIFIED = "2026-03-24T12:00:00Z"


def record(
    record_id: str = "MAL-2026-1",
    *,
    name: str = "sample",
    ecosystem: str = "PyPI",
    versions: list[str] | None = None,
    ranges: list[dict[str, Any]] | None = None,
    modified: str = MODIFIED,
    **extra: Any,
) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if versions is not None:
        affected["versions"] = versions
    if ranges is not None:
        affected["ranges"] = ranges
    return {
        "schema_version": "1.6.0",
        "id": record_id,
        "modified": modified,
        "summary": f"Malicious code in {name} ({ecosystem})",
        "affected": [affected],
        **extra,
    }


def ecosystem_range(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"type": kind, "events": list(events)}


def write(directory: Path, document: dict[str, Any], filename: str | None = None) -> Path:
    path = directory / (filename or f"{document['id']}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def feed(tmp_path: Path, *documents: dict[str, Any]) -> FeedIndex:
    directory = tmp_path / "feed"
    directory.mkdir(exist_ok=True)
    for number, document in enumerate(documents):
        write(directory, document, f"r{number}.json")
    index = load_feed(directory)
    assert index.problems == []
    return index


def name(text: str) -> NormalizedName:
    return canonicalize_name(text)


def hit(index: FeedIndex, project: str, version: str) -> bool:
    return bool(index.matches(name(project), version))


def ids(index: FeedIndex, project: str, version: str) -> list[str]:
    return [match.id for match in index.matches(name(project), version)]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


# --- matching ------------------------------------------------------------------------------


def test_only_the_matching_versions_are_condemned(tmp_path: Path) -> None:
    index = feed(tmp_path, record("MAL-2026-2101", name="litellm", versions=["1.82.7", "1.82.8"]))
    assert hit(index, "litellm", "1.82.7")
    assert hit(index, "litellm", "1.82.8")
    assert not hit(index, "litellm", "1.82.6")
    assert not hit(index, "litellm", "1.82.9")
    assert not hit(index, "litellm", "1.82.80")
    assert not hit(index, "other", "1.82.7")
    assert feed_evidence(index.matches(name("litellm"), "1.82.8")).action is Action.BLOCK
    assert feed_evidence(index.matches(name("litellm"), "1.82.6")).action is Action.PASS


def test_listed_versions_compare_as_pep440_versions(tmp_path: Path) -> None:
    index = feed(tmp_path, record(versions=["1.0", "2.0.0", "3.0rc1", "4.0+local"]))
    assert hit(index, "sample", "1.0")
    assert hit(index, "sample", "1.0.0")
    assert hit(index, "sample", "1.0.0.0")
    assert hit(index, "sample", "2")
    assert hit(index, "sample", "2.0")
    assert hit(index, "sample", "3.0.0-RC1")  # the same version, spelled another way
    assert hit(index, "sample", "4.0+local")
    assert not hit(index, "sample", "4.0")  # a local label is part of the version
    assert not hit(index, "sample", "1.0.1")
    assert not hit(index, "sample", "1.0.post1")
    assert not hit(index, "sample", "3.0")


def test_listed_versions_that_are_not_pep440_match_only_exactly(tmp_path: Path) -> None:
    index = feed(tmp_path, record(versions=["2004d", "1.0-custom build"]))
    assert hit(index, "sample", "2004d")
    assert hit(index, "sample", "1.0-custom build")
    assert not hit(index, "sample", "2004D")
    assert not hit(index, "sample", "1.0")


def test_introduced_zero_condemns_every_version(tmp_path: Path) -> None:
    index = feed(tmp_path, record(ranges=[ecosystem_range({"introduced": "0"})]))
    for version in ("0", "0.0.1.dev0", "1.0", "99.1rc2", "2026.3.24.post7", "2004d"):
        assert hit(index, "sample", version), version
    assert not hit(index, "another", "1.0")


def test_introduced_and_fixed_is_half_open(tmp_path: Path) -> None:
    ranges = [ecosystem_range({"introduced": "1.2"}, {"fixed": "1.5"})]
    index = feed(tmp_path, record(ranges=ranges))
    assert not hit(index, "sample", "1.1.9")
    assert not hit(index, "sample", "1.2rc1")
    assert hit(index, "sample", "1.2")
    assert hit(index, "sample", "1.2.0")
    assert hit(index, "sample", "1.4.99")
    assert hit(index, "sample", "1.5rc1")  # sorts before the fix
    assert not hit(index, "sample", "1.5")
    assert not hit(index, "sample", "1.5.0")
    assert not hit(index, "sample", "2.0")
    assert not hit(index, "sample", "not-a-version")


def test_introduced_and_last_affected_is_closed(tmp_path: Path) -> None:
    ranges = [ecosystem_range({"introduced": "0"}, {"last_affected": "2.1.214"})]
    index = feed(tmp_path, record(ranges=ranges))
    assert hit(index, "sample", "0.1")
    assert hit(index, "sample", "2.1.214")
    assert not hit(index, "sample", "2.1.214.post1")
    assert not hit(index, "sample", "2.1.215")
    assert not hit(index, "sample", "3")


def test_multiple_intervals_and_ranges(tmp_path: Path) -> None:
    ranges = [
        ecosystem_range(
            {"introduced": "1.0.0"},
            {"fixed": "1.0.2"},
            {"introduced": "3.0.0"},
            {"fixed": "3.2.5"},
        ),
        ecosystem_range({"introduced": "5.0"}, {"last_affected": "5.1"}),
        ecosystem_range({"introduced": "7"}),  # open at the end: everything after
    ]
    index = feed(tmp_path, record(ranges=ranges, versions=["4.4"]))
    expected = {
        "0.9": False,
        "1.0.0": True,
        "1.0.1": True,
        "1.0.2": False,
        "2.5": False,
        "3.0": True,
        "3.2.4": True,
        "3.2.5": False,
        "4.4": True,
        "4.4.1": False,
        "5.0": True,
        "5.1": True,
        "5.1.1": False,
        "6.9": False,
        "7.0": True,
        "123.4": True,
    }
    assert {version: hit(index, "sample", version) for version in expected} == expected


def test_events_out_of_order_are_sorted_by_version(tmp_path: Path) -> None:
    ranges = [ecosystem_range({"fixed": "2.0"}, {"introduced": "1.0"})]
    index = feed(tmp_path, record(ranges=ranges))
    assert not hit(index, "sample", "0.9")
    assert hit(index, "sample", "1.5")
    assert not hit(index, "sample", "2.0")


def test_limit_caps_a_range(tmp_path: Path) -> None:
    index = feed(
        tmp_path,
        record(
            "MAL-1", name="capped", ranges=[ecosystem_range({"introduced": "0"}, {"limit": "2.0"})]
        ),
        record("MAL-2", name="star", ranges=[ecosystem_range({"introduced": "1"}, {"limit": "*"})]),
        record(
            "MAL-3",
            name="two-limits",
            ranges=[ecosystem_range({"introduced": "1.0"}, {"limit": "1.5"}, {"limit": "3.0"})],
        ),
    )
    assert hit(index, "capped", "1.9.9")
    assert not hit(index, "capped", "2.0")
    assert not hit(index, "capped", "2.1")
    assert not hit(index, "capped", "nonsense")  # not "every version" any more
    assert hit(index, "star", "1.0")
    assert hit(index, "star", "100")
    assert not hit(index, "star", "0.9")
    assert hit(index, "two-limits", "2.9")  # below one of the limits
    assert not hit(index, "two-limits", "3.0")


def test_semver_ranges_are_read_as_pep440_and_git_ranges_are_ignored(tmp_path: Path) -> None:
    git = {
        "type": "GIT",
        "repo": "https://example.invalid/repo.git",
        "events": [{"introduced": "0"}],
    }
    index = feed(
        tmp_path,
        record(
            "MAL-1",
            name="semver",
            ranges=[ecosystem_range({"introduced": "1.0.0"}, {"fixed": "1.0.3"}, kind="SEMVER")],
        ),
        record("MAL-2", name="git-only", ranges=[git]),
        record("MAL-3", name="git-and-versions", ranges=[git], versions=["0.4"]),
    )
    assert hit(index, "semver", "1.0.2")
    assert not hit(index, "semver", "1.0.3")
    assert not hit(index, "git-only", "1.0")
    assert hit(index, "git-and-versions", "0.4")
    assert not hit(index, "git-and-versions", "0.5")


def test_a_range_bound_that_is_not_pep440_only_matches_exactly(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    ranges = [ecosystem_range({"introduced": "1.0"}, {"last_affected": "1.9-final-b"})]
    write(directory, record(ranges=ranges))
    index = load_feed(directory)
    assert index.records_count == 1
    assert any("1.9-final-b" in problem and "exactly" in problem for problem in index.problems)
    assert hit(index, "sample", "1.9-final-b")
    assert not hit(index, "sample", "1.5")


def test_other_ecosystems_do_not_count(tmp_path: Path) -> None:
    npm = record("MAL-2026-9", name="sample", ecosystem="npm", versions=["1.0.0"])
    both = record("MAL-2026-10", name="dual", ecosystem="npm", versions=["1.0"])
    both["affected"].append({"package": {"ecosystem": "PyPI", "name": "dual"}, "versions": ["2.0"]})
    scoped = record("MAL-2026-11", name="sample", ecosystem="Root:PyPI", versions=["1.0.0"])
    index = feed(tmp_path, npm, both, scoped)
    assert not hit(index, "sample", "1.0.0")
    assert index.projects() == {"dual"}
    assert not hit(index, "dual", "1.0")
    assert hit(index, "dual", "2.0")
    assert index.records_count == 1
    assert index.ignored_count == 2


def test_names_are_normalized(tmp_path: Path) -> None:
    index = feed(tmp_path, record(name="Foo_Bar", versions=["1.0"]))
    assert index.projects() == {"foo-bar"}
    for spelling in ("foo-bar", "Foo_Bar", "FOO.BAR", "foo__bar"):
        assert hit(index, spelling, "1.0"), spelling
    assert not hit(index, "foobar", "1.0")


def test_withdrawn_records_are_ignored(tmp_path: Path) -> None:
    index = feed(
        tmp_path,
        record("MAL-1", versions=["1.0"], withdrawn="2026-03-25T00:00:00Z"),
        record("MAL-2", versions=["2.0"]),
    )
    assert not hit(index, "sample", "1.0")
    assert ids(index, "sample", "2.0") == ["MAL-2"]
    assert index.ignored_count == 1


def test_a_record_matching_twice_is_reported_once(tmp_path: Path) -> None:
    document = record("MAL-5", versions=["1.0"], ranges=[ecosystem_range({"introduced": "0"})])
    document["affected"].append(
        {"package": {"ecosystem": "PyPI", "name": "SAMPLE"}, "versions": ["1.0"]}
    )
    index = feed(tmp_path, document, record("MAL-4", versions=["1.0.0"]))
    assert ids(index, "sample", "1.0") == ["MAL-4", "MAL-5"]


def test_summaries_are_one_short_clean_line(tmp_path: Path) -> None:
    hostile = "evil\x1b[31m red\u202e txt\r\nsecond line\u200b" + "x" * 500
    index = feed(
        tmp_path,
        record("MAL-1", name="one", versions=["1"], summary=hostile),
        record("MAL-2", name="two", versions=["1"], summary="", details="\n\n  First line.\nMore."),
    )
    (first,) = index.matches(name("one"), "1")
    assert len(first.summary) <= SUMMARY_CHARS
    assert first.summary.startswith("evil[31m red txt second line")
    assert first.summary.isprintable()
    (second,) = index.matches(name("two"), "1")
    assert second.summary == "First line."
    assert clean_line("a\tb\n\nc") == "a b c"


# --- hostile input -----------------------------------------------------------------------


def test_malformed_records_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    directory.mkdir()
    good = write(directory, record("MAL-2026-1", name="good", versions=["1.0"]))
    int_name = record("MAL-11", versions=["1"])
    int_name["affected"][0]["package"]["name"] = 7
    int_version = record("MAL-10", versions=["1.0"])
    int_version["affected"][0]["versions"].append(2)
    bad: dict[str, bytes] = {
        "not-json.json": b"{this is not json",
        "not-utf8.json": b'{"id": "MAL-3", "summary": "\xff\xfe"}',
        "nan.json": json.dumps(record("MAL-4", versions=["1"], score=float("nan"))).encode(),
        "duplicate.json": b'{"id": "MAL-5", "id": "MAL-6", "modified": "'
        + MODIFIED.encode()
        + b'"}',
        "array.json": b"[1, 2, 3]",
        "no-modified.json": json.dumps({"id": "MAL-7", "affected": []}).encode(),
        "bad-modified.json": json.dumps(record("MAL-8", modified="yesterday")).encode(),
        "affected-object.json": json.dumps({**record("MAL-9"), "affected": {"a": 1}}).encode(),
        "int-version.json": json.dumps(int_version).encode(),
        "int-name.json": json.dumps(int_name).encode(),
        "bad-id.json": json.dumps(record("MAL 12\n; rm -rf", versions=["1"])).encode(),
        "two-keys.json": json.dumps(
            record("MAL-13", ranges=[ecosystem_range({"introduced": "0", "fixed": "1"})])
        ).encode(),
        "fixed-and-last.json": json.dumps(
            record(
                "MAL-14",
                ranges=[
                    ecosystem_range({"introduced": "0"}, {"fixed": "1"}, {"last_affected": "2"})
                ],
            )
        ).encode(),
        "no-introduced.json": json.dumps(
            record("MAL-15", ranges=[ecosystem_range({"fixed": "1"})])
        ).encode(),
        "range-type.json": json.dumps(
            record("MAL-16", ranges=[ecosystem_range({"introduced": "0"}, kind="DATE")])
        ).encode(),
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
        "huge-number.json": b'{"id": "MAL-17", "n": ' + b"9" * 5000 + b"}",
        "withdrawn-int.json": json.dumps(record("MAL-18", versions=["1"], withdrawn=1)).encode(),
    }
    for filename, data in bad.items():
        (directory / filename).write_bytes(data)
    huge = directory / "huge.json"
    with huge.open("wb") as stream:
        stream.write(b'{"id": "MAL-19", "details": "')
        stream.write(b"a" * (16 * 1024 * 1024))
        stream.write(b'"}')

    index = load_feed(directory)

    assert index.records_count == 1
    assert ids(index, "good", "1.0") == ["MAL-2026-1"]
    assert len(index.problems) == len(bad) + 1
    named = {problem.split(":", 1)[0] for problem in index.problems}
    assert named == {*bad, "huge.json"}
    assert good.name not in named
    reasons = "\n".join(index.problems)
    for reason in (
        "not valid JSON",
        "not UTF-8",
        "NaN is not JSON",
        "duplicate key 'id'",
        "modified is not a timestamp",
        "affected is not a list",
        "an entry of versions is not a string",
        "nested too deeply",
        "larger than 16 MiB",
        "no introduced event",
        "both fixed and last_affected",
    ):
        assert reason in reasons, reason
    assert all(problem.isprintable() for problem in index.problems)


def test_a_fifo_or_a_hidden_directory_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    write(directory, record("MAL-1", versions=["1"]))
    write(directory / ".git", record("MAL-2", versions=["2"]))
    os.mkfifo(directory / "pipe.json")
    index = load_feed(directory)  # would block forever if the FIFO were opened for reading
    assert [record.id for record in index.records] == ["MAL-1"]
    assert len(index.problems) == 1
    assert index.problems[0].startswith("pipe.json: skipped")


def test_an_unreadable_source_raises_so_the_previous_index_is_kept(tmp_path: Path) -> None:
    assert issubclass(FeedError, OSError)
    with pytest.raises(FeedError):
        load_feed(tmp_path / "missing")
    not_zip = tmp_path / "export.zip"
    not_zip.write_bytes(b"this is not a zip archive")
    with pytest.raises(FeedError):
        load_feed(not_zip)
    other = tmp_path / "feed.tar"
    other.write_bytes(b"")
    with pytest.raises(FeedError):
        load_feed(other)
    with pytest.raises(FeedError):
        load_feed_bytes(b"PK", "export.zip")


def test_duplicate_ids_keep_the_later_modified(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    write(directory, record("MAL-1", versions=["2.0"], modified="2026-03-25T00:00:00Z"), "a.json")
    write(directory, record("MAL-1", versions=["1.0"], modified="2026-03-24T00:00:00Z"), "b.json")
    index = load_feed(directory)
    assert index.records_count == 1
    assert hit(index, "sample", "2.0")
    assert not hit(index, "sample", "1.0")


# --- zip exports ----------------------------------------------------------------------------


def test_a_zip_export_loads_like_a_directory(tmp_path: Path) -> None:
    documents = [
        record("MAL-2026-1", name="alpha", versions=["1.0"]),
        record("MAL-2026-2", name="beta", ranges=[ecosystem_range({"introduced": "0"})]),
        record("MAL-2026-3", name="gamma", ecosystem="npm", versions=["1.0"]),
    ]
    members = {
        f"osv/{document['id']}.json": json.dumps(document).encode() for document in documents
    }
    members["README.md"] = b"not a record"
    members["osv/"] = b""
    data = zip_bytes(members)
    export = tmp_path / "all.zip"
    export.write_bytes(data)
    directory = tmp_path / "feed"
    for document in documents:
        write(directory, document)

    from_zip = load_feed(export)
    assert from_zip.problems == []
    assert from_zip.records_count == 2
    assert from_zip.projects() == {"alpha", "beta"}
    assert hit(from_zip, "alpha", "1.0.0")
    assert hit(from_zip, "beta", "0.0.1")
    in_memory = load_feed_bytes(data, "all.zip")
    assert in_memory.digest == from_zip.digest == load_feed(directory).digest


def test_a_zip_bomb_member_is_skipped(tmp_path: Path) -> None:
    export = tmp_path / "all.zip"
    with zipfile.ZipFile(export, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MAL-1.json", json.dumps(record("MAL-1", versions=["1.0"])))
        with archive.open("bomb.json", "w") as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(65):
                member.write(block)
        archive.writestr("liar.json", json.dumps(record("MAL-3", versions=["3.0"])))
        archive.writestr("MAL-4.json", json.dumps(record("MAL-4", versions=["4.0"])))
    # Make the central directory lie about the size of one member.
    data = bytearray(export.read_bytes())
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(b"liar.json")] != b"liar.json":
        central = data.index(b"PK\x01\x02", central + 4)
    data[central + 24 : central + 28] = struct.pack("<I", 10)  # uncompressed size
    export.write_bytes(bytes(data))
    assert export.stat().st_size < 1024 * 1024  # the bomb is small on disk

    index = load_feed(export)

    assert [record.id for record in index.records] == ["MAL-1", "MAL-4"]
    assert len(index.problems) == 2
    bomb, liar = index.problems
    assert bomb.startswith("all.zip:bomb.json: skipped: declares 68157440 bytes")
    assert liar.startswith("all.zip:liar.json: skipped: unreadable member")


# --- several feeds and reloads --------------------------------------------------------------


def test_merge_of_two_feeds(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    write(first, record("MAL-1", name="alpha", versions=["1.0"]))
    write(first, record("MAL-3", name="gamma", versions=["1.0"]))
    write(second, record("MAL-2", name="beta", versions=["2.0"]))
    later = record("MAL-3", name="gamma", versions=["1.0", "1.1"], modified="2026-04-01T00:00:00Z")
    write(second, later)
    (second / "broken.json").write_text("{")

    merged = merge([load_feed(first), load_feed(second)])

    assert merged.records_count == 3
    assert merged.projects() == {"alpha", "beta", "gamma"}
    assert hit(merged, "alpha", "1.0")
    assert hit(merged, "beta", "2.0")
    assert hit(merged, "gamma", "1.1")  # the later record of the two wins
    assert len(merged.problems) == 1
    assert merge([]).records_count == 0


def test_the_digest_tells_whether_a_reload_changed_anything(tmp_path: Path) -> None:
    directory = tmp_path / "feed"
    write(directory, record("MAL-1", versions=["1.0"]))
    write(directory, record("MAL-2", name="other", versions=["1.0"]))
    first = load_feed(directory).digest
    assert load_feed(directory).digest == first
    (directory / "unrelated.txt").write_text("not a record")
    assert load_feed(directory).digest == first

    write(directory, record("MAL-1", versions=["1.0"], modified="2026-03-25T00:00:00Z"))
    bumped = load_feed(directory).digest
    assert bumped != first

    write(directory, record("MAL-1", versions=["1.0", "1.1"], modified="2026-03-25T00:00:00Z"))
    assert load_feed(directory).digest != bumped  # edited in place, not re-dated

    (directory / "MAL-2.json").unlink()
    assert load_feed(directory).digest not in (first, bumped)
    assert FeedIndex().digest not in (first, bumped)


# --- evidence -------------------------------------------------------------------------------


def test_feed_evidence(tmp_path: Path) -> None:
    clean = feed_evidence([])
    assert clean.check == "feeds"
    assert clean.action is Action.PASS
    assert clean.summary == "no malware advisory"
    assert clean.findings == ()

    index = feed(
        tmp_path,
        record(
            "MAL-2026-7",
            versions=["1.0"],
            summary="Credential stealer",
            aliases=["GHSA-aaaa-bbbb-cccc"],
        ),
        record("MAL-2026-8", versions=["1.0"], summary=""),
    )
    evidence = feed_evidence(index.matches(name("sample"), "1.0"))
    assert evidence.check == "feeds"
    assert evidence.action is Action.BLOCK
    assert [finding.rule for finding in evidence.findings] == ["malware-advisory"] * 2
    assert {finding.severity for finding in evidence.findings} == {Severity.CRITICAL}
    assert evidence.findings[0].message == "MAL-2026-7: Credential stealer"
    assert evidence.findings[1].message.startswith("MAL-2026-8: ")
    assert evidence.details["ids"] == ["MAL-2026-7", "MAL-2026-8"]
    assert evidence.details["advisories"][0]["aliases"] == ["GHSA-aaaa-bbbb-cccc"]
    assert "MAL-2026-7" in evidence.summary
    json.dumps(evidence.details)  # serialisable as stored


def test_the_vetting_side_imports_nothing_of_the_serving_side() -> None:
    code = (
        "import sys, quarantine.feeds.osv\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mirror', 'starlette', 'aiohttp')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- property -------------------------------------------------------------------------------

_RELEASES = st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4)
_VERSIONS = st.builds(
    lambda release, pre, post, dev: ".".join(map(str, release)) + pre + post + dev,
    _RELEASES,
    st.sampled_from(["", "a1", "b2", "rc1", "-RC1"]),
    st.sampled_from(["", ".post1", "-1"]),
    st.sampled_from(["", ".dev0"]),
)


@settings(max_examples=150, deadline=None)
@given(
    listed=st.lists(_VERSIONS, min_size=1, max_size=6),
    candidates=st.lists(_VERSIONS, min_size=1, max_size=8),
    padding=st.integers(min_value=0, max_value=2),
)
def test_listed_versions_match_exactly_the_equal_versions(
    listed: list[str], candidates: list[str], padding: int
) -> None:
    index = load_feed_bytes(json.dumps(record(versions=listed)).encode(), "one.json")
    assert index.problems == []
    # Also ask about a listed version spelled with extra zeros, which must match.
    release = re.match(r"[0-9.]+", listed[0])
    assert release is not None
    padded = release.group().rstrip(".") + ".0" * padding + listed[0][release.end() :]
    wanted = {Version(version) for version in listed}
    for candidate in [*candidates, padded]:
        assert hit(index, "sample", candidate) == (Version(candidate) in wanted), candidate
