"""The pure promotion rules: ``quarantine.decide.decide`` and ``quarantine.observe.observe``.

Nothing here touches a clock, a database or the network: records and times go in,
verdicts and records come out.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName

from quarantine.decide import Verdict, decide, hold_until, is_fresh
from quarantine.filenames import UnservableFile, file_version
from quarantine.models import (
    FileRecord,
    FileState,
    ProjectRecord,
    ProjectStatus,
    Snapshot,
    UpstreamFile,
)
from quarantine.observe import Observation, observe
from quarantine.policy import Exemption, Policy

PROJECT = NormalizedName("demo")
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
COOLING = timedelta(hours=72)
TICK = timedelta(microseconds=1)
SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64

WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"


# -- builders -----------------------------------------------------------------------------

# These tests are about time, takedowns and names. Where the Policy also knows vetting
# checks that must report before a promotion, they are switched off here: the checks
# have tests of their own, and a cooled file must not need them to pass these.
_TIME_ONLY: dict[str, Any] = (
    {"required_checks": ()} if "required_checks" in {f.name for f in fields(Policy)} else {}
)


def make_policy(**settings: Any) -> Policy:
    return Policy(**{**_TIME_ONLY, **settings})


def upstream_file(
    filename: str = WHEEL,
    *,
    uploaded: datetime | None = None,
    sha256: str | None = SHA_A,
    yanked: str | None = None,
) -> UpstreamFile:
    return UpstreamFile(
        filename=filename,
        url=f"https://files.example/packages/{filename}",
        sha256=sha256,
        size=123,
        upload_time=uploaded,
        requires_python=">=3.9",
        yanked=yanked,
        core_metadata_sha256=None,
        provenance_url=None,
    )


def snapshot(
    *files: UpstreamFile,
    status: ProjectStatus = ProjectStatus.ACTIVE,
    name: str = PROJECT,
) -> Snapshot:
    return Snapshot(
        name=NormalizedName(name), files=files, status=status, status_reason=None, serial=1
    )


def project_record(
    *,
    last_look_ok: datetime | None = NOW,
    status: ProjectStatus = ProjectStatus.ACTIVE,
    name: str = PROJECT,
) -> ProjectRecord:
    return ProjectRecord(
        name=NormalizedName(name),
        first_seen=NOW - timedelta(days=400),
        last_look_ok=last_look_ok,
        status=status,
        status_reason=None,
        etag=None,
        serial=1,
        seq=1,
    )


def file_record(
    *,
    clock_start: datetime = NOW - COOLING,
    upload_time: datetime | None = None,
    established: bool = False,
    state: FileState = FileState.HELD,
    reason: str = "cooling",
    stored: bool = True,
    listed: bool = True,
    yanked: str | None = None,
    project: str = PROJECT,
    filename: str = WHEEL,
) -> FileRecord:
    return FileRecord(
        project=NormalizedName(project),
        filename=filename,
        version="1.0",
        sha256=SHA_A,
        size=123,
        upload_time=clock_start if upload_time is None else upload_time,
        first_seen=clock_start,
        clock_start=clock_start,
        established=established,
        state=state,
        reason=reason,
        url=f"https://files.example/packages/{filename}",
        requires_python=None,
        yanked=yanked,
        core_metadata_sha256=None,
        provenance_url=None,
        provenance_sha256=None,
        stored=stored,
        listed=listed,
        anomaly=None,
        state_version=3,
    )


class Mirror:
    """The ledger's bookkeeping in memory: enough to run several looks in a row."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or make_policy()
        self.project: ProjectRecord | None = None
        self.files: dict[str, FileRecord] = {}

    def look(self, snap: Snapshot, now: datetime) -> Observation:
        observation = observe(self.project, self.files, snap, now, self.policy)
        self.project = observation.project
        for record in observation.new:
            assert record.filename not in self.files
            self.files[record.filename] = record
        for old, new in observation.changed:
            assert self.files[old.filename] == old
            self.files[new.filename] = new
        return observation

    def store(self, *filenames: str) -> None:
        for name in filenames:
            self.files[name] = replace(self.files[name], stored=True)

    def state(self, filename: str) -> FileState:
        return self.files[filename].state


def first_look(
    *files: UpstreamFile,
    now: datetime = NOW,
    policy: Policy | None = None,
    status: ProjectStatus = ProjectStatus.ACTIVE,
) -> Observation:
    return observe(None, {}, snapshot(*files, status=status), now, policy or make_policy())


def only(observation: Observation) -> FileRecord:
    assert len(observation.new) == 1, observation.new
    return observation.new[0]


# -- established files and the first look at a project ------------------------------------


