"""The policy a mirror runs with, recorded in its ledger for the admin commands to read.

A server or a worker records the policy it enforces when it starts, so an admin command
on the same data directory computes hold-until times with the mirror's cooling periods
(per project too) and reads the mirror's malware feeds, not with whatever configuration
the command itself happened to find. Runtime overrides (exemptions, the cutoff, blocks)
are in the ledger already and are merged on top, as the mirror does (``LivePolicy``).

The document is plain JSON with an explicit format number; a ledger written by a newer
lazaretto is refused rather than misread.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from packaging.utils import NormalizedName

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.duration import format_duration
from quarantine.errors import QuarantineError
from quarantine.evidence import Action, Severity
from quarantine.ledger.interface import Ledger
from quarantine.platforms import EVERYTHING, PlatformFilter
from quarantine.policy import AHEAD, DEFAULT_FILTER, Exemption, Policy, PublisherPin

FORMAT = 2  # 2: platforms and python_versions (a format 1 policy filtered nothing)
_DURATIONS = (
    "cooling_period",
    "vetting_window",
    "freshness_window",
    "backdate_tolerance",
    "future_tolerance",
)


class PolicyRecordError(QuarantineError):
    """The recorded policy cannot be read (a newer lazaretto wrote it, or it is damaged)."""


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    """What a mirror process decides with: its configured policy and malware feeds."""

    policy: Policy
    osv_feeds: tuple[str, ...] = ()
    osv_id_prefixes: tuple[str, ...] = ("MAL-",)


@dataclass(frozen=True, slots=True)
class RecordedPolicy:
    in_force: PolicyInForce
    actor: str  # "system:serve" or "system:work"
    at: datetime


def to_document(in_force: PolicyInForce) -> dict[str, Any]:
    policy = in_force.policy
    return {
        "format": FORMAT,
        **{key: getattr(policy, key).total_seconds() for key in _DURATIONS},
        "cooling_overrides": {
            name: period.total_seconds()
            for name, period in sorted(policy.cooling_overrides.items())
        },
        "exemptions": {
            name: {"reason": exemption.reason, "until": _time(exemption.until)}
            for name, exemption in sorted(policy.exemptions.items())
        },
        "cutoff": _time(policy.cutoff),
        "required_checks": list(policy.required_checks),
        "severity_actions": {
            severity.value: action.value for severity, action in policy.severity_actions.items()
        },
        "rule_actions": {
            rule: action.value for rule, action in sorted(policy.rule_actions.items())
        },
        "require_provenance": sorted(policy.require_provenance),
        "pinned_publishers": {
            name: asdict(pin) for name, pin in sorted(policy.pinned_publishers.items())
        },
        "blocks": [[name, version, why] for (name, version), why in sorted(policy.blocks.items())],
        "platforms": list(policy.wheel_filter.platforms),  # [] for all
        "python_versions": list(policy.wheel_filter.pythons),
        "superseded_releases": policy.superseded_releases,
        "osv_feeds": list(in_force.osv_feeds),
        "osv_id_prefixes": list(in_force.osv_id_prefixes),
    }


def from_document(document: Mapping[str, Any]) -> PolicyInForce:
    found = document.get("format")
    if not isinstance(found, int) or found > FORMAT:
        raise PolicyRecordError(
            f"the policy in the ledger has format {found!r}, newer than this lazaretto "
            f"reads ({FORMAT}): run the admin commands of the lazaretto the mirror runs"
        )
    try:
        return _read(document)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PolicyRecordError(
            f"the policy recorded in the ledger is damaged ({type(error).__name__}: {error}); "
            "restarting the mirror records it again"
        ) from error


def _read(document: Mapping[str, Any]) -> PolicyInForce:
    policy = Policy(
        **{key: timedelta(seconds=document[key]) for key in _DURATIONS},
        cooling_overrides={
            NormalizedName(name): timedelta(seconds=seconds)
            for name, seconds in document["cooling_overrides"].items()
        },
        exemptions={
            NormalizedName(name): Exemption(entry["reason"], _datetime(entry["until"]))
            for name, entry in document["exemptions"].items()
        },
        cutoff=_datetime(document["cutoff"]),
        required_checks=tuple(document["required_checks"]),
        severity_actions={
            Severity(severity): Action(action)
            for severity, action in document["severity_actions"].items()
        },
        rule_actions={rule: Action(action) for rule, action in document["rule_actions"].items()},
        require_provenance=frozenset(document["require_provenance"]),
        pinned_publishers={
            NormalizedName(name): PublisherPin(**pin)
            for name, pin in document["pinned_publishers"].items()
        },
        blocks={(NormalizedName(name), version): why for name, version, why in document["blocks"]},
        wheel_filter=_wheel_filter(document),
        # Absent: recorded by a lazaretto that vetted every release ahead.
        superseded_releases=document.get("superseded_releases", AHEAD),
    )
    return PolicyInForce(policy, tuple(document["osv_feeds"]), tuple(document["osv_id_prefixes"]))


def _wheel_filter(document: Mapping[str, Any]) -> PlatformFilter:
    if document["format"] < 2:
        return EVERYTHING  # recorded by a lazaretto that did not filter
    return PlatformFilter(tuple(document["platforms"]), tuple(document["python_versions"]))


def summary(in_force: PolicyInForce) -> str:
    """One line for the audit trail: the parts people ask about first."""
    policy = in_force.policy
    parts = [f"cooling_period {format_duration(policy.cooling_period)}"]
    if policy.cooling_overrides:
        per_project = ", ".join(
            f"{name} {format_duration(period)}"
            for name, period in sorted(policy.cooling_overrides.items())
        )
        parts.append(f"per project: {per_project}")
    if policy.exemptions:
        parts.append(f"exempt in config: {', '.join(sorted(policy.exemptions))}")
    if policy.cutoff is not None:
        parts.append(f"cutoff {format_timestamp(policy.cutoff)}")
    if policy.wheel_filter != DEFAULT_FILTER:
        parts.append(policy.wheel_filter.describe())
    feeds = len(in_force.osv_feeds)
    parts.append(f"{feeds} malware feed{'' if feeds == 1 else 's'}" if feeds else "no malware feed")
    return "policy in force: " + "; ".join(parts)


def record(ledger: Ledger, in_force: PolicyInForce, actor: str, at: datetime) -> bool:
    """Record the policy a starting process enforces; True when it differs from the last."""
    document = to_document(in_force)
    return ledger.record_policy(document, summary(in_force), actor, at)


def recorded(ledger: Ledger) -> RecordedPolicy | None:
    """The policy the mirror last recorded, or None when no mirror recorded one yet."""
    found = ledger.recorded_policy()
    if found is None:
        return None
    return RecordedPolicy(from_document(found.document), found.actor, found.at)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def _datetime(text: str | None) -> datetime | None:
    return None if text is None else parse_timestamp(text)
