"""deploy/nginx.conf made runnable on loopback: a throwaway CA, the shipped config with this
machine's ports and paths, and nginx started from it. Without an nginx binary the tests
skip locally, and fail under CI=true (.ci/run installs it).
"""

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.process import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHIPPED, UPSTREAM = DEPLOY / "nginx.conf", DEPLOY / "nginx-upstream.conf"


def nginx_binary() -> str:
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


def make_tls(directory: Path) -> Tls:
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


def upstream_config(shipped: str, app_ports: Sequence[int], s3: str | None = None) -> str:
    """The shipped upstream blocks with one ``server`` line per replica, and the S3
    endpoint (``host:port``) blobs come from, if any."""
    servers = "\n    ".join(f"server 127.0.0.1:{port};" for port in app_ports)
    text = _replace(shipped, "server 127.0.0.1:8070;", servers)
    return text if s3 is None else _replace(text, "server 127.0.0.1:8333;", f"server {s3};")


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
        # Which upstreams answered each request: replica, then S3 after an X-Accel-Redirect.
        f"    log_format upstreams '$request_method $request_uri $status $body_bytes_sent "
        "upstreams=$upstream_addr statuses=$upstream_status "
        "received=$upstream_bytes_received cache=$upstream_cache_status';\n"
        f"    access_log {work / 'access.log'} upstreams;\n"
        f"{temp}\n    uwsgi_temp_path {work / 'uwsgi'};\n    scgi_temp_path {work / 'scgi'};\n"
        f"    include {upstreams};\n    include {site};\n}}\n"
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
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


@dataclass(frozen=True)
class RunningNginx:
    port: int
    tls: Tls
    error_log: Path
    access_log: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextmanager
def running_nginx(
    work: Path, app_ports: Sequence[int], blobs: Path, s3: str | None = None
) -> Iterator[RunningNginx]:
    """nginx from the shipped config in front of the apps on ``app_ports``; blobs on disk
    under ``blobs``, or at the S3 endpoint ``s3`` (``host:port``)."""
    nginx = nginx_binary()
    work.mkdir(parents=True, exist_ok=True)
    tls = make_tls(work)
    port = free_port()
    site = work / "lazaretto.conf"
    site.write_text(
        site_config(
            SHIPPED.read_text(encoding="utf-8"),
            port=port,
            blobs=blobs,
            cache=work / "cache",
            logs=work,
            tls=tls,
        )
    )
    upstreams = work / "upstream.conf"
    upstreams.write_text(upstream_config(UPSTREAM.read_text(encoding="utf-8"), app_ports, s3))
    main = work / "nginx.conf"
    main.write_text(main_config(site, upstreams, work))
    checked = subprocess.run(
        [nginx, "-t", "-c", str(main), "-p", str(work)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-c", str(main), "-p", str(work)])
    try:
        wait_for_port(port, process, work / "error.log")
        yield RunningNginx(port, tls, work / "error.log", work / "access.log")
    finally:
        process.terminate()
        process.wait(15)
