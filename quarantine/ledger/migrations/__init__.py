"""Numbered schema steps for each ledger backend, applied in order, each in a transaction.

A database records the steps it has; code refuses one newer than itself (a newer
lazaretto wrote it: running older code on it could undo or misread its changes).
``lazaretto migrate`` applies what is missing; SQLite does it by itself at open.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from quarantine.errors import LedgerError


@dataclass(frozen=True)
class Step:
    version: int
    description: str


AnyStep = TypeVar("AnyStep", bound=Step)


def pending(current: int, steps: Sequence[AnyStep]) -> list[AnyStep]:
    """The steps a database at ``current`` still needs, in order."""
    return [step for step in steps if step.version > current]


def refuse_newer(current: int, steps: Sequence[Step], where: str) -> None:
    latest = steps[-1].version
    if current > latest:
        raise LedgerError(
            f"the ledger at {where} has schema {current}, newer than this lazaretto "
            f"({latest}): upgrade lazaretto"
        )
