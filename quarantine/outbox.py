"""The outbox: notifications written with the decisions they announce, delivered later.

Entries are written in the ledger transaction that records the change (see
``quarantine.notable``); a notifier delivers each entry to each channel at least once,
with retries and backoff, and parks it as dead after too many failures.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int  # order of writing
    event_id: str  # stable id: receivers de-duplicate on it (idempotency key)
    kind: str
    severity: str
    created_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    channel: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    scope: str  # "read" or "decide"
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
