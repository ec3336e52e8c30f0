"""What the archive readers share: limits, member kinds, rule names, the reader's bookkeeping.

``archive_zip`` and ``archive_tar`` both build on this module (and ``archive`` re-exports
its public names), so neither reader imports the other and nothing imports ``archive``
back. It holds the value types (:class:`Limits`, :class:`Member`, the kinds), the finding
rule names with their severities, the name checks, and :class:`_ReaderCore`: the counters
and the finding sink every reader updates as it walks an archive.
"""

import posixpath
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from quarantine.evidence import Finding, Severity
from quarantine.filenames import WHEEL_SUFFIX, sdist_compression
from quarantine.inspect.rules import catalog as rule_catalog

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

CHUNK = 64 * KiB  # the most any single read or decompression step produces
MAX_NAME_CHARS = 200  # the most characters of archive content a message carries

# Basenames (and suffixes) whose text the content rules want to see.
TEXT_NAMES = frozenset(
    {
        "METADATA",
        "PKG-INFO",
        "entry_points.txt",
        "RECORD",
        "setup.py",
        "setup.cfg",
        "pyproject.toml",
    }
)
TEXT_SUFFIXES = (".py", ".pth", ".js")  # .js: bundled scripts, for obfuscator shapes

# Leading bytes of the archive and compressed formats we note (never open) when nested.
_NESTED_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c",
    b"\x28\xb5\x2f\xfd",  # zstd
)
_NESTED_SUFFIXES = (".zip", ".whl", ".egg", ".jar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z")


class ArchiveKind(StrEnum):
    WHEEL = "wheel"
    SDIST = "sdist"


class MemberKind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    DEVICE = "device"  # character or block device, FIFO
    OTHER = "other"  # a tar type nobody should ship (volume labels, multi-volume parts)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits on what one archive may make the inspector do.

    Memory does not grow with any of them (everything is streamed); they bound time. The
    sizes are threat model K5's: real wheels exceed smaller ones (tensorflow-cpu 2.21 has
    a 788 MB member, nvidia-cublas 13.1 a 542 MB one), and the ratio only counts past
    64 MiB (as warehouse does) because small, very compressible members are common (onnx
    ships 2.5 MB test tensors that compress 1000:1) and cost nothing to stream.
    """

    max_entries: int = 100_000
    max_total_bytes: int = 4 * GiB  # uncompressed, over all members (tar: the whole stream)
    max_entry_bytes: int = 1 * GiB  # uncompressed, one member
    max_ratio: int = 200  # uncompressed / compressed, per member ...
    ratio_min_bytes: int = 64 * MiB  # ... once the member is larger than this
    max_text_bytes: int = 4 * MiB  # text members of interest up to this size are returned
    max_parse_bytes: int = 1 * MiB  # Python sources up to this size get a full AST scan
    max_meta_bytes: int = 1 * MiB  # one pax or GNU long-name header
    nested_note_bytes: int = 1 * MiB  # nested archives from this size get a finding


@dataclass(frozen=True, slots=True)
class Member:
    """One archive entry as read. ``data`` is set only for text members of interest that
    were read completely and are at most ``Limits.max_text_bytes`` long."""

    name: str  # as the installer would see it (zip: decoded name; tar: after pax/GNU names)
    kind: MemberKind
    size: int  # uncompressed bytes actually read (0 when the data was not read)
    compressed_size: int | None = None  # zip only
    data: bytes | None = None
    complete: bool = True  # every byte was read and checked (size, CRC)
    link_target: str | None = None
    nested_archive: bool = False


def printable(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text`` cut to ``limit`` characters, on one line, with control and format characters
    (ANSI escapes, bidi overrides, line separators) shown as escapes."""
    if len(text) <= limit and text.isprintable():  # no C* or Z* but the plain space
        return text
    out: list[str] = []
    for char in text[:limit]:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            out.append(ascii(char)[1:-1])
        else:
            out.append(char)
    if len(text) > limit:
        out.append("…")
    return "".join(out)