def test_first_look_lists_established_files_at_once_without_bytes() -> None:
    policy = make_policy()
    old = NOW - policy.cooling_period - policy.vetting_window
    record = only(first_look(upstream_file(uploaded=old - timedelta(days=700)), policy=policy))
    assert record.established
    assert record.state is FileState.PROMOTED
    assert record.reason == "established"
    assert not record.stored  # fetched and checked on first download, not before listing


@pytest.mark.parametrize("exempt", [False, True])
def test_a_file_without_a_size_is_listed_only_once_its_bytes_are_held(exempt: bool) -> None:
    """PEP 700: a page gives every file's size; without the upstream's, the bytes tell it."""
    exemptions = {PROJECT: Exemption(reason="internal build")} if exempt else {}
    policy = make_policy(exemptions=exemptions)
    old = NOW - timedelta(days=700)
    sizeless = replace(upstream_file(uploaded=old), size=None)
    record = only(first_look(sizeless, policy=policy))
    assert record.state is FileState.HELD
    assert record.reason == "waiting for its bytes: the upstream gave no size"
    verdict = decide(record, project_record(), policy, NOW)
    assert verdict.needs_bytes and verdict.state is FileState.HELD
    stored = replace(record, stored=True, size=321)
    assert decide(stored, project_record(), policy, NOW).state is FileState.PROMOTED


def test_established_boundary_is_cooling_plus_vetting_window() -> None:
    policy = make_policy(cooling_period=timedelta(days=3), vetting_window=timedelta(days=30))
    edge = NOW - timedelta(days=33)
    at_edge = only(first_look(upstream_file(uploaded=edge), policy=policy))
    inside = only(first_look(upstream_file(uploaded=edge + TICK), policy=policy))
    assert at_edge.established and at_edge.state is FileState.PROMOTED
    assert not inside.established and inside.state is FileState.HELD


def test_cooled_but_not_established_file_waits_for_bytes_at_first_look() -> None:
    record = only(first_look(upstream_file(uploaded=NOW - timedelta(days=10))))
    assert not record.established
    assert record.state is FileState.HELD
    assert "bytes" in record.reason


def test_first_look_mixes_old_and_new_files_of_one_project() -> None:
    policy = make_policy()
    observation = first_look(
        upstream_file("demo-0.9.tar.gz", uploaded=NOW - timedelta(days=730)),
        upstream_file("demo-1.0.tar.gz", uploaded=NOW - timedelta(days=10)),
        upstream_file("demo-1.1.tar.gz", uploaded=NOW - timedelta(hours=1)),
        policy=policy,
    )
    states = {record.filename: record.state for record in observation.new}
    assert states == {
        "demo-0.9.tar.gz": FileState.PROMOTED,
        "demo-1.0.tar.gz": FileState.HELD,
        "demo-1.1.tar.gz": FileState.HELD,
    }
    assert observation.project.first_seen == NOW
    assert observation.project.last_look_ok == NOW
    assert observation.alters_pages


# -- the cooling hold ----------------------------------------------------------------------


def test_new_file_is_held_until_upload_time_plus_cooling() -> None:
    uploaded = NOW - timedelta(hours=1)
    record = only(first_look(upstream_file(uploaded=uploaded)))
    assert record.state is FileState.HELD
    assert record.clock_start == uploaded
    assert record.anomaly is None
    policy = make_policy()
    assert hold_until(record, policy) == uploaded + policy.cooling_period
    stored = replace(record, stored=True)
    end = uploaded + policy.cooling_period
    fresh_before = project_record(last_look_ok=end - TICK)
    before = decide(stored, fresh_before, policy, end - TICK)
    assert before.state is FileState.HELD
    assert before.hold_until == end
    assert before.reason == "cooling; vetted"
    at_end = decide(stored, project_record(last_look_ok=end), policy, end)
    assert at_end.state is FileState.PROMOTED and at_end.reason.startswith("cooled")


def test_per_project_cooling_override() -> None:
    slow = NormalizedName("slow")
    policy = make_policy(cooling_overrides={slow: timedelta(days=14)})
    assert policy.cooling_for(slow) == timedelta(days=14)
    assert policy.cooling_for(PROJECT) == policy.cooling_period
    record = file_record(clock_start=NOW - timedelta(days=5), project="slow")
    held = decide(record, project_record(name="slow"), policy, NOW)
    assert held.state is FileState.HELD
    assert held.hold_until == NOW + timedelta(days=9)
    other = decide(replace(record, project=PROJECT), project_record(), policy, NOW)
    assert other.state is FileState.PROMOTED


def test_per_project_cooling_override_moves_the_established_line() -> None:
    slow = NormalizedName("demo")
    policy = make_policy(cooling_overrides={slow: timedelta(days=60)}, vetting_window=timedelta(0))
    # 40 days old: established under the default 72 h, not under a 60-day period.
    record = only(first_look(upstream_file(uploaded=NOW - timedelta(days=40)), policy=policy))
    assert not record.established
    assert record.state is FileState.HELD


