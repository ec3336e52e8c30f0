"""The replicated deployment as plain processes on loopback: two ``lazaretto serve``
replicas sharing one PostgreSQL ledger and one S3 bucket, nginx (the shipped config) in
front of both. The leader lease decides which replica promotes, vets, watches and notifies.

Each replica runs in a process group of its own, so a test can SIGKILL one with every
child it started (inspection workers), as a crashed machine would lose them.
"""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from support.nginx import RunningNginx, nginx_binary, running_nginx
from support.postgres import migrate_postgres
from support.process import LAZARETTO, free_port, wait_until_up
from support.s3 import SeaweedS3

S3_ACCEL = "/_lazaretto_s3/"
# Short enough that a test sees a release cool, vet and be promoted in seconds.
FAST_BACKGROUND = {
    "LAZARETTO_COOLING_PERIOD": "6s",
    "LAZARETTO_VETTING_WINDOW": "0s",
    "LAZARETTO_PROMOTE_INTERVAL": "1s",
    "LAZARETTO_NOTIFY_INTERVAL": "1s",
}


@dataclass
class Replica:
    name: str
    port: int
    process: "subprocess.Popen[str]"
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to its whole process group: no goodbye, its connections just drop."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if not self.alive:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.origin + path, timeout=10) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def leads(self) -> bool:
        """What its ``/metrics`` says: ``lazaretto_leader`` is 1."""
        _, text = self.get("/metrics")
        return "\nlazaretto_leader 1.0\n" in f"\n{text}"


@dataclass
class Topology:
    replicas: list[Replica]
    nginx: RunningNginx
    # What every replica is configured with, but its data directory (another replica's).
    environment: dict[str, str]

    def live(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.alive]

    def leaders(self) -> list[Replica]:
        return [replica for replica in self.live() if replica.leads()]


def replica_environment(
    data_dir: Path, upstream: str, ledger: str, s3: SeaweedS3, prefix: str
) -> dict[str, str]:
    """What one replica is configured with; only the data directory (scratch) differs."""
    return {
        **s3.environment(),
        "LAZARETTO_DATA_DIR": str(data_dir),
        "LAZARETTO_UPSTREAM": upstream,
        "LAZARETTO_LEDGER": ledger,
        "LAZARETTO_BLOB_STORE": str(s3.options(prefix=prefix).location),
        "LAZARETTO_BLOB_ENDPOINT_URL": s3.endpoint,
        "LAZARETTO_BLOB_REGION": "us-east-1",
        "LAZARETTO_BLOB_SERVE": "stream",
        # nginx sends the bytes, from the bucket (deploy/nginx.conf: /_lazaretto_s3/).
        "LAZARETTO_ACCEL_REDIRECT": S3_ACCEL,
        # The lease decides, in the serving process itself: no separate worker to run.
        "LAZARETTO_VETTING_WORKER": "in-process",
        "LAZARETTO_INSPECTION_WORKERS": "1",
        "LAZARETTO_ACCESS_LOG": "false",
    }


@contextmanager
def replica_process(name: str, env: Mapping[str, str], log: Path) -> Iterator[Replica]:
    """``lazaretto serve`` with ``env`` on a free port, until the context ends."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [LAZARETTO, "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: see Replica.kill
        )
    replica = Replica(name, port, process, log)
    try:
        wait_until_up(replica.origin, process, seconds=60)
        yield replica
    finally:
        replica.stop()


@contextmanager
def running_topology(
    work: Path,
    *,
    upstream: str,
    ledger: str,
    s3: SeaweedS3,
    env: Mapping[str, str] | None = None,
    names: tuple[str, ...] = ("a", "b"),
) -> Iterator[Topology]:
    """Replicas on ``ledger`` (a migrated PostgreSQL database here) and ``s3``; nginx in front."""
    nginx_binary()  # skip (or fail in CI) before starting anything
    migrate_postgres(ledger)
    work.mkdir(parents=True, exist_ok=True)
    prefix = f"topology-{os.getpid()}-{time.monotonic_ns()}"
    with ExitStack() as stack:
        shared = {**replica_environment(work, upstream, ledger, s3, prefix), **(env or {})}
        del shared["LAZARETTO_DATA_DIR"]  # each replica's own
        replicas = []
        for name in names:
            settings = {**shared, "LAZARETTO_DATA_DIR": str(work / name)}
            replicas.append(
                stack.enter_context(replica_process(name, settings, work / f"replica-{name}.log"))
            )
        # The shipped config's blob alias is for a disk store: unused with S3.
        ports = [replica.port for replica in replicas]
        s3_address = urlsplit(s3.endpoint).netloc
        nginx = stack.enter_context(running_nginx(work / "nginx", ports, work / "none", s3_address))
        yield Topology(replicas, nginx, shared)
