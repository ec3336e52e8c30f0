"""Where "now" comes from: injected everywhere, so tests can age files without sleeping."""

import functools
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, UTC-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, to catch jumps of the wall clock."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


# Every record read or written converts three or four timestamps, and the same moments
# recur (a look's "now", a file's upload time on its page and in its row): strftime and
# fromisoformat cost microseconds each, a cache hit a fraction of one. Both are pure.
# Full at 65,536 entries the two took 23 MB, most of what a serving process gained over a
# first-use backlog of 91,000 files; the moments that recur are a few thousand at a time.
_TIMESTAMPS_KEPT = 1 << 12


@functools.lru_cache(maxsize=_TIMESTAMPS_KEPT)
def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as the index writes it; naive values are taken as UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as error:
        raise ValueError(f"timestamp out of range: {text!r}") from error


@functools.lru_cache(maxsize=_TIMESTAMPS_KEPT)
def format_timestamp(moment: datetime) -> str:
    """The one spelling used for storage and output: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