def test_hold_per_file_wheel_and_sdist_of_one_release() -> None:
    """L1: the wheel at t0 and the sdist at t0+2d; each ends its own period."""
    t0 = NOW
    mirror = Mirror()
    wheel = upstream_file(WHEEL, uploaded=t0, sha256=SHA_A)
    sdist = upstream_file(SDIST, uploaded=t0 + timedelta(days=2), sha256=SHA_B)
    mirror.look(snapshot(wheel), t0 + timedelta(hours=1))
    mirror.look(snapshot(wheel, sdist), t0 + timedelta(days=2, hours=1))
    assert mirror.files[SDIST].anomaly is None  # uploaded after the previous look
    mirror.store(WHEEL, SDIST)

    wheel_end = t0 + COOLING
    sdist_end = t0 + timedelta(days=2) + COOLING
    mirror.look(snapshot(wheel, sdist), wheel_end - TICK)
    assert (mirror.state(WHEEL), mirror.state(SDIST)) == (FileState.HELD, FileState.HELD)
    mirror.look(snapshot(wheel, sdist), wheel_end)
    assert (mirror.state(WHEEL), mirror.state(SDIST)) == (FileState.PROMOTED, FileState.HELD)
    mirror.look(snapshot(wheel, sdist), sdist_end - TICK)
    assert mirror.state(SDIST) is FileState.HELD
    mirror.look(snapshot(wheel, sdist), sdist_end)
    assert mirror.state(SDIST) is FileState.PROMOTED
    assert mirror.files[WHEEL].reason.startswith("cooled")


def test_new_file_in_promoted_release_is_held_while_old_files_stay() -> None:
    mirror = Mirror()
    old = upstream_file(SDIST, uploaded=NOW - timedelta(days=400), sha256=SHA_A)
    mirror.look(snapshot(old), NOW)
    assert mirror.state(SDIST) is FileState.PROMOTED
    later = NOW + timedelta(days=1)
    new = upstream_file(WHEEL, uploaded=later - timedelta(minutes=5), sha256=SHA_B)
    observation = mirror.look(snapshot(old, new), later)
    assert [record.filename for record in observation.new] == [WHEEL]
    assert mirror.state(WHEEL) is FileState.HELD
    assert mirror.state(SDIST) is FileState.PROMOTED


# -- exemptions and the cutoff -----------------------------------------------------------


def test_exempt_project_is_promoted_with_its_reason() -> None:
    policy = make_policy(exemptions={PROJECT: Exemption(reason="internal build")})
    record = only(first_look(upstream_file(uploaded=NOW - timedelta(minutes=1)), policy=policy))
    assert record.state is FileState.PROMOTED
    assert record.reason == "exempt: internal build"


def test_exemption_expires_at_its_until() -> None:
    until = NOW + timedelta(days=1)
    policy = make_policy(exemptions={PROJECT: Exemption(reason="migration", until=until)})
    record = file_record(clock_start=NOW - timedelta(minutes=5), stored=False)
    assert decide(record, project_record(), policy, until - TICK).state is FileState.PROMOTED
    expired = decide(record, project_record(), policy, until)
    assert expired.state is FileState.HELD
    assert expired.reason == "cooling; waiting for its bytes"
    assert policy.exemption_for(PROJECT, until) is None


def test_exemption_of_another_project_does_not_apply() -> None:
    policy = make_policy(exemptions={NormalizedName("other"): Exemption(reason="ours")})
    record = file_record(clock_start=NOW - timedelta(minutes=5))
    assert decide(record, project_record(), policy, NOW).state is FileState.HELD


def test_cutoff_holds_files_uploaded_after_it() -> None:
    cutoff = NOW - timedelta(days=20)
    policy = make_policy(cutoff=cutoff)
    before = file_record(clock_start=cutoff - timedelta(days=1))
    at = file_record(clock_start=cutoff)
    after = file_record(clock_start=cutoff + TICK)
    project = project_record()
    assert decide(before, project, policy, NOW).state is FileState.PROMOTED
    assert decide(at, project, policy, NOW).state is FileState.PROMOTED
    verdict = decide(after, project, policy, NOW)
    assert verdict.state is FileState.HELD
    assert verdict.reason.startswith("cutoff: uploaded after ")


def test_cutoff_holds_files_without_upload_time() -> None:
    policy = make_policy(cutoff=NOW - timedelta(days=20))
    record = replace(file_record(clock_start=NOW - timedelta(days=100)), upload_time=None)
    verdict = decide(record, project_record(), policy, NOW)
    assert verdict.state is FileState.HELD
    assert verdict.reason.startswith("cutoff")


