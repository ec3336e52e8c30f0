"""What changed since a project's previous release: the red flags of threat model L13.

An :class:`ArchiveSummary` is what inspection keeps about one file (stored as JSON with its
evidence, so the next release can be compared without reading the old file again).
:func:`compare` turns the differences into findings:

- a ``.pth`` file with import lines (run by ``site`` at every interpreter start) that is new
  or changed, or present in a project's first release: ``pth-executable-new`` (HIGH, held for
  review); the same file unchanged since the previous release (setuptools'
  ``distutils-precedence.pth``, say): ``pth-executable-unchanged`` (INFO, does not hold);
- binaries in a file whose previous release had none: ``binary-new`` (MEDIUM);
- new entry points, dependencies, top-level names and a large jump in size: LOW, evidence
  for a person and the notification, never a hold on their own.

What a release does at import is kept here too (``import_time``); the findings about it,
which need the sources' lines, are ``rules_import_diff``'s.
"""

import configparser
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import ArchiveKind, Member, MemberKind, MiB, printable
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.content import PthFile
from quarantine.inspect.rules.import_diff import ImportProfile

PTH_NEW = rule(
    "pth-executable-new",
    Severity.HIGH,
    "content",
    ".pth file with import lines (run at interpreter start), new or changed since the last release",
)
PTH_UNCHANGED = rule(
    "pth-executable-unchanged",
    Severity.INFO,
    "content",
    ".pth file with import lines, unchanged since the previous release",
)
PTH_PLAIN_NEW = rule(
    "pth-new",
    Severity.LOW,
    "content",
    ".pth file without import lines, new since the previous release",
)
ENTRY_POINT_NEW = rule(
    "entry-point-new", Severity.LOW, "content", "entry points new since the previous release"
)
ENTRY_POINT_CHANGED = rule(
    "entry-point-changed",
    Severity.LOW,
    "content",
    "entry points that point elsewhere than in the previous release",
)
DEPENDENCY_NEW = rule(
    "dependency-new", Severity.LOW, "content", "dependencies new since the previous release"
)
SIZE_JUMP = rule(
    "size-jump", Severity.LOW, "content", "uncompressed size far larger than the previous release's"
)
BINARY_NEW = rule(
    "binary-new",
    Severity.MEDIUM,
    "content",
    "binaries (.so/.pyd/.dll/.dylib) where the previous release had none",
)
TOP_LEVEL_NEW = rule(
    "top-level-new",
    Severity.LOW,
    "content",
    "top-level names in a wheel new since the previous release",
)
METADATA_UNREADABLE = rule(
    "metadata-unreadable",
    Severity.INFO,
    "content",
    "core metadata or entry points that could not be read",
)

SIZE_JUMP_FACTOR = 3
SIZE_JUMP_BYTES = 1 * MiB
_MAX_TOP_LEVEL = 200
_MAX_ENTRY_POINTS = 2000
_MAX_REQUIREMENTS = 2000
_BINARY = re.compile(r"\.(?:so(?:\.\d+)*|pyd|dll|dylib)$", re.IGNORECASE)
_SCRIPT_GROUPS = ("console_scripts", "gui_scripts")


