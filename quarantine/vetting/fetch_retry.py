"""Fetch failures: which ones refuse a file, which ones are tried again, and when.

Only a true digest mismatch (the whole declared file arrived and hashes to something
else) says the bytes are wrong. Everything else says the transfer or our settings were:
a reset, a timeout, a 5xx, a truncated or encoded body (*transient*), or a size over
``max_file_bytes``, a host or redirect the settings do not allow (*configuration*). Those
are tried again with a growing delay, a bounded number of times, and the count is kept
in the ledger so a restart carries on where it was. Pure: the caller passes the clock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from packaging.utils import NormalizedName

from quarantine.models import FileRecord, FileState


class FailureKind(StrEnum):
    """What a failed fetch says; the value is the prefix of a refusal's reason."""

    DIGEST = "hash_mismatch"  # the bytes themselves are wrong: refused until the listing moves
    TRANSIENT = "fetch_transient"  # the transfer was: tried again
    CONFIG = "fetch_config"  # our settings refused it: tried again, at once after they change
    STORE = "store_unavailable"  # our own disk: never counted against the file


COUNTED = (FailureKind.TRANSIENT, FailureKind.CONFIG)
FIRST_DELAY = timedelta(seconds=10)
DELAY_FACTOR = 4
MAX_DELAY = timedelta(hours=6)
# 10 s, 40 s, 160 s, 11 min, 43 min, 3 h, then every 6 h: about a day and a half in all,
# long enough to ride out an upstream outage, short enough that a stuck file gets seen.
MAX_ATTEMPTS = 11


@dataclass(frozen=True, slots=True)
class FetchAttempts:
    """The failed fetches of one file since it was last fetched (or retried by an admin)."""

    project: NormalizedName
    filename: str
    kind: FailureKind
    reason: str  # the last failure's
    attempts: int
    next_attempt_at: datetime
    config: str  # the fetch settings of the last failure (see ``settings_changed``)

    def waiting(self, now: datetime) -> bool:
        return now < self.next_attempt_at

    def exhausted(self) -> bool:
        return self.attempts >= MAX_ATTEMPTS

    def settings_changed(self, config: str) -> bool:
        """A configuration refusal made under other settings says nothing about these."""
        return self.kind is FailureKind.CONFIG and self.config != config


def delay_after(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure in a row."""
    delay: timedelta = FIRST_DELAY * DELAY_FACTOR ** max(attempts - 1, 0)
    return min(delay, MAX_DELAY)


def refusal(kind: FailureKind, reason: str) -> str:
    """The rejected state's reason: the prefix says which kind of failure refused it."""
    return f"{kind.value}: {reason}"


# Refusals recorded before these kinds existed: any failed fetch refused the file then.
_EARLIER_REFUSALS = ("upstream response rejected: ", "more than ")
REFUSED_BY_FETCH = (
    *(kind.value + ":" for kind in (FailureKind.DIGEST, *COUNTED)),
    *_EARLIER_REFUSALS,
)


def refused_by_fetch(record: FileRecord) -> bool:
    """Rejected because of a fetch, not because of anything the listing said."""
    return record.state is FileState.REJECTED and record.reason.startswith(REFUSED_BY_FETCH)


def refused_by_digest(record: FileRecord) -> bool:
    return record.state is FileState.REJECTED and record.reason.startswith(
        FailureKind.DIGEST.value + ":"
    )


def refused_by_config(record: FileRecord) -> bool:
    return record.state is FileState.REJECTED and record.reason.startswith(
        FailureKind.CONFIG.value + ":"
    )
