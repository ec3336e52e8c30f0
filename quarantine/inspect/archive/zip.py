"""The zip half of the archive reader: wheels and zip sdists, parsed and checked by hand.

ZIP files are parsed here rather than with ``zipfile`` so the framing can be checked the way
strict installers check it (threat model K5, L12): exactly one end record with nothing after
it, a central directory that agrees with the local headers, entries that neither overlap nor
leave unreferenced bytes between them (a local-only entry), no duplicate names, only STORED
and DEFLATE. :class:`_ZipReader` is part of
:class:`~quarantine.inspect.archive.reader.ArchiveReader`; it also checks that a tar sdist
does not read as a zip too (a matter of zip end records).
"""

import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from quarantine.inspect.archive.base import (
    BOMB,
    CHUNK,
    DUPLICATE,
    ENCRYPTED,
    FRAMING,
    LINK,
    MALFORMED,
    METHOD,
    POLYGLOT,
    TOO_LARGE,
    TOO_MANY,
    Member,
    MemberKind,
    _Abort,
    _ReaderCore,
    is_text_of_interest,
)

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


class _ZipReader(_ReaderCore):
    """Reading a zip archive, entry by entry, as part of ``ArchiveReader``."""

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
