"""The replicated topology, end to end: PostgreSQL, SeaweedFS S3, two ``lazaretto serve``
replicas and nginx in front of both, all real processes on loopback.

One topology for the module; the tests run in file order and the last one kills the
leader. The times that matter (a decision reaching the other replica, a new leader after
a crash) are printed (``-s``) and held to the issue's bounds.
"""

import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.utils import NormalizedName
from test_notifications import SECRET, Receiver

from mirror.admin.api import PREFIX
from mirror.cli.local_backend import new_token, token_hash
from mirror.notify.webhook import parse_secrets
from quarantine.download_log.postgres import PostgresDownloadLog
from quarantine.ledger.postgres import PostgresLedger
from quarantine.models import FileState
from quarantine.outbox import ApiToken
from support.dists import Dist, build_wheel
from support.installers import installed, pip_install, uv_install
from support.nginx import running_nginx
from support.postgres import PostgresServer
from support.process import listed_versions
from support.s3 import SeaweedS3
from support.topology import (
    FAST_BACKGROUND,
    S3_ACCEL,
    Replica,
    Topology,
    replica_process,
    running_topology,
)
from support.upstream import Upstream, UpstreamFile

pytestmark = pytest.mark.topology

LONG_AGO = datetime.now(UTC) - timedelta(days=300)  # established: served at once
PROPAGATION_BOUND = 2.0  # seconds for an admin decision to reach every replica
NGINX_PAGE_TTL = 5.0  # deploy/nginx.conf: proxy_cache_valid 200 ... 5s
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


ACCEL = "x-accel-redirect"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Upstreamed:
    """One upstream nginx asked for a request: a replica, then S3 after X-Accel-Redirect."""

    address: str
    status: int
    received: int


# tests/support/nginx.py's log format "upstreams"; nginx separates the upstreams of one
# request, across an internal redirect, with " : ".
_LOGGED = re.compile(
    r"(?P<method>\S+) (?P<uri>\S+) (?P<status>\d+) (?P<sent>\d+) upstreams=(?P<addresses>.*) "
    r"statuses=(?P<statuses>.*) received=(?P<received>.*) cache=(?P<cache>\S*)"
)


@dataclass(frozen=True)
class Logged:
    status: int
    parts: list[Upstreamed]
    cache: str

    @classmethod
    def parse(cls, line: str) -> "Logged":
        found = _LOGGED.fullmatch(line)
        assert found is not None, line
        columns = [found[name].split(" : ") for name in ("addresses", "statuses", "received")]
        parts = [
            Upstreamed(address, int(status), int(received))
            for address, status, received in zip(*columns, strict=True)
            if address != "-"
        ]
        return cls(int(found["status"]), parts, found["cache"])


