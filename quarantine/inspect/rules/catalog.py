"""Every rule a check can fire, as data: its id, its usual severity, and what it means.

A module that fires a rule declares it here once, at import, with :func:`rule`; the id is
what findings carry, what ``[rules]`` in the configuration overrides (``review``,
``block``, ``report``) and what ``lazaretto rules`` lists. A finding may carry a different
severity than the rule's usual one when its context calls for it (the same call reached
at import or only inside a function nobody calls); the usual one is what people see listed.
"""

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from quarantine.evidence import Action, Finding, Severity, action_for

# The modules that declare (and fire) rules. ``all_rules`` imports them, so the catalog is
# complete whoever asks; tests/test_rule_catalog.py fails when a declaring module is missing.
FIRING_MODULES = (
    "quarantine.inspect.archive.base",
    "quarantine.inspect.check",
    "quarantine.feeds.osv",
    "quarantine.provenance.verify",
    "quarantine.inspect.release_diff",
    "quarantine.inspect.rules.import_collect",
    "quarantine.inspect.rules.import_diff",
    "quarantine.inspect.rules.import_source",
    "quarantine.inspect.rules.layout",
    "quarantine.inspect.rules.obfuscation",
    "quarantine.inspect.rules.python",
    "quarantine.inspect.rules.python_scan",
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # stable: configurations and recorded findings name it
    severity: Severity  # the usual severity of its findings
    check: str  # the check that fires it: "content", "provenance", "publisher", "feeds"
    description: str  # one short line
    # An action no configuration changes (a malware advisory always blocks); None: the
    # per-rule override, else the severity mapping, decides.
    fixed: Action | None = None


class DuplicateRuleError(ValueError):
    """Two declarations claimed one id: a programming error, caught by the test suite."""


class UnknownRuleError(KeyError):
    """An id no module declares."""


_RULES: dict[str, Rule] = {}


def rule(
    id: str, severity: Severity, check: str, description: str, *, fixed: Action | None = None
) -> str:
    """Declare a rule; returns its id, for the constant the firing module keeps."""
    declared = Rule(id, severity, check, description, fixed)
    known = _RULES.get(id)
    if known is not None and known != declared:
        raise DuplicateRuleError(f"rule {id!r} declared twice, differently")
    _RULES[id] = declared
    return id


def declare_all() -> None:
    """Import every module that fires rules, so each has declared its own."""
    for name in FIRING_MODULES:
        importlib.import_module(name)


def all_rules() -> list[Rule]:
    """Every declared rule, by check then id."""
    declare_all()
    return sorted(_RULES.values(), key=lambda r: (r.check, r.id))


def declared(id: str) -> Rule:
    """The declaration of ``id`` (from a module already imported: the one asking)."""
    try:
        return _RULES[id]
    except KeyError:
        raise UnknownRuleError(id) from None


def known(id: str) -> bool:
    declare_all()
    return id in _RULES


def configured_action(
    found: Rule,
    rule_actions: Mapping[str, Action],
    severity_actions: Mapping[Severity, Action],
) -> tuple[Action, str]:
    """What a finding of ``found`` at its usual severity does under a configuration, and
    why: ``fixed``, ``override`` (``[rules]``) or ``severity`` (``[severities]``)."""
    if found.fixed is not None:
        return found.fixed, "fixed"
    usual = Finding(found.id, found.severity, found.description)
    why = "override" if found.id in rule_actions else "severity"
    return action_for(usual, severity_actions, rule_actions), why
