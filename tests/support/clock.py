"""A clock the test sets by hand, shared with the mirror running in the same process."""

import threading
from datetime import UTC, datetime, timedelta


class FakeClock:
    """``advance`` is time passing; ``jump`` moves only the wall clock, as a bad NTP step does."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._monotonic = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta
            self._monotonic += delta.total_seconds()

    def jump(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta
