"""Every rule a check can fire, as data: its id, its usual severity, and what it means.

A module that fires a rule declares it here once, at import, with :func:`rule`; the id is
what findings carry, what ``[rules]`` in the configuration overrides (``review``,
``block``, ``report``) and what ``lazaretto rules`` lists. A finding may carry a different
severity than the rule's usual one when its context calls for it (the same call reached
at import or only inside a function nobody calls); the usual one is what people see listed.
"""

from dataclasses import dataclass

from quarantine.evidence import Severity


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # stable: configurations and recorded findings name it
    severity: Severity  # the usual severity of its findings
    check: str  # the check that fires it: "content", "provenance", "publisher", "feeds"
    description: str  # one short line


class DuplicateRuleError(ValueError):
    """Two declarations claimed one id: a programming error, caught by the test suite."""


_RULES: dict[str, Rule] = {}


def rule(id: str, severity: Severity, check: str, description: str) -> str:
    """Declare a rule; returns its id, for the constant the firing module keeps."""
    declared = Rule(id, severity, check, description)
    known = _RULES.get(id)
    if known is not None and known != declared:
        raise DuplicateRuleError(f"rule {id!r} declared twice, differently")
    _RULES[id] = declared
    return id


def all_rules() -> list[Rule]:
    """Every declared rule, by check then id (the modules that declare them imported)."""
    return sorted(_RULES.values(), key=lambda r: (r.check, r.id))


def known(id: str) -> bool:
    return id in _RULES
