"""Leases: one holder at a time, freed when the holder goes; on both backends."""

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mirror.background.leadership import Leadership
from quarantine.ledger.lease import LEADER, Lease
from quarantine.ledger.lease_file import FileLease
from quarantine.ledger.lease_postgres import PostgresLease


class Leases:
    """Makes leases as separate processes would (each its own connection or descriptor)."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None) -> None:
        self.kind, self.tmp_path, self.url = kind, tmp_path, url
        self.made: list[Lease] = []

    def new(self, name: str = LEADER) -> Lease:
        lease: Lease
        if self.kind == "file":
            lease = FileLease(self.tmp_path / f"{name}.lease", name)
        else:
            assert self.url is not None
            lease = PostgresLease(self.url, name)
        self.made.append(lease)
        return lease


@pytest.fixture(params=["file", "postgresql"])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Leases]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    made = Leases(str(request.param), tmp_path, url)
    yield made
    for lease in made.made:
        lease.close()


def test_one_holder_at_a_time(leases: Leases) -> None:
    first, second = leases.new(), leases.new()
    assert first.acquire()
    assert first.acquire()  # held already: still true
    assert not second.acquire()
    assert first.renew() and not second.renew()
    first.release()
    assert not first.renew()
    assert second.acquire()
    assert not first.acquire()


def test_leases_of_different_names_are_independent(leases: Leases) -> None:
    assert leases.new("leader").acquire()
    assert leases.new("other").acquire()


def test_closing_the_holder_frees_the_lease(leases: Leases) -> None:
    first, second = leases.new(), leases.new()
    assert first.acquire()
    first.close()
    assert second.acquire()


def test_a_holder_whose_connection_dies_learns_it_lost_the_lease(postgres_url: str) -> None:
    """What the server does when a leader's host is cut off: its session ends, and so its
    lock. The old holder's next renewal says so; another takes the lease."""
    holder, standby = PostgresLease(postgres_url, LEADER), PostgresLease(postgres_url, LEADER)
    try:
        assert holder.acquire()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(  # waiting (up to 10 s) for the session's end
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE application_name = 'lazaretto-lease-leader'"
            )
        assert standby.acquire()  # its own connection is new, so not the one terminated
        assert not holder.renew()
        assert not holder.acquire()
    finally:
        holder.close()
        standby.close()


def _lease_backend(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'lazaretto-lease-leader' "
            "AND datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_holder_whose_server_stops_answering_loses_the_lease_at_renewal(
    postgres_url: str,
) -> None:
    """A stalled server (here its backend process, stopped) never answers the renewal:
    the holder gives up after a deadline and counts the lease lost."""
    holder = PostgresLease(postgres_url, LEADER)
    outcome: list[bool] = []
    try:
        assert holder.acquire()
        backend = _lease_backend(postgres_url)
        os.kill(backend, signal.SIGSTOP)
        try:
            renewal = threading.Thread(target=lambda: outcome.append(holder.renew()))
            renewal.start()
            renewal.join(60)  # a bound for a broken build, far past the deadline
        finally:
            os.kill(backend, signal.SIGCONT)
        assert outcome == [False]
        assert not holder.renew()
    finally:
        holder.close()


def test_the_lease_connection_asks_the_server_for_keepalives_and_a_statement_deadline(
    postgres_url: str,
) -> None:
    holder = PostgresLease(postgres_url, LEADER)
    try:
        assert holder.acquire()
        db = holder._db
        assert db is not None
        shown = {
            name: db.execute(f"SHOW {name}").fetchone()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_count", "statement_timeout")
        }
        assert shown == {
            "tcp_keepalives_idle": ("5",),
            "tcp_keepalives_count": ("3",),
            "statement_timeout": ("1500ms",),
        }
    finally:
        holder.close()


def test_only_the_holder_runs_the_leaders_work_and_a_standby_takes_over(tmp_path: Path) -> None:
    started: list[str] = []

    def work_of(name: str) -> Callable[[], list[Coroutine[Any, Any, None]]]:
        async def loop() -> None:
            started.append(name)
            await asyncio.Event().wait()  # a leader's loop runs until cancelled

        return lambda: [loop()]

    async def scenario() -> None:
        one = Leadership(FileLease(tmp_path / "leader.lease", LEADER), work_of("one"), 0.02)
        two = Leadership(FileLease(tmp_path / "leader.lease", LEADER), work_of("two"), 0.02)
        first = asyncio.create_task(one.run_forever())
        await _until(lambda: one.leading)
        second = asyncio.create_task(two.run_forever())
        await asyncio.sleep(0.2)  # many of the standby's tries
        assert started == ["one"] and not two.leading
        first.cancel()  # the leader stops; its lease is closed with it
        await asyncio.gather(first, return_exceptions=True)
        await _until(lambda: two.leading)
        assert started == ["one", "two"]
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)

    asyncio.run(scenario())


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")
