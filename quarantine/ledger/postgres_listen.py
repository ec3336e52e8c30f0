"""Hearing other processes' writes to the PostgreSQL ledger as they commit.

Every write that grows the change counter also sends a notification on ``CHANNEL``, its
payload the new counter (``pg_notify`` in the write's own transaction: delivered at its
commit, never for a write rolled back). A listener holds one connection of its own, not
the pool's, in autocommit with ``LISTEN``, and waits for them in a thread: a replica's
follower then reads the counter at once instead of at its next poll.

Notifications are best effort. A dropped connection loses those sent meanwhile, so the
listener reconnects with backoff and then reports a possible change; the followers keep
polling all along, which also covers the time it is down.
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "lazaretto_changes"
APPLICATION_NAME = "lazaretto-listen"
CONNECT_TIMEOUT_SECONDS = 5
# One wait for notifications lasts this long: ``close`` is noticed within it.
WAIT_SECONDS = 1.0
# Reconnecting after a drop: the first try after this, each next one twice as late.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class PostgresChangeListener:
    def __init__(self, conninfo: str, where: str, on_change: Callable[[], None]) -> None:
        """Start listening for the ledger at ``conninfo`` (``where`` names it in the log)."""
        self._conninfo = conninfo
        self._where = where
        self._on_change = on_change
        self._stop = threading.Event()
        self._received = 0
        self._thread = threading.Thread(
            target=self._run, name="lazaretto-ledger-listen", daemon=True
        )
        self._thread.start()

    @property
    def received(self) -> int:
        return self._received

    def close(self) -> None:
        """Stop: the thread ends, closing its connection, within WAIT_SECONDS (or a
        connection attempt's timeout); nothing waits for it here."""
        self._stop.set()

    def _run(self) -> None:
        delay, dropped = RETRY_FIRST_SECONDS, False
        while not self._stop.is_set():
            try:
                with self._connect() as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    if dropped:
                        log.info("listening for ledger changes at %s again", self._where)
                    delay, dropped = RETRY_FIRST_SECONDS, False
                    self._changed()  # anything committed before LISTEN took effect
                    self._hear(db)
            except psycopg.Error as error:
                if self._stop.is_set():
                    return
                if not dropped:  # one line per outage, not one per attempt
                    log.warning(
                        "not listening for ledger changes at %s (%s): pages follow by "
                        "polling until it reconnects",
                        self._where,
                        " ".join(str(error).split()) or type(error).__name__,
                    )
                dropped = True
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _connect(self) -> "psycopg.Connection[Any]":
        return psycopg.connect(
            self._conninfo,
            autocommit=True,  # a LISTEN inside an open transaction would hear nothing
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            # A listener only ever waits: keepalives notice a server gone silent (in about
            # 11 s) where waiting alone never would.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    def _hear(self, db: "psycopg.Connection[Any]") -> None:
        while not self._stop.is_set():
            for _notification in db.notifies(timeout=WAIT_SECONDS):
                self._received += 1
                self._changed()

    def _changed(self) -> None:
        if not self._stop.is_set():
            self._on_change()
