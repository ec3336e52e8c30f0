"""Reading configuration values: converters, and where a bad value came from.

Every error names the key, and for a file its path and line, so a person can fix it.
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from mirror.errors import ConfigError
from quarantine.clock import parse_timestamp
from quarantine.duration import format_duration, missing_unit, parse_duration
from quarantine.errors import InvalidDuration


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a whole number")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, not {value!r}") from None


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number, not {value!r}") from None


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def as_optional_str(value: Any) -> str | None:
    """An empty string is "not set", so the commented default can be written down."""
    return as_str(value) or None


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
    """Only text with a unit: a bare 72 was once read as 72 seconds, a silent weakening."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            raise ValueError(f"{value} {missing_unit(_decimal(value))}")
        raise ValueError(f'{value} is not a duration: write one like "72h", "3d" or "P3D"')
    if not isinstance(value, str):
        raise ValueError('expected a duration such as "72h", "3d" or "P3D"')
    return parse_duration(value)


def _decimal(number: float) -> str:
    """``72`` for 72 and 72.0, ``1.5`` for 1.5: the number as the person meant to write it."""
    return f"{number:f}".rstrip("0").rstrip(".")


def duration_between(low: timedelta, high: timedelta, why: str = "") -> Callable[[Any], timedelta]:
    """A duration converter that refuses values outside ``low``..``high``."""

    def convert_duration(value: Any) -> timedelta:
        duration = as_duration(value)
        check_range(duration, low, high, _spell_duration, value, why)
        return duration

    return convert_duration


def _spell_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return format_duration(delta) if seconds == int(seconds) else f"{_decimal(seconds)}s"


def int_between(low: int, high: int, why: str = "") -> Callable[[Any], int]:
    def convert_int(value: Any) -> int:
        number = as_int(value)
        check_range(number, low, high, str, value, why)
        return number

    return convert_int


def zero_or_int_between(low: int, high: int, why: str = "") -> Callable[[Any], int]:
    """0 (off), or a whole number from ``low`` to ``high``: between is too small to work."""

    def convert_int(value: Any) -> int:
        number = as_int(value)
        if number != 0 and not low <= number <= high:
            because = f" ({why})" if why else ""
            raise ValueError(f"{value} is out of range: expected 0, or {low} to {high}{because}")
        return number

    return convert_int


def float_between(low: float, high: float, why: str = "") -> Callable[[Any], float]:
    def convert_float(value: Any) -> float:
        number = as_float(value)
        check_range(number, low, high, _decimal, value, why)
        return number

    return convert_float


_Bounded = TypeVar("_Bounded", int, float, timedelta)


def check_range(
    value: _Bounded,
    low: _Bounded,
    high: _Bounded,
    spell: Callable[[_Bounded], str],
    given: Any,
    why: str = "",
) -> None:
    """ValueError naming the bounds; ``not low <= value <= high`` also refuses NaN."""
    if not low <= value <= high:
        because = f" ({why})" if why else ""
        raise ValueError(
            f"{given} is out of range: expected {spell(low)} to {spell(high)}{because}"
        )


def as_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    """One of ``choices``, case-insensitively; the error lists them."""

    def convert_choice(value: Any) -> str:
        choice = as_str(value).strip().lower()
        if choice not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return choice

    return convert_choice


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


def as_optional_file(value: Any) -> Path | None:
    """A file that must exist when given; an empty string is "not set"."""
    if as_str(value) == "":
        return None
    path = as_path(value)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file")
    return path


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
