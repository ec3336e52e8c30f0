"""The PostgreSQL lease: a session advisory lock held on a connection of its own.

The lock lives as long as the connection: a holder killed, or cut off from the
database, loses it when the server notices the connection is gone (at once for a killed
process, whose socket the kernel closes; within the TCP keepalive below for a lost
host). ``renew`` asks the server on that same connection, so a holder whose connection
broke learns it lost the lease, and stops its work, at its next renewal. Between the two
a former leader may finish a step it began: decisions are compare-and-swap in the
ledger, so none is made twice.
"""

import hashlib
from typing import Any

import psycopg

CONNECT_TIMEOUT_SECONDS = 5


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for a lease name (the same in every process)."""
    digest = hashlib.blake2b(f"lazaretto-lease:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLease:
    def __init__(self, conninfo: str, name: str) -> None:
        self.name = name
        self._conninfo = conninfo
        self._key = lock_key(name)
        self._db: psycopg.Connection[Any] | None = None
        self._held = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            self._drop()
            self._db = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=f"lazaretto-lease-{self.name}",
                # A lost host is noticed in about idle + interval * count seconds.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
            )
        return self._db

    def acquire(self) -> bool:
        if self._held and self.renew():
            return True
        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
                .fetchone()
            )
        except psycopg.OperationalError:
            self._drop()  # the database is unreachable: not the leader; try again later
            return False
        self._held = bool(row and row[0])
        return self._held

    def renew(self) -> bool:
        if not self._held or self._db is None:
            return False
        try:
            # A session lock is released only by unlock or the session's end: while this
            # connection answers, it is still held.
            self._db.execute("SELECT 1")
        except psycopg.OperationalError:
            self._drop()
        return self._held

    def release(self) -> None:
        if self._held and self._db is not None and not self._db.broken:
            try:
                self._db.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.OperationalError:
                self._drop()
        self._held = False

    def close(self) -> None:
        self.release()
        self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._db is not None:
            self._db.close()  # with it, any lock it held
            self._db = None
