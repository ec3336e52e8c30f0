"""How much of a long answer to show: ``limit`` rows, and ``since`` a time or a duration ago.

``audit`` and ``explain`` read the same way from the CLI (local or ``--url``) and from
the admin API, with the same default, the same bounds and the same spellings.
"""

from datetime import datetime

from quarantine.clock import parse_timestamp
from quarantine.duration import parse_duration
from quarantine.errors import InvalidDuration, QuarantineError

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


class InvalidPaging(QuarantineError, ValueError):
    """A limit or since that cannot be read; the message says what is accepted."""


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidPaging(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def parse_limit(text: str) -> int:
    if not text.isdigit():
        raise InvalidPaging(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return check_limit(int(text))


def parse_since(text: str, now: datetime) -> datetime:
    """``2h`` or ``7d`` (that long before ``now``), or an RFC 3339 time such as
    ``2026-11-23T12:00:00Z`` (a date alone means its midnight, UTC)."""
    try:
        return now - parse_duration(text)
    except (InvalidDuration, OverflowError):
        pass
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError):
        raise InvalidPaging(
            "since must be a duration before now (2h, 7d, 1d12h) or an RFC 3339 time "
            "(2026-11-23T12:00:00Z)"
        ) from None
