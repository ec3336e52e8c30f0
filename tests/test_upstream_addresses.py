"""The mirror never connects to a non-public address a listing or a redirect names.

A file URL from a listing is hostile input: by default only the index's own origin and the
file host pip knows for the index are allowed, and every host but the index's must be at
a public address, checked on the addresses the connection uses (so a name that resolves
to loopback, or rebinds to it, is refused before any connection is made). Tests listen on
127.0.0.1 and count what reaches them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pip._internal.models.index import PyPI
from yarl import URL

from mirror.blobs.disk import DiskBlobStore
from mirror.errors import UpstreamRejected, UpstreamUnavailable
from mirror.upstream.client import UpstreamClient
from mirror.upstream.resolver import GuardedResolver
from mirror.upstream.url_guard import ForbiddenAddress, UrlGuard

INDEX = "https://index.example/simple/"
PAGE = URL("https://index.example/simple/demo/")

NON_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.251",  # multicast
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "2002:7f00:1::",  # 6to4 around loopback
    "64:ff9b::a9fe:a9fe",  # NAT64 around the cloud metadata address
    "64:ff9b:1::7f00:1",  # local-use NAT64 around loopback
    "::7f00:1",  # IPv4-compatible loopback
]


def test_empty_file_hosts_allow_only_the_index_and_the_file_host_pip_knows() -> None:
    """Before: an empty file_hosts allowed any https host at all."""
    custom = UrlGuard(INDEX, ())
    with pytest.raises(UpstreamRejected, match="host not in file_hosts"):
        custom.check("https://files.example/x.whl", PAGE)
    assert custom.check("/packages/x.whl", PAGE) == URL("https://index.example/packages/x.whl")

    pips = UrlGuard(PyPI.simple_url, ())
    file_url = f"https://{PyPI.file_storage_domain}/packages/x.whl"
    assert str(pips.check(file_url, URL(PyPI.simple_url))) == file_url
    with pytest.raises(UpstreamRejected, match="host not in file_hosts"):
        pips.check("https://files.example/x.whl", URL(PyPI.simple_url))


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_an_address_literal_that_is_not_public_is_refused(address: str) -> None:
    guard = UrlGuard(INDEX, ("*",))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(ForbiddenAddress) as caught:
        guard.check(f"https://{host}/x.whl", PAGE)
    assert caught.value.code.startswith("forbidden_address: ")
    assert caught.value.status == 502


def test_an_allowed_network_and_public_addresses_pass() -> None:
    guard = UrlGuard(INDEX, ("*",), ("10.0.0.0/8",))
    assert guard.check("https://10.1.2.3/x.whl", PAGE).host == "10.1.2.3"
    assert guard.check("https://93.184.216.34/x.whl", PAGE).host == "93.184.216.34"
    nat64_public = "64:ff9b::5db8:d822"  # 93.184.216.34 through NAT64
    assert guard.check(f"https://[{nat64_public}]/x.whl", PAGE).host == nat64_public
    with pytest.raises(ForbiddenAddress):
        guard.check("https://192.168.1.1/x.whl", PAGE)


def test_the_index_itself_may_be_at_a_private_address() -> None:
    """The operator chose the index (a private index is common): its origin is trusted."""
    guard = UrlGuard("http://10.0.0.5:3141/root/pypi/+simple/", ())
    url = guard.check("/root/pypi/+f/x.whl", URL("http://10.0.0.5:3141/root/pypi/+simple/demo/"))
    assert url.host == "10.0.0.5"
    assert guard.trusts("10.0.0.5", 3141)


def test_another_port_of_a_private_index_host_is_checked_like_any_host() -> None:
    """With file_hosts = "*", a listing naming the index's host on another port reaches
    another service on that private address: it is refused."""
    guard = UrlGuard("http://10.0.0.5:3141/root/pypi/+simple/", ("*",))
    page = URL("http://10.0.0.5:3141/root/pypi/+simple/demo/")
    with pytest.raises(ForbiddenAddress):
        guard.check("https://10.0.0.5:6379/x.whl", page)
    private = GuardedResolver(
        UrlGuard("https://index.example/simple/", ("*",)), _Answers("10.0.0.5")
    )
    with pytest.raises(ForbiddenAddress):
        asyncio.run(private.resolve("index.example", 8443))


class _Answers(AbstractResolver):
    """A resolver answering with fixed addresses (a hostile or rebinding DNS server)."""

    def __init__(self, *addresses: str) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self._addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "answers",
    [("127.0.0.1",), ("93.184.216.34", "127.0.0.1"), ("169.254.169.254",), ("::1",)],
)
def test_a_name_resolving_to_any_non_public_address_is_refused(answers: tuple[str, ...]) -> None:
    resolver = GuardedResolver(UrlGuard(INDEX, ("*",)), _Answers(*answers))
    with pytest.raises(ForbiddenAddress):
        asyncio.run(resolver.resolve("files.example", 443))


def test_the_index_host_resolves_unchecked_and_public_names_pass() -> None:
    guard = UrlGuard(INDEX, ("*",))
    private = GuardedResolver(guard, _Answers("10.0.0.5"))
    assert asyncio.run(private.resolve("index.example", 443))[0]["host"] == "10.0.0.5"
    public = GuardedResolver(guard, _Answers("93.184.216.34"))
    assert asyncio.run(public.resolve("files.example", 443))[0]["host"] == "93.184.216.34"


def test_the_file_host_pip_pairs_with_the_index_resolves_unchecked() -> None:
    """A resolver (a sandbox's, a proxy's) may answer for the paired file host with a
    non-public address: the operator chose that upstream, so it is not refused; another
    host answered the same way still is."""
    guard = UrlGuard(PyPI.simple_url, ())
    paired = GuardedResolver(guard, _Answers("203.0.113.7"))
    found = asyncio.run(paired.resolve(PyPI.file_storage_domain, 443))
    assert found[0]["host"] == "203.0.113.7"
    anyhost = GuardedResolver(UrlGuard(PyPI.simple_url, ("*",)), _Answers("203.0.113.7"))
    with pytest.raises(ForbiddenAddress):
        asyncio.run(anyhost.resolve("files.example", 443))


# -- with real connections ------------------------------------------------------------------
class _Listener:
    """A TCP listener on 127.0.0.1 that only counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                peer, _ = self.sock.accept()
            except BlockingIOError:
                return count
            peer.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[_Listener]:
    found = _Listener()
    yield found
    found.sock.close()


