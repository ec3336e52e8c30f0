"""The tar half of the archive reader: tar sdists, walked block by block with caps.

Tar files are parsed block by block from a bounded decompressing reader (gzip, bz2, xz or
none), with the same rules as ``tarfile`` for pax and GNU long-name headers, but with caps
on those headers, on the bytes decompressed and on the compression ratio. :class:`_TarReader`
is a part of :class:`~quarantine.inspect.archive.reader.ArchiveReader`;
:class:`_TarWalker` does the walk.
"""

import bz2
import gzip
import io
import lzma
import posixpath
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from quarantine.filenames import Compression, sdist_compression
from quarantine.inspect.archive.base import (
    BOMB,
    CHUNK,
    LINK,
    LINK_INSIDE,
    MALFORMED,
    POLYGLOT,
    SPECIAL,
    TOO_LARGE,
    TOO_MANY,
    Member,
    MemberKind,
    _Abort,
    _ReaderCore,
    is_text_of_interest,
    printable,
)


class _TarReader(_ReaderCore):
    """Reading a tar sdist as part of ``ArchiveReader``."""

    def _tar(self, handle: BinaryIO, lower: str) -> Iterator[Member]:
        if sdist_compression(lower) is Compression.NONE:
            self._check_not_compressed(handle)
        raw = _CountingReader(handle)
        with _decompressing(io.BufferedReader(raw, CHUNK), lower) as stream:
            yield from _TarWalker(self, stream, raw).members()

    def _check_not_compressed(self, handle: BinaryIO) -> None:
        """A plain ``.tar`` whose bytes are compressed: pip opens a ``.tar`` with
        tarfile's "r", which tries every compression before plain tar, so it would unpack
        the compressed tar where we read the bytes as a plain one (a decoy can sit in
        what the decompressor skips, such as a gzip header's extra field)."""
        compression = _compressed_as(handle.read(_SNIFF_BYTES))
        handle.seek(0)
        if compression is not None:
            self._add(
                POLYGLOT,
                f"plain .tar whose bytes are {compression} data: pip would read it "
                "as a compressed tar, not as the plain tar inspected",
            )


def _compressed_as(head: bytes) -> str | None:
    """The compression tarfile's "r" mode would read a file starting with ``head`` in,
    or None. No real tar starts like any of these (its first bytes are a member name)."""
    for compression, magic in _MAGIC.items():
        if head.startswith(magic):
            return compression
    if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
        return "zstd"  # a skippable frame, which a zstd reader steps over
    # tarfile's "r:xz" decoder (the auto format) also takes legacy .lzma, which has no
    # magic: the test is whether the start decodes. A stream that ends with nothing
    # decoded (an all-zero block is one) opens as an empty tar, which hides nothing.
    if not head:
        return None
    decoder = lzma.LZMADecompressor()
    try:
        decoded = decoder.decompress(head, max_length=_BLOCK)
    except lzma.LZMAError:
        return None
    return "xz or lzma" if decoded or not decoder.eof else None


# Python 3.14's tarfile also tries zstd; lzip is the magic newer xz decoders take.
_MAGIC = {
    "gzip": b"\x1f\x8b",
    "bzip2": b"BZh",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
    "lzip": b"LZIP",
}
_SNIFF_BYTES = 64 * 1024


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
    """The decompressed view of a tar sdist, by its suffix as pip's unpacking chooses;
    every read returns at most what was asked."""
    compression = sdist_compression(lower)
    if compression is Compression.GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression is Compression.BZIP2:
        return bz2.BZ2File(raw, mode="rb")
    if compression is Compression.XZ:
        return lzma.LZMAFile(raw, mode="rb")  # xz or .lzma, as tarfile's "r:xz" reads
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
        self, reader: _ReaderCore, stream: io.BufferedIOBase, raw: _CountingReader
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
