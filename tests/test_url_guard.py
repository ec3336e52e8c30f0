"""``mirror.upstream.url_guard.UrlGuard``: which URLs from an upstream listing the mirror may fetch.

The listing is hostile input. A file URL must stay on the index's own origin, or go to an
https host the operator allowed; no userinfo, no downgrade, no path tricks. Every refusal
is an ``UpstreamRejected``; nothing else may escape.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName
from yarl import URL

from mirror.errors import UpstreamRejected
from mirror.upstream.client import UpstreamClient
from mirror.upstream.url_guard import UrlGuard

# Three deployments: an https index with any https file host allowed, the same index with
# an explicit file host list, and a plain-http local index as the tests run it.
GUARDS = {
    "open": (
        UrlGuard("https://index.example/simple/", ("*",)),
        "https://index.example/simple/demo/",
    ),
    "listed": (
        UrlGuard("https://index.example/simple/", ("files.example", "Mirror.Example")),
        "https://index.example/simple/demo/",
    ),
    "local": (
        UrlGuard("http://127.0.0.1:8080/simple/", ("*",)),
        "http://127.0.0.1:8080/simple/demo/",
    ),
}

ACCEPTED: list[tuple[str, str, str]] = [
    # same origin, relative
    ("local", "/files/demo/demo-1.0.tar.gz", "http://127.0.0.1:8080/files/demo/demo-1.0.tar.gz"),
    (
        "local",
        "../../files/demo/demo-1.0.tar.gz",
        "http://127.0.0.1:8080/files/demo/demo-1.0.tar.gz",
    ),
    ("local", "demo-1.0.tar.gz", "http://127.0.0.1:8080/simple/demo/demo-1.0.tar.gz"),
    ("open", "/packages/ab/demo-1.0.whl", "https://index.example/packages/ab/demo-1.0.whl"),
    ("listed", "../../packages/demo-1.0.whl", "https://index.example/packages/demo-1.0.whl"),
    # same origin, absolute
    ("local", "http://127.0.0.1:8080/files/x.whl", "http://127.0.0.1:8080/files/x.whl"),
    ("open", "https://index.example/packages/x.whl", "https://index.example/packages/x.whl"),
    ("open", "https://index.example:443/packages/x.whl", "https://index.example/packages/x.whl"),
    ("listed", "https://INDEX.example/packages/x.whl", "https://index.example/packages/x.whl"),
    # other https hosts: any with "*", else only listed ones
    ("open", "https://files.example/packages/x.whl", "https://files.example/packages/x.whl"),
    ("local", "https://files.example/packages/x.whl", "https://files.example/packages/x.whl"),
    ("listed", "https://files.example/packages/x.whl", "https://files.example/packages/x.whl"),
    ("listed", "HTTPS://FILES.EXAMPLE/packages/x.whl", "https://files.example/packages/x.whl"),
    ("listed", "https://mirror.example/p/x.whl", "https://mirror.example/p/x.whl"),
    ("listed", "//files.example/packages/x.whl", "https://files.example/packages/x.whl"),
    (
        "listed",
        "https://files.example/packages/x.whl#sha256=" + "a" * 64,
        "https://files.example/packages/x.whl#sha256=" + "a" * 64,
    ),
]

REJECTED: list[tuple[str, str]] = [
    # hosts not allowed
    ("listed", "https://evil.example/packages/x.whl"),
    ("listed", "https://files.example.evil.example/x.whl"),
    ("listed", "https://evilfiles.example/x.whl"),
    ("listed", "https://files.example./x.whl"),
    ("listed", "https://127.0.0.1/x.whl"),
    ("listed", "https://[::1]/x.whl"),
    ("listed", "https://f\u0456les.example/x.whl"),  # Cyrillic i
    # plain http (or another scheme) to another origin
    ("local", "http://evil.example/x.whl"),
    ("local", "http://127.0.0.1:8081/x.whl"),
    ("local", "http://localhost:8080/x.whl"),
    ("open", "http://files.example/x.whl"),
    ("open", "http://index.example/packages/x.whl"),
    ("open", "ftp://files.example/x.whl"),
    ("open", "file:///etc/passwd"),
    ("open", "javascript:alert(1)"),
    ("open", "data:text/plain,hello"),
    # userinfo
    ("open", "https://a@files.example/x.whl"),
    ("open", "https://a:b@files.example/x.whl"),
    ("open", "https://:b@files.example/x.whl"),
    ("listed", "https://files.example@evil.example/x.whl"),
    ("listed", "https://index.example@evil.example/x.whl"),
    ("listed", "https://files.example%2f@evil.example/x.whl"),
    # backslashes (urllib and yarl disagree about these)
    ("listed", "https://files.example\\@evil.example/x.whl"),
    ("open", "/packages\\..\\x.whl"),
    ("open", "\\\\evil.example\\x.whl"),
    # encoded separators
    ("open", "/packages/a%2fb.whl"),
    ("open", "/packages/a%2F..%2Fb.whl"),
    ("open", "/packages/a%5cb.whl"),
    ("listed", "https://files.example/packages/%2f%2fevil.example/x.whl"),
    # dot segments: rejected, not "fixed" by resolving them
    ("open", "/packages/../../x.whl"),
    ("listed", "https://files.example/packages/../secret"),
    ("listed", "https://files.example/packages/%2e%2e/secret"),
    ("listed", "https://files.example/packages/%2E%2E/secret"),
    # protocol-relative URLs to a host that is not allowed
    ("listed", "//evil.example/x.whl"),
    ("local", "//evil.example/x.whl"),
    # control characters and whitespace
    ("open", "https://files.example/x.whl\x00"),
    ("open", "/packages/x.whl\x00.txt"),
    ("open", "/packages/x.whl\r\nSet-Cookie: a=b"),
    ("open", "/packages/x.whl\n"),
    ("open", "/packages/x\t.whl"),
    ("open", "https://files.example/a b.whl"),
    # empty or unusable hosts and ports
    ("open", "https:///packages/x.whl"),
    ("local", "http:///files/x.whl"),
    ("local", "https:///x.whl"),
    ("open", "https://:443/x.whl"),
    ("open", "https://files.example:99999/x.whl"),
    ("open", "https://files.example:abc/x.whl"),
    ("open", "https://[::1/x.whl"),
    # hosts that do not survive IDNA decoding
    ("open", "https://xn--fles-e4a.example/x.whl"),
    ("listed", "//xn--"),
]


@pytest.mark.parametrize(("guard", "raw", "expected"), ACCEPTED)
def test_accepted(guard: str, raw: str, expected: str) -> None:
    checker, page = GUARDS[guard]
    assert str(checker.check(raw, URL(page))) == expected


@pytest.mark.parametrize(("guard", "raw"), REJECTED)
def test_rejected(guard: str, raw: str) -> None:
    checker, page = GUARDS[guard]
    with pytest.raises(UpstreamRejected) as caught:
        checker.check(raw, URL(page))
    assert caught.value.code.startswith(("offhost_url: ", "forbidden_address: "))
    assert caught.value.status == 502


def test_same_origin_compares_scheme_host_and_port() -> None:
    guard, _ = GUARDS["local"]
    assert guard.same_origin(URL("http://127.0.0.1:8080/anything"))
    assert not guard.same_origin(URL("https://127.0.0.1:8080/anything"))
    assert not guard.same_origin(URL("http://127.0.0.1:8081/anything"))
    assert not guard.same_origin(URL("http://localhost:8080/anything"))
    assert guard.index == URL("http://127.0.0.1:8080/simple/")


def test_redirect_location_is_checked_against_the_current_url() -> None:
    """Redirects are checked with the URL that answered as the base."""
    guard, _ = GUARDS["listed"]
    here = URL("https://files.example/packages/a/x.whl")
    assert str(guard.check("/packages/b/x.whl", here)) == "https://files.example/packages/b/x.whl"
    with pytest.raises(UpstreamRejected):
        guard.check("http://files.example/packages/b/x.whl", here)


pieces = st.sampled_from(
    [
        "https:",
        "http:",
        "//",
        "/",
        "\\",
        "files.example",
        "evil.example",
        "index.example",
        "@",
        ":",
        "443",
        "%2f",
        "%2e",
        "..",
        ".",
        "[",
        "]",
        "?",
        "#",
        "%",
        "a",
        "\u0130",
        "\u00df",
        "\uff0e",
        "\x00",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(pieces | st.text(max_size=3), max_size=12).map("".join))
def test_property_accepted_urls_stay_on_allowed_hosts(raw: str) -> None:
    guard, page = GUARDS["listed"]
    try:
        url = guard.check(raw, URL(page))
    except UpstreamRejected:
        return
    assert url.host in {"index.example", "files.example", "mirror.example"}
    assert url.user is None and url.password is None
    assert url.scheme == "https"
    assert "\x00" not in str(url) and "\\" not in str(url)


@pytest.mark.parametrize(
    "index",
    [
        "https://index.example/simple/",
        "http://127.0.0.1:8080/pypi/simple/",
        "https://index.example/deep/path%20x/simple/?token=1",
    ],
)
@given(name=st.from_regex(r"[a-z0-9]+(-[a-z0-9]+)*|[a-z0-9._~%-]{1,20}", fullmatch=True))
@settings(max_examples=60)
def test_a_project_page_url_is_the_index_joined_with_the_name(index: str, name: str) -> None:
    """The quick way for plain names builds exactly what joining path segments builds."""
    guard = UrlGuard(index, ())
    client = UpstreamClient(guard, connect_timeout=1, read_timeout=1, max_page_bytes=1)
    built = client.project_url(NormalizedName(name))
    assert built == guard.index / name / ""
    assert str(built) == str(guard.index / name / "")