def test_cutoff_wins_over_established_and_exempt() -> None:
    cutoff = NOW - timedelta(days=400)
    policy = make_policy(cutoff=cutoff, exemptions={PROJECT: Exemption(reason="internal")})
    old = file_record(clock_start=NOW - timedelta(days=300), established=True)
    assert decide(old, project_record(), policy, NOW).state is FileState.HELD


# -- upload-time anomalies ------------------------------------------------------------------


def test_no_upload_time_is_held_from_first_sight() -> None:
    record = only(first_look(upstream_file(uploaded=None)))
    assert record.state is FileState.HELD
    assert record.clock_start == NOW
    assert not record.established
    assert record.anomaly is not None and "upload-time" in record.anomaly
    policy = make_policy()
    stored = replace(record, stored=True)
    end = NOW + policy.cooling_period
    assert decide(stored, project_record(last_look_ok=end), policy, end - TICK).state is (
        FileState.HELD
    )
    assert decide(stored, project_record(last_look_ok=end), policy, end).state is (
        FileState.PROMOTED
    )


def test_backdated_file_is_held_from_first_sight_with_an_anomaly() -> None:
    mirror = Mirror()
    old = upstream_file(SDIST, uploaded=NOW - timedelta(days=400))
    mirror.look(snapshot(old), NOW)
    later = NOW + timedelta(hours=6)
    # Claims to be 30 days old, yet the look six hours ago did not list it.
    sneaky = upstream_file(WHEEL, uploaded=NOW - timedelta(days=30), sha256=SHA_B)
    mirror.look(snapshot(old, sneaky), later)
    record = mirror.files[WHEEL]
    assert record.state is FileState.HELD
    assert not record.established  # 30 days old, but never trusted as such
    assert record.clock_start == later
    assert record.anomaly is not None and record.anomaly.startswith("backdated")
    assert "held from first sight" in record.reason
    mirror.store(WHEEL)
    mirror.look(snapshot(old, sneaky), later + COOLING - TICK)
    assert mirror.state(WHEEL) is FileState.HELD
    mirror.look(snapshot(old, sneaky), later + COOLING)
    assert mirror.state(WHEEL) is FileState.PROMOTED


def test_file_uploaded_after_the_previous_look_is_not_backdated() -> None:
    mirror = Mirror()
    mirror.look(snapshot(upstream_file(SDIST, uploaded=NOW - timedelta(days=400))), NOW)
    fresh = upstream_file(WHEEL, uploaded=NOW + timedelta(minutes=1), sha256=SHA_B)
    mirror.look(
        snapshot(upstream_file(SDIST, uploaded=NOW - timedelta(days=400)), fresh),
        NOW + timedelta(hours=1),
    )
    record = mirror.files[WHEEL]
    assert record.anomaly is None
    assert record.clock_start == NOW + timedelta(minutes=1)


def test_backdate_tolerance() -> None:
    policy = make_policy(backdate_tolerance=timedelta(hours=1))
    previous = ProjectRecord(
        name=PROJECT,
        first_seen=NOW - timedelta(days=1),
        last_look_ok=NOW - timedelta(hours=2),
        status=ProjectStatus.ACTIVE,
        status_reason=None,
        etag=None,
        serial=1,
        seq=1,
    )
    inside = upstream_file(WHEEL, uploaded=NOW - timedelta(hours=2, minutes=30))
    outside = upstream_file(SDIST, uploaded=NOW - timedelta(hours=3, minutes=1), sha256=SHA_B)
    observation = observe(previous, {}, snapshot(inside, outside), NOW, policy)
    by_name = {record.filename: record for record in observation.new}
    assert by_name[WHEEL].anomaly is None
    assert by_name[SDIST].anomaly is not None and by_name[SDIST].clock_start == NOW


def test_future_upload_time_is_an_anomaly_and_cools_from_that_time() -> None:
    future = NOW + timedelta(days=2)
    record = only(first_look(upstream_file(uploaded=future)))
    assert record.state is FileState.HELD
    assert not record.established
    assert record.anomaly is not None and "future" in record.anomaly
    assert record.clock_start == future
    assert hold_until(record, make_policy()) == future + COOLING


def test_upload_time_slightly_ahead_is_within_tolerance() -> None:
    record = only(first_look(upstream_file(uploaded=NOW + timedelta(minutes=4))))
    assert record.anomaly is None
    assert record.clock_start == NOW + timedelta(minutes=4)


# -- bytes and a fresh look before promotion ------------------------------------------------


def test_cooled_file_without_bytes_is_not_promoted() -> None:
    verdict = decide(file_record(stored=False), project_record(), make_policy(), NOW)
    assert verdict.state is FileState.HELD
    assert verdict.needs_bytes and not verdict.needs_look


