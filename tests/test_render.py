"""The page renderer's own rules, without a server: the order of ``versions``."""

import json
import random
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import NormalizedName
from packaging.version import Version

from mirror.render import HeldSummary, project_json
from quarantine.models import FileRecord, FileState, ProjectRecord, ProjectStatus

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


def versions_of(texts: list[str]) -> list[str]:
    records = [replace(RECORD, filename=f"demo-{i}.whl", version=t) for i, t in enumerate(texts)]
    page = json.loads(project_json(PROJECT, records, HeldSummary(0, None)))
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


@given(st.lists(st.sampled_from(["1", "1.0", "1.0.0", "0.9", "1.1a1", "2!0.1", "x"]), min_size=1))
def test_versions_do_not_depend_on_the_order_files_arrive_in(texts: list[str]) -> None:
    shuffled = texts[:]
    random.Random(len(texts)).shuffle(shuffled)
    listed = versions_of(texts)
    assert listed == versions_of(shuffled)  # equal versions ("1", "1.0") keep text order
    valid = [t for t in listed if t != "x"]
    assert [Version(t) for t in valid] == sorted(Version(t) for t in valid)
