"""Name resolution for upstream connections, refusing addresses the mirror must not reach.

aiohttp connects to exactly the addresses its resolver returns, so checking them here is
checking the connection itself: resolved once, connected to as resolved. The index's own
host is resolved unchecked (the operator chose it; it may be a private index); any other
name must resolve to public addresses only, or to networks the operator allowed
(``upstream_private_networks``). Address literals never reach a resolver: ``UrlGuard``
checks those.
"""

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from mirror.upstream.url_guard import UrlGuard


class GuardedResolver(AbstractResolver):
    def __init__(self, guard: UrlGuard, resolver: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if not self._guard.trusts(host, port):
            # Any one refused address refuses the name: a rebinding answer mixes a public
            # address with the one it is after.
            for result in found:
                self._guard.addresses.check(host, result["host"])
        return found

    async def close(self) -> None:
        await self._resolver.close()