def test_cooled_file_without_fresh_look_is_not_promoted() -> None:
    policy = make_policy(freshness_window=timedelta(minutes=10))
    stale = project_record(last_look_ok=NOW - timedelta(minutes=10) - TICK)
    verdict = decide(file_record(), stale, policy, NOW)
    assert verdict.state is FileState.HELD
    assert verdict.needs_look and not verdict.needs_bytes
    edge = project_record(last_look_ok=NOW - timedelta(minutes=10))
    assert decide(file_record(), edge, policy, NOW).state is FileState.PROMOTED


def test_never_looked_project_is_not_fresh() -> None:
    project = project_record(last_look_ok=None)
    assert not is_fresh(project, make_policy(), NOW)
    assert decide(file_record(), project, make_policy(), NOW).needs_look


def test_still_cooling_file_reports_neither_need() -> None:
    verdict = decide(
        file_record(clock_start=NOW - timedelta(hours=1), stored=False),
        project_record(last_look_ok=None),
        make_policy(),
        NOW,
    )
    assert verdict.state is FileState.HELD
    assert not verdict.needs_bytes and not verdict.needs_look


# -- yanks and takedowns --------------------------------------------------------------------


def test_yanked_before_promotion_is_rejected() -> None:
    verdict = decide(file_record(yanked="broken build"), project_record(), make_policy(), NOW)
    assert verdict == Verdict(FileState.REJECTED, "yanked_upstream_before_promotion")


def test_yank_seen_in_a_later_look_rejects_a_held_file() -> None:
    mirror = Mirror()
    mirror.look(snapshot(upstream_file(uploaded=NOW - timedelta(hours=1))), NOW)
    later = NOW + timedelta(hours=1)
    mirror.look(snapshot(upstream_file(uploaded=NOW - timedelta(hours=1), yanked="")), later)
    assert mirror.state(WHEEL) is FileState.REJECTED
    assert mirror.files[WHEEL].reason == "yanked_upstream_before_promotion"


def test_yanked_established_or_promoted_file_stays_listed_as_yanked() -> None:
    established = only(
        first_look(upstream_file(uploaded=NOW - timedelta(days=400), yanked="security"))
    )
    assert established.state is FileState.PROMOTED
    assert established.yanked == "security"
    promoted = file_record(state=FileState.PROMOTED, reason="cooled", yanked="")
    assert decide(promoted, project_record(), make_policy(), NOW).state is FileState.PROMOTED


def test_file_no_longer_listed_withdraws_promoted_and_rejects_held() -> None:
    mirror = Mirror()
    old = upstream_file(SDIST, uploaded=NOW - timedelta(days=400), sha256=SHA_A)
    young = upstream_file(WHEEL, uploaded=NOW - timedelta(hours=1), sha256=SHA_B)
    mirror.look(snapshot(old, young), NOW)
    assert (mirror.state(SDIST), mirror.state(WHEEL)) == (FileState.PROMOTED, FileState.HELD)
    observation = mirror.look(snapshot(), NOW + timedelta(minutes=5))
    assert {was.filename: now.state for was, now in observation.changed} == {
        SDIST: FileState.WITHDRAWN,
        WHEEL: FileState.REJECTED,
    }
    assert all(not new.listed for _, new in observation.changed)
    assert all(new.reason == "upstream_removed" for _, new in observation.changed)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ProjectStatus.QUARANTINED, "upstream_quarantined"),
        (ProjectStatus.REMOVED, "upstream_removed"),
    ],
)
def test_project_takedown_withdraws_promoted_and_rejects_held(
    status: ProjectStatus, reason: str
) -> None:
    project = project_record(status=status)
    promoted = file_record(state=FileState.PROMOTED, reason="established", established=True)
    held = file_record(clock_start=NOW - timedelta(hours=1))
    assert decide(promoted, project, make_policy(), NOW) == Verdict(FileState.WITHDRAWN, reason)
    assert decide(held, project, make_policy(), NOW) == Verdict(FileState.REJECTED, reason)


def test_quarantined_project_at_a_later_look_withdraws_everything() -> None:
    mirror = Mirror()
    old = upstream_file(SDIST, uploaded=NOW - timedelta(days=400))
    mirror.look(snapshot(old), NOW)
    mirror.look(snapshot(old, status=ProjectStatus.QUARANTINED), NOW + timedelta(days=300))
    assert mirror.state(SDIST) is FileState.WITHDRAWN
    assert mirror.files[SDIST].reason == "upstream_quarantined"


@pytest.mark.parametrize("status", [ProjectStatus.ARCHIVED, ProjectStatus.DEPRECATED])
def test_archived_and_deprecated_projects_are_served(status: ProjectStatus) -> None:
    record = only(first_look(upstream_file(uploaded=NOW - timedelta(days=400)), status=status))
    assert record.state is FileState.PROMOTED


