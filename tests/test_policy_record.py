"""The policy a mirror records for its admin commands: every field, exactly, or a refusal."""

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from quarantine.evidence import Action, Severity
from quarantine.platforms import EVERYTHING, PlatformFilter
from quarantine.policy import Exemption, Policy, PublisherPin
from quarantine.policy_record import (
    FORMAT,
    PolicyInForce,
    PolicyRecordError,
    from_document,
    record,
    recorded,
    summary,
    to_document,
)
from support.ledger_backend import open_ledger

T0 = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
SLOW = NormalizedName("slowpoke")

# Every field away from its default, durations with microseconds: a lossy field shows.
UNUSUAL = Policy(
    cooling_period=timedelta(minutes=1, microseconds=7),
    vetting_window=timedelta(days=3),
    freshness_window=timedelta(minutes=3, seconds=1),
    backdate_tolerance=timedelta(seconds=90),
    future_tolerance=timedelta(minutes=9),
    cooling_overrides={SLOW: timedelta(days=7), NormalizedName("quick"): timedelta(0)},
    exemptions={
        NormalizedName("internal-tool"): Exemption("our own CI builds it", None),
        NormalizedName("vendor"): Exemption("contract review", T0 + timedelta(days=30)),
    },
    cutoff=T0 - timedelta(days=2),
    required_checks=("content",),
    severity_actions={Severity.LOW: Action.REVIEW, Severity.CRITICAL: Action.BLOCK},
    rule_actions={"pth-executable-new": Action.BLOCK},
    require_provenance=frozenset({"*", "sigstore"}),
    pinned_publishers={
        NormalizedName("sigstore"): PublisherPin("GitHub", "sigstore/sigstore-python", "r.yml")
    },
    blocks={(SLOW, "2.0"): "compromised", (SLOW, "*"): "all of it"},
    wheel_filter=PlatformFilter(("musllinux_aarch64",), ("3.9", "3.13t")),
    superseded_releases="ahead",
)
# Fields recorded under the names of the config keys they come from.
RECORDED_AS = {"wheel_filter": {"platforms", "python_versions"}}


def test_every_policy_field_is_recorded() -> None:
    every = {item.name for item in fields(Policy)}
    spelled = set().union(*(RECORDED_AS.get(name, {name}) for name in every))
    assert spelled <= set(to_document(PolicyInForce(Policy())))
    assert all(getattr(UNUSUAL, name) != getattr(Policy(), name) for name in every)


def test_a_recorded_policy_reads_back_exactly() -> None:
    in_force = PolicyInForce(UNUSUAL, ("/srv/feeds/mal.zip", "https://feeds.example/a.zip"), ())
    assert from_document(to_document(in_force)) == in_force
    assert from_document(to_document(PolicyInForce(Policy()))) == PolicyInForce(Policy())


def test_a_newer_or_damaged_record_is_refused_not_misread() -> None:
    document = to_document(PolicyInForce(Policy()))
    with pytest.raises(PolicyRecordError, match="newer than this lazaretto"):
        from_document({**document, "format": FORMAT + 1})
    damaged = {key: value for key, value in document.items() if key != "cooling_period"}
    with pytest.raises(PolicyRecordError, match="restarting the mirror records it again"):
        from_document(damaged)


def test_recorded_through_the_ledger_with_a_summary_people_can_read(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "data")
    try:
        assert recorded(ledger) is None
        in_force = PolicyInForce(UNUSUAL, ("/srv/feeds/mal.zip",))
        assert record(ledger, in_force, "system:serve", T0)
        found = recorded(ledger)
        assert found is not None and found.in_force == in_force and found.actor == "system:serve"
        assert not record(ledger, in_force, "system:serve", T0 + timedelta(hours=1))
    finally:
        ledger.close()
    text = summary(in_force)
    assert "per project: quick 0s, slowpoke 1w" in text and "1 malware feed" in text
    assert summary(PolicyInForce(Policy())).endswith("cooling_period 3d; no malware feed")


def test_a_policy_recorded_before_the_platform_filter_filtered_nothing() -> None:
    document = to_document(PolicyInForce(UNUSUAL))
    older = {k: v for k, v in document.items() if k not in ("platforms", "python_versions")}
    assert from_document({**older, "format": 1}).policy.wheel_filter == EVERYTHING
    assert from_document(document).policy.wheel_filter == UNUSUAL.wheel_filter


def test_the_summary_names_a_filter_that_is_not_the_default() -> None:
    assert "platforms musllinux_aarch64; Pythons 3.9, 3.13t" in summary(PolicyInForce(UNUSUAL))
    assert "platforms" not in summary(PolicyInForce(Policy()))
