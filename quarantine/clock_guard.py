"""Stop promotions when the wall clock jumps.

A forward jump (a VM resumed, a bad NTP step) would end every hold at once; a backward
one makes the record lie. Promotion compares wall-clock time against the monotonic clock
between checks, and against the last wall-clock time the ledger saw (across restarts).
A jump freezes promotion until a person lifts the freeze.
"""

from datetime import datetime, timedelta

from quarantine.clock import Clock, format_timestamp
from quarantine.ledger.interface import Ledger

ACTOR = "system:clock-guard"
FORWARD_LIMIT = timedelta(hours=1)
BACKWARD_LIMIT = timedelta(seconds=60)
PERSIST_EVERY = timedelta(minutes=1)


class ClockGuard:
    def __init__(self, ledger: Ledger, clock: Clock) -> None:
        self._ledger = ledger
        self._clock = clock
        self._last: tuple[datetime, float] | None = None
        self._persisted: datetime | None = None

    def frozen(self) -> str | None:
        """Why promotion is frozen (checking the clock first), or None when it may run."""
        now, ticks = self._clock.now(), self._clock.monotonic()
        jump = self._jump(now, ticks)
        if jump is not None and self._ledger.freeze_reason() is None:
            self._ledger.freeze(jump, ACTOR, now)
        self._last = (now, ticks)
        self._remember(now)
        return self._ledger.freeze_reason()

    def _jump(self, now: datetime, ticks: float) -> str | None:
        if self._last is not None:
            wall_then, ticks_then = self._last
            drift = (now - wall_then) - timedelta(seconds=ticks - ticks_then)
            if drift > FORWARD_LIMIT:
                return f"the wall clock jumped forward by {drift} at {format_timestamp(now)}"
            if drift < -BACKWARD_LIMIT:
                return f"the wall clock jumped back by {-drift} at {format_timestamp(now)}"
        seen = self._persisted or self._ledger.last_wall_clock()
        if seen is not None and now < seen - BACKWARD_LIMIT:
            return (
                f"the wall clock ({format_timestamp(now)}) is behind the latest time the "
                f"ledger recorded ({format_timestamp(seen)})"
            )
        return None

    def _remember(self, now: datetime) -> None:
        if self._persisted is None or now - self._persisted >= PERSIST_EVERY:
            self._ledger.note_wall_clock(now)
            self._persisted = now
