"""A named lease: held by at most one process at a time, freed when its holder dies.

Several replicas run the same code; the work that must happen once (promotion and
vetting, the watcher, the notifier) runs only in the replica holding the ``leader``
lease, and the others stand by, trying to take it every second or so.

A lease is freed by the holder's end, however it ends (a kill included), without a
timeout to wait out: the PostgreSQL lease is a session advisory lock on a connection of
its own (the server drops it when the connection dies), the one-host lease a ``flock``
(the kernel drops it with the process).
"""

from typing import Protocol

LEADER = "leader"


class Lease(Protocol):
    name: str

    def acquire(self) -> bool:
        """Take the lease if free; True when this process holds it (now or already)."""
        ...

    def renew(self) -> bool:
        """Whether this process still holds it (False once lost: stop the leader's work)."""
        ...

    def release(self) -> None:
        """Give it up (no-op when not held)."""
        ...

    def close(self) -> None:
        """Release, and free what the lease uses."""
        ...
