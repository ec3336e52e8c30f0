"""The error base of the vetting side: every message says what to do about it."""


class QuarantineError(Exception):
    """Base for errors raised by the vetting side."""


class InvalidDuration(QuarantineError, ValueError):
    """A duration string that is neither ``72h``/``3d`` style nor ISO 8601."""


class LedgerError(QuarantineError):
    """The ledger cannot be opened or written."""


class StaleTransition(QuarantineError):
    """A state change lost a race: the record changed since it was read."""
