"""The page renderer's own rules, without a server: the order of ``versions``, file URLs,
and the records pages are rendered from."""

import json
import random
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from mirror.simple.render import HeldSummary, file_path, project_json
from quarantine.ledger.sqlite import _FILE_COLUMNS, SqliteLedger
from quarantine.models import FileRecord, FileState, ProjectRecord, ProjectStatus
from quarantine.observe import Observation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = ProjectRecord(
    name=NormalizedName("demo"),
    first_seen=T0,
    last_look_ok=T0,
    status=ProjectStatus.ACTIVE,
    status_reason=None,
    etag=None,
    serial=None,
    seq=1,
)
RECORD = FileRecord(
    project=NormalizedName("demo"),
    filename="demo-1.0-py3-none-any.whl",
    version="1.0",
    sha256="0" * 64,
    size=1,
    upload_time=T0,
    first_seen=T0,
    clock_start=T0,
    established=True,
    state=FileState.PROMOTED,
    reason="established",
    url="https://upstream.invalid/demo-1.0-py3-none-any.whl",
    requires_python=None,
    yanked=None,
    core_metadata_sha256=None,
    provenance_url=None,
    provenance_sha256=None,
    stored=False,
    listed=True,
    anomaly=None,
    state_version=0,
)


def versions_of(texts: list[str], upstream: tuple[str, ...] | None = None) -> list[str]:
    records = [replace(RECORD, filename=f"demo-{i}.whl", version=t) for i, t in enumerate(texts)]
    project = replace(PROJECT, versions=upstream)
    page = json.loads(project_json(project, records, HeldSummary(0, None)))
    listed: list[str] = page["versions"]
    return listed


def test_versions_are_in_pep_440_order_with_unparsable_ones_first() -> None:
    texts = ["10.0", "2.0", "1.0rc1", "1.0", "not a version", "1.0.post1", "1.0.dev3", "2.0"]
    assert versions_of(texts) == [
        "not a version",
        "1.0.dev3",
        "1.0rc1",
        "1.0",
        "1.0.post1",
        "2.0",
        "10.0",
    ]


SPELLINGS = ["1", "1.0", "1.0.0", "0.9", "1.1a1", "1.1-alpha1", "2!0.1", "x", "X"]


@given(
    st.lists(st.sampled_from(SPELLINGS), min_size=1),
    st.none() | st.lists(st.sampled_from(SPELLINGS)).map(tuple),
)
def test_versions_do_not_depend_on_the_order_files_arrive_in(
    texts: list[str], upstream: tuple[str, ...] | None
) -> None:
    shuffled = texts[:]
    random.Random(len(texts)).shuffle(shuffled)
    listed = versions_of(texts, upstream)
    assert listed == versions_of(shuffled, upstream)
    valid = [t for t in listed if t not in ("x", "X")]
    assert [Version(t) for t in valid] == sorted(Version(t) for t in valid)
    # Each version once, PEP 440-equal spellings being one; every file's version is there.
    assert len({Version(t) for t in valid}) == len(valid)
    assert len(set(listed)) == len(listed)
    for text in texts:
        assert any(_equal(text, entry) for entry in listed)
    for entry in listed:
        spelled = [t for t in (upstream or ()) if _equal(t, entry)]
        assert entry == (min(spelled) if spelled else min(t for t in texts if _equal(t, entry)))


def _equal(one: str, other: str) -> bool:
    try:
        return Version(one) == Version(other)
    except InvalidVersion:
        return one == other


def test_versions_keep_the_upstream_spelling_of_versions_with_a_listed_file() -> None:
    files = ["1.0.0", "2.0rc1", "3.0", "3.0.0", "4.0", "legacy-1"]
    upstream = ("1.0", "2.0-RC1", "3", "5.0", "legacy-1")  # 5.0 has no listed file
    assert versions_of(files, upstream) == ["legacy-1", "1.0", "2.0-RC1", "3", "4.0"]
    # Without the upstream's list, equal spellings are still one version: the least.
    assert versions_of(files) == ["legacy-1", "1.0.0", "2.0rc1", "3.0", "4.0"]


@given(st.text(min_size=1, max_size=40))
def test_a_file_url_quotes_its_name_exactly_as_quote_would(name: str) -> None:
    """Names quote() would leave alone skip it; the URL is the same either way."""
    record = replace(RECORD, filename=name)
    assert file_path(record, "../../") == f"../../files/{'0' * 64}/{quote(name)}"


def test_a_record_read_back_from_the_ledger_is_the_record_written(tmp_path: Path) -> None:
    """Rows are unpacked by position: the selected columns must be FileRecord's fields."""
    assert _FILE_COLUMNS.split(", ") == [item.name for item in fields(FileRecord)]
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        project = replace(PROJECT, seq=0)
        odd = replace(
            RECORD, filename="demo-1.0.tar.gz", size=None, upload_time=None, yanked="",
            state=FileState.HELD, reason="cooling", anomaly="backdated", stored=True,
        )  # fmt: skip
        ledger.apply(Observation(project, (RECORD, odd), ()), None, "test")
        assert ledger.files(NormalizedName("demo")) == sorted(
            [RECORD, odd], key=lambda record: record.filename
        )
        assert ledger.file(NormalizedName("demo"), odd.filename) == odd
    finally:
        ledger.close()
