"""The mirror on a PostgreSQL ledger, end to end: ``lazaretto serve`` with pip through it."""

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.dists import build_wheel
from support.installers import installed, pip_install
from support.process import LAZARETTO, lazaretto_serve
from support.upstream import Upstream, UpstreamFile

SLOW_POLL_SECONDS = 30.0  # a replica's poll of the ledger, in the test where only NOTIFY may do


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not true within {seconds} s"
        time.sleep(0.1)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [LAZARETTO, *args], env={**os.environ, **env}, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def _page(origin: str, project: str) -> str:
    with urllib.request.urlopen(f"{origin}/simple/{project}/") as answer:
        return str(answer.read().decode())


def test_serve_on_postgres_installs_and_an_admin_block_shows_on_the_page(
    upstream: Upstream, postgres_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    upstream.add("steady", UpstreamFile(build_wheel("steady", "1.0"), now - timedelta(days=300)))
    upstream.add("steady", UpstreamFile(build_wheel("steady", "2.0"), now - timedelta(hours=2)))
    env = {
        "LAZARETTO_LEDGER": postgres_url,
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_COOLING_PERIOD": "3d",
    }
    migrated = subprocess.run(
        [LAZARETTO, "migrate"], env={**os.environ, **env}, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    with lazaretto_serve([], env) as origin:
        outcome = pip_install(origin + "/simple/", tmp_path / "t", "steady")
        assert outcome.ok, outcome.output
        assert installed(tmp_path / "t") == {"steady": "1.0"}
        assert "steady-1.0-py3-none-any.whl" in _page(origin, "steady")

        blocked = _cli(env, "block", "steady==1.0", "--reason", "compromised maintainer account")
        assert "promoted -> withdrawn" in blocked.stdout
        # The server's pages follow the ledger's change counter (once a second).
        eventually(lambda: "steady-1.0-py3-none-any.whl" not in _page(origin, "steady"))
    assert not (tmp_path / "data" / "ledger.sqlite3").exists()


def test_a_block_made_through_one_replica_is_withdrawn_at_the_other(
    upstream: Upstream, postgres_url: str, tmp_path: Path
) -> None:
    upstream.add(
        "twin", UpstreamFile(build_wheel("twin", "1.0"), datetime.now(UTC) - timedelta(days=300))
    )
    common = {
        "LAZARETTO_LEDGER": postgres_url,
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_COOLING_PERIOD": "3d",
        # Only a notification brings the block to B's page before its poll would.
        "LAZARETTO_LEDGER_POLL_SECONDS": str(SLOW_POLL_SECONDS),
    }
    a = {**common, "LAZARETTO_DATA_DIR": str(tmp_path / "a")}
    b = {**common, "LAZARETTO_DATA_DIR": str(tmp_path / "b")}
    _cli(a, "migrate")
    token = json.loads(_cli(a, "token", "create", "ops", "--scope", "decide", "--json").stdout)
    with lazaretto_serve([], a) as origin_a, lazaretto_serve([], b) as origin_b:
        for origin in (origin_a, origin_b):
            assert "twin-1.0-py3-none-any.whl" in _page(origin, "twin")
        # Through replica A's admin API, as the remote CLI does (without its start-up).
        block = urllib.request.Request(
            f"{origin_a}/-/admin/api/v1/projects/twin/releases/1.0/block",
            data=json.dumps({"reason": "compromised maintainer account"}).encode(),
            headers={
                "Authorization": f"Bearer {token['token']}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(block, timeout=30) as answer:
            assert json.loads(answer.read())["changes"][0]["after"] == "withdrawn"
        decided_at = time.monotonic()
        eventually(
            lambda: "twin-1.0-py3-none-any.whl" not in _page(origin_b, "twin"),
            SLOW_POLL_SECONDS - 5,
        )
        print(f"a block through replica A reached replica B's page in "
              f"{time.monotonic() - decided_at:.2f} s")  # fmt: skip
