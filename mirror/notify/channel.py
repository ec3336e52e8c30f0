"""Notification channels: the interface, the target-address policy, and one HTTP POST.

A channel sends one ``Message`` or raises ``DeliveryFailed``; the notifier keeps the
delivery state. A notification target is configured by an operator, but its name may
resolve anywhere (or be re-pointed later), so every send resolves it, checks *every*
address, and connects only to the addresses it checked: a target on a private, loopback,
link-local or unspecified address is refused unless the target says ``allow_private``.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from quarantine.messages import Message

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
MAX_RETRY_AFTER = 3600.0  # a receiver may ask us to wait, but not park messages for days
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DeliveryFailed(Exception):
    """One attempt failed; ``reason`` is recorded in the ledger and must hold no secret."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TargetRefused(DeliveryFailed):
    """The target resolves to an address the policy refuses: nothing was sent."""


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    async def send(self, message: Message) -> None:
        """Deliver ``message`` once, or raise ``DeliveryFailed``."""
        ...


class Secret:
    """A value that must not reach a log, a repr or an exception message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


# -- the address policy ------------------------------------------------------------------------


def address_problem(address: IPAddress, allow_private: bool) -> str | None:
    """Why a notification may not connect to ``address``, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "an address that is not publicly routable"
    return None


def literal_problem(host: str, allow_private: bool) -> str | None:
    """The same check for a host written as an IP address (or ``localhost``), with no DNS."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: checked when it is resolved, at every send
    problem = address_problem(address, allow_private)
    return None if problem is None else f"{host} is {problem}"


def _refusal(host: str, address: str, problem: str) -> TargetRefused:
    return TargetRefused(
        f"refused: {host} resolves to {address}, {problem}; set allow_private = true on "
        "this [[notify]] target if it really is meant to be internal"
    )


async def checked_addresses(host: str, port: int, allow_private: bool) -> list[tuple[int, str]]:
    """``(family, address)`` pairs ``host`` resolves to, all allowed; or TargetRefused.

    Fails closed: no answer, or one refused address among allowed ones, refuses the target
    (a name that also points inside is not a public target).
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise DeliveryFailed(f"cannot resolve {host}: {type(error).__name__}") from error
    found: list[tuple[int, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0])
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError as error:
            raise _refusal(host, text, "not an IP address") from error
        problem = address_problem(address, allow_private)
        if problem is not None:
            raise _refusal(host, text, problem)
        if (family, text) not in found:
            found.append((int(family), text))
    if not found:
        raise DeliveryFailed(f"cannot resolve {host}: no addresses")
    return found


class PinnedResolver(AbstractResolver):
    """Hands aiohttp only the addresses that were checked (no second, unchecked lookup)."""

    def __init__(self, host: str, addresses: list[tuple[int, str]]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"unexpected host {host!r}")  # e.g. a redirect: never followed
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=found_family,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for found_family, address in self._addresses
        ]

    async def close(self) -> None:
        return None


# -- one POST ----------------------------------------------------------------------------------


async def post(url: URL, body: bytes, headers: Mapping[str, str], allow_private: bool) -> int:
    """POST ``body`` to ``url``; the status on 2xx, DeliveryFailed otherwise.

    No redirects, no proxies from the environment, short timeouts, and the response body is
    never read: a receiver cannot make us download anything or wait long.
    """
    host, port = url.raw_host or "", url.port or (443 if url.scheme == "https" else 80)
    addresses = await checked_addresses(host, port, allow_private)
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
            session.post(url, data=body, headers=dict(headers), allow_redirects=False) as response,
        ):
            return _check_status(response.status, response.headers.get("Retry-After"))
    except TimeoutError as error:
        raise DeliveryFailed(f"no answer from {host}:{port} within {TOTAL_TIMEOUT:g} s") from error
    except aiohttp.ClientError as error:
        raise DeliveryFailed(f"cannot reach {host}:{port}: {_client_error(error)}") from error


def _client_error(error: aiohttp.ClientError) -> str:
    # Only the kind of failure and the OS reason: never the URL, whose path may be a secret.
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connection failed ({error.os_error.strerror or type(error.os_error).__name__})"
    return type(error).__name__


def _check_status(status: int, retry_after: str | None) -> int:
    if 200 <= status < 300:
        return status
    wait = parse_retry_after(retry_after)
    if status == 429 or status >= 500 or status == 408:
        raise DeliveryFailed(f"HTTP {status} from the receiver (will retry)", wait)
    if 300 <= status < 400:
        raise DeliveryFailed(f"HTTP {status}: redirects are not followed; fix the url")
    raise DeliveryFailed(f"HTTP {status}: the receiver refused the message")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
