"""Safe streaming readers for wheels and sdists: a hostile archive becomes findings.

Nothing here extracts to disk, imports or runs anything from an archive. Members are read
in bounded chunks and every limit is checked against the bytes actually decompressed, not
only against what the headers claim, so a zip or tar bomb ends in a finding after a bounded
amount of work and memory. Malformed archives (truncated, bad CRC, bad tar header, not an
archive at all) are findings too, never exceptions.

The zip parsing (framing checks as strict installers do them, threat model K5, L12) lives
in ``archive_zip``, the tar walk (pax and GNU long-name headers as ``tarfile`` reads them,
with caps) in ``archive_tar``, and what both share (limits, kinds, rule names and
severities, :func:`printable`) in ``archive_base``. This module is the front: it picks the
reader for a filename and turns whatever stops a walk into a finding. Every name other
modules use is importable from here.

Use::

    reader = ArchiveReader(path, filename, limits)
    for member in reader:  # Member(name, kind, size, ..., data for text members of interest)
        ...
    reader.findings  # structural findings; reader.finished says whether every entry was seen
"""

import lzma
import struct
import zlib
from collections.abc import Iterator

from quarantine.inspect.archive.base import (
    BOMB,
    CHUNK,
    DUPLICATE,
    ENCRYPTED,
    FRAMING,
    LINK,
    LINK_INSIDE,
    MALFORMED,
    MAX_NAME_CHARS,
    METHOD,
    NESTED,
    POLYGLOT,
    RULE_SEVERITY,
    SPECIAL,
    TEXT_NAMES,
    TEXT_SUFFIXES,
    TOO_LARGE,
    TOO_MANY,
    UNSAFE_PATH,
    UNSUPPORTED,
    ArchiveKind,
    GiB,
    KiB,
    Limits,
    Member,
    MemberKind,
    MiB,
    _Abort,
    archive_kind,
    is_text_of_interest,
    printable,
    unsafe_path_reason,
)
from quarantine.inspect.archive.tar import _TarReader
from quarantine.inspect.archive.zip import _ZipReader, find_end_record

__all__ = [
    "BOMB",
    "CHUNK",
    "DUPLICATE",
    "ENCRYPTED",
    "FRAMING",
    "LINK",
    "LINK_INSIDE",
    "MALFORMED",
    "MAX_NAME_CHARS",
    "METHOD",
    "NESTED",
    "POLYGLOT",
    "RULE_SEVERITY",
    "SPECIAL",
    "TEXT_NAMES",
    "TEXT_SUFFIXES",
    "TOO_LARGE",
    "TOO_MANY",
    "UNSAFE_PATH",
    "UNSUPPORTED",
    "ArchiveKind",
    "ArchiveReader",
    "GiB",
    "KiB",
    "Limits",
    "Member",
    "MemberKind",
    "MiB",
    "archive_kind",
    "find_end_record",
    "is_text_of_interest",
    "printable",
    "unsafe_path_reason",
]


class ArchiveReader(_ZipReader, _TarReader):
    """Iterate once over the members of a wheel or sdist; see the module docstring."""

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
