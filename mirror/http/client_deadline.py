"""A deadline for each request a client sends: slow clients are cut, not waited on.

uvicorn arms no timer while a request arrives: a client that opens a connection and
sends nothing, or trickles its request head a byte at a time (slowloris), holds the
connection for ever (its keep-alive timer only runs between requests and is reset by any
byte). This protocol gives each request, head and body, ``request_read_timeout_seconds``
from its first byte (a new connection's first request: from the connect) and closes the
connection when it is not all there by then. The response is not bounded here: a large
file may take long to send (nginx's send_timeout bounds a client that stops reading).
"""

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class DeadlineProtocol(HttpToolsProtocol):
    request_read_timeout_seconds = 10.0  # set by ``protocol_with_deadline``
    _request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._request_deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._request_deadline = self.loop.call_later(
            self.request_read_timeout_seconds, self._too_slow
        )

    def _disarm(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _too_slow(self) -> None:
        self._request_deadline = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection from %s: its request did not arrive within %g s "
                "(request_read_timeout_seconds)",
                self.client[0] if self.client else "?",
                self.request_read_timeout_seconds,
            )
            self.transport.close()


def protocol_with_deadline(seconds: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn's ``http`` option, with this deadline."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_read_timeout_seconds": seconds})
