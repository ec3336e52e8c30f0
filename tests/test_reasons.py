"""Honest reasons: what a held file waits for is what it waits for now, and the notes on
held files (a page's held-files note, a file's 404) never give a release time past."""

import re
from dataclasses import replace
from datetime import timedelta

from packaging.utils import NormalizedName
from test_decide import file_record, make_policy, project_record
from test_http import COOLING, file_path, get, page, publish

from conftest import NOW
from quarantine.clock import format_timestamp
from quarantine.decide import current_reason, decide
from quarantine.evidence import Action, Evidence
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream

HTML = "text/html"
CHECKS = ("provenance", "publisher", "content")


def _passed(check: str) -> Evidence:
    return Evidence(check=check, action=Action.REPORT, summary="fine", findings=())


def test_a_cooling_file_says_how_far_its_vetting_got() -> None:
    policy = make_policy(required_checks=CHECKS)
    record = file_record(clock_start=NOW - timedelta(hours=1), stored=False)
    assert decide(record, project_record(), policy, NOW).reason == "cooling; waiting for its bytes"
    stored = replace(record, stored=True)
    some = [_passed("provenance"), _passed("publisher")]
    reason = decide(stored, project_record(), policy, NOW, evidence=some).reason
    assert reason == "cooling; waiting for vetting (content)"
    every = [*some, _passed("content")]
    assert decide(stored, project_record(), policy, NOW, evidence=every).reason == "cooling; vetted"


def test_the_current_reason_is_the_decision_as_it_stands_not_the_last_recorded() -> None:
    policy = make_policy(required_checks=CHECKS)
    every = [_passed(check) for check in CHECKS]
    recorded = file_record(
        clock_start=NOW - COOLING - timedelta(hours=1),
        stored=True,
        reason="cooled; waiting for vetting (provenance, publisher, content)",
    )
    fresh = project_record(last_look_ok=NOW)
    reason = current_reason(recorded, fresh, policy, NOW, evidence=every)
    assert reason == "cooled and vetted (promoted at the next promotion round)"
    stale = project_record(last_look_ok=NOW - timedelta(hours=1))
    reason = current_reason(recorded, stale, policy, NOW, evidence=every)
    assert reason == "cooled and vetted; waiting for a fresh upstream look"


def test_vetted_files_say_so_as_soon_as_their_project_is_done(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    publish(upstream, build_wheel("honest", "1.0"), clock.now() - timedelta(hours=1))
    page(mirror, "honest")
    mirror.promote()
    assert mirror.services is not None
    (record,) = mirror.services.ledger.files(NormalizedName("honest"))
    assert (record.state, record.reason) == (FileState.HELD, "cooling; vetted")


def _note(mirror: MirrorServer, project: str) -> str:
    body = page(mirror, project, accept=HTML).body.decode()
    found = re.search(r"<!-- lazaretto: (.*) -->", body)
    assert found is not None, body
    return found.group(1)


def test_the_held_files_note_never_shows_a_release_time_past(
    mirror: MirrorServer, upstream: Upstream, clock: FakeClock
) -> None:
    ends = clock.now() + timedelta(seconds=30)
    dist = publish(upstream, build_wheel("soon", "1.0"), ends - COOLING)
    assert _note(mirror, "soon") == f"1 file(s) held; next release {format_timestamp(ends)}"
    line = get(mirror, file_path(dist)).body.decode()
    assert f"held until {format_timestamp(ends)} (cooling; waiting for its bytes)" in line
    clock.advance(timedelta(seconds=40))  # the hold ended; no round ran, no new look was due
    assert (
        _note(mirror, "soon")
        == "1 file(s) held; no release time yet (waiting for vetting or a review)"
    )
    line = get(mirror, file_path(dist)).body.decode()
    assert "held until" not in line
    assert (
        f"held; its cooling ended {format_timestamp(ends)} (cooled; waiting for its bytes" in line
    )
