"""``mirror.http.request_base``: the mirror's base URL as the request reached it."""

from typing import Any

import pytest

from mirror.errors import BadRequest
from mirror.http.request_base import RequestBase


def scope(*headers: tuple[bytes, bytes], **fields: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "server": ("127.0.0.1", 8070),
        "client": ("10.1.2.3", 50000),
        "root_path": "",
        "headers": list(headers),
        **fields,
    }


HOST = (b"host", b"Mirror.Example:8443")
FORWARDED = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"pypi.internal")]


def test_the_host_and_scheme_the_request_came_with() -> None:
    base = RequestBase()
    assert base.of(scope(HOST)) == "http://mirror.example:8443/"
    assert base.of(scope(HOST, scheme="https")) == "https://mirror.example:8443/"
    assert base.of(scope(HOST, root_path="/pypi/")) == "http://mirror.example:8443/pypi/"
    assert base.of(scope((b"host", b"[::1]:8070"))) == "http://[::1]:8070/"
    # No Host (HTTP/1.0), or an empty one: where the request came in.
    assert base.of(scope()) == "http://127.0.0.1:8070/"
    assert base.of(scope((b"host", b" "), server=("::1", 8070))) == "http://[::1]:8070/"


def test_forwarded_headers_are_believed_from_trusted_proxies_only() -> None:
    behind = RequestBase(["10.0.0.0/8", "::1"])
    assert behind.of(scope(HOST, *FORWARDED)) == "https://pypi.internal/"
    assert behind.of(scope(HOST, *FORWARDED, client=("::1", 1))) == "https://pypi.internal/"
    # The last value is the one the proxy added to the client's.
    appended = [(b"x-forwarded-host", b"evil.example"), (b"x-forwarded-host", b"a, pypi.internal")]
    assert behind.of(scope(HOST, *appended)) == "http://pypi.internal/"
    assert behind.of(scope(HOST)) == "http://mirror.example:8443/"  # headers not set
    for client in (("192.168.0.9", 1), ("/run/lazaretto.sock", None), None):
        assert behind.of(scope(HOST, *FORWARDED, client=client)) == "http://mirror.example:8443/"
    assert RequestBase().of(scope(HOST, *FORWARDED)) == "http://mirror.example:8443/"


@pytest.mark.parametrize(
    "host",
    [b"a b", b'x"><a', b"evil.example/path", b"user@evil.example", b"a:b", b"\xff", b"[::1"],
)
def test_a_host_that_names_no_host_is_a_bad_request(host: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        RequestBase().of(scope((b"host", host)))
    assert caught.value.status == 400
    assert "public_base_url" in caught.value.reason


def test_a_forwarded_scheme_must_be_http_or_https() -> None:
    proxied = [(b"x-forwarded-proto", b"javascript")]
    with pytest.raises(BadRequest):
        RequestBase(["10.0.0.0/8"]).of(scope(HOST, *proxied))


def test_public_base_url_is_the_base_whatever_the_request_says() -> None:
    public = RequestBase(["10.0.0.0/8"], "https://pypi.example.org/mirror")
    for headers in ([HOST], [HOST, *FORWARDED], [(b"host", b"a b")], []):
        assert public.of(scope(*headers)) == "https://pypi.example.org/mirror/"


def test_the_client_address_is_forwarded_only_by_trusted_proxies() -> None:
    xff = (b"x-forwarded-for", b"198.51.100.9, 203.0.113.7")
    assert RequestBase().client_address(scope(xff)) == "10.1.2.3"  # nobody trusted
    behind = RequestBase(["10.0.0.0/8"])
    assert behind.client_address(scope(xff)) == "203.0.113.7"  # the hop the proxy added
    assert behind.client_address(scope()) == "10.1.2.3"  # no header: the proxy itself
    chain = (b"x-forwarded-for", b"198.51.100.9, 203.0.113.7, 10.9.9.9")
    assert behind.client_address(scope(chain)) == "203.0.113.7"  # trusted hops skipped
    bad = (b"x-forwarded-for", b"198.51.100.9, not-an-address")
    assert behind.client_address(scope(bad)) == "10.1.2.3"
    outsider = scope(xff, client=("192.0.2.1", 1))
    assert behind.client_address(outsider) == "192.0.2.1"  # not a proxy: header ignored
