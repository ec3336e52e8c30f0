"""Conformance suite for the ``quarantine.ledger.interface.Ledger`` protocol.

Every implementation runs the same tests (SQLite, and PostgreSQL on a real server the
tests start): a new one is a name in the ``store`` fixture's params and a branch in
``Store.open``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from quarantine.errors import StaleTransition
from quarantine.ledger.interface import Ledger
from quarantine.ledger.postgres import PostgresLedger
from quarantine.ledger.sqlite import SqliteLedger
from quarantine.models import (
    FileRecord,
    FileState,
    ProjectRecord,
    ProjectStatus,
    Snapshot,
    UpstreamFile,
)
from quarantine.observe import Observation, observe
from quarantine.policy import Policy
from quarantine.vetting.fetch_retry import FailureKind, delay_after
from support.postgres import migrate_postgres

DEMO = NormalizedName("demo")
OTHER = NormalizedName("other")
T0 = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
POLICY = Policy()
ACTOR = "system:test"
OLD_WHEEL = "demo-0.9-py3-none-any.whl"
NEW_WHEEL = "demo-1.0-py3-none-any.whl"
NEW_SDIST = "demo-1.0.tar.gz"


class Store:
    """Opens connections to one ledger, as the server and the CLI each would."""

    def __init__(self, kind: str, tmp_path: Path, postgres_url: str | None = None) -> None:
        self.kind = kind
        self.path = tmp_path / "data" / "ledger.sqlite3"
        self.postgres_url = postgres_url
        self.opened: list[Ledger] = []

    def open(self) -> Ledger:
        if self.kind == "sqlite":
            ledger: Ledger = SqliteLedger(self.path)
        elif self.kind == "postgresql":
            assert self.postgres_url is not None
            ledger = PostgresLedger(self.postgres_url, where="the test database", pool_size=4)
        else:  # pragma: no cover - a new implementation plugs in here
            raise AssertionError(f"unknown ledger kind {self.kind}")
        self.opened.append(ledger)
        return ledger

    def close_all(self) -> None:
        for ledger in self.opened:
            ledger.close()
        self.opened.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        migrate_postgres(url)
    opened = Store(str(request.param), tmp_path, url)
    yield opened
    opened.close_all()


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return store.open()


def upstream_file(
    filename: str, uploaded: datetime | None, sha256: str, yanked: str | None = None
) -> UpstreamFile:
    return UpstreamFile(
        filename=filename,
        url=f"https://files.example/packages/{filename}",
        sha256=sha256,
        size=2048,
        upload_time=uploaded,
        requires_python=">=3.10",
        yanked=yanked,
        core_metadata_sha256="d" * 64,
        provenance_url=None,
    )


OLD = upstream_file(OLD_WHEEL, T0 - timedelta(days=400), "a" * 64)
NEW = upstream_file(NEW_WHEEL, T0 - timedelta(hours=2), "b" * 64)
SDIST = upstream_file(NEW_SDIST, T0 - timedelta(hours=1), "c" * 64)


def snapshot(
    *files: UpstreamFile,
    name: NormalizedName = DEMO,
    status: ProjectStatus = ProjectStatus.ACTIVE,
) -> Snapshot:
    return Snapshot(name=name, files=files, status=status, status_reason=None, serial=7)


def look(ledger: Ledger, snap: Snapshot, at: datetime, etag: str | None = None) -> Observation:
    """What the catalog does for one upstream answer."""
    known = {record.filename: record for record in ledger.files(snap.name)}
    observation = observe(ledger.project(snap.name), known, snap, at, POLICY)
    ledger.apply(observation, etag, ACTOR)
    return observation


def held(ledger: Ledger, filename: str = NEW_WHEEL) -> FileRecord:
    record = ledger.file(DEMO, filename)
    assert record is not None
    return record


# -- apply and read back ------------------------------------------------------------------


def test_empty_ledger(ledger: Ledger) -> None:
    assert ledger.project(DEMO) is None
    assert ledger.projects() == []
    assert ledger.files(DEMO) == []
    assert ledger.file(DEMO, NEW_WHEEL) is None
    assert ledger.held() == []
    assert ledger.events() == []


def test_apply_then_read_back(ledger: Ledger) -> None:
    observation = look(ledger, snapshot(OLD, NEW), T0, etag='"v1"')
    project = ledger.project(DEMO)
    assert project is not None
    assert replace(project, seq=0) == replace(observation.project, etag='"v1"', seq=0)
    assert project.last_look_ok == T0
    assert project.serial == 7
    assert ledger.projects() == [DEMO]
    files = ledger.files(DEMO)
    assert files == sorted(observation.new, key=lambda record: record.filename)
    assert [record.state for record in files] == [FileState.PROMOTED, FileState.HELD]
    assert ledger.file(DEMO, NEW_WHEEL) == files[1]
    assert ledger.file_by_digest("b" * 64, NEW_WHEEL) == files[1]
    assert ledger.file_by_digest("b" * 64, OLD_WHEEL) is None
    assert ledger.file_by_digest("f" * 64, NEW_WHEEL) is None
    assert ledger.held() == [files[1]]
    assert ledger.held(DEMO) == [files[1]]
    assert ledger.held(OTHER) == []
    assert ledger.file(OTHER, NEW_WHEEL) is None


def test_a_key_with_a_nul_character_is_found_nowhere(ledger: Ledger) -> None:
    """Such a key comes from a request (``%00`` in a file's URL); no record can hold one.
    PostgreSQL refused the query itself (an error, a 500), where SQLite finds nothing."""
    look(ledger, snapshot(OLD, NEW), T0)
    nul = NormalizedName("demo\x00")
    assert ledger.file(DEMO, NEW_WHEEL + "\x00") is None
    assert ledger.file(nul, NEW_WHEEL) is None
    assert ledger.file_by_digest("b" * 64, NEW_WHEEL + "\x00") is None
    assert ledger.project(nul) is None
    assert ledger.files(nul) == [] and ledger.held(nul) == []
    assert ledger.events(nul) == [] and ledger.recent_events(nul, None, 10) == ([], 0)
    assert ledger.evidence(DEMO, NEW_WHEEL + "\x00") == {}
    assert ledger.file(DEMO, NEW_WHEEL) is not None


def test_records_round_trip_every_field(ledger: Ledger) -> None:
    no_time = upstream_file("demo-2.0.tar.gz", None, "e" * 64, yanked="")
    look(ledger, snapshot(NEW, no_time), T0)
    record = held(ledger, "demo-2.0.tar.gz")
    assert record.upload_time is None
    assert record.yanked == ""  # yanked without a reason is not "not yanked"
    assert record.state is FileState.REJECTED
    assert record.first_seen == T0 and record.first_seen.tzinfo is not None
    wheel = held(ledger)
    assert wheel.upload_time == T0 - timedelta(hours=2)
    assert wheel.requires_python == ">=3.10"
    assert wheel.core_metadata_sha256 == "d" * 64
    assert wheel.size == 2048
    assert wheel.stored is False and wheel.listed is True and wheel.established is False
    assert wheel.version == "1.0"


def test_a_projects_files_read_back_exactly_in_filename_order(ledger: Ledger) -> None:
    """SQLite reads a project's rows as one JSON value SQLite builds: every character a
    JSON string escapes, and a size past 2**53, come back as written, sorted as stored."""
    spelt = 'quote " backslash \\ tab \t control \x01 line\u2028 é 😀'
    files = [
        replace(upstream_file(f"demo-1.{n}-py3-none-any.whl", T0, f"{n:064x}", spelt), size=size)
        for n, size in ((10, 2**60), (2, 0), (9, None))
    ]
    look(ledger, snapshot(*files), T0)
    read = ledger.files(DEMO)
    assert [record.filename for record in read] == sorted(f.filename for f in files)
    assert {record.yanked for record in read} == {spelt}
    assert [record.size for record in read] == [2**60, 0, None]
    assert ledger.files_changed_since(DEMO, 0) == read


def test_projects_are_listed_in_name_order(ledger: Ledger) -> None:
    for name in ("zeta", "alpha", "mid"):
        look(ledger, snapshot(name=NormalizedName(name)), T0)
    assert ledger.projects() == ["alpha", "mid", "zeta"]


# -- events ---------------------------------------------------------------------------------


def test_first_sight_is_recorded_with_actor_and_reason(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    events = ledger.events(DEMO)
    by_file = {event.filename: event for event in events}
    assert set(by_file) == {OLD_WHEEL, NEW_WHEEL}
    old, new = by_file[OLD_WHEEL], by_file[NEW_WHEEL]
    assert (old.from_state, old.to_state, old.reason) == (None, "promoted", "established")
    assert (new.from_state, new.to_state, new.reason) == (
        None,
        "held",
        "cooling; waiting for its bytes",
    )
    assert all(event.actor == ACTOR and event.at == T0 for event in events)
    assert new.sha256 == "b" * 64 and new.project == DEMO


def test_anomaly_is_recorded_as_an_event(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD), T0)
    backdated = upstream_file(NEW_WHEEL, T0 - timedelta(days=30), "b" * 64)
    look(ledger, snapshot(OLD, backdated), T0 + timedelta(hours=1))
    anomalies = [event for event in ledger.events(DEMO) if event.to_state == "anomaly"]
    assert len(anomalies) == 1
    assert anomalies[0].filename == NEW_WHEEL
    assert anomalies[0].reason.startswith("backdated")


def test_every_state_change_is_recorded(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    record = ledger.mark_stored(held(ledger))
    assert record.stored
    later = T0 + timedelta(days=3)
    promoted = ledger.transition(record, FileState.PROMOTED, "cooled", "system:promoter", later)
    assert promoted.state is FileState.PROMOTED and promoted.reason == "cooled"
    look(ledger, snapshot(OLD), later + timedelta(hours=1))  # the upstream removed it
    withdrawn = held(ledger)
    assert withdrawn.state is FileState.WITHDRAWN and not withdrawn.listed
    changes = [
        (event.from_state, event.to_state, event.reason, event.actor)
        for event in ledger.events(DEMO)
        if event.filename == NEW_WHEEL
    ]
    assert changes == [
        (None, "held", "cooling; waiting for its bytes", ACTOR),
        ("held", "promoted", "cooled", "system:promoter"),
        ("promoted", "withdrawn", "upstream_removed", ACTOR),
    ]


def test_tally_counts_states_work_and_events(ledger: Ledger) -> None:
    """What /metrics shows: read in one go, agreeing with the records."""
    empty = ledger.tally()
    assert dict(empty.files_by_state) == {} and empty.events == 0
    assert (empty.vetting_queue, empty.outbox_backlog) == (0, 0)
    look(ledger, snapshot(OLD, NEW, SDIST), T0)
    record = ledger.mark_stored(held(ledger))
    ledger.transition(record, FileState.BLOCKED, "advisory", "system:feeds", T0)
    tally = ledger.tally()
    for state in FileState:
        assert tally.files_by_state.get(state, 0) == len(ledger.in_states((state,))), state
    assert tally.files_by_state[FileState.BLOCKED] == 1
    assert tally.vetting_queue == len(ledger.held_inside()) >= 1
    assert tally.events == len(ledger.events())


def test_yank_and_status_changes_are_recorded(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD), T0)
    yanked = upstream_file(OLD_WHEEL, OLD.upload_time, OLD.sha256 or "", yanked="broken")
    look(ledger, snapshot(yanked, status=ProjectStatus.ARCHIVED), T0 + timedelta(hours=1))
    reasons = [event.reason for event in ledger.events(DEMO)]
    assert "upstream yanked: broken" in reasons
    assert any("archived" in reason for reason in reasons)
    assert held(ledger, OLD_WHEEL).yanked == "broken"
    project = ledger.project(DEMO)
    assert project is not None and project.status is ProjectStatus.ARCHIVED


def test_incident_is_recorded_without_a_state_change(ledger: Ledger) -> None:
    look(ledger, snapshot(NEW), T0)
    record = held(ledger)
    ledger.record_incident(record, "hash_mismatch: got ffff", "system:fetcher", T0)
    event = ledger.events(DEMO)[-1]
    assert (event.to_state, event.reason, event.actor) == (
        "incident",
        "hash_mismatch: got ffff",
        "system:fetcher",
    )
    assert held(ledger) == record


def test_events_filter_by_project_and_time(ledger: Ledger) -> None:
    look(ledger, snapshot(NEW), T0)
    look(ledger, snapshot(upstream_file("other-1.0.tar.gz", T0, "9" * 64), name=OTHER), T0)
    later = T0 + timedelta(hours=5)
    ledger.transition(held(ledger), FileState.REJECTED, "operator said no", "admin:ann", later)
    assert {event.project for event in ledger.events()} == {DEMO, OTHER}
    assert {event.project for event in ledger.events(OTHER)} == {OTHER}
    recent = ledger.events(since=later)
    assert [(event.actor, event.to_state) for event in recent] == [("admin:ann", "rejected")]
    assert ledger.events(OTHER, since=later) == []


# -- compare-and-swap -------------------------------------------------------------------------


def test_transition_is_compare_and_swap(ledger: Ledger) -> None:
    look(ledger, snapshot(NEW), T0)
    before = held(ledger)
    after = ledger.transition(before, FileState.REJECTED, "first writer", "admin:a", T0)
    assert after.state is FileState.REJECTED
    assert after.state_version > before.state_version
    events = len(ledger.events())
    seq = ledger.change_seq()
    with pytest.raises(StaleTransition):
        ledger.transition(before, FileState.PROMOTED, "second writer", "admin:b", T0)
    assert held(ledger) == after
    assert len(ledger.events()) == events
    assert ledger.change_seq() == seq


def test_transition_fails_after_an_upstream_look_changed_the_file(ledger: Ledger) -> None:
    look(ledger, snapshot(NEW), T0)
    read_by_promoter = held(ledger)
    look(ledger, snapshot(), T0 + timedelta(minutes=1))  # removed upstream meanwhile
    with pytest.raises(StaleTransition):
        ledger.transition(read_by_promoter, FileState.PROMOTED, "cooled", "p", T0)
    assert held(ledger).state is FileState.REJECTED


def test_stale_observation_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    known = {record.filename: record for record in ledger.files(DEMO)}
    stale = observe(ledger.project(DEMO), known, snapshot(OLD), T0 + timedelta(hours=1), POLICY)
    ledger.transition(known[NEW_WHEEL], FileState.REJECTED, "operator", "admin:a", T0)
    files, events, seq = ledger.files(DEMO), ledger.events(), ledger.change_seq()
    project = ledger.project(DEMO)
    with pytest.raises(StaleTransition):
        ledger.apply(stale, None, ACTOR)
    assert ledger.files(DEMO) == files
    assert ledger.events() == events
    assert ledger.change_seq() == seq
    assert ledger.project(DEMO) == project


def test_racing_first_looks_are_a_stale_transition(ledger: Ledger) -> None:
    """Two looks that both saw a file as new: the second must lose cleanly."""
    first = observe(None, {}, snapshot(NEW), T0, POLICY)
    second = observe(None, {}, snapshot(NEW, SDIST), T0 + timedelta(seconds=1), POLICY)
    ledger.apply(first, None, ACTOR)
    files, events = ledger.files(DEMO), ledger.events()
    with pytest.raises(StaleTransition):
        ledger.apply(second, None, ACTOR)
    assert ledger.files(DEMO) == files
    assert ledger.events() == events


# -- change sequence ----------------------------------------------------------------------


def test_change_seq_grows_with_visible_changes(ledger: Ledger) -> None:
    start = ledger.change_seq()
    look(ledger, snapshot(OLD, NEW), T0)
    after_first = ledger.change_seq()
    assert after_first > start
    assert ledger.changed_since(start) == {DEMO: after_first}
    assert ledger.changed_since(after_first) == {}

    look(ledger, snapshot(upstream_file("other-1.0.tar.gz", T0, "9" * 64), name=OTHER), T0)
    after_other = ledger.change_seq()
    assert after_other > after_first
    assert ledger.changed_since(after_first) == {OTHER: after_other}
    assert set(ledger.changed_since(start)) == {DEMO, OTHER}

    record = ledger.mark_stored(held(ledger))
    ledger.transition(record, FileState.PROMOTED, "cooled", "p", T0 + timedelta(days=3))
    after_promotion = ledger.change_seq()
    assert after_promotion > after_other
    assert ledger.changed_since(after_other) == {DEMO: after_promotion}

    look(ledger, snapshot(OLD, NEW, SDIST), T0 + timedelta(days=3))  # a new file
    assert ledger.change_seq() > after_promotion
    project = ledger.project(DEMO)
    assert project is not None and project.seq == ledger.change_seq()


def test_a_look_that_changes_nothing_keeps_pages_cached(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    seq = ledger.change_seq()
    look(ledger, snapshot(OLD, NEW), T0 + timedelta(seconds=10))
    ledger.touch_look(DEMO, T0 + timedelta(seconds=20))
    assert ledger.changed_since(seq) == {}
    project = ledger.project(DEMO)
    assert project is not None and project.last_look_ok == T0 + timedelta(seconds=20)


class _Kept:
    """A copy of one project's records kept up to date the way a big page is."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seq = self._project_seq()
        self.records = {record.filename: record for record in ledger.files(DEMO)}

    def _project_seq(self) -> int:
        project = self.ledger.project(DEMO)
        return project.seq if project else 0

    def catch_up(self) -> list[str]:
        """Brought up to date; the filenames read to get there."""
        seq = self._project_seq()
        changed = self.ledger.files_changed_since(DEMO, self.seq)
        self.records |= {record.filename: record for record in changed}
        self.seq = seq
        return [record.filename for record in changed]

    def matches_the_ledger(self) -> bool:
        return self.records == {record.filename: record for record in self.ledger.files(DEMO)}


def test_files_changed_since_keeps_a_copy_in_step_reading_only_what_changed(store: Store) -> None:
    server, cli = store.open(), store.open()
    kept = _Kept(server)
    look(server, snapshot(OLD, NEW), T0)
    assert sorted(kept.catch_up()) == [OLD_WHEEL, NEW_WHEEL] and kept.matches_the_ledger()
    assert kept.catch_up() == []  # nothing written since

    look(server, snapshot(OLD, NEW, SDIST), T0 + timedelta(minutes=1))  # one new file
    assert kept.catch_up() == [NEW_SDIST] and kept.matches_the_ledger()

    stored = server.mark_stored(held(server))  # no page change, but the record changes
    assert kept.catch_up() == [NEW_WHEEL] and kept.matches_the_ledger()
    server.set_provenance(stored, "e" * 64)
    assert kept.catch_up() == [NEW_WHEEL] and kept.matches_the_ledger()

    # Another process's decision, as the CLI or `lazaretto work` makes it.
    cli.transition(held(cli), FileState.PROMOTED, "cooled", "p", T0 + timedelta(days=3))
    assert kept.catch_up() == [NEW_WHEEL] and kept.matches_the_ledger()

    yanked = upstream_file(OLD_WHEEL, T0 - timedelta(days=400), "a" * 64, yanked="broken")
    look(server, snapshot(yanked, NEW, SDIST), T0 + timedelta(days=3))
    assert kept.catch_up() == [OLD_WHEEL] and kept.matches_the_ledger()

    server.record_project_gone(DEMO, T0 + timedelta(days=4), "system:catalog")
    # the promoted files are withdrawn, the held one rejected
    assert set(kept.catch_up()) == {OLD_WHEEL, NEW_WHEEL, NEW_SDIST}
    assert kept.matches_the_ledger() and kept.catch_up() == []


def test_a_copy_taken_between_a_seq_and_its_rows_misses_nothing(ledger: Ledger) -> None:
    """Rows written between reading the seq and reading the rows are read again later."""
    look(ledger, snapshot(OLD, NEW), T0)
    kept = _Kept.__new__(_Kept)
    kept.ledger = ledger
    kept.seq = kept._project_seq()
    ledger.transition(held(ledger), FileState.REJECTED, "bad hash", "p", T0)  # in between
    kept.records = {record.filename: record for record in ledger.files(DEMO)}
    assert kept.catch_up() == [NEW_WHEEL] and kept.matches_the_ledger()


# -- the upstream says the project is gone ---------------------------------------------------


def test_record_project_gone(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD, NEW), T0)
    promoted = ledger.transition(
        ledger.mark_stored(held(ledger)), FileState.PROMOTED, "cooled", "p", T0
    )
    assert promoted.state is FileState.PROMOTED
    look(ledger, snapshot(OLD, NEW, SDIST), T0 + timedelta(minutes=1))
    ledger.transition(held(ledger, NEW_SDIST), FileState.REJECTED, "bad hash", "p", T0)
    newest = upstream_file("demo-1.1.tar.gz", T0 + timedelta(minutes=1), "8" * 64)
    look(ledger, snapshot(OLD, NEW, SDIST, newest), T0 + timedelta(minutes=2))
    assert held(ledger, "demo-1.1.tar.gz").state is FileState.HELD
    seq = ledger.change_seq()

    gone_at = T0 + timedelta(hours=2)
    ledger.record_project_gone(DEMO, gone_at, "system:catalog")

    states = {record.filename: (record.state, record.reason) for record in ledger.files(DEMO)}
    assert states == {
        OLD_WHEEL: (FileState.WITHDRAWN, "upstream_removed"),
        NEW_WHEEL: (FileState.WITHDRAWN, "upstream_removed"),
        NEW_SDIST: (FileState.REJECTED, "bad hash"),  # already final: left alone
        "demo-1.1.tar.gz": (FileState.REJECTED, "upstream_removed"),
    }
    assert not any(record.listed for record in ledger.files(DEMO) if record.filename != NEW_SDIST)
    assert ledger.held() == []
    project = ledger.project(DEMO)
    assert project is not None and project.status is ProjectStatus.REMOVED
    assert ledger.projects() == []
    assert DEMO in ledger.changed_since(seq)
    gone_events = list(ledger.events(DEMO, since=gone_at))
    assert {(event.filename, event.to_state) for event in gone_events} == {
        (OLD_WHEEL, "withdrawn"),
        (NEW_WHEEL, "withdrawn"),
        ("demo-1.1.tar.gz", "rejected"),
        (None, "removed"),
    }
    assert all(event.actor == "system:catalog" for event in gone_events)