async def _download(guard: UrlGuard, url: URL, store: DiskBlobStore) -> None:
    client = UpstreamClient(guard, connect_timeout=2, read_timeout=2, max_page_bytes=1024)
    await client.open()
    writer = store.writer(1024)
    try:
        await client.download(url, writer, None)
    finally:
        await writer.abort()
        await client.close()


def test_a_file_host_named_localhost_is_never_connected_to(
    listener: _Listener, tmp_path: Path
) -> None:
    """Before: the mirror connected to https://localhost:PORT/ (any https host was fine)."""
    guard = UrlGuard("https://index.example/simple/", ("localhost",))
    url = guard.check(f"https://localhost:{listener.port}/x.whl", PAGE)
    store = DiskBlobStore(tmp_path / "blobs")
    with pytest.raises(ForbiddenAddress):
        asyncio.run(_download(guard, url, store))
    assert listener.accepted() == 0


def test_an_allowed_private_network_is_connected_to(listener: _Listener, tmp_path: Path) -> None:
    """The same request with loopback allowed does reach the listener: the refusal above
    is the address check, not a failure to connect."""
    guard = UrlGuard(INDEX, ("localhost",), ("127.0.0.0/8", "::1/128"))
    url = guard.check(f"https://localhost:{listener.port}/x.whl", PAGE)
    store = DiskBlobStore(tmp_path / "blobs")
    with pytest.raises(UpstreamUnavailable):  # no TLS server there, but it was reached
        asyncio.run(_download(guard, url, store))
    assert listener.accepted() >= 1


def test_a_redirect_to_a_non_public_address_is_not_followed(
    listener: _Listener, tmp_path: Path
) -> None:
    """The index itself (trusted, on loopback) redirects a file to another loopback host."""

    async def scenario() -> None:
        async def redirect(_request: web.Request) -> web.Response:
            raise web.HTTPFound(f"https://localhost:{listener.port}/x.whl")

        app = web.Application()
        app.router.add_get("/files/x.whl", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            guard = UrlGuard(f"http://127.0.0.1:{port}/simple/", ("localhost",))
            store = DiskBlobStore(tmp_path / "blobs")
            with pytest.raises(ForbiddenAddress):
                await _download(guard, URL(f"http://127.0.0.1:{port}/files/x.whl"), store)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert listener.accepted() == 0
