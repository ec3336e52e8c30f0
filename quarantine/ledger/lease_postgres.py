"""The PostgreSQL lease: a session advisory lock held on a connection of its own.

The lock lives as long as the connection, and the server frees it only once it notices
the connection is gone: at once for a killed holder (the kernel closes its socket); for a
holder whose host is cut off, when the server's own TCP keepalives (asked for in the
connection's options below) or its unacknowledged data (``tcp_user_timeout``) time out,
about 11 seconds. The holder's side is bounded too: ``renew`` asks the server on that same
connection and gives up after ``RENEW_DEADLINE_SECONDS`` (less than two renewal
intervals), which counts as a lost lease, so a holder that cannot reach the server stops
its work at its next renewal. Between the two a former leader may finish a step it began:
decisions are compare-and-swap in the ledger, so none is made twice.
"""

import hashlib
import socket
import threading
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

CONNECT_TIMEOUT_SECONDS = 5
# A renewal that takes longer is a lost lease: the leadership loop renews every second.
RENEW_DEADLINE_SECONDS = 1.5
# The server's side: keepalives every 2 s after 5 s idle, 3 missed = gone (11 s); data
# unacknowledged for 10 s = gone; no statement on this connection runs past the deadline.
SERVER_OPTIONS = (
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
    f"-c tcp_user_timeout=10000 -c statement_timeout={int(RENEW_DEADLINE_SECONDS * 1000)}"
)


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
            given = str(conninfo_to_dict(self._conninfo).get("options") or "")
            self._db = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=f"lazaretto-lease-{self.name}",
                options=f"{given} {SERVER_OPTIONS}".strip(),
                # A lost host is noticed in about idle + interval * count seconds.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=10000,
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
        answered = threading.Event()
        # A server that stops answering (a stalled host, a network that drops packets
        # silently) would leave this waiting for minutes: past the deadline, the
        # connection is cut, which ends the wait with an error.
        deadline = threading.Timer(RENEW_DEADLINE_SECONDS, _cut, (self._db, answered))
        deadline.start()
        try:
            # A session lock is released only by unlock or the session's end: while this
            # connection answers, it is still held.
            self._db.execute("SELECT 1")
        except psycopg.OperationalError:
            self._drop()
        finally:
            answered.set()
            deadline.cancel()
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


def _cut(db: psycopg.Connection[Any], answered: threading.Event) -> None:
    """Shut the connection's socket down unless the renewal was answered meanwhile."""
    if answered.is_set() or db.closed:
        return
    try:
        stuck = socket.socket(fileno=db.fileno())
    except (OSError, psycopg.Error):
        return  # already gone: the waiting query has its error
    try:
        stuck.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down
    finally:
        stuck.detach()  # the descriptor stays the connection's, closed with it
