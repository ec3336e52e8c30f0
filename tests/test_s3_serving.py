"""``lazaretto serve`` on an S3 blob store (a real SeaweedFS): pip and uv install through
it, the bytes live in the bucket and nowhere on the mirror's disk, a large file is either
streamed through the mirror or redirected to a short-lived URL of the store's (never to the
upstream), and a store outage is a one-line 503 while small files stay served from memory
and pages, which never ask the store, stay served too.
"""

import asyncio
import hashlib
import http.client
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import obstore
import pytest

from mirror.blobs.s3 import S3BlobStore
from mirror.blobs.s3_options import S3Options
from support.dists import Dist, build_wheel
from support.installers import installed, pip_install, uv_install
from support.process import lazaretto_serve, listed_versions
from support.s3 import ACCESS_KEY, SECRET_KEY, SeaweedS3, seaweed_s3
from support.upstream import Upstream, UpstreamFile

LONG_AGO = datetime.now(UTC) - timedelta(days=300)  # established: served at once
SMALL = build_wheel("tiny", "1.0")
# Random bytes do not compress: a wheel well over the 512 KiB kept in memory.
LARGE = build_wheel("bulky", "1.0", extra_files={"bulky/data.bin": os.urandom(2 * 1024 * 1024)})


@contextmanager
def _serving(upstream: Upstream, s3: SeaweedS3, options: S3Options, data: Path) -> Iterator[str]:
    for dist in (SMALL, LARGE):
        upstream.add(dist.project, UpstreamFile(dist, LONG_AGO))
    env = {
        **s3.environment(),  # the credentials: only ever from the environment
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(data),
        "LAZARETTO_BLOB_STORE": str(options.location),
        "LAZARETTO_BLOB_ENDPOINT_URL": s3.endpoint,
        "LAZARETTO_BLOB_REGION": "us-east-1",
        "LAZARETTO_BLOB_SERVE": options.serve,
    }
    with lazaretto_serve([], env) as origin:
        yield origin


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _get(origin: str, dist: Dist) -> Answer:
    """One GET of the file's mirror URL, redirects not followed."""
    parts = urlsplit(origin)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", f"/files/{dist.sha256}/{dist.filename}")
        response = connection.getresponse()
        headers = {key.lower(): value for key, value in response.headers.items()}
        return Answer(response.status, headers, response.read())
    finally:
        connection.close()


def _store(options: S3Options, tmp_path: Path) -> S3BlobStore:
    return S3BlobStore(options, tmp_path / "look", (ACCESS_KEY, SECRET_KEY))


@pytest.mark.parametrize("serve", ["stream", "presigned"])
def test_pip_and_uv_install_from_the_bucket(
    upstream: Upstream, s3_server: SeaweedS3, tmp_path: Path, serve: str
) -> None:
    options = s3_server.options("presigned" if serve == "presigned" else "stream")
    data = tmp_path / "data"
    with _serving(upstream, s3_server, options, data) as origin:
        by_pip = pip_install(origin + "/simple/", tmp_path / "pip", "tiny", "bulky")
        assert by_pip.ok, by_pip.output
        # The bytes are in the bucket, and nowhere on the mirror's disk.
        store = _store(options, tmp_path)
        for dist in (SMALL, LARGE):
            assert asyncio.run(store.contains(dist.sha256))
        assert not (data / "blobs").exists()
        assert list((data / "s3-staging").iterdir()) == []
        by_uv = uv_install(origin + "/simple/", tmp_path / "uv", "tiny", "bulky")
        assert by_uv.ok, by_uv.output
        large = _get(origin, LARGE)
        small = _get(origin, SMALL)
    both = {"tiny": "1.0", "bulky": "1.0"}
    assert installed(tmp_path / "pip") == installed(tmp_path / "uv") == both
    assert small.status == 200 and small.body == SMALL.data
    if serve == "stream":
        assert large.status == 200 and large.body == LARGE.data
        assert large.headers["content-length"] == str(len(LARGE.data))
        return
    assert large.status == 307 and large.headers["cache-control"] == "no-store"
    location = large.headers["location"]
    assert location.startswith(f"{s3_server.endpoint}/") and "X-Amz-Signature=" in location
    with urllib.request.urlopen(location, timeout=60) as direct:
        assert hashlib.sha256(direct.read()).hexdigest() == LARGE.sha256