# -- durability ---------------------------------------------------------------------------


def test_decisions_survive_closing_and_reopening(store: Store) -> None:
    first = store.open()
    look(first, snapshot(OLD, NEW), T0, etag='"abc"')
    promoted = first.transition(
        first.mark_stored(held(first)), FileState.PROMOTED, "cooled", "p", T0
    )
    files, events, seq = first.files(DEMO), first.events(), first.change_seq()
    project = first.project(DEMO)
    store.close_all()

    again = store.open()
    assert again.files(DEMO) == files
    assert again.file(DEMO, NEW_WHEEL) == promoted
    assert again.events() == events
    assert again.change_seq() == seq
    assert again.project(DEMO) == project
    assert again.projects() == [DEMO]


def test_a_second_connection_sees_the_writes(store: Store) -> None:
    server = store.open()
    cli = store.open()
    look(server, snapshot(OLD, NEW), T0)
    record = cli.file(DEMO, NEW_WHEEL)
    assert record is not None and record.state is FileState.HELD
    cli.transition(record, FileState.REJECTED, "operator review", "admin:cli", T0)
    seen = server.file(DEMO, NEW_WHEEL)
    assert seen is not None and seen.state is FileState.REJECTED
    assert server.events(DEMO)[-1].actor == "admin:cli"
    assert server.change_seq() == cli.change_seq()
    with pytest.raises(StaleTransition):  # the server's copy is stale now
        server.transition(record, FileState.PROMOTED, "cooled", "p", T0)


