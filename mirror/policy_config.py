"""The per-project tables of the config file, turned into ``quarantine.policy`` parts.

[projects.NAME]          cooling_period, require_provenance, publisher = {kind, ...}
[exemptions]             NAME = "reason"  or  NAME = { reason = "...", until = "..." }
[rules]                  RULE = "report" | "review" | "block"  (ids: `lazaretto rules`)
[severities]             info|low|medium|high|critical = "report" | "review" | "block"
"""

import difflib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from mirror.config_values import (
    ConfigSource,
    as_bool,
    as_time,
    convert,
    duration_between,
    fail,
)
from quarantine.evidence import Action, Severity
from quarantine.inspect.rules.catalog import all_rules
from quarantine.policy import Exemption, PublisherPin

_PROJECT_KEYS = ("cooling_period", "require_provenance", "publisher")
_PUBLISHER_KEYS = ("kind", "repository", "workflow", "email")

# For the top-level default and every [projects.NAME] override: a hold of over a year
# is a typo, not a policy.
as_cooling_period = duration_between(timedelta(0), timedelta(days=365))


def _project(raw: str, where: str) -> NormalizedName:
    if not raw:
        fail(where, "empty project name")
    return canonicalize_name(raw, validate=False)


def project_tables(value: Any, source: ConfigSource) -> dict[str, Any]:
    """Policy fields from ``[projects.NAME]`` tables."""
    if not isinstance(value, dict):
        fail(source.where("projects"), "expected [projects.NAME] tables")
    cooling: dict[NormalizedName, timedelta] = {}
    pins: dict[NormalizedName, PublisherPin] = {}
    required: set[str] = set()
    for name, table in value.items():
        where_table = f"projects.{name}"
        project = _project(name, source.where(name, "projects"))
        if not isinstance(table, dict):
            fail(source.where(name, "projects"), "expected a table")
        for key, setting in table.items():
            where = source.where(key, where_table)
            if key == "cooling_period":
                cooling[project] = convert(as_cooling_period, setting, where)
            elif key == "require_provenance":
                if convert(as_bool, setting, where):
                    required.add(project)
            elif key == "publisher":
                pins[project] = _publisher(setting, where)
            else:
                fail(where, f"unknown key (known: {', '.join(_PROJECT_KEYS)})")
    return {"cooling_overrides": cooling, "pinned_publishers": pins, "require_provenance": required}


def _publisher(value: Any, where: str) -> PublisherPin:
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        fail(
            where,
            'expected { kind = "GitHub", repository = "owner/name", workflow = "release.yml" }',
        )
    unknown = set(value) - set(_PUBLISHER_KEYS)
    if unknown:
        fail(
            where,
            f"unknown publisher key {sorted(unknown)[0]!r} (known: {', '.join(_PUBLISHER_KEYS)})",
        )
    if not all(isinstance(item, str) for item in value.values()):
        fail(where, "publisher values must be strings")
    return PublisherPin(**value)


def exemptions(value: Any, source: ConfigSource) -> dict[NormalizedName, Exemption]:
    if not isinstance(value, dict):
        fail(source.where("exemptions"), 'expected [exemptions] with NAME = "reason" lines')
    found: dict[NormalizedName, Exemption] = {}
    for name, entry in value.items():
        where = source.where(name, "exemptions")
        until = None
        if isinstance(entry, str):
            reason = entry
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - {"reason", "until"})
            if unknown:
                fail(where, f"unknown key {unknown[0]!r} (known: reason, until)")
            reason = entry.get("reason", "")
            until = convert(as_time, entry["until"], where) if "until" in entry else None
        else:
            fail(where, 'expected a reason string or { reason = "...", until = "..." }')
        if not isinstance(reason, str) or not reason.strip():
            fail(where, "every exemption needs a reason")
        found[_project(name, where)] = Exemption(reason=reason.strip(), until=until)
    return found


def _action(value: Any, where: str) -> Action:
    choices = ("report", "review", "block")
    if value not in choices:
        fail(where, f"expected one of {', '.join(choices)}")
    return Action(value)


def rules(value: Any, source: ConfigSource) -> dict[str, Action]:
    """Per-rule actions; each id must be a declared rule whose action configuration sets."""
    if not isinstance(value, dict):
        fail(source.where("rules"), 'expected [rules] with RULE = "review" lines')
    declared = {item.id: item for item in all_rules()}
    actions: dict[str, Action] = {}
    for rule_id, action in value.items():
        where = source.where(rule_id, "rules")
        found = declared.get(rule_id)
        if found is None:
            fail(
                where,
                f"unknown rule{_close_match(rule_id, declared)}; `lazaretto rules` lists them",
            )
        if found.fixed is not None:
            fail(
                where,
                f"this rule's action is always {found.fixed.value!r}; [rules] cannot change it",
            )
        actions[rule_id] = _action(action, where)
    return actions


def _close_match(rule_id: str, declared: Iterable[str]) -> str:
    close = difflib.get_close_matches(rule_id, list(declared), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def severities(value: Any, source: ConfigSource) -> dict[Severity, Action]:
    if not isinstance(value, dict):
        fail(source.where("severities"), 'expected [severities] with high = "review" lines')
    mapped: dict[Severity, Action] = {}
    for name, action in value.items():
        where = source.where(name, "severities")
        try:
            severity = Severity(name)
        except ValueError:
            fail(where, f"unknown severity (known: {', '.join(s.value for s in Severity)})")
        mapped[severity] = _action(action, where)
    return mapped
