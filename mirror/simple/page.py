"""A rendered index page as it is sent: its bytes, ETag, media type and gzip variant.

A large page is kept as its gzip variant only: pip and uv ask for gzip, and the plain
bytes (five to ten times larger) are inflated again for the rare client that does not.

A page linking provenance, without ``public_base_url``, is kept as a template until a
request says how the mirror is reached; each base gets its own page (bytes, ETag, gzip),
so a page made for one host is never sent to a request for another.
"""

import gzip
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mirror.simple.negotiate import PageFormat

GZIP_MIN_BYTES = 16 * 1024  # below this, compressing costs more than it saves


@dataclass(frozen=True, slots=True)
class Page:
    seq: int
    etag: str  # of the plain bytes, whichever are kept
    content_type: str
    size: int  # of the plain bytes
    plain: bytes | None  # None: kept as ``gzipped`` only
    gzipped: bytes | None = None  # compressed once at render, for large pages

    @property
    def body(self) -> bytes:
        """The plain bytes; inflated from the gzip variant when only that is kept (a
        large page: ``THREAD_FILL_BYTES`` says when to do it off the event loop)."""
        if self.plain is not None:
            return self.plain
        assert self.gzipped is not None  # one of the two is always kept
        return gzip.decompress(self.gzipped)

    @property
    def kept_bytes(self) -> int:
        """The memory the page's bytes hold."""
        return len(self.plain or b"") + len(self.gzipped or b"")


def content_type(fmt: PageFormat) -> str:
    return f"{fmt.value}; charset=utf-8" if fmt is PageFormat.LEGACY_HTML else fmt.value


def make_page(seq: int, body: bytes, fmt: PageFormat) -> Page:
    return page_of(seq, body, content_type(fmt))


def page_of(seq: int, body: bytes, media_type: str) -> Page:
    """A page of any media type: its strong ETag, and its gzip variant when large."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    packed = compressed(body)
    return Page(seq, etag, media_type, len(body), body if packed is None else None, packed)


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
# The request bases a template (or the JSON API, a project) keeps what it made for, least
# recently used out first: a mirror is reached by a name or two, but every request may
# name another host.
MAX_BASES_KEPT = 4
# The most recently used bases a rebuilt page is filled for at once (where it is built,
# off the event loop): what the mirror is most likely reached by, never every base a
# client ever named.
CARRIED_BASES = 1
# Past this size, filling a template (a join, a digest, a gzip) takes milliseconds: a
# request has it done in a thread, as the catalog builds big pages.
THREAD_FILL_BYTES = 256 * 1024

_Made = TypeVar("_Made")


class KeptByBase(Generic[_Made]):
    """What was made for each request base, kept for the next request of that base (by
    one thread at a time).

    At most MAX_BASES_KEPT bases, least recently used out first. While all places are
    taken, a base asked for the first time is kept on trial, in one place of its own, and
    joins the others when it is asked again: a client naming a new host on every request
    only ever replaces the one on trial, so the bases the mirror is really reached by stay
    kept."""

    __slots__ = ("_kept", "_latest", "_on_trial")

    def __init__(self) -> None:
        self._kept: dict[str, _Made] = {}  # least recently used first
        self._latest: str | None = None  # the last of them
        self._on_trial: dict[str, _Made] = {}  # at most one

    def get(self, base: str) -> _Made | None:
        """What was kept for ``base``, now the most recently used."""
        made = self._kept.get(base)
        if made is None:
            made = self._on_trial.pop(base, None)
            return None if made is None else self._among_kept(base, made)
        if base != self._latest:  # a request names the base the one before did, mostly
            self._among_kept(base, made)
        return made

    def keep(self, base: str, made: _Made) -> _Made:
        """Among the kept while there is room (or ``base`` is one of them), else on trial."""
        if base in self._kept or len(self._kept) < MAX_BASES_KEPT:
            return self._among_kept(base, made)
        self._on_trial.clear()
        self._on_trial[base] = made
        return made

    def _among_kept(self, base: str, made: _Made) -> _Made:
        self._kept.pop(base, None)
        self._kept[base] = made  # last: the most recently used
        self._latest = base
        if len(self._kept) > MAX_BASES_KEPT:
            del self._kept[next(iter(self._kept))]
        return made

    def __contains__(self, base: object) -> bool:
        """Whether ``base`` is kept (on trial is not kept)."""
        return base in self._kept

    @property
    def bases(self) -> list[str]:
        """The bases kept, least recently used first."""
        return list(self._kept)

    def made(self) -> list[_Made]:
        """Everything held, on trial too."""
        return [*self._kept.values(), *self._on_trial.values()]


@dataclass(frozen=True, slots=True)
class PageTemplate:
    """A page whose provenance URLs need the request's base (PEP 740 wants them fully
    qualified; without ``public_base_url`` only the request says how the mirror is
    reached). Rendered once with those URLs starting at the mirror's root, cut where
    each begins; ``fill`` puts a base in front of them, ``filled`` keeps what it gave.

    ``base``, everywhere: scheme, host and path of the mirror's root, ending in "/", of
    characters that need no escaping in either format (``mirror.http.request_base``)."""

    seq: int
    fmt: PageFormat
    pieces: tuple[bytes, ...]
    filled: KeptByBase[Page] = field(default_factory=KeptByBase, compare=False, repr=False)

    @property
    def large(self) -> bool:
        return sum(map(len, self.pieces)) > THREAD_FILL_BYTES

    def fill(self, base: str) -> Page:
        """The page for ``base``; touches nothing, so any thread may make it."""
        start = _PROVENANCE_STARTS[self.fmt]
        return make_page(self.seq, (start + base.encode()).join(self.pieces), self.fmt)

    def for_base(self, base: str) -> Page:
        page = self.filled.get(base)
        return page if page is not None else self.filled.keep(base, self.fill(base))

    @property
    def bases(self) -> list[str]:
        """The bases kept, least recently used first."""
        return self.filled.bases

    @property
    def carried_bases(self) -> list[str]:
        """The bases to fill this page's successor for at once: the most recently used."""
        return self.bases[-CARRIED_BASES:]


KeptPage = Page | PageTemplate


# Filenames spelt the same on a page as here: no character a format escapes.
_PLAIN_FILENAME = re.compile(r"[A-Za-z0-9._+!~,=@-]+")


def mention_check(page: KeptPage) -> Callable[[str], bool]:
    """Whether a filename may be listed on ``page`` (True when in doubt: a filename a
    format would escape, or one inside another's, counts as listed). The page's bytes
    are inflated once, for every filename asked of the check."""
    texts = page.pieces if isinstance(page, PageTemplate) else (page.body,)

    def may_mention(filename: str) -> bool:
        if _PLAIN_FILENAME.fullmatch(filename) is None:
            return True
        spelt = filename.encode()
        return any(spelt in text for text in texts)

    return may_mention


def page_or_template(
    seq: int, body: bytes, fmt: PageFormat, *, open_base: bool, bases: Iterable[str] = ()
) -> KeptPage:
    """The page, or its template when ``open_base`` (no ``public_base_url``) and it links
    provenance; a template is filled at once for ``bases`` (its predecessor's
    ``carried_bases``), so a big page's gzip is made where it is built, off the event loop."""
    start = _PROVENANCE_STARTS[fmt]
    if not open_base or start not in body:
        return make_page(seq, body, fmt)
    template = PageTemplate(seq, fmt, tuple(body.split(start)))
    for base in bases:
        template.for_base(base)
    return template
