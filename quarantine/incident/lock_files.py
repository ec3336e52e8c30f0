"""What a lock file pins: ``requirements.txt``, ``uv.lock``, ``poetry.lock``, ``pylock.toml``.

Each becomes a list of ``Pin`` (a project, a version, and the sha256 of every file it
allows when the lock lists them). Only what comes from an index is read: editable,
directory, VCS and URL packages are left out (the mirror never served them), and a
requirement that pins nothing is reported as such. Names, versions and requirements are
read with ``packaging``; TOML with ``tomllib``.
"""

import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from quarantine.errors import QuarantineError

MAX_LOCK_BYTES = 16 * 1024 * 1024
_HASH = re.compile(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})")
_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


class LockFileError(QuarantineError):
    """A lock file that cannot be read; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Pin:
    project: NormalizedName
    version: str  # as the lock spells it
    sha256s: frozenset[str] = field(default_factory=frozenset)  # empty: any file of it
    where: str = ""  # its place in the lock: a line number, or the package's name


@dataclass(frozen=True, slots=True)
class LockFile:
    kind: str  # requirements, uv.lock, poetry.lock, pylock.toml
    pins: tuple[Pin, ...]
    skipped: tuple[str, ...]  # what was not checked, and why


def kind_of(name: str) -> str:
    base = PurePath(name).name.lower()
    if base == "uv.lock":
        return "uv.lock"
    if base == "poetry.lock":
        return "poetry.lock"
    if base == "pylock.toml" or (base.startswith("pylock.") and base.endswith(".toml")):
        return "pylock.toml"
    return "requirements"


def read_lock(name: str, text: str) -> LockFile:
    """The pins of a lock file called ``name`` (its kind comes from the name)."""
    kind = kind_of(name)
    if kind == "requirements":
        pins, skipped = _requirements(text)
        return LockFile(kind, tuple(pins), tuple(skipped))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise LockFileError(f"{name}: not valid TOML: {error}") from error
    readers = {"uv.lock": _uv_lock, "poetry.lock": _poetry_lock, "pylock.toml": _pylock}
    pins, skipped = readers[kind](data)
    return LockFile(kind, tuple(pins), tuple(skipped))


def _pin(name: object, version: object, hashes: Iterable[str], where: str) -> Pin | None:
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    return Pin(
        canonicalize_name(name, validate=False),
        version,
        frozenset(h.lower() for h in hashes),
        where,
    )


# -- requirements.txt ------------------------------------------------------------------------


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with their continuations joined and comments dropped, with the first line's number."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            yield start, joined
    if pending.strip():
        yield start, pending.strip()


def _requirements(text: str) -> tuple[list[Pin], list[str]]:
    pins: list[Pin] = []
    skipped: list[str] = []
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            if not line.startswith(("--hash", "-r ", "-c ", "--requirement", "--constraint")):
                continue  # --index-url and other options: nothing pinned
            skipped.append(f"line {number}: {line.split()[0]} (included files: check them too)")
            continue
        spec = line.split(" --", 1)[0].strip()
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            skipped.append(f"line {number}: not a requirement from an index ({spec[:80]})")
            continue
        version = _pinned_version(requirement)
        if version is None:
            skipped.append(f"line {number}: {requirement.name} is not pinned with ==")
            continue
        hashes = [match.lower() for match in _HASH.findall(line)]
        pin = _pin(requirement.name, version, hashes, f"line {number}")
        if pin is not None:
            pins.append(pin)
    return pins, skipped


def _pinned_version(requirement: Requirement) -> str | None:
    if requirement.url:
        return None
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator not in ("==", "==="):
        return None
    version = specifiers[0].version
    return None if "*" in version else version


# -- uv.lock -------------------------------------------------------------------------------


def _uv_lock(data: dict[str, Any]) -> tuple[list[Pin], list[str]]:
    pins: list[Pin] = []
    skipped: list[str] = []
    for package in _tables(data.get("package")):
        name, source = package.get("name"), package.get("source")
        if not isinstance(source, dict) or "registry" not in source:
            kind = next(iter(source), "unknown") if isinstance(source, dict) else "unknown"
            skipped.append(f"{name}: from {kind}, not an index")
            continue
        files = [package.get("sdist"), *_tables(package.get("wheels"))]
        hashes = [found for item in files if isinstance(item, dict) for found in _hashes(item)]
        pin = _pin(name, package.get("version"), hashes, f"package {name}")
        if pin is not None:
            pins.append(pin)
    return pins, skipped


def _hashes(item: dict[str, Any]) -> list[str]:
    value = item.get("hash")
    if isinstance(value, str):
        return [m.lower() for m in _SHA256.findall(value)]
    hashes = item.get("hashes")
    if isinstance(hashes, dict) and isinstance(hashes.get("sha256"), str):
        return [hashes["sha256"].lower()]
    return []


def _tables(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# -- poetry.lock ---------------------------------------------------------------------------


def _poetry_lock(data: dict[str, Any]) -> tuple[list[Pin], list[str]]:
    pins: list[Pin] = []
    skipped: list[str] = []
    # Poetry before 1.2 kept the files in [metadata.files], by name.
    metadata = data.get("metadata")
    old_files = metadata.get("files", {}) if isinstance(metadata, dict) else {}
    for package in _tables(data.get("package")):
        name = package.get("name")
        source = package.get("source")
        if isinstance(source, dict) and source.get("type") not in (None, "legacy"):
            skipped.append(f"{name}: from {source.get('type')}, not an index")
            continue
        files = package.get("files")
        if not isinstance(files, list) and isinstance(old_files, dict):
            files = old_files.get(name)
        hashes = [found for item in _tables(files) for found in _hashes(item)]
        pin = _pin(name, package.get("version"), hashes, f"package {name}")
        if pin is not None:
            pins.append(pin)
    return pins, skipped


# -- pylock.toml (PEP 751) -----------------------------------------------------------------


def _pylock(data: dict[str, Any]) -> tuple[list[Pin], list[str]]:
    pins: list[Pin] = []
    skipped: list[str] = []
    for package in _tables(data.get("packages")):
        name = package.get("name")
        other = next((key for key in ("vcs", "directory") if key in package), None)
        if other is not None:
            skipped.append(f"{name}: from a {other}, not an index")
            continue
        version = package.get("version")
        if version is None:
            skipped.append(f"{name}: no version in the lock")
            continue
        files = [package.get("sdist"), package.get("archive"), *_tables(package.get("wheels"))]
        hashes = [found for item in files if isinstance(item, dict) for found in _hashes(item)]
        pin = _pin(name, version, hashes, f"package {name}")
        if pin is not None:
            pins.append(pin)
    return pins, skipped


def same_version(stored: str, pinned: str) -> bool:
    """PEP 440 equality (``1.0`` pins ``1.0.0``); exact text for what is not PEP 440."""
    try:
        return Version(stored) == Version(pinned)
    except InvalidVersion:
        return stored == pinned
