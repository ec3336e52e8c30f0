"""The CLI's ``--url`` mode: the ``AdminBackend`` protocol over a running mirror's admin API.

Standard library only (urllib), so the CLI needs nothing more to drive a remote mirror.
The token never appears on the command line (``ps`` shows argv): it comes from
``LAZARETTO_TOKEN`` or a file. It goes only into an Authorization header that is not
carried over redirects (and redirects are refused anyway), and into no message.
"""

import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import IO, Any, NoReturn

from quarantine import admin
from quarantine.clock import format_timestamp

TOKEN_ENV = "LAZARETTO_TOKEN"  # noqa: S105  (the variable's name, not a secret)
API_PREFIX = "/-/admin/api/v1"
TIMEOUT_SECONDS = 30.0
_MAX_ANSWER_BYTES = 64 * 1024 * 1024
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/-]{16,512}=*", re.ASCII)


class TokenUnavailable(admin.AdminError):
    """No usable token: the CLI exits as for an authentication failure."""

    status = 401


def read_token(token_file: Path | None) -> str:
    """The API token from ``token_file`` if given, else from ``LAZARETTO_TOKEN``."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            # The file's name is the user's own input; its contents are never shown.
            raise TokenUnavailable(
                f"cannot read the token file {str(token_file)!r}: {type(error).__name__}"
            ) from None
        source = f"the token file {str(token_file)!r}"
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = TOKEN_ENV
        if not token:
            raise TokenUnavailable(
                f"--url needs an admin API token: set {TOKEN_ENV} or pass --token-file FILE "
                "(never the token itself on the command line); create one with "
                "'lazaretto token create NAME --scope decide'"
            )
    if not _TOKEN_SHAPE.fullmatch(token):
        raise TokenUnavailable(f"{source} does not hold a token (expected one line, no spaces)")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_base(url: str) -> str:
    """``http(s)://host[:port]`` of the mirror (or its API base) to the API base URL."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise admin.AdminError("--url must be the mirror's http:// or https:// address")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise admin.AdminError("--url must be a plain address: no credentials, query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The token would cross the network in clear text.
        raise admin.AdminError("use https:// for a mirror that is not on this machine")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PREFIX):
        path += API_PREFIX
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could send the token elsewhere: treat it as an error instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _time(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _problem_detail(error: urllib.error.HTTPError) -> str:
    """The problem document's detail, or a plain description when there is none."""
    try:
        document = json.loads(error.read(64 * 1024))
    except (ValueError, OSError):
        document = None
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str) and detail:
        return detail
    return f"the mirror answered HTTP {error.code}"


def _raise_for(error: urllib.error.HTTPError) -> NoReturn:
    detail = _problem_detail(error)
    if error.code == 404:
        raise admin.NothingToDo(detail)
    if error.code == 409:
        raise admin.Conflict(detail)
    if 300 <= error.code < 400:
        detail = "the admin API answered with a redirect; give --url the mirror's own address"
    failure = admin.AdminError(detail)
    failure.status = error.code  # the CLI picks its exit code from this
    raise failure