def test_project_record_is_the_one_observe_computed(ledger: Ledger) -> None:
    observation = look(ledger, snapshot(NEW, status=ProjectStatus.DEPRECATED), T0)
    stored = ledger.project(DEMO)
    assert isinstance(stored, ProjectRecord)
    assert stored.status is ProjectStatus.DEPRECATED
    assert stored.first_seen == observation.project.first_seen == T0


# -- the policy a mirror process recorded -----------------------------------------------------


def test_the_recorded_policy_is_seen_by_every_connection_and_changes_are_events(
    store: Store,
) -> None:
    server, cli = store.open(), store.open()
    assert cli.recorded_policy() is None
    document = {"format": 1, "cooling_period": 60.0, "cooling_overrides": {"slow": 604800.0}}
    assert server.record_policy(document, "policy in force: cooling_period 1m", "system:serve", T0)
    later = T0 + timedelta(hours=1)
    assert not server.record_policy(dict(document), "the same again", "system:work", later)
    found = cli.recorded_policy()
    assert found is not None
    assert (found.document, found.actor, found.at) == (document, "system:work", later)
    longer = {**document, "cooling_period": 259200.0}
    assert server.record_policy(longer, "policy in force: cooling_period 3d", "system:serve", later)
    changes = [(e.to_state, e.reason, e.actor) for e in cli.events() if e.to_state == "policy"]
    assert changes == [
        ("policy", "policy in force: cooling_period 1m", "system:serve"),
        ("policy", "policy in force: cooling_period 3d", "system:serve"),
    ]
    assert server.outbox() == []  # a routine record, not a notification


