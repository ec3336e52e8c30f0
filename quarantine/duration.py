"""Parse the durations people write in config and on the command line."""

import re
from datetime import timedelta

from quarantine.errors import InvalidDuration

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SIMPLE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_ISO = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """``72h``, ``3d``, ``1d12h``, ``90m``, ``45s``, ``2w`` or ISO 8601 ``P3D``/``PT36H``."""
    value = text.strip()
    if not value:
        raise InvalidDuration("empty duration: write it like '72h', '3d' or 'P3D'")
    if _BARE_NUMBER.fullmatch(value):
        raise InvalidDuration(f"duration {value!r} {missing_unit(value)}")
    seconds = _parse_iso(value) if value[0] in "Pp" else _parse_simple(value)
    if seconds is None:
        raise InvalidDuration(
            f"cannot read duration {value!r}: write it like '72h', '3d', '1d12h' or 'P3D'"
        )
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError) as error:
        raise InvalidDuration(f"duration {value!r} is out of range") from error


def missing_unit(number: str) -> str:
    """The fix for a bare number given as a duration: once read as seconds, now refused."""
    seconds = float(number)
    if seconds == 0:
        return 'has no unit: write "0s"'
    if 1000 < seconds < 10**9 and seconds.is_integer():
        # Big enough to have been meant as seconds: offer that, spelt the short way.
        short = format_duration(timedelta(seconds=seconds))
        return f'has no unit: write "{short}" for {number} seconds (or another unit: h, d, m)'
    return (
        f'has no unit: write "{number}h" for {number} hours '
        f'(or "{number}d", "{number}m", "{number}s")'
    )


def _parse_simple(value: str) -> float | None:
    position, total = 0, 0.0
    lowered = value.lower()
    while position < len(lowered):
        match = _SIMPLE.match(lowered, position)
        if match is None:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
        while position < len(lowered) and lowered[position] == " ":
            position += 1
    return total


def _parse_iso(value: str) -> float | None:
    match = _ISO.fullmatch(value.upper())
    if match is None or value.upper() in ("P", "PT") or value.upper().endswith("T"):
        return None
    parts = {key: float(number) for key, number in match.groupdict().items() if number}
    if not parts:
        return None
    scale = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(parts[key] * scale[key] for key in parts)


def format_duration(delta: timedelta) -> str:
    """The shortest exact ``3d``/``72h``-style spelling of a duration."""
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
