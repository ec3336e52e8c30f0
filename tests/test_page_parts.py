"""A big page kept in parts gives, after any run of changes, the bytes a full render gives."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_render import PROJECT, RECORD

import mirror.simple.page_parts
from mirror.simple.page_parts import PageParts
from mirror.simple.render import HeldSummary, bases_for, project_html, project_json
from quarantine.models import FileRecord, FileState, ProjectRecord
from quarantine.platforms import EVERYTHING, PlatformFilter

BASE = bases_for(None)
HELD = HeldSummary(2, None)
# Versions that sort equal ("1", "1.0", "1.0.0"), one that does not parse, and the rest.
VERSIONS = ["1", "1.0", "1.0.0", "0.9", "2!0.1", "1.1a1", "not a version", "10.0"]
STATES = [FileState.PROMOTED, FileState.PROMOTED, FileState.HELD, FileState.WITHDRAWN]

# One write: (file number, version, state, yanked); a batch is what one catch-up reads.
_writes = st.tuples(
    st.integers(0, 11),
    st.sampled_from(VERSIONS),
    st.sampled_from(STATES),
    st.sampled_from([None, "", "broken"]),
)
_batches = st.lists(st.lists(_writes, max_size=8), max_size=8)


def _record(number: int, version: str, state: FileState, yanked: str | None) -> FileRecord:
    # A file keeps its version (a filename names one); the number keeps names apart.
    return replace(
        RECORD,
        filename=f"demo-{number:02d}-{version}.whl",
        version=version,
        state=state,
        yanked=yanked,
        sha256=f"{number:064x}",
    )


def _as_the_ledger_reads_them(
    batch: list[tuple[int, str, FileState, str | None]],
) -> list[FileRecord]:
    latest = {}
    for write in batch:
        record = _record(*write)
        latest[record.filename] = record
    return sorted(latest.values(), key=lambda record: record.filename)


# The upstream's own spellings, changing from one look to the next.
UPSTREAM_SPELLINGS = [None, ("1.0.0", "not a version", "2!0.1"), ("1",), ()]


def _project(seq: int) -> ProjectRecord:
    return replace(PROJECT, seq=seq, versions=UPSTREAM_SPELLINGS[seq % len(UPSTREAM_SPELLINGS)])


def _full_render(records: dict[str, FileRecord], seq: int) -> tuple[bytes, bytes]:
    listed = sorted(
        (r for r in records.values() if r.state is FileState.PROMOTED), key=lambda r: r.filename
    )
    project = _project(seq)
    return project_json(project, listed, HELD), project_html(project, listed, HELD)


def _check_runs(
    batches: list[list[tuple[int, str, FileState, str | None]]], *, html_at_each_step: bool
) -> None:
    """``html_at_each_step`` False: HTML is first asked for after the last batch (its
    parts are made then, from the records)."""
    first, *rest = [_as_the_ledger_reads_them(batch) for batch in batches] or [[]]
    parts = PageParts(_project(PROJECT.seq), first, BASE, EVERYTHING)
    truth = {record.filename: record for record in first}
    for seq, changed in enumerate(rest, start=PROJECT.seq + 1):
        parts.update(_project(seq), changed)
        truth |= {record.filename: record for record in changed}
        assert parts.seq == seq
        full_json, full_html = _full_render(truth, seq)
        assert parts.json(HELD) == full_json
        if html_at_each_step:
            assert parts.html(HELD) == full_html
        assert parts.records == truth
        held = {name: r for name, r in truth.items() if r.state is FileState.HELD}
        assert {record.filename: record for record in parts.held} == held  # for the note
    assert parts.html(HELD) == _full_render(truth, parts.seq)[1]


@settings(max_examples=150, deadline=None)
@given(_batches, st.booleans())
def test_parts_changed_one_by_one_give_the_full_render(
    batches: list[list[tuple[int, str, FileState, str | None]]], html_at_each_step: bool
) -> None:
    _check_runs(batches, html_at_each_step=html_at_each_step)


@settings(max_examples=50, deadline=None)
@given(_batches)
def test_parts_changed_in_bulk_give_the_full_render(
    batches: list[list[tuple[int, str, FileState, str | None]]],
) -> None:
    bulk = mirror.simple.page_parts.BULK_CHANGES
    mirror.simple.page_parts.BULK_CHANGES = 1  # every batch of two or more is sorted anew
    try:
        _check_runs(batches, html_at_each_step=True)
        _check_runs(batches, html_at_each_step=False)
    finally:
        mirror.simple.page_parts.BULK_CHANGES = bulk


def test_a_thousand_files_then_one_promotion() -> None:
    records = [
        _record(number, f"1.{number // 10}.{number % 10}", FileState.PROMOTED, None)
        for number in range(1000)
    ]
    new = _record(1000, "2.0", FileState.HELD, None)
    parts = PageParts(
        _project(1), sorted([*records, new], key=lambda r: r.filename), BASE, EVERYTHING
    )
    promoted = replace(new, state=FileState.PROMOTED)
    parts.update(_project(2), [promoted])
    truth = {record.filename: record for record in [*records, promoted]}
    assert (parts.json(HELD), parts.html(HELD)) == _full_render(truth, 2)


def test_parts_list_only_the_files_of_their_filter() -> None:
    glibc, musl = (
        replace(_record(n, "1.0", FileState.PROMOTED, None), filename=f"demo-1.0-{tag}.whl")
        for n, tag in (
            (1, "cp312-cp312-manylinux_2_17_x86_64"),
            (2, "cp312-cp312-musllinux_1_2_x86_64"),
        )
    )
    parts = PageParts(_project(1), [glibc, musl], BASE, PlatformFilter())
    assert parts.json(HELD) == project_json(_project(1), [glibc], HELD)
    parts.update(_project(2), [replace(musl, state=FileState.HELD)])  # unlisted already
    assert parts.json(HELD) == project_json(_project(2), [glibc], HELD)
    assert parts.held == []  # a held file outside the filter is not in the held-files note
    parts.update(_project(3), [replace(glibc, state=FileState.REVIEW)])
    assert parts.held == [replace(glibc, state=FileState.REVIEW)]
