"""Settings: built once from defaults, a TOML file, LAZARETTO_* variables and flags.

Precedence, lowest first: built-in defaults, the config file, the environment, the
command line. A bad value is a ConfigError naming the key (and file and line).
"""

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import ConfigError
from quarantine.clock import parse_timestamp
from quarantine.duration import parse_duration
from quarantine.errors import InvalidDuration
from quarantine.policy import Exemption, Policy

DEFAULT_PORT = 8070


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lazaretto"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=_default_data_dir)
    upstream: str = ""  # empty: ask pip (mirror.default_index)
    file_hosts: tuple[str, ...] = ()  # extra hosts file URLs may point at (https only)
    public_base_url: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    reserved_names: tuple[str, ...] = ()  # private names (globs allowed), never asked upstream
    index_ttl: timedelta = timedelta(seconds=60)
    request_wait: timedelta = timedelta(seconds=3)
    promote_interval: timedelta = timedelta(seconds=30)
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_page_bytes: int = 64 * 1024 * 1024
    max_file_bytes: int = 4 * 1024 * 1024 * 1024
    fetch_concurrency: int = 4
    access_log: bool = True
    log_level: str = "info"
    policy: Policy = field(default_factory=Policy)


# key -> (converter, field); the converter gets the raw value (str from env/flags, any from TOML)
def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a whole number")
    return int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    return float(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def _as_duration(value: Any) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '72h', '3d' or 'P3D'")
    return parse_duration(value)


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return None if value.strip() in ("", "none") else parse_timestamp(value)
    raise ValueError("expected an RFC 3339 time such as 2026-03-24T10:00:00Z")


def _as_path(value: Any) -> Path:
    return Path(_as_str(value)).expanduser()


_TOP_LEVEL: dict[str, Callable[[Any], Any]] = {
    "host": _as_str,
    "port": _as_int,
    "data_dir": _as_path,
    "upstream": _as_str,
    "file_hosts": _as_list,
    "public_base_url": _as_str,
    "trusted_hosts": _as_list,
    "reserved_names": _as_list,
    "index_ttl": _as_duration,
    "request_wait": _as_duration,
    "promote_interval": _as_duration,
    "connect_timeout_seconds": _as_float,
    "read_timeout_seconds": _as_float,
    "max_page_bytes": _as_int,
    "max_file_bytes": _as_int,
    "fetch_concurrency": _as_int,
    "access_log": _as_bool,
    "log_level": _as_str,
}
_POLICY_KEYS: dict[str, Callable[[Any], Any]] = {
    "cooling_period": _as_duration,
    "vetting_window": _as_duration,
    "freshness_window": _as_duration,
    "backdate_tolerance": _as_duration,
    "cutoff": _as_time,
}
_TABLES = ("projects", "exemptions")
ENV_KEYS = (*_TOP_LEVEL, *_POLICY_KEYS)


def line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set (inside ``[table]`` when given), for error messages."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]").strip()
            continue
        name = stripped.split("=", 1)[0].strip().strip('"')
        if "=" in stripped and name == key and current == table:
            return number
    return None


class _Source:
    """Where a value came from, for the error message."""

    def __init__(self, path: Path | None = None, text: str = "") -> None:
        self.path, self.text = path, text

    def where(self, key: str, table: str | None = None) -> str:
        if self.path is None:
            return key
        line = line_of(self.text, table, key)
        dotted = f"{table}.{key}" if table else key
        return f"{self.path}, line {line}: {dotted}" if line else f"{self.path}: {dotted}"


def _convert(convert: Callable[[Any], Any], value: Any, where: str) -> Any:
    try:
        return convert(value)
    except (ValueError, InvalidDuration) as error:
        raise ConfigError(f"{where}: {error}") from error


def read_config_file(path: Path) -> tuple[dict[str, Any], _Source]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return data, _Source(path, text)