def test_stored_bytes_give_a_size_only_where_the_upstream_gave_none(ledger: Ledger) -> None:
    sizeless = replace(NEW, size=None)
    look(ledger, snapshot(OLD, sizeless), T0)
    assert held(ledger).size is None
    assert ledger.mark_stored(held(ledger), 4321).size == 4321
    old = held(ledger, OLD_WHEEL)
    assert ledger.mark_stored(old, 99).size == OLD.size  # the upstream's is kept


def test_a_listed_files_size_from_its_bytes_changes_its_page(ledger: Ledger) -> None:
    look(ledger, snapshot(replace(NEW, size=None)), T0)
    record = ledger.transition(held(ledger), FileState.PROMOTED, "by hand", "admin", T0)
    project = ledger.project(DEMO)
    assert project is not None
    ledger.mark_stored(record, 4321)
    after = ledger.project(DEMO)
    assert after is not None and after.seq > project.seq
    assert [row.filename for row in ledger.files_changed_since(DEMO, project.seq)] == [NEW_WHEEL]


def test_a_dropped_metadata_file_is_offered_no_more_and_the_page_changes(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD), T0)
    record = held(ledger, OLD_WHEEL)
    assert record.core_metadata_sha256 == "d" * 64
    project = ledger.project(DEMO)
    assert project is not None
    for _ in range(2):  # two requests met the same bad bytes: one incident
        ledger.drop_core_metadata(record, "metadata_mismatch: not its digest", ACTOR, T0)
    assert held(ledger, OLD_WHEEL).core_metadata_sha256 is None
    after = ledger.project(DEMO)
    assert after is not None and after.seq > project.seq
    incidents = [event for event in ledger.events() if event.to_state == "incident"]
    assert [(e.filename, e.reason) for e in incidents] == [
        (OLD_WHEEL, "metadata_mismatch: not its digest")
    ]


