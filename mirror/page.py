"""A rendered index page as it is sent: its bytes, ETag, media type and gzip variant."""

import gzip
import hashlib
from dataclasses import dataclass

from mirror.negotiate import PageFormat

GZIP_MIN_BYTES = 16 * 1024  # below this, compressing costs more than it saves


@dataclass(frozen=True, slots=True)
class Page:
    seq: int
    body: bytes
    etag: str
    content_type: str
    gzipped: bytes | None = None  # compressed once at render, for large pages


def content_type(fmt: PageFormat) -> str:
    return f"{fmt.value}; charset=utf-8" if fmt is PageFormat.LEGACY_HTML else fmt.value


def make_page(seq: int, body: bytes, fmt: PageFormat) -> Page:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Page(seq, body, etag, content_type(fmt), compressed(body))


def compressed(body: bytes) -> bytes | None:
    """A gzip variant of a large page, made once per render (never for files)."""
    if len(body) < GZIP_MIN_BYTES:
        return None
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    return packed if len(packed) < len(body) else None
