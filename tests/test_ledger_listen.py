"""Change notifications on the PostgreSQL ledger (LISTEN/NOTIFY), with polling behind them.

A write through one ledger (one replica's connections) wakes the listener of another at
its commit; a listener whose connection is killed comes back; and the pages of a mirror
polling only every 30 s still follow a decision made elsewhere, which only a notification
can explain. While the listener is down, polling alone keeps the pages in step.
"""

import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from packaging.utils import NormalizedName
from prometheus_client.parser import text_string_to_metric_families

from quarantine import admin
from quarantine.ledger import postgres_listen
from quarantine.ledger.interface import ChangeListener
from quarantine.ledger.postgres import PostgresLedger
from support.clock import FakeClock
from support.dists import build_wheel
from support.mirror import running_mirror, settings_for
from support.postgres import migrate_postgres
from support.upstream import Upstream, UpstreamFile

# A follower polling this seldom sees a change sooner only because it was told of it.
SLOW_POLL_SECONDS = 30.0
ACTOR = "admin:test"
TWIN = NormalizedName("twin")
WHEEL = "twin-1.0-py3-none-any.whl"


class Wakes:
    """An ``on_change`` that counts its calls, to wait on from the test."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.count = 0

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def beyond(self, count: int, seconds: float = SLOW_POLL_SECONDS) -> bool:
        """Wait for a call after the first ``count``; whether one came within ``seconds``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.count > count, seconds)


@dataclass
class Pair:
    """Two ledgers on one database, as two replicas each open theirs."""

    writer: PostgresLedger
    follower: PostgresLedger
    url: str


@pytest.fixture
def pair(postgres_url: str) -> Iterator[Pair]:
    migrate_postgres(postgres_url)
    writer = PostgresLedger(postgres_url, where="replica A's ledger", pool_size=2)
    follower = PostgresLedger(postgres_url, where="replica B's ledger", pool_size=2)
    try:
        yield Pair(writer, follower, postgres_url)
    finally:
        follower.close()
        writer.close()


def _listening(ledger: PostgresLedger) -> tuple[ChangeListener, Wakes, int]:
    """Start listening; once it is, the call that says so has come (a change may have been
    committed before LISTEN took effect)."""
    wakes = Wakes()
    listener = ledger.listen(wakes)
    assert wakes.beyond(0), "the listener never started listening"
    return listener, wakes, wakes.count


def _kill_listeners(url: str) -> int:
    """Terminate the listening backends of ``url``'s database: a dropped connection."""
    with psycopg.connect(url, autocommit=True) as admin_db:
        rows = admin_db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (postgres_listen.APPLICATION_NAME,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def test_a_write_through_one_ledger_wakes_the_listener_of_another(pair: Pair) -> None:
    listener, wakes, seen = _listening(pair.follower)
    pair.writer.touch_all_projects()  # grows the change counter, as any decision does
    assert wakes.beyond(seen), f"not told within {SLOW_POLL_SECONDS} s: only a poll would see it"
    assert listener.received == 1


def test_the_listener_comes_back_after_its_connection_is_killed(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=postgres_listen.__name__)
    listener, wakes, seen = _listening(pair.follower)
    assert _kill_listeners(pair.url) == 1
    # Back: it says a change may have been missed while it was gone.
    assert wakes.beyond(seen), "the listener did not reconnect"
    seen = wakes.count
    pair.writer.touch_all_projects()
    assert wakes.beyond(seen), "no notification after the reconnect"
    assert listener.received == 1
    lines = [record.getMessage() for record in caplog.records]
    assert len([line for line in lines if line.startswith("not listening")]) == 1, lines
    assert any("again" in line for line in lines), lines


# -- a mirror's pages ------------------------------------------------------------------------


def _page(origin: str) -> str:
    with urllib.request.urlopen(f"{origin}/simple/twin/", timeout=30) as answer:
        return str(answer.read().decode())


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def served_twin(upstream: Upstream, clock: FakeClock) -> Upstream:
    wheel = build_wheel("twin", "1.0")
    upstream.add("twin", UpstreamFile(wheel, clock.now() - timedelta(days=300)))  # established
    return upstream


def test_a_block_made_elsewhere_leaves_a_slowly_polling_mirrors_page_at_once(
    served_twin: Upstream, pair: Pair, clock: FakeClock, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path / "data", served_twin.url, ledger=pair.url, ledger_poll_seconds=SLOW_POLL_SECONDS
    )
    with running_mirror(settings, clock) as mirror:
        assert WHEEL in _page(mirror.origin)
        admin.block(pair.writer, TWIN, "1.0", "worm found in the wheel", ACTOR, clock.now())
        gone = _until(lambda: WHEEL not in _page(mirror.origin), SLOW_POLL_SECONDS - 5)
        assert gone, "the page kept the blocked file until the next poll"
        assert _notifications_metric(mirror.origin) >= 1


def _notifications_metric(origin: str) -> float:
    with urllib.request.urlopen(f"{origin}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lazaretto_ledger_notifications_total":
                return float(sample.value)
    raise AssertionError("no lazaretto_ledger_notifications_total in /metrics")


def test_while_the_listener_is_down_polling_keeps_the_pages_in_step(
    served_twin: Upstream,
    pair: Pair,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres_listen, "RETRY_FIRST_SECONDS", 600.0)  # stays down
    settings = settings_for(
        tmp_path / "data", served_twin.url, ledger=pair.url, ledger_poll_seconds=0.2
    )
    with running_mirror(settings, clock) as mirror:
        assert WHEEL in _page(mirror.origin)
        assert mirror.services is not None
        listener = mirror.services.catalog.listener
        assert _until(lambda: _kill_listeners(pair.url) == 1, 10), "never listened"
        told = listener.received
        admin.block(pair.writer, TWIN, "1.0", "worm found in the wheel", ACTOR, clock.now())
        assert _until(lambda: WHEEL not in _page(mirror.origin), SLOW_POLL_SECONDS - 5)
        assert listener.received == told  # nobody told: polling saw it
