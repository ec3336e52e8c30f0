"""Reading configuration values: converters, and where a bad value came from.

Every error names the key, and for a file its path and line, so a person can fix it.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from mirror.errors import ConfigError
from quarantine.clock import parse_timestamp
from quarantine.duration import parse_duration
from quarantine.errors import InvalidDuration


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a whole number")
    return int(value)


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    return float(value)


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def as_bool(value: Any) -> bool:
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


def as_duration(value: Any) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except OverflowError as error:
            raise ValueError(f"duration {value!r} is out of range") from error
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '72h', '3d' or 'P3D'")
    return parse_duration(value)


def as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of strings")


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return None if value.strip() in ("", "none") else parse_timestamp(value)
    raise ValueError("expected an RFC 3339 time such as 2026-03-24T10:00:00Z")


def as_path(value: Any) -> Path:
    return Path(as_str(value)).expanduser()


def line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set (inside ``[table]`` when given), for error messages."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.split("#", 1)[0].strip().strip("[]").replace('"', "").strip()
            continue
        name = stripped.split("=", 1)[0].strip().strip('"')
        if "=" in stripped and name == key and current == table:
            return number
    return None


class ConfigSource:
    """Where values came from (a file, or the environment and flags), for messages."""

    def __init__(self, path: Path | None = None, text: str = "") -> None:
        self.path, self.text = path, text

    def where(self, key: str, table: str | None = None) -> str:
        if self.path is None:
            return key
        line = line_of(self.text, table, key)
        dotted = f"{table}.{key}" if table else key
        return f"{self.path}, line {line}: {dotted}" if line else f"{self.path}: {dotted}"


def convert(converter: Callable[[Any], Any], value: Any, where: str) -> Any:
    try:
        return converter(value)
    except (ValueError, InvalidDuration) as error:
        raise ConfigError(f"{where}: {error}") from error


def fail(where: str, message: str) -> NoReturn:
    raise ConfigError(f"{where}: {message}")
