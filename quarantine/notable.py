"""Which recorded changes people must hear about, and the outbox entry each becomes.

Pure: the ledger calls this inside the transaction that records the change, so the
notification is written if and only if the decision is (a durable outbox).
"""

from dataclasses import dataclass

SYSTEM_PREFIX = "system:"


@dataclass(frozen=True, slots=True)
class Notable:
    kind: str  # held-for-review, blocked, withdrawn, promoted-early, anomaly, unblocked, ...
    severity: str  # "critical", "warning", "info"


def notable(from_state: str | None, to_state: str, reason: str, actor: str) -> Notable | None:
    """The notification a recorded change calls for, or None for routine ones."""
    by_person = not actor.startswith(SYSTEM_PREFIX)
    if to_state == "review":
        return Notable("held-for-review", "warning")
    if to_state == "blocked":
        return Notable("blocked", "critical")
    if to_state == "withdrawn":
        return Notable("withdrawn", "critical")
    if to_state == "promoted" and by_person:
        return Notable("promoted-early", "warning")
    if to_state == "anomaly" or (to_state == "rejected" and reason.startswith("hash_mismatch")):
        return Notable("anomaly", "critical")
    if to_state in ("frozen", "cutoff", "exempted", "unblocked", "blocked-by-admin"):
        return Notable(to_state, "warning")
    if from_state in ("blocked", "withdrawn", "review", "rejected") and by_person:
        return Notable("decision", "info")
    return None