@dataclass
class World:
    topology: Topology
    upstream: Upstream
    receiver: Receiver
    ledger_url: str
    token: str

    def downloads_of(self, sha256: str, installer: str) -> int:
        """Downloads of the file in the download log, by the installer named so."""
        log = PostgresDownloadLog(self.ledger_url, where="the topology's database")
        try:
            rows = log.exposure_of([sha256])
        finally:
            log.close()
        return sum(row.downloads for row in rows if row.installer.name == installer)

    def ledger(self) -> PostgresLedger:
        return PostgresLedger(self.ledger_url, where="the topology's database")

    @property
    def s3_endpoint(self) -> str:
        return self.topology.environment["LAZARETTO_BLOB_ENDPOINT_URL"]

    def via_nginx(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> Reply:
        """Status, headers (lower-case names) and body, errors included."""
        context = ssl.create_default_context(cafile=str(self.topology.nginx.tls.ca))
        url = self.topology.nginx.origin + path
        return _fetch(urllib.request.Request(url, headers=headers or {}, method=method), context)

    def logged(self, path: str, count: int) -> list["Logged"]:
        """nginx's access log lines for requests of ``path``, oldest first, once there are
        ``count`` (nginx writes one just after the response's last byte went out)."""
        eventually(lambda: len(self._logged(path)) >= count, f"{count} lines for {path}", 10)
        return self._logged(path)

    def _logged(self, path: str) -> list["Logged"]:
        lines = self.topology.nginx.access_log.read_text().splitlines()
        return [Logged.parse(line) for line in lines if line.split(" ")[1:2] == [path]]

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
    # Either replica serves it, from the bucket (through nginx: below).
    _sent_by_nginx_everywhere(world, f"/files/{dist.sha256}/{dist.filename}")


def _sent_by_nginx_everywhere(world: World, path: str) -> str:
    """Once every replica answers ``path`` with X-Accel-Redirect (a replica that has not
    yet seen the file stored sends it itself, once): that answer's target."""
    targets = []
    for replica in world.topology.replicas:
        eventually(partial(_redirects, replica, path), f"{replica.name}: X-Accel-Redirect")
        reply = _direct(replica, path)
        assert reply.status == 200 and reply.body == b"", reply  # headers only, no bytes
        targets.append(reply.headers[ACCEL])
    s3_host = urlsplit(world.s3_endpoint).netloc
    for target in targets:
        assert target.startswith(f"{S3_ACCEL}{s3_host}/"), target
        assert path.split("/")[2] in target and "X-Amz-Signature=" in target, target
    return targets[0]


def _redirects(replica: Replica, path: str) -> bool:
    return ACCEL in _direct(replica, path).headers


def _refuses(replica: Replica, path: str) -> bool:
    return _direct(replica, path).status == 410


def _direct(replica: Replica, path: str) -> Reply:
    return _fetch(urllib.request.Request(replica.origin + path), None)


def _fetch(request: urllib.request.Request, context: ssl.SSLContext | None) -> Reply:
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as reply:
            headers = {name.lower(): value for name, value in reply.headers.items()}
            return Reply(int(reply.status), headers, reply.read())
    except urllib.error.HTTPError as error:
        headers = {name.lower(): value for name, value in error.headers.items()}
        return Reply(error.code, headers, error.read())


def _wheel(project: str, size: int = 300_000) -> Dist:
    """A wheel large enough that its bytes cannot hide in a response's headers."""
    return build_wheel(project, "1.0", extra_files={f"{project}/blob.bin": os.urandom(size)})


def _offered(world: World, dist: Dist, upload_time: datetime = LONG_AGO) -> str:
    """The file's path, once both replicas have listed it."""
    world.upstream.add(dist.project, UpstreamFile(dist, upload_time))
    for replica in world.topology.replicas:
        listed_versions(replica.origin, dist.project)
    return f"/files/{dist.sha256}/{dist.filename}"


def test_nginx_sends_a_file_from_the_bucket_and_no_byte_of_it_passes_a_replica(
    world: World,
) -> None:
    dist = _wheel("sent")
    path = _offered(world, dist)
    _sent_by_nginx_everywhere(world, path)

    first = world.via_nginx(path)
    assert first.status == 200 and first.body == dist.data
    assert ACCEL not in first.headers
    assert first.headers["etag"] == f'"{dist.sha256}"'  # the mirror's, not the store's
    assert "immutable" in first.headers["cache-control"]
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["content-type"] == "application/octet-stream"
    store_words = ("x-amz-", "seaweed-", "vary")  # S3's, SeaweedFS's, a CORS Vary
    assert not any(name.startswith(store_words) for name in first.headers), first.headers
    # The replica's answer was headers only; the bytes came from the S3 endpoint.
    [replica_part, s3_part] = world.logged(path, 1)[0].parts
    assert replica_part.address in {f"127.0.0.1:{r.port}" for r in world.topology.replicas}
    assert replica_part.received < 2048 < len(dist.data)
    assert s3_part.address == urlsplit(world.s3_endpoint).netloc
    assert s3_part.status == 200 and s3_part.received >= len(dist.data)
    # Asked again, nginx sends the blob it kept: the store is not asked.
    again = world.via_nginx(path)
    assert again.status == 200 and again.body == dist.data
    assert again.headers["x-cache-status"] == "HIT"
    assert [part.status for part in world.logged(path, 2)[1].parts] == [200]
    head = world.via_nginx(path, method="HEAD")
    assert head.status == 200 and int(head.headers["content-length"]) == len(dist.data)
    # The download log keeps the installs nginx sent, as those the mirror sent.
    for _ in range(2):
        assert world.via_nginx(path, {"User-Agent": "through-nginx/1.0"}).body == dist.data
    eventually(lambda: world.downloads_of(dist.sha256, "through-nginx") == 2, "logged")


def test_ranges_through_nginx_come_from_the_bucket(world: World) -> None:
    dist = _wheel("ranged")
    path = _offered(world, dist)
    _sent_by_nginx_everywhere(world, path)
    data = dist.data
    # The first asks nginx for a blob it does not hold yet; the others, for the one it holds.
    for asked, expected in [
        ("bytes=100-199", data[100:200]),
        (f"bytes=-{500}", data[-500:]),  # how pip and uv read a wheel's central directory
        (f"bytes={len(data) - 10}-", data[-10:]),
        ("bytes=0-0", data[:1]),
    ]:
        reply = world.via_nginx(path, {"Range": asked})
        assert reply.status == 206, (asked, reply.status, reply.headers)
        assert reply.body == expected, asked
        assert reply.headers["content-range"].endswith(f"/{len(data)}"), reply.headers
    assert world.via_nginx(path).body == data


def test_a_file_not_promoted_is_refused_though_nginx_holds_its_blob(world: World) -> None:
    first, second = world.topology.replicas
    dist = _wheel("revoked")
    path = _offered(world, dist)
    target = _sent_by_nginx_everywhere(world, path)
    assert world.via_nginx(path).body == dist.data
    assert world.via_nginx(path).headers["x-cache-status"] == "HIT"  # nginx holds it

    world.decide(first, "/projects/revoked/releases/1.0/block", "worm found in the wheel")
    for replica in (first, second):
        eventually(partial(_refuses, replica, path), f"{replica.name} refuses")
    for _ in world.topology.replicas:  # nginx asks each replica in turn
        refused = world.via_nginx(path)
        assert refused.status == 410 and dist.data not in refused.body
        assert b"worm found" in refused.body
    # The internal location is never reached from outside, not even with a valid signature.
    for guess in (target, target.split("?")[0], S3_ACCEL):
        reply = world.via_nginx(guess)
        assert reply.status == 404 and dist.data not in reply.body, guess

    # A held file (its cooling not over) is refused the same way.
    unripe = _wheel("unripe")
    held = _offered(world, unripe, datetime.now(UTC) + timedelta(days=2))
    reply = world.via_nginx(held)
    assert reply.status == 404 and b"held" in reply.body, reply
    assert [len(entry.parts) for entry in world.logged(held, 1)] == [1]  # the store never asked


class _Recording(ThreadingHTTPServer):
    """Between nginx and the S3 endpoint: keeps each request's headers, forwards it."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.endpoint = endpoint
        self.seen: list[dict[str, str]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    server: _Recording

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers.items()))
        forwarded = urllib.request.Request(
            self.server.endpoint + self.path, headers={"Host": self.headers["Host"]}
        )
        reply = _fetch(forwarded, None)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _recording(endpoint: str) -> Iterator[_Recording]:
    server = _Recording(endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_no_header_of_the_client_reaches_the_store(world: World, tmp_path: Path) -> None:
    dist = _wheel("private")
    path = _offered(world, dist)
    _sent_by_nginx_everywhere(world, path)
    ports = [replica.port for replica in world.topology.replicas]
    with (
        _recording(world.s3_endpoint) as recorder,
        running_nginx(tmp_path / "nginx", ports, tmp_path / "none", recorder.address) as nginx,
    ):
        context = ssl.create_default_context(cafile=str(nginx.tls.ca))
        secrets = {
            "Authorization": "Bearer lzt_not-for-the-store",
            "Cookie": "session=not-for-the-store",
            "X-Forwarded-For": "203.0.113.9",
            "User-Agent": "pip/25.0",
        }
        request = urllib.request.Request(nginx.origin + path, headers=secrets)
        reply = _fetch(request, context)
    assert reply.status == 200 and reply.body == dist.data
    [sent] = recorder.seen
    assert {name.lower() for name in sent} <= {"host", "connection"}, sent
    assert sent["Host"] == urlsplit(world.s3_endpoint).netloc  # the one the URL was signed for


def test_a_replica_without_accel_redirect_streams_from_the_bucket(
    world: World, tmp_path: Path
) -> None:
    dist = _wheel("streamed")
    path = _offered(world, dist)
    _sent_by_nginx_everywhere(world, path)  # stored in the bucket
    env = {
        **world.topology.environment,
        "LAZARETTO_DATA_DIR": str(tmp_path / "plain"),
        "LAZARETTO_ACCEL_REDIRECT": "",  # unset
        "LAZARETTO_VETTING_WORKER": "separate",  # serves only: the lease stays where it is
    }
    with replica_process("plain", env, tmp_path / "replica-plain.log") as plain:
        reply = _direct(plain, path)
    assert reply.status == 200 and reply.body == dist.data
    assert ACCEL not in reply.headers


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
