"""The replicated topology, end to end: PostgreSQL, SeaweedFS S3, two ``lazaretto serve``
replicas and nginx in front of both, all real processes on loopback.

One topology for the module; the tests run in file order and the last one kills the
leader. The times that matter (a decision reaching the other replica, a new leader after
a crash) are printed (``-s``) and held to the issue's bounds.
"""

import hashlib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName
from test_notifications import SECRET, Receiver

from mirror.admin.api import PREFIX
from mirror.cli.local_backend import new_token, token_hash
from mirror.notify.webhook import parse_secrets
from quarantine.ledger.postgres import PostgresLedger
from quarantine.models import FileState
from quarantine.outbox import ApiToken
from support.dists import Dist, build_wheel
from support.installers import installed, pip_install, uv_install
from support.postgres import PostgresServer
from support.process import listed_versions
from support.s3 import SeaweedS3
from support.topology import FAST_BACKGROUND, Replica, Topology, running_topology
from support.upstream import Upstream, UpstreamFile

pytestmark = pytest.mark.topology

LONG_AGO = datetime.now(UTC) - timedelta(days=300)  # established: served at once
PROPAGATION_BOUND = 2.0  # seconds for an admin decision to reach every replica
NGINX_PAGE_TTL = 5.0  # deploy/nginx.conf: proxy_cache_valid 200 ... 5s
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@dataclass
class World:
    topology: Topology
    upstream: Upstream
    receiver: Receiver
    ledger_url: str
    token: str

    def ledger(self) -> PostgresLedger:
        return PostgresLedger(self.ledger_url, where="the topology's database")

    def through_nginx(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        context = ssl.create_default_context(cafile=str(self.topology.nginx.tls.ca))
        request = urllib.request.Request(self.topology.nginx.origin + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=60, context=context) as reply:
            body: bytes = reply.read()
            return body

    def decide(self, replica: Replica, path: str, reason: str) -> None:
        """POST a decision to one replica's admin API."""
        request = urllib.request.Request(
            replica.origin + PREFIX + path,
            data=f'{{"reason": "{reason}"}}'.encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                assert reply.status == 200
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{path}: {error.code} {error.read()!r}") from error


def _decide_token(ledger_url: str) -> str:
    secret = new_token()
    ledger = PostgresLedger(ledger_url, where="the topology's database")
    try:
        record = ApiToken("ops", "decide", datetime.now(UTC), "topology test", None)
        ledger.create_token(record, token_hash(secret))
    finally:
        ledger.close()
    return secret


@pytest.fixture(scope="module")
def world(
    postgres_server: PostgresServer, s3_server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    work = tmp_path_factory.mktemp("topology")
    ledger_url = postgres_server.new_database()
    receiver = Receiver(keys=parse_secrets(SECRET, "test"))
    config = work / "lazaretto.toml"
    config.write_text(
        f'[[notify]]\nkind = "webhook"\nname = "hook"\nurl = "{receiver.hook_url}"\n'
        'secret_env = "HOOK_SECRET"\nallow_private = true\ngroup_seconds = 0\n'
    )
    env = {
        **FAST_BACKGROUND,
        "LAZARETTO_CONFIG": str(config),
        "HOOK_SECRET": SECRET,
        "LAZARETTO_INDEX_TTL": "0s",  # each page looks upstream: a new release is seen at once
        # Polling this seldom, a decision reaches the other replica within the bound only
        # because the ledger tells of it (LISTEN/NOTIFY).
        "LAZARETTO_LEDGER_POLL_SECONDS": "30",
    }
    with ExitStack() as stack:
        upstream = stack.enter_context(Upstream())
        receiver.start()
        stack.callback(receiver.stop)
        topology = stack.enter_context(
            running_topology(work, upstream=upstream.url, ledger=ledger_url, s3=s3_server, env=env)
        )
        yield World(topology, upstream, receiver, ledger_url, _decide_token(ledger_url))
    postgres_server.drop_database(ledger_url)


def eventually(check: Callable[[], bool], what: str, seconds: float = 30.0) -> float:
    """Poll until ``check`` holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _requirements(directory: Path, dist: Dist) -> Path:
    path = directory / "requirements.txt"
    version = dist.filename.split("-")[1]
    path.write_text(f"{dist.project}=={version} --hash=sha256:{dist.sha256}\n")
    return path


def test_pip_and_uv_install_through_nginx_hash_checked(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = build_wheel("carried", "1.0")
    world.upstream.add("carried", UpstreamFile(dist, LONG_AGO))
    monkeypatch.setenv("SSL_CERT_FILE", str(world.topology.nginx.tls.ca))  # pip's and uv's
    index = world.topology.nginx.origin + "/simple/"
    requirements = str(_requirements(tmp_path, dist))
    by_pip = pip_install(index, tmp_path / "pip", "-r", requirements, extra=("--require-hashes",))
    assert by_pip.ok, by_pip.output + world.topology.nginx.error_log.read_text()
    by_uv = uv_install(index, tmp_path / "uv", "-r", requirements, extra=("--require-hashes",))
    assert by_uv.ok, by_uv.output
    assert installed(tmp_path / "pip") == installed(tmp_path / "uv") == {"carried": "1.0"}
    served = world.through_nginx(f"/files/{dist.sha256}/{dist.filename}")
    assert served == dist.data
    for replica in world.topology.replicas:  # either replica serves it, from the bucket
        with urllib.request.urlopen(f"{replica.origin}/files/{dist.sha256}/{dist.filename}") as r:
            assert hashlib.sha256(r.read()).hexdigest() == dist.sha256


def test_a_block_on_one_replica_is_withdrawn_from_the_others_page_within_the_bound(
    world: World,
) -> None:
    first, second = world.topology.replicas
    wheel = build_wheel("spread", "1.1")
    world.upstream.add("spread", UpstreamFile(build_wheel("spread", "1.0"), LONG_AGO))
    world.upstream.add("spread", UpstreamFile(wheel, LONG_AGO))
    for replica in (first, second):
        assert listed_versions(replica.origin, "spread") == ["1.0", "1.1"]
    assert b"spread-1.1-" in world.through_nginx("/simple/spread/", JSON)  # now in its cache
    download = f"/files/{wheel.sha256}/{wheel.filename}"
    assert _download_status(second, download) == 200  # B keeps the file's state in memory

    world.decide(first, "/projects/spread/releases/1.1/block", "worm found in the wheel")
    decided = time.monotonic()
    # First the download: a page request looks upstream (index TTL 0 here) and reads the
    # ledger on its way, while a download checks the state B keeps, which only B's
    # follower of the ledger changes: told (LISTEN/NOTIFY), as it polls only every 30 s.
    eventually(lambda: _download_status(second, download) != 200, "refused at the other")
    refused = time.monotonic() - decided
    print(f"\ndecision propagation: {refused:.3f} s from replica A's answer to replica B's files")
    assert refused < PROPAGATION_BOUND
    eventually(lambda: listed_versions(second.origin, "spread") == ["1.0"], "withdrawn at B")
    took = time.monotonic() - decided
    print(f"decision propagation: {took:.3f} s from replica A's answer to replica B's page")
    assert took < PROPAGATION_BOUND
    via_nginx = eventually(
        lambda: b"spread-1.1-" not in world.through_nginx("/simple/spread/", JSON),
        "withdrawn at nginx",
        NGINX_PAGE_TTL + PROPAGATION_BOUND + 5,
    )
    print(f"decision through nginx's page cache: {took + via_nginx:.3f} s")
    assert took + via_nginx < NGINX_PAGE_TTL + PROPAGATION_BOUND


def _download_status(replica: Replica, path: str) -> int:
    try:
        with urllib.request.urlopen(replica.origin + path, timeout=30) as reply:
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


def _readiness(replica: Replica) -> tuple[int, str]:
    return replica.get("/readyz")


def test_readyz_and_metrics_name_exactly_one_leader(world: World) -> None:
    eventually(lambda: len(world.topology.leaders()) == 1, "one leader")
    [leader] = world.topology.leaders()
    for replica in world.topology.replicas:
        status, text = _readiness(replica)
        assert status == 200, text
        if replica is leader:
            assert "leader: promotion, vetting" in text
        else:
            assert "standing by: another process holds the leader lease" in text


def test_killing_the_leader_moves_vetting_and_loses_nothing(world: World) -> None:
    eventually(lambda: len(world.topology.leaders()) == 1, "one leader")
    [leader] = world.topology.leaders()
    [survivor] = [replica for replica in world.topology.replicas if replica is not leader]
    world.upstream.add("later", UpstreamFile(build_wheel("later", "1.0"), LONG_AGO))
    world.upstream.add("later", UpstreamFile(build_wheel("later", "2.0"), datetime.now(UTC)))
    assert listed_versions(survivor.origin, "later") == ["1.0"]  # 2.0 is cooling, held

    leader.kill()
    took = eventually(survivor.leads, "the survivor leads", 30)
    print(f"\nfailover: {took:.2f} s from SIGKILL of the leader to a new leader")
    status, text = _readiness(survivor)
    assert status == 200 and "leader: promotion, vetting" in text, text
    eventually(lambda: listed_versions(survivor.origin, "later") == ["1.0", "2.0"], "promoted", 60)
    world.decide(survivor, "/projects/spread/releases/1.1/unblock", "false alarm, per vendor")

    ledger = world.ledger()
    try:
        by_file = [
            event.filename
            for event in ledger.events(NormalizedName("later"))
            if event.to_state == FileState.PROMOTED and event.filename is not None
        ]
        assert sorted(by_file) == sorted(set(by_file)), by_file  # each promoted once
        assert any("-2.0-" in name for name in by_file), by_file
        written = [entry.event_id for entry in ledger.outbox()]
        eventually(lambda: set(_delivered(world.receiver)) >= set(written), "all delivered")
    finally:
        ledger.close()
    assert world.receiver.rejected == []
    assert sorted(_delivered(world.receiver)) == sorted(written)  # each exactly once
    assert len(written) >= 2  # at least the block and the unblock


def _delivered(receiver: Receiver) -> list[str]:
    return [event_id for hook in receiver.hooks for event_id in hook.body["data"]["event_ids"]]
