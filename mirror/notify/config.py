"""The ``[[notify]]`` tables of the config file: where release-hold notifications go.

[[notify]]
kind = "webhook"            # "webhook" | "slack" | "email"
name = "security-hook"      # unique; the channel name recorded with each delivery
url = "https://..."         # webhook, slack (or url_env: the variable holding it)
secret_env = "HOOK_SECRET"  # webhook: the variable holding whsec_... (or a raw secret)
events = ["blocked"]        # optional: which kinds to send (default: all)
allow_private = false       # true: the target may be on a private or loopback address
group_seconds = 30          # wait this long for more files of the same release

Email: host, port (587), starttls (true), username_env, password_env, from, to = [...].
Secrets are never in the file: only the names of the environment variables that hold them.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from yarl import URL

from mirror.config_values import (
    ConfigSource,
    as_bool,
    as_str,
    convert,
    float_between,
    int_between,
)
from mirror.errors import ConfigError
from mirror.notify.channel import literal_problem

KINDS = ("webhook", "slack", "email")
EVENTS = (
    "held-for-review",
    "blocked",
    "withdrawn",
    "promoted-early",
    "anomaly",
    "frozen",
    "cutoff",
    "exempted",
    "unblocked",
    "blocked-by-admin",
    "decision",
    "digest",
)
_COMMON = ("kind", "name", "events", "allow_private", "group_seconds")
_KEYS = {
    "webhook": (*_COMMON, "url", "url_env", "secret_env"),
    "slack": (*_COMMON, "url", "url_env"),
    "email": (
        *_COMMON,
        *("host", "port", "starttls", "username_env", "password_env", "from", "to"),
    ),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    kind: str
    name: str
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    events: frozenset[str] | None = None  # None: every kind
    allow_private: bool = False
    group_seconds: float = 30.0
    host: str | None = None
    port: int = 587
    starttls: bool = True
    username_env: str | None = None
    password_env: str | None = None
    sender: str | None = None  # "from" in the file
    to: tuple[str, ...] = ()


as_attempts = int_between(1, 100, "delivery attempts")
# A plain number: its unit is in its name, as in every *_seconds key.
_as_group_seconds = float_between(0.0, 3600.0, "seconds")
_as_port = int_between(1, 65535, "a TCP port")


class _Where:
    """Names the key and line of the N-th ``[[notify]]`` table in errors."""

    def __init__(self, source: ConfigSource, index: int) -> None:
        self._source, self._index = source, index

    def __call__(self, key: str) -> str:
        dotted = f"notify[{self._index}].{key}"
        if self._source.path is None:
            return dotted
        line = _line(self._source.text, self._index, key)
        where = f"{self._source.path}, line {line}" if line else str(self._source.path)
        return f"{where}: {dotted}"

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self(key)}: {message}")


def _line(text: str, index: int, key: str) -> int | None:
    seen, inside = -1, False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            inside = line.replace(" ", "") == "[[notify]]"
            seen += inside
            continue
        name = line.split("=", 1)[0].strip().strip('"')
        if inside and seen == index and "=" in line and name == key:
            return number
    return None


def targets(value: Any, source: ConfigSource) -> tuple[NotifyTarget, ...]:
    """Every ``[[notify]]`` table, checked; ConfigError names the key and line."""
    if not isinstance(value, list):
        raise ConfigError(f"{source.where('notify')}: expected [[notify]] tables (a list)")
    found = tuple(_target(table, _Where(source, index)) for index, table in enumerate(value))
    names = [target.name for target in found]
    for index, name in enumerate(names):
        if name in names[:index]:
            _Where(source, index).fail("name", f"{name!r} is used by another [[notify]] target")
    return found


def _target(table: Any, where: _Where) -> NotifyTarget:
    if not isinstance(table, dict):
        where.fail("kind", "expected a table")
    kind = table.get("kind")
    if kind not in KINDS:
        where.fail("kind", f"expected one of {', '.join(KINDS)}")
    unknown = sorted(set(table) - set(_KEYS[kind]))
    if unknown:
        where.fail(unknown[0], f"unknown key for a {kind} target (known: {', '.join(_KEYS[kind])})")
    allow_private = bool(
        convert(as_bool, table.get("allow_private", False), where("allow_private"))
    )
    common: dict[str, Any] = {
        "kind": kind,
        "name": _name(table, where),
        "events": _events(table, where),
        "allow_private": allow_private,
        "group_seconds": _group_seconds(table, where),
    }
    if kind == "email":
        return NotifyTarget(**common, **_email(table, where, allow_private))
    return NotifyTarget(**common, **_web(table, where, kind, allow_private))


def _name(table: Mapping[str, Any], where: _Where) -> str:
    name = convert(as_str, table.get("name", ""), where("name"))
    if not _NAME.fullmatch(name):
        where.fail("name", "expected a name of letters, digits, '.', '_' or '-' (at most 64)")
    return str(name)


def _events(table: Mapping[str, Any], where: _Where) -> frozenset[str] | None:
    if "events" not in table:
        return None
    events = table["events"]
    if not isinstance(events, list) or not events:
        where.fail("events", "expected a non-empty list of event kinds")
    for event in events:
        if event not in EVENTS:
            where.fail("events", f"unknown event {event!r} (known: {', '.join(EVENTS)})")
    return frozenset(events)


def _group_seconds(table: Mapping[str, Any], where: _Where) -> float:
    return float(
        convert(_as_group_seconds, table.get("group_seconds", 30.0), where("group_seconds"))
    )


def _env_name(table: Mapping[str, Any], where: _Where, key: str) -> str | None:
    if key not in table:
        return None
    name = convert(as_str, table[key], where(key))
    if not _ENV_NAME.fullmatch(name):
        where.fail(key, "expected the name of an environment variable (not its value)")
    return str(name)


def _web(table: Mapping[str, Any], where: _Where, kind: str, allow_private: bool) -> dict[str, Any]:
    url = convert(as_str, table["url"], where("url")) if "url" in table else None
    url_env = _env_name(table, where, "url_env")
    if (url is None) == (url_env is None):
        where.fail("url", "give exactly one of url or url_env")
    if url is not None:
        problem = url_problem(url, allow_private)
        if problem:
            where.fail("url", problem)
    secret_env = _env_name(table, where, "secret_env")
    if kind == "webhook" and secret_env is None:
        where.fail("secret_env", "a webhook needs secret_env (the variable holding its secret)")
    return {"url": url, "url_env": url_env, "secret_env": secret_env}


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why a notification URL cannot be used, checked without DNS (names: at each send)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "not a valid URL"
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return "expected an https:// URL"
    if parsed.scheme == "http" and not allow_private:
        return "plain http is allowed only for an internal target (allow_private = true)"
    if parsed.user is not None or parsed.password is not None:
        return "credentials in the URL are not allowed"
    problem = literal_problem(parsed.raw_host, allow_private)
    return None if problem is None else f"refused: {problem} (set allow_private = true)"


def _email(table: Mapping[str, Any], where: _Where, allow_private: bool) -> dict[str, Any]:
    if "host" not in table:
        where.fail("host", "an email target needs host (the SMTP server)")
    host = str(convert(as_str, table["host"], where("host")))
    problem = literal_problem(host, allow_private)
    if problem:
        where.fail("host", f"refused: {problem} (set allow_private = true)")
    port = int(convert(_as_port, table.get("port", 587), where("port")))
    starttls = bool(convert(as_bool, table.get("starttls", True), where("starttls")))
    if not starttls and not allow_private:
        where.fail("starttls", "starttls = false is only for a local test server (allow_private)")
    username_env = _env_name(table, where, "username_env")
    password_env = _env_name(table, where, "password_env")
    if (username_env is None) != (password_env is None):
        where.fail("username_env", "give both username_env and password_env, or neither")
    return {
        "host": host,
        "port": port,
        "starttls": starttls,
        "username_env": username_env,
        "password_env": password_env,
        "sender": _address(table, where, "from"),
        "to": _recipients(table, where),
    }


def _address(table: Mapping[str, Any], where: _Where, key: str) -> str:
    if key not in table:
        where.fail(key, f"an email target needs {key}")
    value = str(convert(as_str, table[key], where(key)))
    if not _ADDRESS.fullmatch(value):
        where.fail(key, "expected one plain address such as lazaretto@example.org")
    return value


def _recipients(table: Mapping[str, Any], where: _Where) -> tuple[str, ...]:
    value = table.get("to")
    if not isinstance(value, list) or not value:
        where.fail("to", "expected a non-empty list of addresses")
    for item in value:
        if not isinstance(item, str) or not _ADDRESS.fullmatch(item):
            where.fail("to", f"{item!r} is not a plain address")
    return tuple(value)
