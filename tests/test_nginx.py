"""deploy/nginx.conf with a real nginx in front of the mirror, on loopback, over TLS.

The config is the shipped one with its ports, paths and certificate substituted. Without
an nginx binary the tests skip locally, and fail under CI=true (.ci/run installs it).
"""

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import shutil
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_exposure import index_token

from conftest import NOW
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import installed, pip_install
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO, free_port
from support.upstream import Upstream, UpstreamFile

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SHIPPED, UPSTREAM = DEPLOY / "nginx.conf", DEPLOY / "nginx-upstream.conf"
ACCEL = "/_lazaretto_blobs/"
OLD = NOW - timedelta(days=400)
REASON = "compromised maintainer account, per the vendor"


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed: .ci/run installs it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


@dataclass(frozen=True)
class Tls:
    ca: Path
    certificate: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_tls(directory: Path) -> Tls:
    """A throwaway CA and a server certificate for 127.0.0.1 that it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("lazaretto test CA"))
        .issuer_name(_name("lazaretto test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "fullchain.pem", directory / "privkey.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.certificate.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx.conf no longer has {old!r}: update this test"
    return text.replace(old, new)


def site_config(shipped: str, *, port: int, blobs: Path, cache: Path, logs: Path, tls: Tls) -> str:
    """The shipped server block with this machine's ports and paths."""
    text = _replace(shipped, "listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;")
    text = _replace(text, "/etc/ssl/lazaretto/fullchain.pem", str(tls.certificate))
    text = _replace(text, "/etc/ssl/lazaretto/privkey.pem", str(tls.key))
    text = _replace(text, "alias /var/lib/lazaretto/blobs/;", f"alias {blobs}/;")
    text = _replace(text, "/var/cache/nginx/lazaretto", str(cache))
    return _replace(text, "/var/log/nginx/", f"{logs}/")


def upstream_config(shipped: str, app_port: int) -> str:
    return _replace(shipped, "server 127.0.0.1:8070;", f"server 127.0.0.1:{app_port};")


def main_config(site: Path, upstreams: Path, work: Path) -> str:
    """What a distribution's nginx.conf gives around the site (as root: workers stay
    root, so they can read the test's private temporary directory)."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {work / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return (
        f"{user}worker_processes 1;\ndaemon off;\npid {work / 'nginx.pid'};\n"
        f"error_log {work / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {work / 'access.log'};\n"
        f"{temp}\n    uwsgi_temp_path {work / 'uwsgi'};\n    scgi_temp_path {work / 'scgi'};\n"
        f"    include {upstreams};\n    include {site};\n}}\n"
    )


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


def _wait_for_port(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = error_log.read_text() if error_log.exists() else ""
            raise AssertionError(f"nginx exited with {process.returncode}: {log}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("nginx did not listen within 20 s")


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
    nginx = _nginx_binary()
    data = tmp_path / "data"
    settings = settings_for(data, upstream.url, accel_redirect=ACCEL, **changes)
    work = tmp_path / "nginx"
    work.mkdir()
    tls = _make_tls(work)
    with running_mirror(settings, clock) as mirror:
        port = free_port()
        site = work / "lazaretto.conf"
        site.write_text(
            site_config(
                SHIPPED.read_text(encoding="utf-8"),
                port=port,
                blobs=data / "blobs",
                cache=work / "cache",
                logs=work,
                tls=tls,
            )
        )
        upstreams = work / "upstream.conf"
        upstreams.write_text(upstream_config(UPSTREAM.read_text(encoding="utf-8"), mirror.port))
        main = work / "nginx.conf"
        main.write_text(main_config(site, upstreams, work))
        checked = subprocess.run(
            [nginx, "-t", "-c", str(main), "-p", str(work)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen([nginx, "-c", str(main), "-p", str(work)])
        try:
            _wait_for_port(port, process, work / "error.log")
            yield Fronted(mirror, f"https://127.0.0.1:{port}", tls, work / "error.log")
        finally:
            process.terminate()
            process.wait(15)


def _block(mirror: MirrorServer, requirement: str) -> None:
    command = [LAZARETTO, "block", requirement, "--reason", REASON]
    env = {**os.environ, "USER": "alice", "LAZARETTO_UPSTREAM": mirror.settings.upstream}
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
