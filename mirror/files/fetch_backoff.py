"""A file's failed fetches, shared by every route that fetches its bytes for a client.

A file whose last fetches failed waits out its backoff rather than being fetched again on
every request (a client retrying in a loop would make it a flood), and each failure is
counted in the ledger, so the file is refused once its attempts are used up.
"""

import contextlib
from datetime import datetime

from mirror.errors import FetchBackingOff
from quarantine.clock import format_timestamp
from quarantine.errors import StaleTransition
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.source import FetchFailed
from quarantine.vetting.fetch_retry import refusal


def not_while_backing_off(
    record: FileRecord, ledger: Ledger, fetch_settings: str, now: datetime
) -> None:
    """FetchBackingOff while the file's last failed fetch's backoff runs."""
    attempts = ledger.fetch_attempt(record.project, record.filename)
    if attempts is None or attempts.settings_changed(fetch_settings):
        return
    if attempts.waiting(now):
        raise FetchBackingOff(
            f"file_unavailable: fetching it failed ({attempts.reason}); "
            f"next try after {format_timestamp(attempts.next_attempt_at)}"
        )


def count_failure(
    record: FileRecord, failure: FetchFailed, ledger: Ledger, actor: str, now: datetime
) -> bool:
    """A transfer or settings failure recorded: tried again later, a bounded number of
    times (True once they are used up and the file is rejected)."""
    attempts = ledger.record_fetch_failure(
        record, failure.kind, failure.reason, failure.config, actor, now
    )
    if not attempts.exhausted():
        return False
    reject(record, refusal(failure.kind, failure.reason), ledger, actor, now)
    return True


def reject(record: FileRecord, reason: str, ledger: Ledger, actor: str, now: datetime) -> None:
    with contextlib.suppress(StaleTransition):  # concurrent requests: one records it
        ledger.transition(record, FileState.REJECTED, reason, actor, now)