class PthEntry(NamedTuple):
    sha256: str
    executable: bool  # has import lines and sits where site reads .pth files
    line: int | None = None  # the first import line


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    filename: str
    kind: ArchiveKind
    total_size: int  # uncompressed bytes
    compressed_size: int
    entry_count: int
    top_level: tuple[str, ...] = ()
    pth_files: Mapping[str, PthEntry] = field(default_factory=dict, hash=False)
    entry_points: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)
    requires_dist: tuple[str, ...] = ()
    has_binary: bool = False
    # Rules that fired for code running at install time (setup.py), to tell a long-standing
    # compiler probe from something new.
    install_time_rules: tuple[str, ...] = ()
    # What runs at import; None in summaries stored before the import-time rules existed
    # (unknown, which is not the same as nothing).
    import_time: ImportProfile | None = None

    def __post_init__(self) -> None:
        pth = {name: PthEntry(*entry) for name, entry in self.pth_files.items()}
        groups = {group: MappingProxyType(dict(e)) for group, e in self.entry_points.items()}
        object.__setattr__(self, "pth_files", MappingProxyType(pth))
        object.__setattr__(self, "entry_points", MappingProxyType(groups))

    def __reduce__(self) -> tuple[Any, ...]:
        # Its read-only mappings do not pickle; inspection worker processes send summaries.
        return (ArchiveSummary.from_json, (self.to_json(),))

    @property
    def scripts(self) -> frozenset[str]:
        """Console and GUI script names."""
        return frozenset(
            name for group in _SCRIPT_GROUPS for name in self.entry_points.get(group, {})
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "kind": self.kind.value,
            "total_size": self.total_size,
            "compressed_size": self.compressed_size,
            "entry_count": self.entry_count,
            "top_level": list(self.top_level),
            "pth_files": {
                name: {"sha256": e.sha256, "executable": e.executable, "line": e.line}
                for name, e in self.pth_files.items()
            },
            "entry_points": {group: dict(entries) for group, entries in self.entry_points.items()},
            "requires_dist": list(self.requires_dist),
            "has_binary": self.has_binary,
            "install_time_rules": list(self.install_time_rules),
            **({} if self.import_time is None else {"import_time": self.import_time.to_json()}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> "ArchiveSummary":
        """The inverse of :meth:`to_json` (also accepts the JSON text). Raises ValueError."""
        try:
            raw: Mapping[str, Any] = json.loads(data) if isinstance(data, str) else data
            return cls(
                filename=str(raw["filename"]),
                kind=ArchiveKind(raw["kind"]),
                total_size=int(raw["total_size"]),
                compressed_size=int(raw["compressed_size"]),
                entry_count=int(raw["entry_count"]),
                top_level=tuple(str(name) for name in raw.get("top_level", ())),
                pth_files={
                    str(name): PthEntry(
                        str(e["sha256"]),
                        bool(e["executable"]),
                        None if e.get("line") is None else int(e["line"]),
                    )
                    for name, e in raw.get("pth_files", {}).items()
                },
                entry_points={
                    str(group): {str(k): str(v) for k, v in entries.items()}
                    for group, entries in raw.get("entry_points", {}).items()
                },
                requires_dist=tuple(str(r) for r in raw.get("requires_dist", ())),
                has_binary=bool(raw.get("has_binary", False)),
                install_time_rules=tuple(str(r) for r in raw.get("install_time_rules", ())),
                import_time=(
                    ImportProfile.from_json(raw["import_time"]) if "import_time" in raw else None
                ),
            )
        except (KeyError, TypeError, AttributeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an archive summary: {exc}") from None


class _CaseKeepingParser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr


def parse_entry_points(text: str) -> dict[str, dict[str, str]]:
    """``entry_points.txt`` as {group: {name: value}}; configparser only reads text, and
    interpolation and the DEFAULT section are switched off. Raises ValueError."""
    parser = _CaseKeepingParser(
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        strict=False,
        empty_lines_in_values=False,
        default_section="\x00none",
    )
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ValueError(printable(str(exc).splitlines()[0] if str(exc) else "", 120)) from None
    groups: dict[str, dict[str, str]] = {}
    count = 0
    for group in parser.sections():
        for name, value in parser.items(group):
            count += 1
            if count > _MAX_ENTRY_POINTS:
                return groups
            groups.setdefault(group, {})[name] = value.strip()
    return groups


def requirement_names(requires: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for text in requires:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            names.add(canonicalize_name(re.split(r"[\s;<>=!~\[(@]", text.strip(), maxsplit=1)[0]))
    return names


class SummaryBuilder:
    """Collects an :class:`ArchiveSummary` member by member."""

    def __init__(self, filename: str, kind: ArchiveKind) -> None:
        self.filename = filename
        self.kind = kind
        self.top_level: set[str] = set()
        self.pth: dict[str, PthEntry] = {}
        self.entry_points: dict[str, dict[str, str]] | None = None
        self.requires: tuple[str, ...] | None = None
        self.has_binary = False
        self.findings: list[Finding] = []

    def observe(self, member: Member) -> None:
        parts = [part for part in member.name.split("/") if part not in ("", ".")]
        if not parts:
            return
        if len(self.top_level) < _MAX_TOP_LEVEL:
            self.top_level.add(parts[0])
        if member.kind is not MemberKind.FILE:
            return
        if _BINARY.search(parts[-1]):
            self.has_binary = True
        if member.data is None:
            return
        if self.requires is None and self._is_metadata(parts):
            self.requires = self._requires(member)
        elif self.entry_points is None and self._is_entry_points(parts):
            try:
                self.entry_points = parse_entry_points(member.data.decode("utf-8", "replace"))
            except ValueError as exc:
                self.entry_points = {}
                self._unreadable(member, f"entry_points.txt not readable: {exc}")

    def add_pth(self, pth: PthFile) -> None:
        first = pth.import_lines[0] if pth.import_lines else None
        self.pth[pth.name] = PthEntry(pth.sha256, pth.executable, first)

    def _is_metadata(self, parts: list[str]) -> bool:
        if self.kind is ArchiveKind.WHEEL:
            return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA"
        return len(parts) <= 2 and parts[-1] == "PKG-INFO"

    def _is_entry_points(self, parts: list[str]) -> bool:
        if parts[-1] != "entry_points.txt" or len(parts) < 2:
            return False
        if self.kind is ArchiveKind.WHEEL:
            return len(parts) == 2 and parts[0].endswith(".dist-info")
        return parts[-2].endswith(".egg-info") and len(parts) <= 4

    def _requires(self, member: Member) -> tuple[str, ...]:
        assert member.data is not None
        try:
            raw, _unparsed = parse_email(member.data)
        except (ValueError, TypeError, LookupError) as exc:
            self._unreadable(member, f"core metadata not readable: {printable(str(exc), 120)}")
            return ()
        return tuple(sorted(set(raw.get("requires_dist", []))))[:_MAX_REQUIREMENTS]

    def _unreadable(self, member: Member, message: str) -> None:
        path = printable(member.name)
        self.findings.append(Finding(METADATA_UNREADABLE, Severity.INFO, message, path))

    def build(self, total_size: int, compressed_size: int, entry_count: int) -> ArchiveSummary:
        return ArchiveSummary(
            filename=self.filename,
            kind=self.kind,
            total_size=total_size,
            compressed_size=compressed_size,
            entry_count=entry_count,
            top_level=tuple(sorted(self.top_level)),
            pth_files=dict(sorted(self.pth.items())),
            entry_points=self.entry_points or {},
            requires_dist=self.requires or (),
            has_binary=self.has_binary,
        )


def compare(current: ArchiveSummary, previous: ArchiveSummary | None) -> list[Finding]:
    """The findings for what ``current`` adds to ``previous`` (None: the first release)."""
    found = _pth_findings(current, previous)
    if previous is None:
        return found
    found += _entry_point_findings(current, previous)
    new_deps = requirement_names(current.requires_dist) - requirement_names(previous.requires_dist)
    if new_deps:
        found.append(
            Finding(DEPENDENCY_NEW, Severity.LOW, f"new dependencies: {_listed(new_deps)}")
        )
    if current.kind is not previous.kind:
        return found  # sizes, binaries and layouts only compare like with like
    grown = current.total_size - previous.total_size
    if current.total_size > SIZE_JUMP_FACTOR * previous.total_size and grown > SIZE_JUMP_BYTES:
        message = f"uncompressed size {previous.total_size} -> {current.total_size} bytes"
        found.append(Finding(SIZE_JUMP, Severity.LOW, message))
    if current.has_binary and not previous.has_binary:
        message = "binaries (.so/.pyd/.dll/.dylib) where the previous release had none"
        found.append(Finding(BINARY_NEW, Severity.MEDIUM, message))
    new_top = set(current.top_level) - set(previous.top_level)
    if current.kind is ArchiveKind.WHEEL and new_top and len(previous.top_level) < _MAX_TOP_LEVEL:
        new_top = {name for name in new_top if not name.endswith((".dist-info", ".data"))}
        if new_top:
            message = f"new top-level names: {_listed(new_top)}"
            found.append(Finding(TOP_LEVEL_NEW, Severity.LOW, message))
    return found


def _pth_findings(current: ArchiveSummary, previous: ArchiveSummary | None) -> list[Finding]:
    found: list[Finding] = []
    for name, entry in sorted(current.pth_files.items()):
        path = printable(name)
        old = None if previous is None else _previous_pth(previous, name, entry)
        if not entry.executable:
            if previous is not None and old is None:
                message = ".pth file new since the previous release (no import lines)"
                found.append(Finding(PTH_PLAIN_NEW, Severity.LOW, message, path))
            continue
        if previous is None:
            reason = "in the project's first release"
        elif old is None:
            reason = "new since the previous release"
        elif old.sha256 != entry.sha256 or not old.executable:
            reason = "changed since the previous release"
        else:
            message = ".pth file with import lines, unchanged since the previous release"
            found.append(Finding(PTH_UNCHANGED, Severity.INFO, message, path, entry.line))
            continue
        message = f".pth file runs code at every interpreter start; {reason}"
        found.append(Finding(PTH_NEW, Severity.HIGH, message, path, entry.line))
    return found


def _previous_pth(previous: ArchiveSummary, name: str, entry: PthEntry) -> PthEntry | None:
    """The previous release's counterpart of ``name``: the same path, or else the same bytes
    at another one. Paths often carry the version (an sdist's top directory, setuptools'
    ``<dist>-<version>-py3.12-nspkg.pth``), so the same hook would look new in every release."""
    same_path = previous.pth_files.get(name)
    if same_path is not None:
        return same_path
    same_bytes = (e for e in previous.pth_files.values() if e.sha256 == entry.sha256)
    return next(same_bytes, None)


def _entry_point_findings(current: ArchiveSummary, previous: ArchiveSummary) -> list[Finding]:
    found: list[Finding] = []
    for group, entries in sorted(current.entry_points.items()):
        before = previous.entry_points.get(group, {})
        new = {name for name in entries if name not in before}
        changed = {name for name in entries if name in before and before[name] != entries[name]}
        label = printable(group, 60)
        if new:
            message = f"new entry points in [{label}]: {_listed(new)}"
            found.append(Finding(ENTRY_POINT_NEW, Severity.LOW, message))
        if changed:
            message = f"changed entry points in [{label}]: {_listed(changed)}"
            found.append(Finding(ENTRY_POINT_CHANGED, Severity.LOW, message))
    return found


def _listed(names: Iterable[str], most: int = 10) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:most])
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return printable(shown, 130) + more
