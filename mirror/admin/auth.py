"""Who may use the admin API: bearer tokens, scopes, and a brake on guessing.

Tokens are looked up by their sha256 only (``cli_backend.token_hash``); the raw value is
never logged, echoed, put into an exception message or stored. Failed attempts are
counted per presented credential and per client address, separately; once either has too
many, failures are answered 429 instead of 401. A valid token is always accepted: behind a
proxy every admin shares one address, and someone else's bad tries must not lock them out
(tokens are 256-bit random values: the brake paces guessing, it does not make it
possible). The client address is the socket peer, or what a ``trusted_proxies`` peer says
in ``X-Forwarded-For``. A token sent in a query string, which access logs keep, is refused
and revoked. Every refusal is an RFC 9457 problem document whose detail is one fixed
ASCII line, never request input.
"""

import json
import logging
import math
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mirror.cli.local_backend import token_hash
from mirror.http.access_log import QUERY_KEYS
from mirror.services import Services

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
REALM = "lazaretto-admin"
READ, DECIDE = "read", "decide"
# What each scope allows: a decide token can also read.
_GRANTS = {READ: frozenset({READ}), DECIDE: frozenset({READ, DECIDE})}
# RFC 6750 b64token, bounded: anything else is refused before it is hashed.
_BEARER = re.compile(r"Bearer ([A-Za-z0-9._~+/-]{16,512}=*)", re.IGNORECASE | re.ASCII)
LEAK_ACTOR = "system:token-seen-in-a-query-string"
_DETAIL_LIMIT = 300
_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def one_line(text: str) -> str:
    """A detail is one printable ASCII line, whatever the message it was built from."""
    flat = " ".join(text.split())
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in flat)
    return safe[:_DETAIL_LIMIT]


def problem_response(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """An RFC 9457 problem document; ``about:blank`` so the title is the status phrase."""
    body = {
        **(extra or {}),
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": one_line(detail),
    }
    return Response(
        json.dumps(body, ensure_ascii=True, separators=(",", ":")) + "\n",
        status_code=status,
        media_type=PROBLEM_TYPE,
        headers={**_SECURITY_HEADERS, **(headers or {})},
    )


class ApiProblem(Exception):
    """Raised anywhere in a handler; the endpoint wrapper turns it into a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> Response:
        return problem_response(self.status, self.detail, self.headers, self.extra)


class BadCredentials(ApiProblem):
    """A token was presented and is no good: 401, and it counts as a failed attempt.
    ``credential``: the presented token's hash, when there was a well-formed one."""

    def __init__(self, detail: str, credential: str | None = None) -> None:
        # RFC 6750 section 3.1: invalid_token tells clients not to retry the same token.
        challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        super().__init__(401, detail, {"WWW-Authenticate": challenge})
        self.credential = credential


def _missing() -> ApiProblem:
    return ApiProblem(
        401, "this needs a bearer token", {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; ``actor`` is how the ledger records its decisions."""

    name: str
    scope: str

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


@dataclass
class FailureLimiter:
    """Failed authentications per client address in a sliding window, kept in memory.

    Bounded: at most ``max_clients`` addresses are tracked, the least recently failing
    forgotten first, so a flood of addresses cannot grow memory without limit.
    """

    limit: int = 10
    window_seconds: float = 60.0
    max_clients: int = 10_000
    _failures: OrderedDict[str, deque[float]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    def retry_after(self, client: str, now: float) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window_seconds - now))

    def record_failure(self, client: str, now: float) -> None:
        times = self._failures.setdefault(client, deque())
        times.append(now)
        self._failures.move_to_end(client)
        while len(times) > self.limit:  # older entries no longer change the answer
            times.popleft()
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


def _client(request: Request, services: Services) -> str:
    """The socket peer, or the client a trusted proxy forwarded (uvicorn's own
    proxy_headers stay off: ``mirror.http.request_base`` reads them, from trusted peers only)."""
    return services.request_base.client_address(request.scope)


def _presented_token(request: Request, services: Services) -> str | None:
    """The bearer token from the one Authorization header; None when there is none."""
    leaked = [
        value for key, value in request.query_params.multi_items() if key.lower() in QUERY_KEYS
    ]
    if leaked:
        # Query strings end up in access logs (ours redacts them; a proxy's may not): such
        # a token counts as leaked, not valid, and is revoked if it was one.
        _revoke_leaked(leaked, services)
        raise BadCredentials("tokens are accepted only in the Authorization header")
    values = request.headers.getlist("authorization")
    if not values:
        return None
    match = _BEARER.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise BadCredentials("malformed Authorization header: use 'Bearer <token>'")
    return match.group(1)


def _revoke_leaked(values: list[str], services: Services) -> None:
    for value in values:
        if not _BEARER.fullmatch(f"Bearer {value}"):
            continue
        found = services.ledger.token_by_hash(token_hash(value))
        if found is None:
            continue
        # The actor is the why: the audit shows "token-revoked ... by <LEAK_ACTOR>".
        if services.ledger.revoke_token(found.name, LEAK_ACTOR, services.clock.now()):
            log.warning(
                "admin API: token %r was sent in a URL query string, where logs keep it: "
                "revoked; make a new one and send it in the Authorization header",
                found.name,
            )


class Gate:
    """Authentication and authorization for one app: holds that app's failure counts,
    per client address (``limiter``) and per presented credential (``credentials``)."""

    def __init__(
        self, limiter: FailureLimiter | None = None, credentials: FailureLimiter | None = None
    ) -> None:
        self.limiter = limiter or FailureLimiter()
        self.credentials = credentials or FailureLimiter()

    def check(self, request: Request, needed: str) -> Principal:
        services: Services = request.app.state.services
        client, now = _client(request, services), services.clock.monotonic()
        try:
            principal = self._authenticate(request, services)
        except BadCredentials as refused:
            self._refuse(client, refused.credential, now)
            raise
        except ApiProblem:  # no token at all: not a guess, but a locked-out client waits
            self._locked_out(client, None, now)
            raise
        if needed not in _GRANTS.get(principal.scope, frozenset()):
            raise ApiProblem(403, f"this needs a token with the {needed} scope")
        return principal

    def _refuse(self, client: str, credential: str | None, now: float) -> None:
        """Count a failure (unless already locked out: then 429, uncounted)."""
        self._locked_out(client, credential, now)
        self.limiter.record_failure(client, now)
        if self.limiter.retry_after(client, now) is not None:
            log.warning("admin API: too many failed authentications from %r", client)
        if credential is not None:
            self.credentials.record_failure(credential, now)
            if self.credentials.retry_after(credential, now) is not None:
                log.warning("admin API: one invalid token presented too often (from %r)", client)

    def _locked_out(self, client: str, credential: str | None, now: float) -> None:
        waits = [self.limiter.retry_after(client, now)]
        if credential is not None:
            waits.append(self.credentials.retry_after(credential, now))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            raise ApiProblem(
                429, "too many failed authentications; wait and retry", {"Retry-After": str(wait)}
            )

    @staticmethod
    def _authenticate(request: Request, services: Services) -> Principal:
        token = _presented_token(request, services)
        if token is None:
            raise _missing()
        digest = token_hash(token)
        del token  # from here on only the hash exists in this frame
        # The ledger compares the hash with every live token's in constant time.
        found = services.ledger.token_by_hash(digest)
        if found is None or found.revoked_at is not None:
            # One answer for unknown and revoked: no oracle for which tokens once existed.
            raise BadCredentials("invalid bearer token", credential=digest)
        return Principal(found.name, found.scope)