def test_fetch_failures_are_counted_once_per_try_and_forgotten_once_stored(
    store: Store, ledger: Ledger
) -> None:
    look(ledger, snapshot(NEW), T0)
    record = held(ledger)
    first = ledger.record_fetch_failure(
        record, FailureKind.TRANSIENT, "HTTP 500", "cfg", "system:p", T0
    )
    assert (first.attempts, first.next_attempt_at) == (1, T0 + delay_after(1))
    # Heard again while it waits (a request that joined the same download): the same one.
    same = ledger.record_fetch_failure(
        record, FailureKind.TRANSIENT, "HTTP 500", "cfg", "system:p", T0
    )
    assert same == first
    later = T0 + delay_after(1)
    second = ledger.record_fetch_failure(
        record, FailureKind.CONFIG, "too_large", "cfg", "system:p", later
    )
    assert second.attempts == 2 and second.kind is FailureKind.CONFIG
    assert second.settings_changed("other cfg") and not second.settings_changed("cfg")
    assert [event.to_state for event in ledger.events(DEMO)].count("incident") == 2
    reopened = store.open()  # the count is on disk: a restart carries on
    assert reopened.fetch_attempt(DEMO, record.filename) == second
    ledger.mark_stored(record)
    assert ledger.fetch_attempts() == []