@pytest.mark.parametrize("state", [FileState.REJECTED, FileState.WITHDRAWN])
def test_rejected_and_withdrawn_never_return_on_their_own(state: FileState) -> None:
    record = file_record(state=state, reason="upstream_removed", established=True)
    for project in (project_record(), project_record(status=ProjectStatus.QUARANTINED)):
        verdict = decide(record, project, make_policy(), NOW + timedelta(days=1000))
        assert verdict == Verdict(state, "upstream_removed")


def test_relisted_file_stays_withdrawn() -> None:
    mirror = Mirror()
    old = upstream_file(SDIST, uploaded=NOW - timedelta(days=400))
    mirror.look(snapshot(old), NOW)
    mirror.look(snapshot(), NOW + timedelta(hours=1))
    mirror.look(snapshot(old), NOW + timedelta(hours=2))
    assert mirror.state(SDIST) is FileState.WITHDRAWN
    assert mirror.files[SDIST].listed


# -- digest changes ----------------------------------------------------------------------


def test_digest_change_keeps_old_sha256_and_rejects_a_held_file() -> None:
    mirror = Mirror()
    mirror.look(snapshot(upstream_file(uploaded=NOW - timedelta(hours=1), sha256=SHA_A)), NOW)
    later = NOW + timedelta(hours=1)
    swapped = upstream_file(uploaded=NOW - timedelta(hours=1), sha256=SHA_B)
    observation = mirror.look(snapshot(swapped), later)
    record = mirror.files[WHEEL]
    assert record.sha256 == SHA_A
    assert record.state is FileState.REJECTED
    assert record.reason == "digest_changed"
    assert record.anomaly is not None and SHA_B in record.anomaly
    assert len(observation.changed) == 1


def test_digest_change_keeps_old_sha256_of_a_promoted_file_and_flags_it() -> None:
    mirror = Mirror()
    mirror.look(snapshot(upstream_file(uploaded=NOW - timedelta(days=400), sha256=SHA_A)), NOW)
    mirror.look(
        snapshot(upstream_file(uploaded=NOW - timedelta(days=400), sha256=SHA_C)),
        NOW + timedelta(hours=1),
    )
    record = mirror.files[WHEEL]
    assert record.sha256 == SHA_A
    assert record.anomaly is not None and "digest_changed" in record.anomaly


def test_repeating_the_same_look_changes_nothing() -> None:
    mirror = Mirror()
    files = (
        upstream_file(SDIST, uploaded=NOW - timedelta(days=400), sha256=SHA_A),
        upstream_file(WHEEL, uploaded=NOW - timedelta(hours=1), sha256=SHA_B),
    )
    mirror.look(snapshot(*files), NOW)
    again = mirror.look(snapshot(*files), NOW + timedelta(seconds=30))
    assert again.new == () and again.changed == ()
    assert not again.alters_pages


@pytest.mark.parametrize("sha256", [None, "A" * 64])
def test_file_without_trusted_hash_is_not_a_digest_change_at_the_next_look(
    sha256: str | None,
) -> None:
    """An unchanged listing must not raise a digest_changed incident (INV-3 alarms)."""
    mirror = Mirror()
    entry = upstream_file(uploaded=NOW - timedelta(hours=1), sha256=sha256)
    mirror.look(snapshot(entry), NOW)
    assert mirror.state(WHEEL) is FileState.REJECTED
    again = mirror.look(snapshot(entry), NOW + timedelta(minutes=1))
    assert again.changed == ()
    assert mirror.files[WHEEL].anomaly is None


# -- files that can never be served --------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("demo-1.0-py2.7.egg", "unsupported_file_type"),
        ("demo-1.0.win32.exe", "unsupported_file_type"),
        ("demo-1.0.tar.zst", "unsupported_file_type"),
        ("demo-1.0.msi", "unsupported_file_type"),
        ("other-1.0.tar.gz", "invalid_filename"),
        ("other-1.0-py3-none-any.whl", "invalid_filename"),
        ("demo-1.0+local-py3-none-any.whl", "local_version"),
        ("demo-1.0+ubuntu1.tar.gz", "local_version"),
        ("../demo-1.0.tar.gz", "invalid_filename"),
        ("sub\\demo-1.0.tar.gz", "invalid_filename"),
        ("demo-1.0\x1b[2J.tar.gz", "invalid_filename"),
        ("demo-1.0.tar.gz\n", "invalid_filename"),
        ("demo-notaversion.tar.gz", "invalid_filename"),
        ("demo-1.0-py3-none.whl", "invalid_filename"),
        ("demo.whl", "invalid_filename"),
    ],
)
def test_unservable_filenames_are_rejected(filename: str, code: str) -> None:
    record = only(first_look(upstream_file(filename, uploaded=NOW - timedelta(days=400))))
    assert record.state is FileState.REJECTED
    assert record.reason.startswith(code + ":"), record.reason
    assert record.version == ""


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("demo-1.0.tar.gz", "1.0"),
        ("demo-1.0.zip", "1.0"),
        ("demo-1.0.tar.bz2", "1.0"),
        ("Demo-2.0rc1-py3-none-any.whl", "2.0rc1"),
        ("demo-1!3.0.post1.tar.gz", "1!3.0.post1"),
    ],
)
def test_servable_filenames_give_their_version(filename: str, version: str) -> None:
    assert file_version(PROJECT, filename) == version