def load_settings(
    config_path: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> Settings:
    values: dict[str, Any] = {}
    policy_values: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    config_path = config_path or (
        Path(env["LAZARETTO_CONFIG"]) if env.get("LAZARETTO_CONFIG") else None
    )
    if config_path is not None:
        data, source = read_config_file(config_path)
        _take_file(data, source, values, policy_values, tables)
    _take_mapping(
        {
            key: env[f"LAZARETTO_{key.upper()}"]
            for key in ENV_KEYS
            if f"LAZARETTO_{key.upper()}" in env
        },
        lambda key: f"LAZARETTO_{key.upper()}",
        values,
        policy_values,
    )
    _take_mapping(
        {key: value for key, value in flags.items() if value is not None},
        lambda key: "--" + key.replace("_", "-"),
        values,
        policy_values,
    )
    policy = Policy(**policy_values, **tables)
    settings = Settings(**values, policy=policy)
    _check(settings)
    return settings


def _take_file(
    data: dict[str, Any],
    source: _Source,
    values: dict[str, Any],
    policy_values: dict[str, Any],
    tables: dict[str, Any],
) -> None:
    for key, value in data.items():
        if key in _TOP_LEVEL:
            values[key] = _convert(_TOP_LEVEL[key], value, source.where(key))
        elif key in _POLICY_KEYS:
            policy_values[key] = _convert(_POLICY_KEYS[key], value, source.where(key))
        elif key == "projects":
            tables["cooling_overrides"] = _project_overrides(value, source)
        elif key == "exemptions":
            tables["exemptions"] = _exemptions(value, source)
        else:
            known = ", ".join(sorted((*_TOP_LEVEL, *_POLICY_KEYS, *_TABLES)))
            raise ConfigError(f"{source.where(key)}: unknown key (known keys: {known})")


def _take_mapping(
    raw: Mapping[str, Any],
    name: Callable[[str], str],
    values: dict[str, Any],
    policy_values: dict[str, Any],
) -> None:
    for key, value in raw.items():
        if key in _TOP_LEVEL:
            values[key] = _convert(_TOP_LEVEL[key], value, name(key))
        elif key in _POLICY_KEYS:
            policy_values[key] = _convert(_POLICY_KEYS[key], value, name(key))


def _project_key(raw: str, where: str) -> NormalizedName:
    return canonicalize_name(raw, validate=False) if raw else _fail(where, "empty project name")


def _fail(where: str, message: str) -> Any:
    raise ConfigError(f"{where}: {message}")


def _project_overrides(value: Any, source: _Source) -> dict[NormalizedName, timedelta]:
    if not isinstance(value, dict):
        _fail(source.where("projects"), "expected a table of [projects.NAME] tables")
    overrides: dict[NormalizedName, timedelta] = {}
    for name, table in value.items():
        where_table = f"projects.{name}"
        if not isinstance(table, dict):
            _fail(source.where(name, "projects"), "expected a table with cooling_period")
        for key, setting in table.items():
            if key != "cooling_period":
                _fail(source.where(key, where_table), "unknown key (known: cooling_period)")
            overrides[_project_key(name, where_table)] = _convert(
                _as_duration, setting, source.where(key, where_table)
            )
    return overrides


def _exemptions(value: Any, source: _Source) -> dict[NormalizedName, Exemption]:
    if not isinstance(value, dict):
        _fail(source.where("exemptions"), 'expected [exemptions] with NAME = "reason" lines')
    exemptions: dict[NormalizedName, Exemption] = {}
    for name, entry in value.items():
        where = source.where(name, "exemptions")
        if isinstance(entry, str):
            reason, until = entry, None
        elif isinstance(entry, dict):
            reason = entry.get("reason", "")
            until = _convert(_as_time, entry["until"], where) if "until" in entry else None
        else:
            _fail(where, 'expected a reason string or { reason = "...", until = "..." }')
        if not isinstance(reason, str) or not reason.strip():
            _fail(where, "every exemption needs a reason")
        exemptions[_project_key(name, where)] = Exemption(reason=reason.strip(), until=until)
    return exemptions


def _check(settings: Settings) -> None:
    if not 0 < settings.port < 65536:
        raise ConfigError(f"port: {settings.port} is not a TCP port (1-65535)")
    if settings.policy.cooling_period < timedelta(0):
        raise ConfigError("cooling_period: must not be negative")
    if settings.upstream and not settings.upstream.startswith(("http://", "https://")):
        raise ConfigError(f"upstream: {settings.upstream!r} is not an http(s) URL")
    if settings.fetch_concurrency < 1:
        raise ConfigError("fetch_concurrency: must be at least 1")
