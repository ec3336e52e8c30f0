"""The mirror's base URL as a client reached it, for the URLs a page must give in full.

PEP 740 wants provenance URLs fully qualified, and the JSON API gives absolute file URLs.
With ``public_base_url`` set they are built from it, whatever the request says; without,
from the request: its scheme and ``Host``, or, when the peer is one of
``trusted_proxies``, the ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` that proxy sets
(anyone else's are ignored). uvicorn's own proxy_headers stay off (``lazaretto serve``),
so the peer seen here is the real one and these headers are read in this place only.
"""

import functools
import ipaddress
import re
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import quote

from mirror.errors import BadRequest

Scope = MutableMapping[str, Any]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A name, an IPv4 address or a bracketed IPv6 one, and a port: nothing that needs
# escaping in a JSON string or an HTML attribute, where the base is put as it is.
_HOST = re.compile(r"(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
_SCHEMES = ("http", "https")
MAX_PEERS_KEPT = 1024


def trusted_network(text: str) -> Network:
    """An address or a network (``10.0.0.0/8``); ValueError names what is wrong."""
    return ipaddress.ip_network(text.strip(), strict=False)


class RequestBase:
    def __init__(
        self, trusted_proxies: Iterable[str] = (), public_base_url: str | None = None
    ) -> None:
        self._trusted = tuple(trusted_network(text) for text in trusted_proxies)
        self._peers: dict[str, bool] = {}  # peer address -> trusted, asked once each
        # As the catalog spells it in pages (mirror.simple.render.bases_for).
        self._public = public_base_url.rstrip("/") + "/" if public_base_url else None

    def of(self, scope: Scope) -> str:
        """``scheme://host[:port][/root path]/``, or ``public_base_url`` when set;
        BadRequest when the host is not a host."""
        if self._public is not None:
            return self._public
        scheme: str = scope.get("scheme", "http")
        if self._trusted and self._from_proxy(scope):
            scheme, host = self._forwarded(scope, scheme)
        else:
            host = None
            for key, value in scope["headers"]:  # runs for every such page sent: Host is
                if key == b"host":  # the first header clients send
                    host = value
                    break
        if not host or not host.strip():
            host = _server(scope)
        return _base(scheme, host, scope.get("root_path", ""))

    @staticmethod
    def _forwarded(scope: Scope, scheme: str) -> tuple[str, bytes | None]:
        """The scheme and host a trusted proxy says the client reached."""
        host = proto = forwarded_host = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"x-forwarded-proto":
                proto = value
            elif key == b"x-forwarded-host":
                forwarded_host = value
        forwarded_proto = _last(proto)
        scheme = forwarded_proto.decode("latin-1") if forwarded_proto else scheme
        return scheme, _last(forwarded_host) or host

    def client_address(self, scope: Scope) -> str:
        """The client's address: the socket peer, or, when the peer is one of
        ``trusted_proxies``, the nearest untrusted address its ``X-Forwarded-For`` names
        (a proxy appends the address it saw; what a client wrote itself sits further left)."""
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if not self._trusted or not self._from_proxy(scope):
            return peer
        hops: list[str] = [
            hop.strip()
            for key, value in scope["headers"]
            if key == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            if not _is_address(hop):
                return peer  # a malformed chain: count its sender, the proxy
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        trusted = self._peers.get(client[0])
        if trusted is None:
            if len(self._peers) >= MAX_PEERS_KEPT:
                self._peers.clear()
            trusted = self._peers[client[0]] = self._is_trusted(client[0])
        return trusted

    def _is_trusted(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket's peer has no address
            return False
        return any(peer in network for network in self._trusted)


@functools.lru_cache(maxsize=64)  # a mirror is reached by a few names; checked once each
def _base(scheme: str, host: bytes, root_path: str) -> str:
    name = host.decode("latin-1").strip().lower()
    scheme = scheme.lower()
    if scheme not in _SCHEMES or not _HOST.fullmatch(name):
        raise BadRequest(
            "bad request: provenance URLs are built from the Host header (and from "
            "X-Forwarded-Proto/Host of trusted_proxies), and it names no host; "
            "set public_base_url to build them from it instead"
        )
    return f"{scheme}://{name}{quote(root_path.rstrip('/'), safe='/')}/"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _last(value: bytes | None) -> bytes | None:
    """A header's last value: a proxy appends its own to any a client sent."""
    if value is None:
        return None
    return value.rsplit(b",", 1)[-1].strip() or None


def _server(scope: Scope) -> bytes:
    """Where the request came in, for a client that sent no Host (HTTP/1.0)."""
    server = scope.get("server")
    if not server:
        return b""
    host, port = str(server[0]), server[1]
    host = f"[{host}]" if ":" in host else host
    return (f"{host}:{port}" if port is not None else host).encode()