def test_a_forgotten_blob_marks_its_files_not_stored(ledger: Ledger) -> None:
    look(ledger, snapshot(NEW), T0)
    record = ledger.mark_stored(held(ledger))
    refs = {(ref.sha256, ref.role) for ref in ledger.blob_references()}
    assert (record.sha256, "file") in refs
    assert ledger.forget_blob(record.sha256, "fsck: damaged", "system:fsck", T0) == [
        record.filename
    ]
    assert not held(ledger).stored
    assert ledger.events(DEMO)[-1].reason == "fsck: damaged"


def test_many_readers_beside_a_writer_see_whole_looks(ledger: Ledger) -> None:
    look(ledger, snapshot(OLD), T0)
    failures: list[BaseException] = []
    done = threading.Event()

    def read_until_done() -> None:
        try:
            while not done.is_set():
                names = {record.filename for record in ledger.files(DEMO)}
                assert names in ({OLD.filename}, {OLD.filename, NEW_WHEEL}), names
                ledger.change_seq()
        except Exception as error:  # noqa: BLE001 - handed to the test thread
            failures.append(error)

    readers = [threading.Thread(target=read_until_done, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    for round_ in range(20):
        look(ledger, snapshot(OLD, NEW) if round_ % 2 else snapshot(OLD), T0)
    done.set()
    for reader in readers:
        reader.join(10.0)
    assert failures == []


def test_the_upstream_versions_are_kept_and_a_respelling_is_a_page_change(
    ledger: Ledger,
) -> None:
    look(ledger, replace(snapshot(OLD), versions=("0.9.0",)), T0, etag='"a"')
    project = ledger.project(DEMO)
    assert project is not None and project.versions == ("0.9.0",)
    look(ledger, replace(snapshot(OLD), versions=("0.9",)), T0, etag='"b"')
    respelled = ledger.project(DEMO)
    assert respelled is not None and respelled.versions == ("0.9",)
    assert respelled.seq > project.seq  # pages show the versions: rendered anew
    look(ledger, snapshot(OLD), T0, etag='"c"')  # an upstream from before PEP 700
    assert (ledger.project(DEMO) or project).versions is None


def test_two_connections_racing_on_one_file_make_one_decision(store: Store) -> None:
    """What two replicas (or a server and the CLI) do: one wins, the other is told."""
    first, second = store.open(), store.open()
    look(first, snapshot(NEW), T0)
    (record,) = first.held()
    outcomes: list[str] = []

    def decide(ledger: Ledger, state: FileState) -> None:
        try:
            ledger.transition(record, state, f"to {state.value}", ACTOR, T0)
            outcomes.append("decided")
        except StaleTransition:
            outcomes.append("stale")

    racers = [
        threading.Thread(target=decide, args=(first, FileState.PROMOTED)),
        threading.Thread(target=decide, args=(second, FileState.REJECTED)),
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(10.0)
    assert sorted(outcomes) == ["decided", "stale"]
    changes = [e for e in second.events(DEMO) if e.from_state == FileState.HELD.value]
    assert len(changes) == 1
