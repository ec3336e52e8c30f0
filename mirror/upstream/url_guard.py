"""Which upstream URLs the mirror may fetch: the upstream is hostile input.

A file URL from a listing must resolve to the index's own origin, or to an https host the
operator allowed (by default the file host pip knows for the index, if any). No userinfo,
no downgrade to plain http, no path tricks. The URL is parsed with yarl, the parser
aiohttp fetches with, so what is checked is what is fetched.

Any host but the index's own must also be at a public address: a listing naming
``127.0.0.1``, a private range or a cloud metadata address would otherwise make the mirror
a proxy into the network it runs in. An address literal is checked here; a name is checked
after resolution, on the very addresses the connection uses (``upstream_resolver``), so a
name that resolves differently the second time (DNS rebinding) gains nothing.
"""

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from yarl import URL

from mirror.errors import UpstreamRejected
from mirror.upstream.default_index import pip_file_hosts

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY_HOST = "*"  # in file_hosts: any https host (still only at a public address)


class ForbiddenAddress(UpstreamRejected):
    """A host other than the index's resolves to a loopback, private, link-local,
    multicast or otherwise non-public address that no allowed network covers."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"forbidden_address: {host[:60]} is at {address}, not a public address "
            "(allow its network with upstream_private_networks if it is meant)"
        )


# NAT64 prefixes (RFC 6052, RFC 8215): the IPv4 address rides in the last 32 bits, and on
# an IPv6-only host with DNS64 that is where the connection goes (169.254.169.254 too).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class AddressPolicy:
    """Public unicast addresses, plus the networks the operator allowed."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._allowed: tuple[Network, ...] = tuple(
            ipaddress.ip_network(text, strict=False) for text in allowed
        )

    def permits(self, address: Address) -> bool:
        if any(address in network for network in self._allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
            if embedded is not None:
                return self.permits(embedded)
            if address in _IPV4_COMPATIBLE:
                return False  # ::a.b.c.d, deprecated: some stacks still reach the IPv4 host
        return address.is_global and not address.is_multicast

    def check(self, host: str, address: str) -> None:
        """ForbiddenAddress unless ``address`` (numeric, as connected to) is permitted."""
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone: fe80::1%eth0
        except ValueError as error:
            raise ForbiddenAddress(host, "an address that does not parse") from error
        if not self.permits(parsed):
            raise ForbiddenAddress(host, str(parsed))


class UrlGuard:
    def __init__(
        self,
        index_url: str,
        file_hosts: tuple[str, ...],
        private_networks: tuple[str, ...] = (),
    ) -> None:
        self._index = URL(index_url)
        hosts = file_hosts or pip_file_hosts(index_url)
        self._any_host = ANY_HOST in hosts
        self._file_hosts = frozenset(host.lower() for host in hosts)
        # The index's host and the file host pip pairs with it come from the operator's
        # choice of upstream, not from a listing: wherever they resolve (a proxy that
        # answers for them, say), they are trusted; any other host must be public.
        paired = {(host.lower(), 443) for host in pip_file_hosts(index_url)}
        index = ((self._index.host or "").lower(), self._index.port)
        self._chosen = frozenset({index, *paired})
        self.addresses = AddressPolicy(private_networks)
        # What a file URL refused by these settings may be fetched under once they change.
        self.settings_key = (
            f"file_hosts={sorted(self._file_hosts)} private={list(private_networks)}"
        )

    @property
    def index(self) -> URL:
        return self._index

    def trusts(self, host: str, port: int | None) -> bool:
        """The index's origin, or the file host pip pairs with that index: the operator
        chose them, wherever they are (a private index, a resolver that answers for them).
        Another port of the same host is another service, and checked like any host."""
        return (host.lower(), port) in self._chosen

    def same_origin(self, url: URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self._index.scheme,
            self._index.host,
            self._index.port,
        )

    def check(self, raw: str, base: URL) -> URL:
        """The absolute URL to fetch for ``raw`` (found on page ``base``), or UpstreamRejected."""
        if any(character in raw for character in "\\\x00\r\n\t "):
            raise UpstreamRejected("offhost_url: control or separator characters")
        try:
            given = URL(raw)
            url = base.join(given)
            host = url.host
        except (ValueError, TypeError) as error:  # UnicodeError (IDNA) is a ValueError
            raise UpstreamRejected("offhost_url: unparseable") from error
        if given.scheme and not given.raw_host:
            raise UpstreamRejected("offhost_url: userinfo or no host")
        if _dot_segments(raw):
            raise UpstreamRejected("offhost_url: encoded separators or dot segments")
        if url.user is not None or url.password is not None or not host:
            raise UpstreamRejected("offhost_url: userinfo or no host")
        if (
            "%2f" in url.raw_path.lower()
            or "%5c" in url.raw_path.lower()
            or "/../" in url.path + "/"
        ):
            raise UpstreamRejected("offhost_url: encoded separators or dot segments")
        if self.same_origin(url):
            return url
        if url.scheme != "https":
            raise UpstreamRejected("offhost_url: plain http to another origin")
        if not self._any_host and host.lower() not in self._file_hosts:
            raise UpstreamRejected("offhost_url: host not in file_hosts")
        if not self.trusts(host, url.port) and _is_address(host):
            self.addresses.check(host, host)
        return url


def _is_address(host: str) -> bool:
    """An address literal: connected to as it is, never resolved (so checked here)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _dot_segments(raw: str) -> bool:
    """A '.' or '..' segment (plain or %2e) in the path as written, before resolution.

    Only a relative reference may start by climbing from the page ('../../x').
    """
    parts = urlsplit(raw)
    segments = parts.path.split("/")
    start = 0
    if not parts.scheme and not parts.netloc and not parts.path.startswith("/"):
        while start < len(segments) and segments[start] in (".", ".."):
            start += 1
    return any(seg.lower().replace("%2e", ".") in (".", "..") for seg in segments[start:])