def test_filename_spelling_of_the_project_name_is_normalised() -> None:
    assert file_version(NormalizedName("foo-bar"), "Foo_Bar-1.0.tar.gz") == "1.0"
    assert file_version(NormalizedName("foo-bar"), "foo_bar-1.0-py3-none-any.whl") == "1.0"
    with pytest.raises(UnservableFile, match="invalid_filename"):
        file_version(NormalizedName("foo-bar"), "foobar-1.0.tar.gz")


@pytest.mark.parametrize(
    "sha256", [None, "", "A" * 64, "a" * 63, "a" * 65, "g" * 64, " " + "a" * 63, "a" * 63 + "\n"]
)
def test_bad_or_missing_sha256_is_rejected(sha256: str | None) -> None:
    record = only(first_look(upstream_file(uploaded=NOW - timedelta(days=400), sha256=sha256)))
    assert record.state is FileState.REJECTED
    assert record.reason.startswith("no_trusted_hash")
    assert record.sha256 == ""


# -- properties ----------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def near(moment: datetime, data: st.DataObject, spread: timedelta) -> datetime:
    """A time at, just before, or somewhere around ``moment``: boundaries are where bugs are."""
    jitter = data.draw(
        st.sampled_from([-TICK, timedelta(0), TICK]) | st.timedeltas(-spread, spread),
        label="jitter",
    )
    return moment + jitter


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    cooling=st.timedeltas(timedelta(0), timedelta(days=30)),
    vetting=st.timedeltas(timedelta(0), timedelta(days=30)),
    seen_before=st.booleans(),
    has_upload_time=st.booleans(),
    stored=st.booleans(),
    fresh=st.booleans(),
    with_cutoff=st.booleans(),
)
def test_property_nothing_skips_the_cooling_period(
    data: st.DataObject,
    cooling: timedelta,
    vetting: timedelta,
    seen_before: bool,
    has_upload_time: bool,
    stored: bool,
    fresh: bool,
    with_cutoff: bool,
) -> None:
    """From the upstream's listing to a verdict, by way of observe(), at any later time."""
    first_seen = BASE
    span = cooling + vetting + timedelta(days=1)
    previous_look = None
    if seen_before:
        previous_look = first_seen - data.draw(st.timedeltas(timedelta(0), 2 * span), "gap")
    uploaded = None
    if has_upload_time:
        uploaded = first_seen + data.draw(st.timedeltas(-2 * span, 2 * HOUR), "upload")
    cutoff = near(first_seen, data, 2 * span) if with_cutoff else None
    policy = make_policy(cooling_period=cooling, vetting_window=vetting, cutoff=cutoff)
    before = (
        None if previous_look is None else replace(project_record(), last_look_ok=previous_look)
    )
    observation = observe(
        before, {}, snapshot(upstream_file(uploaded=uploaded)), first_seen, policy
    )
    record = replace(only(observation), stored=stored)

    # The independent oracle: when may this file be promoted at the earliest?
    backdated = uploaded is not None and previous_look is not None and uploaded < previous_look
    future = uploaded is not None and uploaded > first_seen + policy.future_tolerance
    start = first_seen if uploaded is None or backdated else uploaded
    may_be_established = (
        uploaded is not None
        and not backdated
        and not future
        and first_seen - uploaded >= cooling + vetting
    )
    after_cutoff = cutoff is not None and (uploaded is None or uploaded > cutoff)

    anchors = [first_seen, start + cooling, first_seen + cooling, record.clock_start + cooling]
    if uploaded is not None:
        anchors.append(uploaded + cooling)
    now = max(first_seen, near(data.draw(st.sampled_from(anchors), "anchor"), data, span))
    age = data.draw(st.timedeltas(timedelta(0), policy.freshness_window), "look age")
    last_look = now - age if fresh else now - policy.freshness_window - TICK - age
    project = replace(observation.project, last_look_ok=last_look)
    verdict = decide(record, project, policy, now)

    if record.established:
        assert may_be_established
    if verdict.state is not FileState.PROMOTED:
        return
    assert not after_cutoff
    if may_be_established and record.established:
        return  # listed at once; its bytes are checked on first download
    assert now >= start + cooling
    assert now >= record.clock_start + cooling
    assert stored and fresh


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    clock_start_offset=st.timedeltas(timedelta(days=-1500), timedelta(days=60)),
    cooling=st.timedeltas(timedelta(0), timedelta(days=60)),
    freshness=st.timedeltas(timedelta(0), timedelta(hours=2)),
    stored=st.booleans(),
    fresh=st.booleans(),
    expired_exemption=st.booleans(),
)
def test_property_promoted_needs_cooling_bytes_and_a_fresh_look(
    data: st.DataObject,
    clock_start_offset: timedelta,
    cooling: timedelta,
    freshness: timedelta,
    stored: bool,
    fresh: bool,
    expired_exemption: bool,
) -> None:
    """decide() alone, on any held record that is neither established nor exempt."""
    clock_start = BASE + clock_start_offset
    now = near(clock_start + cooling, data, cooling + HOUR)
    exemptions: dict[NormalizedName, Exemption] = {}
    if expired_exemption:  # an exemption that has run out grants nothing
        until = now - data.draw(st.timedeltas(timedelta(0), timedelta(days=10)), "expired for")
        exemptions[PROJECT] = Exemption(reason="expired", until=until)
    policy = make_policy(cooling_period=cooling, freshness_window=freshness, exemptions=exemptions)
    age = data.draw(st.timedeltas(timedelta(0), freshness), "look age")
    last_look = now - age if fresh else now - freshness - TICK - age
    record = file_record(clock_start=clock_start, stored=stored)
    verdict = decide(record, project_record(last_look_ok=last_look), policy, now)
    if verdict.state is FileState.PROMOTED:
        assert now >= clock_start + cooling
        assert stored and fresh
        assert verdict.reason.startswith("cooled")
    else:
        assert verdict.state is FileState.HELD
        assert verdict.hold_until == clock_start + cooling
        assert verdict.needs_bytes == (now >= clock_start + cooling and not stored)
    assert (verdict.state is FileState.PROMOTED) == (
        now >= clock_start + cooling and stored and fresh
    )


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from([FileState.HELD, FileState.PROMOTED]),
    established=st.booleans(),
    unlisted=st.booleans(),
    yanked=st.none() | st.text(max_size=5),
    status=st.sampled_from(list(ProjectStatus)),
    exempt=st.booleans(),
)
def test_property_takedowns_and_yanks_are_never_promoted_past(
    state: FileState,
    established: bool,
    unlisted: bool,
    yanked: str | None,
    status: ProjectStatus,
    exempt: bool,
) -> None:
    """Start from a file that would be promoted; add restrictive upstream signals."""
    policy = make_policy(exemptions={PROJECT: Exemption(reason="ours")} if exempt else {})
    record = file_record(state=state, established=established, listed=not unlisted, yanked=yanked)
    verdict = decide(record, project_record(status=status), policy, NOW)
    taken_down = unlisted or status in (ProjectStatus.QUARANTINED, ProjectStatus.REMOVED)
    if taken_down:
        expected = FileState.WITHDRAWN if state is FileState.PROMOTED else FileState.REJECTED
        assert verdict.state is expected
    elif state is FileState.HELD and yanked is not None and not established:
        assert verdict.state is FileState.REJECTED
    else:
        assert verdict.state is FileState.PROMOTED


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from([FileState.REJECTED, FileState.WITHDRAWN]),
    established=st.booleans(),
    status=st.sampled_from(list(ProjectStatus)),
    elapsed=st.timedeltas(timedelta(0), timedelta(days=5000)),
    exempt=st.booleans(),
)
def test_property_rejected_and_withdrawn_are_final(
    state: FileState,
    established: bool,
    status: ProjectStatus,
    elapsed: timedelta,
    exempt: bool,
) -> None:
    policy = make_policy(exemptions={PROJECT: Exemption(reason="x")} if exempt else {})
    record = file_record(state=state, reason="whatever", established=established)
    verdict = decide(record, project_record(status=status), policy, NOW + elapsed)
    assert verdict.state is state


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(
        st.integers(min_value=-2000 * 24, max_value=48), min_size=1, max_size=6, unique=True
    ),
    look_gap=st.timedeltas(timedelta(0), timedelta(days=3)),
)
def test_property_same_listing_again_changes_no_state(
    hours: list[int], look_gap: timedelta
) -> None:
    files = tuple(
        upstream_file(
            f"demo-{index}.0.tar.gz", uploaded=NOW + timedelta(hours=hour), sha256=f"{index:064x}"
        )
        for index, hour in enumerate(hours)
    )
    mirror = Mirror()
    mirror.look(snapshot(*files), NOW)
    policy = mirror.policy
    same_time = observe(mirror.project, mirror.files, snapshot(*files), NOW, policy)
    assert same_time.new == () and same_time.changed == ()
    # Without bytes in the store no held file can be promoted, whatever the time.
    later = observe(mirror.project, mirror.files, snapshot(*files), NOW + look_gap, policy)
    assert later.new == ()
    assert all(new.state is old.state for old, new in later.changed)
