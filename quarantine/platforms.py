"""Which wheels this organisation can install: the platforms and Pythons in use.

Files outside them are never fetched, vetted or listed. A wheel is inside when one of
its tags (``packaging.utils.parse_wheel_filename``) is one an installer on a configured
platform with a configured CPython accepts; the accepted tags come from
``packaging.tags`` (``cpython_tags``, ``compatible_tags``, ``mac_platforms``) and the
manylinux (PEP 600) and musllinux (PEP 656) naming rules. Sdists are always inside: any
platform can build one. Anything else is not a file pip installs (the mirror rejects
those by name already), so the filter lets it through to that rejection.

The configured names are a small vocabulary (``manylinux_x86_64``, ``macos_arm64``,
``windows_amd64``...) plus ``default`` and ``all``; Pythons are ``3.12`` or, for a
free-threaded build, ``3.13t``.
"""

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from threading import Lock

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from quarantine.filenames import WHEEL_SUFFIX

OUTSIDE_PLATFORMS = "outside the configured platforms"
OUTSIDE_PYTHONS = "outside the configured Python versions"
OUTSIDE = "outside the configured "  # what both reasons start with

DEFAULT = "default"
ALL = "all"
DEFAULT_PLATFORMS = ("macos_arm64", "manylinux_aarch64", "manylinux_x86_64", "windows_amd64")
# 3.10 is past its end of life (2026-10) but still the Python of long-term distributions
# (Ubuntu 22.04, supported into 2027); 3.15 is the newest release.
DEFAULT_PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")
OLDEST_PYTHON, NEWEST_PYTHON = (3, 6), (3, 30)  # a range, so "3.1" for "3.11" is refused

_LINUX_ARCHS = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l")
_MANYLINUX_LEGACY = {  # PEP 600's aliases: manylinux1 is glibc 2.5, 2010 is 2.12, 2014 2.17
    "manylinux1": ("x86_64", "i686"),
    "manylinux2010": ("x86_64", "i686"),
    "manylinux2014": _LINUX_ARCHS,
}
# Far past today's newest (glibc 2.42, musl 1.2, macOS 26), so a wheel built for a
# newer system than today's is not dropped while the organisation upgrades.
_NEWEST_GLIBC_MINOR, _NEWEST_MUSL_MINOR, _NEWEST_MACOS = 60, 9, (40, 0)
_WINDOWS = {"windows_amd64": "win_amd64", "windows_arm64": "win_arm64", "windows_x86": "win32"}


def _manylinux(arch: str) -> Iterator[str]:
    yield from (f"manylinux_2_{minor}_{arch}" for minor in range(5, _NEWEST_GLIBC_MINOR + 1))
    yield from (f"{alias}_{arch}" for alias, archs in _MANYLINUX_LEGACY.items() if arch in archs)
    yield f"linux_{arch}"  # pip on Linux takes a plain linux tag too


def _musllinux(arch: str) -> Iterator[str]:
    yield from (f"musllinux_1_{minor}_{arch}" for minor in range(0, _NEWEST_MUSL_MINOR + 1))
    yield f"linux_{arch}"


def _platform_tags() -> dict[str, frozenset[str]]:
    known = {}
    for arch in _LINUX_ARCHS:
        known[f"manylinux_{arch}"] = frozenset(_manylinux(arch))
        known[f"musllinux_{arch}"] = frozenset(_musllinux(arch))
    for arch in ("arm64", "x86_64"):
        known[f"macos_{arch}"] = frozenset(mac_platforms(_NEWEST_MACOS, arch))
    known.update({name: frozenset((tag,)) for name, tag in _WINDOWS.items()})
    return known


PLATFORMS: dict[str, frozenset[str]] = _platform_tags()
_PLACEHOLDER = "placeholder"  # a platform, to learn which interpreter and ABI pairs apply


def platform_names(values: Iterable[str]) -> tuple[str, ...]:
    """The configured platform names, ``default`` spelled out, sorted; ``()`` for all.

    ValueError names an unknown one and lists the known ones.
    """
    names: set[str] = set()
    for value in values:
        name = value.strip().lower()
        if name == ALL:
            return ()
        if name == DEFAULT:
            names.update(DEFAULT_PLATFORMS)
        elif name in PLATFORMS:
            names.add(name)
        else:
            known = ", ".join((DEFAULT, ALL, *PLATFORMS))
            raise ValueError(f"{value!r} is not a platform name (known: {known})")
    if not names:
        raise ValueError(f'no platform named: write ["{DEFAULT}"] or ["{ALL}"]')
    return tuple(sorted(names))


def python_names(values: Iterable[str]) -> tuple[str, ...]:
    """The configured Pythons (``3.12``, ``3.13t``), ``default`` spelled out; ``()`` for all."""
    names: set[str] = set()
    for value in values:
        name = value.strip().lower()
        if name == ALL:
            return ()
        if name == DEFAULT:
            names.update(DEFAULT_PYTHONS)
        else:
            names.add(_python_name(value, name))
    if not names:
        raise ValueError(f'no Python named: write ["{DEFAULT}"] or ["{ALL}"]')
    return tuple(sorted(names, key=_python_sort_key))


