"""A real PostgreSQL server for the tests: initdb in a temp dir, loopback only.

Started once per session (``postgres_server`` in conftest), each test gets a database
of its own. When the server binaries are missing the tests that need one are skipped
with a reason, except under CI (``CI=true``), where that is a failure: CI must never
pass by skipping the PostgreSQL runs.

Run as root (CI is), the server runs as the ``postgres`` user (or ``nobody``):
PostgreSQL refuses to run as root.
"""

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from quarantine.ledger.migrations import postgres as migrations
from support.ports import free_port

_SUPERUSER = "lazaretto"
_names = itertools.count(1)


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<N>/bin`` with initdb, or initdb on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def require_binaries() -> Path:
    """The binaries, or a skip (a failure under CI) saying how to get them."""
    binaries = server_binaries()
    if binaries is not None:
        return binaries
    reason = "PostgreSQL server binaries (initdb) not found: apt-get install postgresql"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the PostgreSQL tests, not skip them)")
    pytest.skip(reason)


@dataclass(frozen=True)
class PostgresServer:
    port: int
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """A fresh database's URL: empty, or a copy of the database named ``template``."""
        name = name or f"test_{os.getpid()}_{next(_names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_as() -> tuple[int, int] | None:
    """The user and group to drop root to (PostgreSQL refuses it); None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


def _run(command: list[str], owner: tuple[int, int] | None, *, check: bool = True) -> None:
    user, group = owner or (None, None)
    subprocess.run(command, check=check, capture_output=True, user=user, group=group)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    binaries = require_binaries()
    owner = _run_as()
    with tempfile.TemporaryDirectory(prefix="lazaretto-pg-") as temp:
        root = Path(temp)
        data, sockets = root / "data", root / "run"
        sockets.mkdir()
        if owner:
            for path in (root, sockets):
                os.chown(path, *owner)
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            owner,
        )
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        _run(
            [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
             "-l", str(root / "server.log"), "start"],
            owner,
        )  # fmt: skip
        try:
            server = PostgresServer(port, sockets)
            _wait_ready(server)
            yield server
        finally:
            _run(
                [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                owner,
                check=False,
            )


def _wait_ready(server: PostgresServer, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def migrate_postgres(url: str) -> None:
    """Give the database at ``url`` the ledger's schema, as ``lazaretto migrate`` does."""
    with psycopg.connect(url, autocommit=True) as db:
        migrations.migrate(db, "the test database")
