"""The policy in force: the configured one, plus what admins changed at run time.

Exemptions and the outbreak cutoff can be set with the CLI or the admin API while the
server runs; they live in the ledger (recorded with who and why) and apply from the next
decision on, in every process that shares the ledger.
"""

from dataclasses import replace
from typing import Protocol

from quarantine.ledger.interface import Ledger
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
        # (overrides version, base, the policy made of them): one tuple, so a thread that
        # made it from a base replaced meanwhile cannot pass it off as the new one's.
        self._made: tuple[int, Policy, Policy] | None = None

    def rebase(self, base: Policy) -> None:
        """The configured part changed while running (the platform filter, re-read from
        the config file): every decision from now on is made with ``base``."""
        self.base = base

    def current(self) -> Policy:
        base = self.base
        version = self._ledger.overrides_version()
        made = self._made
        if made is not None and made[0] == version and made[1] is base:
            return made[2]
        overrides = self._ledger.runtime_overrides()
        policy = replace(
            base,
            exemptions={**base.exemptions, **overrides.exemptions},
            cutoff=overrides.cutoff if overrides.cutoff is not None else base.cutoff,
            blocks={**base.blocks, **overrides.blocks},
        )
        self._made = (version, base, policy)
        return policy
