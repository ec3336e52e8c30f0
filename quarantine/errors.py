"""The error base of the vetting side: every message says what to do about it."""

from pathlib import Path


class QuarantineError(Exception):
    """Base for errors raised by the vetting side."""


class InvalidDuration(QuarantineError, ValueError):
    """A duration string that is neither ``72h``/``3d`` style nor ISO 8601."""


class LedgerError(QuarantineError):
    """The ledger cannot be opened or written."""


class LedgerMissing(LedgerError):
    """An admin command was pointed at a data directory that holds no ledger."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no ledger at {path}: give the data directory the mirror uses (--data-dir, "
            "LAZARETTO_DATA_DIR or data_dir in --config); a mirror makes its ledger when "
            "it first starts, and this command never makes an empty one"
        )
        self.path = path


class LedgerNotMigrated(LedgerError):
    """A PostgreSQL ledger without the schema this code needs (migrated only on request)."""

    def __init__(self, where: str, current: int, needed: int) -> None:
        have = "no ledger schema" if current == 0 else f"schema {current}"
        super().__init__(
            f"the ledger at {where} has {have}, this lazaretto needs {needed}: "
            "run `lazaretto migrate` (with the same configuration) first"
        )


class StaleTransition(QuarantineError):
    """A state change lost a race: the record changed since it was read."""
