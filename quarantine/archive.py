"""Safe streaming readers for wheels and sdists: a hostile archive becomes findings.

Nothing here extracts to disk, imports or runs anything from an archive. Members are read
in bounded chunks and every limit is checked against the bytes actually decompressed, not
only against what the headers claim, so a zip or tar bomb ends in a finding after a bounded
amount of work and memory. Malformed archives (truncated, bad CRC, bad tar header, not an
archive at all) are findings too, never exceptions.

ZIP files are parsed here rather than with ``zipfile`` so the framing can be checked the way
strict installers check it (threat model K5, L12): exactly one end record with nothing after
it, a central directory that agrees with the local headers, entries that neither overlap nor
leave unreferenced bytes between them (a local-only entry), no duplicate names, only STORED
and DEFLATE. Tar files are parsed block by block from a bounded decompressing reader, with the
same rules as ``tarfile`` for pax and GNU long-name headers, but with caps on those headers.

Use::

    reader = ArchiveReader(path, filename, limits)
    for member in reader:  # Member(name, kind, size, ..., data for text members of interest)
        ...
    reader.findings  # structural findings; reader.finished says whether every entry was seen
"""

import bz2
import gzip
import io
import lzma
import posixpath
import re
import stat
import struct
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from quarantine.evidence import Finding, Severity

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
TEXT_SUFFIXES = (".py", ".pth")

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
    lower = filename.lower()
    if lower.endswith(".whl"):
        return ArchiveKind.WHEEL
    if lower.endswith((".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".tar")):
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
# be trusted to be what an installer would unpack.
BOMB = "archive-bomb-ratio"
TOO_MANY = "archive-too-many-entries"
TOO_LARGE = "archive-too-large"
MALFORMED = "archive-malformed"
UNSAFE_PATH = "archive-unsafe-path"
LINK = "archive-link"
LINK_INSIDE = "archive-link-inside"  # a link to another member of the same tree: reported
SPECIAL = "archive-special-member"
NESTED = "archive-nested"
DUPLICATE = "zip-duplicate-entry"
FRAMING = "zip-framing"
METHOD = "zip-compression-method"
ENCRYPTED = "zip-encrypted"
POLYGLOT = "archive-polyglot"
UNSUPPORTED = "archive-unsupported"

# Past a size or count limit, the file could not be inspected, which is not evidence of
# malice (large CUDA wheels have members over 512 MiB): a person decides (HIGH).
RULE_SEVERITY: dict[str, Severity] = {
    BOMB: Severity.CRITICAL,
    TOO_MANY: Severity.HIGH,
    TOO_LARGE: Severity.HIGH,
    MALFORMED: Severity.CRITICAL,
    UNSAFE_PATH: Severity.CRITICAL,
    LINK: Severity.CRITICAL,
    LINK_INSIDE: Severity.INFO,
    SPECIAL: Severity.CRITICAL,
    NESTED: Severity.INFO,
    DUPLICATE: Severity.CRITICAL,
    FRAMING: Severity.CRITICAL,
    METHOD: Severity.CRITICAL,
    ENCRYPTED: Severity.CRITICAL,
    POLYGLOT: Severity.CRITICAL,
    UNSUPPORTED: Severity.HIGH,
}

# ZIP records (APPNOTE 4.3). Field layouts: see the unpacking sites.
_EOCD = struct.Struct("<4s4H2LH")
_Z64_LOCATOR = struct.Struct("<4sLQL")
_Z64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_EOCD_SIG = b"PK\x05\x06"
_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_Z64_EOCD_SIG = b"PK\x06\x06"
_Z64_LOCATOR_SIG = b"PK\x06\x07"
_STORED, _DEFLATED = 0, 8
_FLAG_ENCRYPTED, _FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x1, 0x8, 0x800
_UNIX = 3


@dataclass(slots=True)
class _ZipEntry:
    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    mode: int | None  # unix mode bits, when the creator was unix


def find_end_record(tail: bytes) -> int:
    """Where ``zipfile`` would take the end-of-central-directory record to be in the last
    bytes of a file (the last signature, as it does), or -1."""
    exact = len(tail) >= _EOCD.size and tail[-_EOCD.size : -_EOCD.size + 4] == _EOCD_SIG
    if exact and tail[-2:] == b"\x00\x00":
        return len(tail) - _EOCD.size
    return tail.rfind(_EOCD_SIG)


class ArchiveReader:
    """Iterate once over the members of a wheel or sdist; see the module docstring."""

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

    def __iter__(self) -> Iterator[Member]:
        lower = self.filename.lower()
        try:
            with self.path.open("rb") as handle:
                self.compressed_size = self.path.stat().st_size
                if lower.endswith((".whl", ".zip")):
                    yield from self._zip(handle)
                elif self.kind is ArchiveKind.SDIST:
                    self._check_not_zip(handle)
                    yield from self._tar(handle, lower)
                else:
                    self._add(UNSUPPORTED, "not a wheel or sdist filename")
                    return
            self.finished = True
        except _Abort as stop:
            self._add(stop.rule, stop.message, stop.path)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, struct.error, ValueError) as exc:
            self._add(MALFORMED, f"unreadable archive: {printable(str(exc), 120)}")

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

    # ------------------------------------------------------------------------- zip

    def _zip(self, handle: BinaryIO) -> Iterator[Member]:
        entries, cd_offset = self._central_directory(handle)
        entries.sort(key=lambda entry: entry.offset)
        position = 0  # end of the previous entry's bytes
        for entry in entries:
            if entry.offset < position:
                raise _Abort(FRAMING, "entries overlap", entry.name)
            if entry.offset > position:
                self._gap(handle, position, "before an entry", entry.name)
            member, position = self._zip_entry(handle, entry, cd_offset)
            yield member
        if position != cd_offset:
            self._gap(handle, position, "before the central directory", None)

    def _gap(self, handle: BinaryIO, start: int, where: str, name: str | None) -> None:
        handle.seek(start)
        if handle.read(4) == _LOCAL_SIG:
            self._add(FRAMING, f"entry present only in local headers ({where})", name)
        else:
            self._add(FRAMING, f"unreferenced bytes {where}", name)

    def _central_directory(self, handle: BinaryIO) -> tuple[list[_ZipEntry], int]:
        size = self.compressed_size
        tail_len = min(size, _EOCD.size + 0xFFFF)
        handle.seek(size - tail_len)
        tail = handle.read(tail_len)
        pos = find_end_record(tail)
        if pos < 0 or pos + _EOCD.size > len(tail):
            raise _Abort(MALFORMED, "not a zip archive (no end of central directory)")
        eocd_at = size - tail_len + pos
        _sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment = _EOCD.unpack_from(
            tail, pos
        )
        if pos + _EOCD.size + comment != len(tail):
            self._add(FRAMING, "trailing data after the end of central directory record")
        cd_end = eocd_at
        if eocd_at >= _Z64_LOCATOR.size:
            handle.seek(eocd_at - _Z64_LOCATOR.size)
            locator = handle.read(_Z64_LOCATOR.size)
            if locator[:4] == _Z64_LOCATOR_SIG:
                record_at = eocd_at - _Z64_LOCATOR.size - _Z64_EOCD.size
                _s, _d, record_offset, _n = _Z64_LOCATOR.unpack(locator)
                if record_at < 0 or record_offset != record_at:
                    raise _Abort(FRAMING, "zip64 end record is not where its locator says")
                handle.seek(record_at)
                record = handle.read(_Z64_EOCD.size)
                (sig, _rs, _vm, _vn, disk, cd_disk, n_disk, n_total, cd_size, cd_offset) = (
                    _Z64_EOCD.unpack(record)
                )
                if sig != _Z64_EOCD_SIG:
                    raise _Abort(MALFORMED, "zip64 end record missing")
                cd_end = record_at
        if disk or cd_disk or n_disk != n_total:
            raise _Abort(MALFORMED, "multi-disk zip archives are not supported")
        if n_total > self.limits.max_entries:
            raise _Abort(TOO_MANY, f"{n_total} entries declared (limit {self.limits.max_entries})")
        if cd_offset + cd_size != cd_end:
            if cd_offset + cd_size < cd_end:
                raise _Abort(FRAMING, "data before the archive or after the central directory")
            raise _Abort(MALFORMED, "central directory runs past its end record")
        entries = self._read_central(handle, cd_offset, cd_size)
        if len(entries) != n_total:
            self._add(FRAMING, f"{len(entries)} entries, but the end record says {n_total}")
        return entries, cd_offset

    def _read_central(self, handle: BinaryIO, cd_offset: int, cd_size: int) -> list[_ZipEntry]:
        handle.seek(cd_offset)
        entries: list[_ZipEntry] = []
        names: set[str] = set()
        declared_total = 0
        consumed = 0
        while consumed < cd_size:
            fixed = handle.read(_CENTRAL.size)
            if len(fixed) < _CENTRAL.size or fixed[:4] != _CENTRAL_SIG:
                raise _Abort(MALFORMED, "bad central directory entry")
            (
                _sig,
                made_by,
                _needed,
                flags,
                method,
                _time,
                _date,
                crc,
                csize,
                usize,
                name_len,
                extra_len,
                comment_len,
                disk,
                _internal,
                external,
                offset,
            ) = _CENTRAL.unpack(fixed)
            variable = handle.read(name_len + extra_len + comment_len)
            consumed += _CENTRAL.size + len(variable)
            if len(variable) < name_len + extra_len + comment_len or consumed > cd_size:
                raise _Abort(MALFORMED, "central directory truncated")
            if disk:
                raise _Abort(MALFORMED, "entry on another disk")
            self._count_entry()
            name = _zip_name(variable[:name_len], flags)
            if flags & _FLAG_UTF8 and not _valid_utf8(variable[:name_len]):
                self._add(MALFORMED, "entry name is not valid UTF-8", name)
            usize, csize, offset = _zip64_fields(
                variable[name_len : name_len + extra_len], usize, csize, offset, central=True
            )
            mode = (external >> 16) if (made_by >> 8) == _UNIX else None
            entries.append(_ZipEntry(name, flags, method, crc, csize, usize, offset, mode))
            if name in names:
                self._add(DUPLICATE, "duplicate entry name", name)
            names.add(name)
            declared_total += usize
        if declared_total > self.limits.max_total_bytes:
            raise _Abort(
                TOO_LARGE,
                f"{declared_total} bytes uncompressed declared "
                f"(limit {self.limits.max_total_bytes})",
            )
        return entries

    def _zip_entry(self, handle: BinaryIO, entry: _ZipEntry, cd_offset: int) -> tuple[Member, int]:
        """Check one entry's local header against the central one and read its data.
        Returns the member and where the entry's bytes end."""
        handle.seek(entry.offset)
        fixed = handle.read(_LOCAL.size)
        if len(fixed) < _LOCAL.size or fixed[:4] != _LOCAL_SIG:
            raise _Abort(FRAMING, "no local header where the central directory points", entry.name)
        (_sig, _needed, flags, method, _time, _date, crc, csize, usize, name_len, extra_len) = (
            _LOCAL.unpack(fixed)
        )
        variable = handle.read(name_len + extra_len)
        if len(variable) < name_len + extra_len:
            raise _Abort(MALFORMED, "local header truncated", entry.name)
        zip64 = _has_zip64_extra(variable[name_len:])
        usize, csize, _ = _zip64_fields(variable[name_len:], usize, csize, 0, central=False)
        if _zip_name(variable[:name_len], flags) != entry.name:
            self._add(FRAMING, "local and central names differ", entry.name)
        if method != entry.method or (flags ^ entry.flags) & (_FLAG_DESCRIPTOR | 1):
            self._add(FRAMING, "local and central headers differ (method or flags)", entry.name)
        if not flags & _FLAG_DESCRIPTOR and (crc, csize, usize) != (
            entry.crc,
            entry.csize,
            entry.usize,
        ):
            self._add(FRAMING, "local and central headers differ (CRC or sizes)", entry.name)
        data_at = entry.offset + _LOCAL.size + name_len + extra_len
        end = data_at + entry.csize
        if end > cd_offset:
            raise _Abort(FRAMING, "entry data runs into the central directory", entry.name)
        member = self._zip_data(handle, entry, data_at)
        if flags & _FLAG_DESCRIPTOR:
            end = self._descriptor(handle, entry, end, zip64, cd_offset)
        return member, end

    def _descriptor(
        self, handle: BinaryIO, entry: _ZipEntry, at: int, zip64: bool, cd_offset: int
    ) -> int:
        handle.seek(at)
        if handle.read(4) == _DESCRIPTOR_SIG:
            at += 4
        else:
            handle.seek(at)
        layout = "<LQQ" if zip64 else "<LLL"
        raw = handle.read(struct.calcsize(layout))
        end = at + struct.calcsize(layout)
        if len(raw) < struct.calcsize(layout) or end > cd_offset:
            raise _Abort(FRAMING, "data descriptor missing", entry.name)
        if struct.unpack(layout, raw) != (entry.crc, entry.csize, entry.usize):
            self._add(FRAMING, "data descriptor and central header differ", entry.name)
        return end

    def _zip_data(self, handle: BinaryIO, entry: _ZipEntry, data_at: int) -> Member:
        name, limits = entry.name, self.limits
        self._check_name(name)
        kind = MemberKind.DIR if name.endswith("/") else MemberKind.FILE
        if entry.mode is not None and stat.S_ISLNK(entry.mode):
            kind = MemberKind.SYMLINK
            self._add(LINK, "symbolic link entry", name)
        skipped = Member(name, kind, 0, entry.csize, complete=False)
        if entry.flags & _FLAG_ENCRYPTED:
            self._add(ENCRYPTED, "encrypted entry", name)
            return skipped
        if entry.method not in (_STORED, _DEFLATED):
            self._add(METHOD, f"compression method {entry.method} (only STORED and DEFLATE)", name)
            return skipped
        if entry.usize > limits.ratio_min_bytes and entry.usize > limits.max_ratio * max(
            entry.csize, 1
        ):
            self._add(
                BOMB, f"declares {entry.usize} bytes from {entry.csize} compressed bytes", name
            )
            return skipped
        if entry.usize > limits.max_entry_bytes:
            self._add(TOO_LARGE, f"declares {entry.usize} bytes uncompressed", name)
            return skipped
        handle.seek(data_at)
        pieces = (
            _stored(handle, entry.csize)
            if entry.method == _STORED
            else _inflated(handle, entry.csize)
        )
        want_text = kind is MemberKind.FILE and is_text_of_interest(name)
        want_text = want_text and entry.usize <= limits.max_text_bytes
        return self._consume(pieces, entry, kind, want_text)

    def _consume(
        self,
        pieces: Iterator[tuple[bytes, int]],
        entry: _ZipEntry,
        kind: MemberKind,
        want_text: bool,
    ) -> Member:
        """Read one entry's data, counting what actually comes out: more than the header
        declared, a ratio over the limit (against the compressed bytes consumed so far) or
        more than the entry limit stops the entry."""
        name, limits = entry.name, self.limits
        keep: bytearray | None = bytearray() if want_text else None
        head = b""
        size = crc = 0
        try:
            for piece, consumed in pieces:
                size += len(piece)
                self._count_bytes(len(piece))
                if size > limits.ratio_min_bytes and size > limits.max_ratio * max(consumed, 1):
                    message = f"inflates past {size} bytes from {consumed} compressed bytes"
                    self._add(BOMB, message, name)
                    return Member(name, kind, size, entry.csize, complete=False)
                if size > entry.usize:
                    message = f"inflates past the {entry.usize} bytes its header declares"
                    self._add(MALFORMED, message, name)
                    return Member(name, kind, size, entry.csize, complete=False)
                if size > limits.max_entry_bytes:
                    self._add(TOO_LARGE, f"inflates past {limits.max_entry_bytes} bytes", name)
                    return Member(name, kind, size, entry.csize, complete=False)
                crc = zlib.crc32(piece, crc)
                if len(head) < 512:
                    head += piece[: 512 - len(head)]
                if keep is not None:
                    if len(keep) + len(piece) > limits.max_text_bytes:
                        keep = None
                    else:
                        keep += piece
        except _Corrupt as problem:
            self._add(problem.rule, problem.message, name)
            return Member(name, kind, size, entry.csize, complete=False)
        ok = True
        if size != entry.usize:
            self._add(MALFORMED, f"{size} bytes, but the header says {entry.usize}", name)
            ok = False
        elif crc != entry.crc:
            self._add(MALFORMED, "bad CRC", name)
            ok = False
        nested = kind is MemberKind.FILE and self._note_nested(name, head, size)
        data = bytes(keep) if keep is not None else None
        return Member(name, kind, size, entry.csize, data, ok, nested_archive=nested)

    # ------------------------------------------------------------------------- tar

    def _check_not_zip(self, handle: BinaryIO) -> None:
        """A .tar.* sdist that is also a valid zip: pip would unpack the zip (it tries zip
        first), we would inspect the tar."""
        size = self.compressed_size
        tail_len = min(size, _EOCD.size + 0xFFFF)
        handle.seek(size - tail_len)
        tail = handle.read(tail_len)
        pos = find_end_record(tail)
        if pos >= 0 and pos + _EOCD.size <= len(tail):
            comment = _EOCD.unpack_from(tail, pos)[7]
            if pos + _EOCD.size + comment == len(tail):
                self._add(POLYGLOT, "tar sdist that also reads as a zip archive")
        handle.seek(0)

    def _tar(self, handle: BinaryIO, lower: str) -> Iterator[Member]:
        raw = _CountingReader(handle)
        with _decompressing(io.BufferedReader(raw, CHUNK), lower) as stream:
            yield from _TarWalker(self, stream, raw).members()


class _Corrupt(Exception):
    """One member's data cannot be read; the archive may still be walked."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _has_zip64_extra(extra: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            return True
        pos += 4 + length
    return False


def _zip_name(raw: bytes, flags: int) -> str:
    if flags & _FLAG_UTF8:
        return raw.decode("utf-8", "surrogateescape")
    return raw.decode("cp437")


def _zip64_fields(
    extra: bytes, usize: int, csize: int, offset: int, *, central: bool
) -> tuple[int, int, int]:
    """Sizes and offset with the zip64 extra field applied where the header says 0xFFFFFFFF
    (in a local header both sizes are present as soon as one of them is)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != 1:
            continue
        values = [v[0] for v in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
        wanted = []
        if central:
            wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
        elif usize == 0xFFFFFFFF or csize == 0xFFFFFFFF:
            wanted = [True, True, False]
        fields = [usize, csize, offset]
        for index, want in enumerate(wanted):
            if want:
                if not values:
                    raise _Abort(MALFORMED, "zip64 extra field too short")
                fields[index] = values.pop(0)
        return fields[0], fields[1], fields[2]
    if (central and 0xFFFFFFFF in (usize, csize, offset)) or (
        not central and 0xFFFFFFFF in (usize, csize)
    ):
        raise _Abort(MALFORMED, "zip64 sizes without a zip64 extra field")
    return usize, csize, offset


def _stored(handle: BinaryIO, csize: int) -> Iterator[tuple[bytes, int]]:
    """The entry's bytes in pieces, each with the count of bytes read so far."""
    remaining = csize
    while remaining:
        piece = handle.read(min(CHUNK, remaining))
        if not piece:
            raise _Corrupt(MALFORMED, "entry data truncated")
        remaining -= len(piece)
        yield piece, csize - remaining


def _inflated(handle: BinaryIO, csize: int) -> Iterator[tuple[bytes, int]]:
    """Raw deflate data of exactly ``csize`` bytes, decompressed in pieces of at most CHUNK,
    each with the count of compressed bytes the inflater has consumed so far."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    remaining = csize
    while not inflater.eof:
        if inflater.unconsumed_tail:
            source = inflater.unconsumed_tail
        elif remaining:
            source = handle.read(min(CHUNK, remaining))
            if not source:
                raise _Corrupt(MALFORMED, "entry data truncated")
            remaining -= len(source)
        else:
            source = b""
        try:
            piece = inflater.decompress(source, CHUNK)
        except zlib.error as exc:
            raise _Corrupt(MALFORMED, f"bad deflate data ({exc})") from None
        if not piece and not source:
            raise _Corrupt(MALFORMED, "deflate stream ends early")
        if piece:
            yield piece, csize - remaining - len(inflater.unconsumed_tail)
    if remaining or inflater.unused_data:
        raise _Corrupt(FRAMING, "compressed size larger than the deflate stream")


class _CountingReader(io.RawIOBase):
    """A read-only raw stream over the caller's file that counts the bytes handed out."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer", /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._handle.read(min(len(view), CHUNK))
        view[: len(data)] = data
        self.count += len(data)
        return len(data)


def _decompressing(raw: io.BufferedReader, lower: str) -> io.BufferedIOBase:
    """The decompressed view of a tar sdist; every read returns at most what was asked."""
    if lower.endswith((".tar.gz", ".tgz")):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if lower.endswith((".tar.bz2", ".tbz")):
        return bz2.BZ2File(raw, mode="rb")
    if lower.endswith(".tar.xz"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


_BLOCK = 512
_READ_AHEAD_SLACK = 4 * CHUNK
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\x00", b"7")
_DATALESS = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, FIFOs
_LONG_NAMES = (b"L", b"K")
_PAX = (b"x", b"g", b"X")
_KIND_BY_TYPE = {
    b"1": MemberKind.HARDLINK,
    b"2": MemberKind.SYMLINK,
    b"3": MemberKind.DEVICE,
    b"4": MemberKind.DEVICE,
    b"5": MemberKind.DIR,
    b"6": MemberKind.DEVICE,
}
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")  # as tarfile reads them


@dataclass(slots=True)
class _TarHeader:
    name: str
    size: int
    type: bytes
    linkname: str


class _TarWalker:
    """Walks a decompressed tar stream the way ``tarfile`` interprets it, with limits."""

    def __init__(
        self, reader: ArchiveReader, stream: io.BufferedIOBase, raw: _CountingReader
    ) -> None:
        self._reader = reader
        self._stream = stream
        self._raw = raw
        self._limits = reader.limits
        self._position = 0  # decompressed bytes read from the stream

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the stream)."""
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            piece = self._stream.read(min(wanted, CHUNK))
            if not piece:
                break
            parts.append(piece)
            wanted -= len(piece)
            self._account(len(piece))
        return b"".join(parts)

    def _account(self, amount: int) -> None:
        limits = self._limits
        self._position += amount
        if self._position > limits.max_total_bytes:
            raise _Abort(TOO_LARGE, f"more than {limits.max_total_bytes} bytes uncompressed")
        compressed = max(self._reader.compressed_size, 1)
        if self._position > limits.ratio_min_bytes and self._position > (
            limits.max_ratio * compressed
        ):
            raise _Abort(
                BOMB, f"inflates past {self._position} bytes from {compressed} compressed bytes"
            )

    def _exact(self, size: int, what: str) -> bytes:
        data = self._read(size)
        if len(data) < size:
            raise _Abort(MALFORMED, f"tar stream truncated in {what}")
        return data

    def _skip(self, size: int, what: str) -> None:
        while size:
            step = min(size, CHUNK)
            self._exact(step, what)
            size -= step

    def members(self) -> Iterator[Member]:
        reader, limits = self._reader, self._limits
        global_pax: dict[str, str] = {}
        name: str | None = None
        linkname: str | None = None
        size: int | None = None
        meta_headers = 0
        while True:
            block = self._read(_BLOCK)
            if not block or block == _ZERO_BLOCK:
                break  # end of archive (tarfile also accepts a missing end marker)
            if len(block) < _BLOCK:
                raise _Abort(MALFORMED, "tar stream truncated in a header")
            header = _tar_header(block)
            if header.type in _PAX or header.type in _LONG_NAMES:
                meta_headers += 1
                if meta_headers > limits.max_entries:
                    raise _Abort(TOO_MANY, "too many extended headers")
                if header.size > limits.max_meta_bytes:
                    message = f"extended header of {header.size} bytes (nobody needs that)"
                    raise _Abort(MALFORMED, message)
                content = self._exact(header.size, "an extended header")
                self._skip(-header.size % _BLOCK, "padding")
                if header.type in _LONG_NAMES:
                    text = content.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                    if header.type == b"L" and name is None:
                        name = text
                    elif header.type == b"K" and linkname is None:
                        linkname = text
                    continue
                records = _pax_records(content)
                if header.type == b"g":
                    overrides = {"path", "linkpath", "size"} & set(records)
                    if overrides:
                        reader._add(MALFORMED, "pax global header overrides member fields")
                    global_pax.update(records)
                    continue
                if any(key.startswith("GNU.sparse") for key in records):
                    raise _Abort(SPECIAL, "sparse member")
                if name is None and "path" in records:
                    name = records["path"].rstrip("/")
                if linkname is None and "linkpath" in records:
                    linkname = records["linkpath"]
                if size is None and "size" in records:
                    try:
                        size = int(records["size"])
                    except ValueError:
                        raise _Abort(MALFORMED, "bad size in pax header") from None
                    if size < 0:
                        raise _Abort(MALFORMED, "negative size in pax header")
                continue
            member_name = name if name is not None else header.name
            member_link = linkname if linkname is not None else header.linkname
            member_size = size if size is not None else header.size
            name = linkname = size = None
            yield self._member(header, member_name, member_link, member_size)

    def _member(self, header: _TarHeader, name: str, link: str, size: int) -> Member:
        reader, limits = self._reader, self._limits
        reader._count_entry()
        if header.type == b"S":
            raise _Abort(SPECIAL, "sparse member", name)
        kind = _KIND_BY_TYPE.get(header.type)
        if kind is MemberKind.DIR:
            name = name.rstrip("/")
        reader._check_name(name)
        if kind in (MemberKind.SYMLINK, MemberKind.HARDLINK):
            rule = LINK_INSIDE if _stays_inside(name, link, kind) else LINK
            reader._add(rule, f"{kind} to {printable(link, 100)}", name)
            return Member(name, kind, 0, link_target=link)
        if kind is MemberKind.DEVICE:
            reader._add(SPECIAL, "device or FIFO member", name)
            return Member(name, kind, 0)
        if kind is MemberKind.DIR:
            return Member(name, kind, 0)
        if header.type not in _REGULAR:
            kind = MemberKind.OTHER
            reader._add(SPECIAL, f"member of unknown type {header.type!r}", name)
        else:
            kind = MemberKind.FILE
        if size > limits.max_entry_bytes:
            raise _Abort(TOO_LARGE, f"declares {size} bytes uncompressed", name)
        return self._data(name, kind, size)

    def _data(self, name: str, kind: MemberKind, size: int) -> Member:
        reader, limits = self._reader, self._limits
        keep = kind is MemberKind.FILE and is_text_of_interest(name)
        keep = keep and size <= limits.max_text_bytes
        raw_before = self._raw.count
        parts: list[bytes] = []
        head = b""
        remaining = size
        while remaining:
            piece = self._exact(min(remaining, CHUNK), "member data")
            remaining -= len(piece)
            reader._count_bytes(len(piece))
            done = size - remaining
            # The raw count runs ahead of the decompressor by its read-ahead (buffers of at
            # most CHUNK each), in either direction at an entry's start; the slack keeps this
            # estimate of the compressed bytes from ever being lower than the truth.
            consumed = self._raw.count - raw_before + _READ_AHEAD_SLACK
            if done > limits.ratio_min_bytes and done > limits.max_ratio * consumed:
                raise _Abort(BOMB, f"{done} bytes from about {consumed} compressed bytes", name)
            if len(head) < 512:
                head += piece[: 512 - len(head)]
            if keep:
                parts.append(piece)
        self._skip(-size % _BLOCK, "padding")
        compressed = max(self._raw.count - raw_before, 1)
        if size > limits.ratio_min_bytes and size > limits.max_ratio * compressed:
            raise _Abort(BOMB, f"{size} bytes from about {compressed} compressed bytes", name)
        nested = kind is MemberKind.FILE and reader._note_nested(name, head, size)
        data = b"".join(parts) if keep else None
        return Member(name, kind, size, data=data, nested_archive=nested)


def _tar_number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        if field[:1] == b"\xff":
            value -= 256 ** (len(field) - 1)
        return value
    text = field.split(b"\x00", 1)[0].strip()
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise _Abort(MALFORMED, "bad number in tar header")
    return int(text, 8)


def _tar_header(block: bytes) -> _TarHeader:
    checksum = _tar_number(block[148:156])
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    signed = 256 + sum(struct.unpack_from("148b8x356b", block))
    if checksum not in (unsigned, signed):
        raise _Abort(MALFORMED, "bad tar header checksum")
    size = _tar_number(block[124:136])
    if size < 0:
        raise _Abort(MALFORMED, "negative size in tar header")
    kind = block[156:157]
    name = _tar_text(block[0:100])
    prefix = _tar_text(block[345:500])
    if kind == b"\x00" and name.endswith("/"):
        kind = b"5"  # old V7 tars mark directories with a trailing slash
    if kind == b"5":
        name = name.rstrip("/")
    if prefix and kind not in (b"L", b"K", b"S"):
        name = f"{prefix}/{name}"
    return _TarHeader(name, size, kind, _tar_text(block[157:257]))


def _tar_text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(content: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(content):
        match = _PAX_RECORD.match(content, pos)
        if match is None:
            break  # tarfile stops at the first record it cannot read, too
        length = int(match.group(1))
        end = pos + length
        if length <= match.end() - pos or end > len(content) or content[end - 1 : end] != b"\n":
            raise _Abort(MALFORMED, "bad pax record")
        key = match.group(2).decode("utf-8", "surrogateescape")
        records[key] = content[match.end() : end - 1].decode("utf-8", "surrogateescape")
        pos = end
    return records


def _stays_inside(name: str, target: str, kind: MemberKind) -> bool:
    """Whether a tar link points at a path inside the archive's own top directory.

    Sdists often link a docs file to another file of the tree; installers extract those
    safely. A link out of the tree (absolute, or climbing above the top directory) is
    the dangerous kind.
    """
    if not target or target.startswith("/") or "\\" in target or ":" in target.split("/")[0]:
        return False
    base = posixpath.dirname(name) if kind is MemberKind.SYMLINK else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    top = name.split("/", 1)[0]
    return not resolved.startswith("../") and resolved != ".." and resolved.split("/", 1)[0] == top
