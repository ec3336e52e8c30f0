"""Shared fixtures: a real local upstream, the mirror as a real server, a settable clock."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.clock import FakeClock
from support.ledger_backend import backend, on_postgres, postgres_for_this_test
from support.mirror import MirrorServer, running_mirror, settings_for
from support.postgres import PostgresServer, running_postgres
from support.upstream import Upstream

pytest_plugins = ("support.s3",)  # the session's S3 server fixture, ``s3_server``

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    backend()  # a LAZARETTO_TEST_LEDGER that names no backend stops the run at once


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def mirror(tmp_path: Path, upstream: Upstream, clock: FakeClock) -> Iterator[MirrorServer]:
    with running_mirror(settings_for(tmp_path / "data", upstream.url), clock) as server:
        yield server


@pytest.fixture(autouse=True)
def _test_ledger(request: pytest.FixtureRequest) -> Iterator[None]:
    """With LAZARETTO_TEST_LEDGER=postgresql, the test's mirrors use PostgreSQL: a fresh
    database per data directory (support/ledger_backend.py), but in tests marked
    ``sqlite_only``."""
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None and not (marker.args and str(marker.args[0]).strip()):
        raise pytest.UsageError(f"{request.node.nodeid}: sqlite_only needs a reason")
    if not on_postgres() or marker is not None:
        yield
        return
    with postgres_for_this_test(request.getfixturevalue("postgres_server")):
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session, started only when a test asks for it."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database of that server."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)