def _python_name(value: str, name: str) -> str:
    threaded = name.endswith("t")
    try:
        release = Version(name.removesuffix("t")).release
    except InvalidVersion:
        release = ()
    if len(release) != 2 or str(Version(name.removesuffix("t"))) != name.removesuffix("t"):
        raise ValueError(f"{value!r} is not a Python version such as 3.12 (or 3.13t)")
    if not OLDEST_PYTHON <= release <= NEWEST_PYTHON:
        low, high = (".".join(map(str, bound)) for bound in (OLDEST_PYTHON, NEWEST_PYTHON))
        raise ValueError(f"{value} is out of range: expected {low} to {high}")
    if threaded and release < (3, 13):
        raise ValueError(f"{value!r}: free-threaded builds start at 3.13t")
    return name


def _python_sort_key(name: str) -> tuple[int, int, bool]:
    major, minor = Version(name.removesuffix("t")).release
    return major, minor, name.endswith("t")


def _interpreter_abis(python: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(interpreter, ABI) pairs a CPython accepts on a platform, and on ``any``."""
    version = Version(python.removesuffix("t")).release
    abi = f"cp{version[0]}{version[1]}{'t' if python.endswith('t') else ''}"
    on_platform: set[tuple[str, str]] = set()
    anywhere: set[tuple[str, str]] = set()
    tags = [
        *cpython_tags(version, [abi], [_PLACEHOLDER]),
        *compatible_tags(version, f"cp{version[0]}{version[1]}", [_PLACEHOLDER]),
    ]
    for tag in tags:
        (anywhere if tag.platform == "any" else on_platform).add((tag.interpreter, tag.abi))
    return on_platform, anywhere


MEMO_SIZE = 50_000  # answers kept; a page of a 10,000-file project asks 10,000 times


@dataclass(frozen=True)
class PlatformFilter:
    """``platforms`` and ``pythons`` as configured, expanded; ``()`` means all of them."""

    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    pythons: tuple[str, ...] = DEFAULT_PYTHONS
    _platform_tags: frozenset[str] | None = field(init=False, compare=False, repr=False)
    _on_platform: frozenset[tuple[str, str]] | None = field(init=False, compare=False, repr=False)
    _anywhere: frozenset[tuple[str, str]] | None = field(init=False, compare=False, repr=False)
    _memo: "OrderedDict[str, str | None]" = field(init=False, compare=False, repr=False)
    _memo_lock: Lock = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        tags = frozenset().union(*(PLATFORMS[name] for name in self.platforms))
        on_platform: set[tuple[str, str]] = set()
        anywhere: set[tuple[str, str]] = set()
        for python in self.pythons:
            found_on, found_any = _interpreter_abis(python)
            on_platform |= found_on
            anywhere |= found_any
        set_ = object.__setattr__  # frozen: the derived sets are made once, here
        set_(self, "_platform_tags", tags if self.platforms else None)
        set_(self, "_on_platform", frozenset(on_platform) if self.pythons else None)
        set_(self, "_anywhere", frozenset(anywhere) if self.pythons else None)
        set_(self, "_memo", OrderedDict())
        set_(self, "_memo_lock", Lock())

    def __reduce__(self) -> tuple[type["PlatformFilter"], tuple[tuple[str, ...], tuple[str, ...]]]:
        # Pickled as configured (the vetting child gets the settings so): the derived
        # sets and the memo are made again there, and a lock cannot be pickled.
        return PlatformFilter, (self.platforms, self.pythons)

    @property
    def everything(self) -> bool:
        return not self.platforms and not self.pythons

    def describe(self) -> str:
        platforms = ", ".join(self.platforms) or ALL
        pythons = ", ".join(self.pythons) or ALL
        return f"platforms {platforms}; Pythons {pythons}"

    def exclusion(self, filename: str) -> str | None:
        """Why ``filename`` is outside the filter, or None when it is inside."""
        if self.everything or not filename.endswith(WHEEL_SUFFIX):
            return None
        with self._memo_lock:
            if filename in self._memo:
                self._memo.move_to_end(filename)
                return self._memo[filename]
        found = self._judge(filename)
        with self._memo_lock:
            self._memo[filename] = found
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return found

    def admits(self, filename: str) -> bool:
        return self.exclusion(filename) is None

    def _judge(self, filename: str) -> str | None:
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            return None  # not a wheel pip takes: rejected by name, not filtered
        if any(self._accepts(tag) for tag in tags):
            return None
        platform_fits = any(
            tag.platform == "any"
            or self._platform_tags is None
            or tag.platform in self._platform_tags
            for tag in tags
        )
        return OUTSIDE_PYTHONS if platform_fits else OUTSIDE_PLATFORMS

    def _accepts(self, tag: Tag) -> bool:
        pair = (tag.interpreter, tag.abi)
        if tag.platform == "any":
            return self._anywhere is None or pair in self._anywhere
        if self._platform_tags is not None and tag.platform not in self._platform_tags:
            return False
        return self._on_platform is None or pair in self._on_platform


EVERYTHING = PlatformFilter((), ())