class RemoteBackend:
    """``AdminBackend`` over HTTP; actions are recorded by the server as ``api:<token name>``."""

    def __init__(self, url: str, token: str) -> None:
        if not _TOKEN_SHAPE.fullmatch(token):
            # Checked here so http.client never builds an error message from the value.
            raise TokenUnavailable("the admin API token is not well formed")
        self._base = api_base(url)
        self._authorization = f"Bearer {token}"
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:
        return f"RemoteBackend({self._base!r})"  # never the token

    def close(self) -> None:
        """Nothing to release: each call is its own connection."""

    def notes(self) -> list[str]:
        return []  # the server answers with the policy it enforces

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str | None] | None = None,
    ) -> Any:
        url = self._base + path
        wanted = {key: value for key, value in (query or {}).items() if value is not None}
        if wanted:
            url += "?" + urllib.parse.urlencode(wanted)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310  (scheme checked)
        request.add_header("Accept", "application/json, application/problem+json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        # Unredirected: even a redirect handler that followed would not pass it on.
        request.add_unredirected_header("Authorization", self._authorization)
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read(_MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as error:
            with error:
                _raise_for(error)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            failure = admin.AdminError(f"cannot use the admin API at {self._base}: {reason}")
            failure.status = 503
            raise failure from None

    # -- reads -----------------------------------------------------------------------------
    def exposure(self, project: str, version: str | None, since: datetime | None) -> dict[str, Any]:
        query = {"project": project, "version": version, "since": _time(since)}
        return dict(self._call("GET", "/exposure", query=query))

    def check(self, name: str, text: str) -> dict[str, Any]:
        return dict(self._call("POST", "/check", {"name": name, "text": text}))

    def holds(self, project: str | None, state: str | None) -> list[dict[str, Any]]:
        found = self._call("GET", "/holds", query={"project": project, "state": state})
        return list(found["holds"])

    def explain(
        self, project: str, version: str | None, since: datetime | None, limit: int
    ) -> dict[str, Any] | None:
        query = {"version": version, "since": _time(since), "limit": str(limit)}
        try:
            found = self._call("GET", f"/projects/{_quote(project)}", query=query)
        except admin.NothingToDo:
            return None
        return {"left_out": 0, **found}  # a mirror older than paging sends every file

    def audit(self, project: str | None, since: datetime | None, limit: int) -> dict[str, Any]:
        query = {"project": project, "since": _time(since), "limit": str(limit)}
        page = self._call("GET", "/audit", query=query)
        left_out = int(page.get("left_out", 0))  # a mirror older than paging has none
        return {"events": list(page["events"]), "left_out": left_out}

    def deliveries(self, state: str | None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/deliveries", query={"state": state})["deliveries"])

    # -- decisions -------------------------------------------------------------------------
    def promote(self, project: str, version: str, reason: str, force: bool) -> list[dict[str, Any]]:
        path = f"/projects/{_quote(project)}/releases/{_quote(version)}/promote"
        return list(self._call("POST", path, {"reason": reason, "force": force})["changes"])

    def _blocking(
        self, action: str, project: str, version: str | None, reason: str
    ) -> list[dict[str, Any]]:
        path = f"/projects/{_quote(project)}"
        if version is not None:
            path += f"/releases/{_quote(version)}"
        return list(self._call("POST", f"{path}/{action}", {"reason": reason})["changes"])

    def block(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]:
        return self._blocking("block", project, version, reason)

    def unblock(self, project: str, version: str | None, reason: str) -> list[dict[str, Any]]:
        return self._blocking("unblock", project, version, reason)

    def retry(
        self, project: str, version: str | None, filename: str | None, reason: str
    ) -> list[dict[str, Any]]:
        path = f"/projects/{_quote(project)}"
        if version is not None:
            path += f"/releases/{_quote(version)}"
        body = {"reason": reason} if filename is None else {"reason": reason, "filename": filename}
        return list(self._call("POST", f"{path}/retry", body)["changes"])

    def exempt(self, project: str, reason: str, until: datetime | None) -> None:
        body = {"reason": reason, "until": format_timestamp(until) if until else None}
        self._call("POST", f"/projects/{_quote(project)}/exemption", body)

    def unexempt(self, project: str, reason: str) -> None:
        self._call("DELETE", f"/projects/{_quote(project)}/exemption", {"reason": reason})

    def cutoff_set(self, moment: datetime, reason: str) -> None:
        self._call("PUT", "/cutoff", {"time": format_timestamp(moment), "reason": reason})

    def cutoff_clear(self, reason: str) -> None:
        self._call("DELETE", "/cutoff", {"reason": reason})

    def token_create(self, name: str, scope: str) -> str:
        return str(self._call("POST", "/tokens", {"name": name, "scope": scope})["token"])

    def token_revoke(self, name: str) -> None:
        self._call("DELETE", f"/tokens/{_quote(name)}")
