"""Who may read the index: read tokens presented the way installers already do.

Off by default (``index_auth = "off"``: nothing is asked or checked, and this layer is
not even in the request's way). With ``"optional"`` or ``"required"``, a request for the
index, a file or the JSON API may carry a token of scope ``index:read`` as HTTP basic
auth (``http://NAME:TOKEN@mirror/simple/``, ``.netrc``, a keyring: pip and uv send it as
the password; a token alone as the user name works too) or as a bearer token. A good
token's name goes into the download log; a bad one is refused with 401 and
``WWW-Authenticate: Basic`` (so installers ask their keyring or netrc, or say the
credentials are wrong); with ``"required"`` so is a request without one. The admin API
(``/-/``) and the health checks keep their own rules.

The warm path stays fast: a verified token is remembered (by its hash) for a few
seconds, so a revoked token stops working within ``CACHE_SECONDS``. Failed attempts are
limited per client address, as for the admin API.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from mirror.admin.auth import FailureLimiter
from mirror.cli.local_backend import token_hash
from mirror.files.download_recorder import IDENTITY_KEY
from mirror.http.one_line import OneLine, one_line
from mirror.services import Services

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = TypeVar("App")

INDEX_SCOPE = "index:read"
REALM = "lazaretto"
CACHE_SECONDS = 10.0
MAX_CACHED = 10_000
MAX_HEADER_CHARS = 2048
_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
# The admin API (its own tokens) and the health checks; those two by exact path, since
# "/healthz-x/json" is a project's JSON API page.
_OPEN_PREFIX = "/-/"
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def _open(path: str) -> bool:
    return path.startswith(_OPEN_PREFIX) or path in _OPEN_PATHS


class Refused(Exception):
    def __init__(self, answer: OneLine) -> None:
        super().__init__(answer.body.decode())
        self.answer = answer


def _unauthorized(reason: str) -> Refused:
    return Refused(one_line(401, reason, _CHALLENGE))


def presented_token(header: str) -> str | None:
    """The token in an Authorization header (Basic: the password, else the user name;
    or Bearer); None when the header holds none."""
    if len(header) > MAX_HEADER_CHARS:
        return None
    kind, _, value = header.strip().partition(" ")
    if kind.lower() == "bearer":
        return value.strip() or None
    if kind.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class IndexAuth:
    def __init__(self, app: Any, services: Services, *, required: bool) -> None:
        self._app = app
        self._services = services
        self._required = required
        self._known: dict[str, tuple[str, float]] = {}  # token hash -> (name, good until)
        self._limiter = FailureLimiter()
        self.state = app.state  # the app's state, for whoever holds this front door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _open(scope["path"]):
            try:
                name = self._identity(scope)
            except Refused as refused:
                await _send_one_line(send, refused.answer)
                return
            if name is not None:
                scope[IDENTITY_KEY] = name
        await self._app(scope, receive, send)

    def _identity(self, scope: Scope) -> str | None:
        header = _header(scope, b"authorization")
        if header is None:
            if self._required:
                raise _unauthorized(
                    "this index needs a token: put it in the index URL "
                    "(http://NAME:TOKEN@host/simple/), .netrc or a keyring"
                )
            return None
        client = self._services.request_base.client_address(scope)
        now = self._services.clock.monotonic()
        token = presented_token(header)
        digest = token_hash(token) if token else None
        del token
        if digest is not None:
            known = self._known.get(digest)
            if known is not None and known[1] > now:
                return known[0]  # a good token is always accepted, even from a locked client
        wait = self._limiter.retry_after(client, now)
        if wait is not None:
            raise Refused(one_line(429, "too many failed authentications; wait and retry",
                                   {"Retry-After": str(wait)}))  # fmt: skip
        name = self._verify(digest)
        if name is None:
            self._limiter.record_failure(client, now)
            raise _unauthorized("invalid index token (revoked, unknown, or not index:read)")
        if len(self._known) >= MAX_CACHED:
            self._known.clear()
        assert digest is not None  # only a presented token can verify
        self._known[digest] = (name, now + CACHE_SECONDS)
        return name

    def _verify(self, digest: str | None) -> str | None:
        if digest is None:
            return None
        found = self._services.ledger.token_by_hash(digest)
        if found is None or found.revoked_at is not None or found.scope != INDEX_SCOPE:
            return None
        return found.name


async def _send_one_line(send: Send, answer: OneLine) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
    headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def with_index_auth(app: App, services: Services) -> App | IndexAuth:
    """``app`` behind the index's token check, or ``app`` itself when it is off."""
    mode = services.settings.index_auth
    if mode == "off":
        return app
    return IndexAuth(app, services, required=mode == "required")
