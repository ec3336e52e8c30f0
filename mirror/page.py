"""A rendered index page as it is sent: its bytes, ETag, media type and gzip variant.

A page linking provenance, without ``public_base_url``, is kept as a template until a
request says how the mirror is reached; each base gets its own page (bytes, ETag, gzip),
so a page made for one host is never sent to a request for another.
"""

import gzip
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

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


# Where each provenance URL begins on a page. Every quote a page's own text carries is
# escaped (JSON: \", HTML: &quot;), so no upstream text can spell these.
_PROVENANCE_STARTS = {
    PageFormat.JSON: b'"provenance":"',
    PageFormat.HTML: b'data-provenance="',
    PageFormat.LEGACY_HTML: b'data-provenance="',
}
# The request bases whose filling a template keeps; past that the oldest is dropped (a
# mirror is reached by a name or two, but every request may name another host).
MAX_BASES_KEPT = 4
# Past this size, filling a template (a join, a digest, a gzip) takes milliseconds: a
# request has it done in a thread, as the catalog builds big pages.
THREAD_FILL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class PageTemplate:
    """A page whose provenance URLs need the request's base (PEP 740 wants them fully
    qualified; without ``public_base_url`` only the request says how the mirror is
    reached). Rendered once with those URLs starting at the mirror's root, cut where
    each begins; ``fill`` puts a base in front of them, ``keep`` keeps what it gave.

    ``base``, everywhere: scheme, host and path of the mirror's root, ending in "/", of
    characters that need no escaping in either format (``mirror.request_base``)."""

    seq: int
    fmt: PageFormat
    pieces: tuple[bytes, ...]
    filled: dict[str, Page] = field(default_factory=dict, compare=False, repr=False)

    @property
    def large(self) -> bool:
        return sum(map(len, self.pieces)) > THREAD_FILL_BYTES

    def fill(self, base: str) -> Page:
        """The page for ``base``; touches nothing, so any thread may make it."""
        start = _PROVENANCE_STARTS[self.fmt]
        return make_page(self.seq, (start + base.encode()).join(self.pieces), self.fmt)

    def keep(self, base: str, page: Page) -> Page:
        """Kept for the next request of ``base`` (by one thread at a time)."""
        if base not in self.filled and len(self.filled) >= MAX_BASES_KEPT:
            del self.filled[next(iter(self.filled))]
        self.filled[base] = page
        return page

    def for_base(self, base: str) -> Page:
        page = self.filled.get(base)
        return page if page is not None else self.keep(base, self.fill(base))

    @property
    def bases(self) -> list[str]:
        return list(self.filled)


KeptPage = Page | PageTemplate


def page_or_template(
    seq: int, body: bytes, fmt: PageFormat, *, open_base: bool, bases: Iterable[str] = ()
) -> KeptPage:
    """The page, or its template when ``open_base`` (no ``public_base_url``) and it links
    provenance; a template is filled at once for ``bases`` (those its predecessor served),
    so a big page's gzip is made where it is built, off the event loop."""
    start = _PROVENANCE_STARTS[fmt]
    if not open_base or start not in body:
        return make_page(seq, body, fmt)
    template = PageTemplate(seq, fmt, tuple(body.split(start)))
    for base in bases:
        template.for_base(base)
    return template