def unsafe_path_reason(name: str) -> str | None:
    """Why an entry name could escape the directory it is unpacked into, or None."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "NUL in name"
    if "\\" in name:
        return "backslash in name"
    if name.startswith("/"):
        return "absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "drive letter"
    if ".." in name.split("/"):
        return "'..' segment"
    return None


def is_text_of_interest(name: str) -> bool:
    base = posixpath.basename(name)
    return base in TEXT_NAMES or base.lower().endswith(TEXT_SUFFIXES)


def archive_kind(filename: str) -> ArchiveKind | None:
    """Wheel or sdist, from the suffix in any case (pip's unpacking ignores case too)."""
    lower = filename.lower()
    if lower.endswith(WHEEL_SUFFIX):
        return ArchiveKind.WHEEL
    if sdist_compression(lower) is not None:
        return ArchiveKind.SDIST
    return None


class _Abort(Exception):
    """Reading stops here; the finding says why."""

    def __init__(self, rule: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.path = path


class _Sink:
    """Findings, at most ``per_rule`` of each rule (the rest are counted)."""

    def __init__(self, per_rule: int = 20) -> None:
        self.items: list[Finding] = []
        self._per_rule = per_rule
        self._seen: Counter[str] = Counter()
        self._severity: dict[str, Severity] = {}

    def add(self, rule: str, severity: Severity, message: str, path: str | None = None) -> None:
        self._seen[rule] += 1
        self._severity[rule] = max(
            self._severity.get(rule, severity), severity, key=list(Severity).index
        )
        if self._seen[rule] <= self._per_rule:
            shown = None if path is None else printable(path)
            self.items.append(Finding(rule, severity, message, shown))

    def close(self) -> list[Finding]:
        out = list(self.items)
        for rule, seen in sorted(self._seen.items()):
            if seen > self._per_rule:
                more = seen - self._per_rule
                out.append(Finding(rule, self._severity[rule], f"{more} more findings like this"))
        return out


# Rules raised by the readers. Bombs and structural problems are CRITICAL: the bytes cannot
# be trusted to be what an installer would unpack. Past a size or count limit, the file
# could not be inspected, which is not evidence of malice (large CUDA wheels have members
# over 512 MiB): a person decides (HIGH).
_C = "content"
BOMB = rule_catalog.rule(
    "archive-bomb-ratio",
    Severity.CRITICAL,
    _C,
    "a member that decompresses far beyond its compressed size",
)
TOO_MANY = rule_catalog.rule(
    "archive-too-many-entries", Severity.HIGH, _C, "more archive entries than the inspection limit"
)
TOO_LARGE = rule_catalog.rule(
    "archive-too-large", Severity.HIGH, _C, "more uncompressed bytes than the inspection limit"
)
MALFORMED = rule_catalog.rule(
    "archive-malformed", Severity.CRITICAL, _C, "an archive that does not parse as zip or tar"
)
UNSAFE_PATH = rule_catalog.rule(
    "archive-unsafe-path",
    Severity.CRITICAL,
    _C,
    "a member path that escapes the target directory (absolute, .., drive)",
)
LINK = rule_catalog.rule(
    "archive-link", Severity.CRITICAL, _C, "a symlink or hard link leaving the archive's tree"
)
LINK_INSIDE = rule_catalog.rule(
    "archive-link-inside", Severity.INFO, _C, "a link to another member of the same tree"
)
SPECIAL = rule_catalog.rule(
    "archive-special-member", Severity.CRITICAL, _C, "a device, fifo or sparse member"
)
NESTED = rule_catalog.rule(
    "archive-nested", Severity.INFO, _C, "an archive inside the archive (not inspected)"
)
DUPLICATE = rule_catalog.rule(
    "zip-duplicate-entry",
    Severity.CRITICAL,
    _C,
    "two zip entries with one name: installers may disagree which is used",
)
FRAMING = rule_catalog.rule(
    "zip-framing", Severity.CRITICAL, _C, "overlapping entries, or data before or after the zip"
)
METHOD = rule_catalog.rule(
    "zip-compression-method",
    Severity.CRITICAL,
    _C,
    "a zip compression method other than STORED and DEFLATE",
)
ENCRYPTED = rule_catalog.rule("zip-encrypted", Severity.CRITICAL, _C, "an encrypted zip entry")
POLYGLOT = rule_catalog.rule(
    "archive-polyglot", Severity.CRITICAL, _C, "bytes that are also another archive format"
)
UNSUPPORTED = rule_catalog.rule(
    "archive-unsupported", Severity.HIGH, _C, "an archive format the inspector cannot read"
)

_READER_RULES: tuple[str, ...] = (BOMB, TOO_MANY, TOO_LARGE, MALFORMED, UNSAFE_PATH, LINK)
_READER_RULES += (LINK_INSIDE, SPECIAL, NESTED, DUPLICATE, FRAMING, METHOD, ENCRYPTED)
_READER_RULES += (POLYGLOT, UNSUPPORTED)
RULE_SEVERITY: dict[str, Severity] = {
    id: rule_catalog.declared(id).severity for id in _READER_RULES
}


class _ReaderCore:
    """State and checks shared by the zip and tar readers: limits, counts, findings."""

    def __init__(self, path: Path, filename: str, limits: Limits | None = None) -> None:
        self.path = path
        self.filename = filename
        self.limits = limits or Limits()
        self.kind = archive_kind(filename)
        self.compressed_size = 0
        self.total_bytes = 0  # uncompressed member bytes actually read
        self.entry_count = 0
        self.finished = False  # every entry was walked (some may have been skipped)
        self._sink = _Sink()

    @property
    def findings(self) -> list[Finding]:
        return self._sink.close()

    def _add(self, rule: str, message: str, path: str | None = None) -> None:
        self._sink.add(rule, RULE_SEVERITY[rule], message, path)

    # ----------------------------------------------------------------- limits, members

    def _count_entry(self) -> None:
        self.entry_count += 1
        if self.entry_count > self.limits.max_entries:
            raise _Abort(TOO_MANY, f"more than {self.limits.max_entries} entries")

    def _count_bytes(self, amount: int) -> None:
        self.total_bytes += amount
        if self.total_bytes > self.limits.max_total_bytes:
            raise _Abort(
                TOO_LARGE, f"more than {self.limits.max_total_bytes} bytes uncompressed in all"
            )

    def _check_name(self, name: str) -> None:
        reason = unsafe_path_reason(name)
        if reason is not None:
            self._add(UNSAFE_PATH, f"unsafe entry name ({reason})", name)

    def _note_nested(self, name: str, head: bytes, size: int) -> bool:
        nested = head.startswith(_NESTED_MAGIC) or head[257:262] == b"ustar"
        nested = nested or name.lower().endswith(_NESTED_SUFFIXES)
        if nested and size >= self.limits.nested_note_bytes:
            self._add(NESTED, f"nested archive of {size} bytes (not opened)", name)
        return nested