def test_a_store_outage_is_a_one_line_503_and_small_files_stay_served(
    upstream: Upstream, tmp_path: Path
) -> None:
    with seaweed_s3() as s3:  # its own server: this test stops it
        options = s3.options()
        with _serving(upstream, s3, options, tmp_path / "data") as origin:
            outcome = pip_install(origin + "/simple/", tmp_path / "pip", "tiny", "bulky")
            assert outcome.ok, outcome.output
            assert _get(origin, SMALL).status == 200  # now kept in memory
            s3.stop()
            small, large = _get(origin, SMALL), _get(origin, LARGE)
            # Pages come from the ledger: listing asks the store nothing, even now.
            assert listed_versions(origin, "bulky") == ["1.0"]
    assert small.status == 200 and small.body == SMALL.data
    assert large.status == 503
    body = large.body.decode()
    assert body.count("\n") == 1 and "the blob store s3://" in body, body
    assert SECRET_KEY not in body and large.headers["retry-after"] == "30"


def test_an_object_changed_behind_the_mirrors_back_is_never_sent(
    upstream: Upstream, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    options = s3_server.options()
    with _serving(upstream, s3_server, options, tmp_path / "data") as origin:
        assert listed_versions(origin, "tiny") == ["1.0"]
        assert _get(origin, SMALL).status == 200  # fetched, verified, stored in the bucket
    store = _store(options, tmp_path)

    async def replace() -> None:
        await obstore.put_async(store._client, store.key_of(SMALL.sha256), b"not the wheel")

    asyncio.run(replace())
    # A new process: nothing in memory, so the bytes come from the bucket, checked.
    with _serving(upstream, s3_server, options, tmp_path / "data") as origin:
        changed = _get(origin, SMALL)
    assert changed.status == 503
    assert changed.body.decode().endswith("does not match its digest\n"), changed.body


def _get_partial(origin: str, dist: Dist) -> tuple[int, int, bytes]:
    """The status, the Content-Length and the bytes of one GET, however short it ends."""
    parts = urlsplit(origin)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", f"/files/{dist.sha256}/{dist.filename}")
        response = connection.getresponse()
        length = int(response.headers["content-length"])
        try:
            return response.status, length, response.read()
        except http.client.IncompleteRead as short:
            return response.status, length, short.partial
    finally:
        connection.close()


def test_a_large_object_changed_behind_the_mirrors_back_ends_short(
    upstream: Upstream, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    options = s3_server.options()
    with _serving(upstream, s3_server, options, tmp_path / "data") as origin:
        assert listed_versions(origin, "bulky") == ["1.0"]
        assert _get(origin, LARGE).body == LARGE.data  # fetched, verified, in the bucket
    store = _store(options, tmp_path)
    tampered = os.urandom(len(LARGE.data))  # the same size: only the digest tells

    async def replace() -> None:
        await obstore.put_async(store._client, store.key_of(LARGE.sha256), tampered)

    asyncio.run(replace())
    with _serving(upstream, s3_server, options, tmp_path / "data") as origin:
        status, length, body = _get_partial(origin, LARGE)
    assert status == 200 and length == len(tampered)
    assert len(body) < length  # never a complete body, so no client keeps it
    assert tampered.startswith(body)


def test_an_upload_never_replaces_an_object(s3_server: SeaweedS3, tmp_path: Path) -> None:
    store = _store(s3_server.options(), tmp_path)
    verified = tmp_path / "verified"
    verified.write_bytes(LARGE.data)

    async def uploads() -> bytes:
        await obstore.put_async(store._client, store.key_of(LARGE.sha256), b"first")
        await store.upload(LARGE.sha256, verified)  # already there: success, no overwrite
        found = await obstore.get_async(store._client, store.key_of(LARGE.sha256))
        return bytes(await found.bytes_async())

    assert asyncio.run(uploads()) == b"first"
