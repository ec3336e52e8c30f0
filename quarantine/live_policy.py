"""The policy in force: the configured one, plus what admins changed at run time.

Exemptions and the outbreak cutoff can be set with the CLI or the admin API while the
server runs; they live in the ledger (recorded with who and why) and apply from the next
decision on, in every process that shares the ledger.
"""

from dataclasses import replace
from typing import Protocol

from quarantine.ledger import Ledger
from quarantine.policy import Policy


class PolicySource(Protocol):
    def current(self) -> Policy: ...


class FixedPolicy:
    """A policy that never changes at run time (tests, one-shot commands)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def current(self) -> Policy:
        return self._policy


class LivePolicy:
    def __init__(self, base: Policy, ledger: Ledger) -> None:
        self.base = base
        self._ledger = ledger
        self._version = -1
        self._policy = base

    def current(self) -> Policy:
        version = self._ledger.overrides_version()
        if version != self._version:
            overrides = self._ledger.runtime_overrides()
            self._policy = replace(
                self.base,
                exemptions={**self.base.exemptions, **overrides.exemptions},
                cutoff=overrides.cutoff if overrides.cutoff is not None else self.base.cutoff,
                blocks={**self.base.blocks, **overrides.blocks},
            )
            self._version = version
        return self._policy
