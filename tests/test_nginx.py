"""deploy/nginx.conf with a real nginx in front of the mirror, on loopback, over TLS.

The config is the shipped one with its ports, paths and certificate substituted. Without
an nginx binary the tests skip locally, and fail under CI=true (.ci/run installs it).
"""

import base64
import contextlib
import hashlib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from test_exposure import index_token

from conftest import NOW
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.nginx import Tls, running_nginx
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

ACCEL = "/_lazaretto_blobs/"
OLD = NOW - timedelta(days=400)
REASON = "compromised maintainer account, per the vendor"


Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


@dataclass
class Fronted:
    mirror: MirrorServer
    origin: str  # https://127.0.0.1:<nginx port>
    tls: Tls
    error_log: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        request = urllib.request.Request(self.origin + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20, context=context) as reply:
                return int(reply.status), dict(reply.headers), reply.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def fronted(tmp_path: Path, upstream: Upstream, clock: FakeClock) -> Iterator[Fronted]:
    with _fronted(tmp_path, upstream, clock) as front:
        yield front


@pytest.fixture
def fronted_with_tokens(tmp_path: Path, upstream: Upstream, clock: FakeClock) -> Iterator[Fronted]:
    with _fronted(tmp_path, upstream, clock, index_auth="required") as front:
        yield front


@contextlib.contextmanager
def _fronted(
    tmp_path: Path, upstream: Upstream, clock: FakeClock, **changes: object
) -> Iterator[Fronted]:
    data = tmp_path / "data"
    settings = settings_for(data, upstream.url, accel_redirect=ACCEL, **changes)
    with (
        running_mirror(settings, clock) as mirror,
        running_nginx(tmp_path / "nginx", [mirror.port], data / "blobs") as nginx,
    ):
        yield Fronted(mirror, nginx.origin, nginx.tls, nginx.error_log)


def _block(mirror: MirrorServer, requirement: str) -> None:
    command = [LAZARETTO, "block", requirement, "--reason", REASON]
    env = {"USER": "alice", "LAZARETTO_UPSTREAM": mirror.settings.upstream}
    env = lazaretto_env(mirror.settings.data_dir, env)
    done = subprocess.run(
        [*command, "--data-dir", str(mirror.settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _trusting_ca(fronted: Fronted) -> tuple[str, ...]:
    return ("--cert", str(fronted.tls.ca))


def _direct(mirror: MirrorServer, path: str) -> tuple[dict[str, str], bytes]:
    with urllib.request.urlopen(mirror.origin + path, timeout=10) as reply:
        return dict(reply.headers), reply.read()


def test_pip_installs_through_nginx_and_files_come_from_disk(
    fronted: Fronted, upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip's default, the system's trust store, reads the bundle OpenSSL is pointed at.
    monkeypatch.setenv("SSL_CERT_FILE", str(fronted.tls.ca))
    upstream.add("fronted", UpstreamFile(build_wheel("fronted", "1.0"), OLD))
    outcome = pip_install(
        fronted.origin + "/simple/", tmp_path / "t", "fronted", extra=_trusting_ca(fronted)
    )
    assert outcome.ok, outcome.output + fronted.error_log.read_text()
    assert installed(tmp_path / "t") == {"fronted": "1.0"}
    services = fronted.mirror.services
    assert services is not None
    record = services.ledger.files("fronted")[0]  # type: ignore[arg-type]
    path = f"/files/{record.sha256}/{record.filename}"
    # The app, asked directly, checks and answers with where the verified blob lies...
    headers, body = _direct(fronted.mirror, path)
    accel = headers["x-accel-redirect"]
    assert body == b"" and accel.startswith(ACCEL) and accel.endswith(record.sha256)
    # ...and nginx sends those bytes from disk, without the internal header.
    status, sent_headers, sent = fronted.get(path)
    assert status == 200 and hashlib.sha256(sent).hexdigest() == record.sha256
    assert "x-accel-redirect" not in {name.lower() for name in sent_headers}
    assert "immutable" in sent_headers.get("Cache-Control", "")
    # A range is nginx's to answer, from the same file.
    status, _, part = fronted.get(path, {"Range": "bytes=0-9"})
    assert status == 206 and part == sent[:10]
    # The internal location is never reachable from outside.
    assert fronted.get(f"{ACCEL}{record.sha256[:2]}/{record.sha256[2:4]}/{record.sha256}")[0] == 404


def test_a_block_reaches_the_nginx_cached_page_within_seconds(
    fronted: Fronted, upstream: Upstream
) -> None:
    upstream.add("cached", UpstreamFile(build_wheel("cached", "1.0"), OLD))
    upstream.add("cached", UpstreamFile(build_wheel("cached", "1.1"), OLD + timedelta(days=1)))
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    status, _, first = fronted.get("/simple/cached/", accept)
    assert status == 200 and b"cached-1.1-" in first
    status, headers, _ = fronted.get("/simple/cached/", accept)
    assert headers.get("X-Cache-Status") == "HIT"  # the page is cached by nginx
    status, _, html = fronted.get("/simple/cached/")
    assert status == 200 and html.lstrip().startswith(b"<!DOCTYPE html>")  # kept apart
    fronted.mirror.call(_written(fronted.mirror))
    _block(fronted.mirror, "cached==1.1")
    deadline = time.monotonic() + 30  # a liveness bound: 5 s of cache, then revalidation
    while b"cached-1.1-" in fronted.get("/simple/cached/", accept)[2]:
        assert time.monotonic() < deadline, "the block never reached the page nginx serves"
        time.sleep(0.2)
    assert b"cached-1.0-" in fronted.get("/simple/cached/", accept)[2]


async def _written(mirror: MirrorServer) -> None:
    assert mirror.services is not None
    await mirror.services.catalog.writes_done()


def test_metrics_are_not_served_through_nginx(fronted: Fronted) -> None:
    assert fronted.get("/metrics")[0] == 404
    assert fronted.get("/healthz")[:1] == (200,)


def test_a_page_fetched_with_an_index_token_is_never_cached_for_others(
    fronted_with_tokens: Fronted, upstream: Upstream, tmp_path: Path
) -> None:
    fronted = fronted_with_tokens
    upstream.add("private", UpstreamFile(build_wheel("private", "1.0"), OLD))
    token = index_token(tmp_path / "data", "ci")
    basic = base64.b64encode(f"ci:{token}".encode()).decode()
    status, _, page = fronted.get("/simple/private/", {"Authorization": f"Basic {basic}"})
    assert status == 200 and b"private-1.0-" in page
    status, headers, _ = fronted.get("/simple/private/", {"Authorization": f"Basic {basic}"})
    assert status == 200 and headers.get("X-Cache-Status") != "HIT"
    status, _, body = fronted.get("/simple/private/")  # no credentials: the app's 401
    assert status == 401 and b"private-1.0-" not in body
