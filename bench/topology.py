"""The replicated topology against nginx serving the same files statically (issue 16).

One run starts what ``tests/test_topology.py`` starts (PostgreSQL, SeaweedFS S3, two
``lazaretto serve`` replicas with accel_redirect, nginx from deploy/nginx.conf in front
sending the files from the bucket through its blob cache, a local upstream), and
beside it an nginx with the same TLS certificate and one worker, as the topology's has,
serving the identical bytes from disk. wrk then loads both with the same requests: a
project's JSON index page (small) and a 17 MB wheel. Goals: pages >= 50% of static nginx,
17 MB wheels >= 90%. Run on demand (never in the test suite); needs wrk and nginx:

    .venv/bin/python bench/topology.py [--seconds 10]
"""

import argparse
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import BenchError, WrkResult, markdown_table, require_tools, wrk
from result_file import save

from support.dists import build_wheel
from support.nginx import Tls, nginx_binary, wait_for_port
from support.postgres import running_postgres
from support.process import free_port
from support.s3 import seaweed_s3
from support.topology import running_topology
from support.upstream import Upstream, UpstreamFile

LONG_AGO = datetime.now(UTC) - timedelta(days=300)  # established: served at once
JSON = "application/vnd.pypi.simple.v1+json"

_STATIC = """{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        root {root}/files;
    }}
}}
"""


@contextmanager
def static_nginx(root: Path, tls: Tls) -> Iterator[str]:
    """nginx over TLS serving ``root/files``; yields its origin."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(
        _STATIC.format(
            # as root, workers stay root, so they can read the private temporary directory
            user="user root;\n" if os.geteuid() == 0 else "",
            root=root,
            port=port,
            certificate=tls.certificate,
            key=tls.key,
        )
    )
    process = subprocess.Popen([nginx_binary(), "-c", str(config), "-p", str(root)])
    try:
        wait_for_port(port, process, root / "error.log")
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


def _get(url: str, tls: Tls, accept: str | None = None) -> bytes:
    context = ssl.create_default_context(cafile=str(tls.ca))
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as reply:
            body: bytes = reply.read()
            return body
    except urllib.error.HTTPError as error:
        raise BenchError(f"{url}: {error.code} {error.read()[:300]!r}") from error


def _first_bytes(url: str, tls: Tls, seconds: float = 15.0) -> bytes:
    """The body once every replica knows the file: the replica that did not list the page
    learns of its new records from the ledger a moment later, and says 404 until then."""
    started = time.monotonic()
    while True:
        try:
            body = _get(url, tls)
        except BenchError as error:
            if time.monotonic() - started > seconds:
                raise
            print(f"not yet: {error}", file=sys.stderr)
            time.sleep(0.2)
            continue
        print(f"first 200 after {time.monotonic() - started:.2f} s", file=sys.stderr)
        return body


def _row(what: str, mine: WrkResult, static: WrkResult, goal: float) -> list[str]:
    ratio = mine.rps / static.rps if static.rps else 0.0
    return [
        what,
        f"{mine.rps:,.1f}",
        f"{static.rps:,.1f}",
        f"{ratio:.0%}",
        f"{mine.p50_ms:.2f} / {static.p50_ms:.2f}",
        f"{mine.mb_s:,.0f} / {static.mb_s:,.0f}",
        f"{mine.errors} / {static.errors}",
        f">= {goal:.0%}: {'met' if ratio >= goal else 'NOT met'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    require_tools({"wrk": "apt-get install wrk", "nginx": "apt-get install nginx-light"})
    work = Path(tempfile.mkdtemp(prefix="lazaretto-topology-bench-"))
    big = build_wheel("big", "1.0", extra_files={"big/d.bin": os.urandom(17 * 2**20)})
    with ExitStack() as stack:
        upstream = stack.enter_context(Upstream())
        for version in ("1.0", "1.1", "1.2", "2.0"):
            upstream.add("pages", UpstreamFile(build_wheel("pages", version), LONG_AGO))
        upstream.add("big", UpstreamFile(big, LONG_AGO))
        postgres = stack.enter_context(running_postgres())
        s3 = stack.enter_context(seaweed_s3())
        topology = stack.enter_context(
            running_topology(
                work / "topology", upstream=upstream.url, ledger=postgres.new_database(), s3=s3
            )
        )
        tls, origin = topology.nginx.tls, topology.nginx.origin
        page_path, wheel_path = "/simple/pages/", f"/files/{big.sha256}/{big.filename}"
        page = _get(origin + page_path, tls, JSON)  # warm: looked up, stored, promoted
        _get(origin + "/simple/big/", tls, JSON)  # the mirror knows a file once it lists it
        if _first_bytes(origin + wheel_path, tls) != big.data:
            raise BenchError("the topology served other bytes than the upstream's wheel")
        files = work / "static" / "files"
        (files / "simple" / "pages").mkdir(parents=True)
        (files / "simple" / "pages" / "index.html").write_bytes(page)
        (files / "files" / big.sha256).mkdir(parents=True)
        (files / "files" / big.sha256 / big.filename).write_bytes(big.data)
        static = stack.enter_context(static_nginx(work / "static", tls))
        if _get(static + wheel_path, tls) != big.data:
            raise BenchError("static nginx does not serve the wheel: see its error.log")
        seconds = args.seconds
        rows = [
            _row(
                f"JSON index page ({len(page):,} B), 32 connections",
                wrk(origin + page_path, seconds, connections=32, accept=JSON),
                wrk(static + page_path, seconds, connections=32, accept=JSON),
                0.5,
            ),
            _row(
                "17 MB wheel, 4 connections",
                wrk(origin + wheel_path, seconds, connections=4),
                wrk(static + wheel_path, seconds, connections=4),
                0.9,
            ),
        ]
    shutil.rmtree(work, ignore_errors=True)
    head = [
        "request",
        "topology req/s",
        "static nginx req/s",
        "ratio",
        "median ms (topology / static)",
        "MB/s (topology / static)",
        "errors",
        "goal",
    ]
    report = (
        "# Replicated topology vs static nginx\n\n"
        "Two `lazaretto serve` replicas (PostgreSQL ledger, SeaweedFS S3 blobs) behind nginx "
        "from deploy/nginx.conf (TLS, one worker, 5 s page cache; files by X-Accel-Redirect "
        "to its internal location proxying the bucket, through its blob cache), against nginx "
        "with the same certificate and one worker serving the identical bytes from disk. "
        f"wrk, {seconds} s each, on this machine (2 cores, shared).\n\n"
        f"    .venv/bin/python bench/topology.py --seconds {seconds}\n\n"
        + markdown_table(head, rows)
        + "\n"
    )
    print(report)
    save("topology", report)


if __name__ == "__main__":
    main()
