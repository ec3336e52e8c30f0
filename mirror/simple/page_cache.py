"""How many rendered pages stay in memory: a byte budget, least recently used out first.

Every project ever asked for keeps its rendered pages (JSON and HTML; a large one as its
gzip variant only) so that a warm page costs no database round trip. Without a bound
that memory grows with every project seen: botocore's two pages are about 2.5 MB. An
evicted page is rendered again on its next request, from the ledger or, for a big
project, from its kept parts.
"""

from collections import OrderedDict
from collections.abc import Iterable

from packaging.utils import NormalizedName

from mirror.simple.negotiate import PageFormat
from mirror.simple.page import KeptPage, Page

DEFAULT_PAGE_CACHE_BYTES = 32 * 1024 * 1024

_Key = tuple[NormalizedName, PageFormat]


def page_bytes(page: KeptPage) -> int:
    """The memory a kept page holds, near enough: its bytes as kept, and a template's
    pieces and the pages filled for each base it was asked with (a few at most)."""
    if isinstance(page, Page):
        return page.kept_bytes
    return sum(map(len, page.pieces)) + sum(filled.kept_bytes for filled in page.filled.made())


class PageCache:
    """The sizes of the pages the catalog keeps (never the pages: a page the catalog
    drops must not stay alive here); the catalog tells it each page kept and dropped."""

    def __init__(self, max_bytes: int = DEFAULT_PAGE_CACHE_BYTES) -> None:
        self._max = max_bytes
        self._sizes: OrderedDict[_Key, int] = OrderedDict()  # least recently used first
        self._filled: dict[_Key, int] = {}  # a template's filled pages when last measured
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def kept(self, name: NormalizedName, fmt: PageFormat, page: KeptPage) -> list[_Key]:
        """``page`` is kept now; the pages to drop to stay within the budget, least
        recently used first (never this one)."""
        key = (name, fmt)
        self._total -= self._sizes.pop(key, 0)
        self._filled.pop(key, None)
        size = page_bytes(page)
        self._sizes[key] = size
        self._total += size
        return self._over_budget(key)

    def used(self, name: NormalizedName, fmt: PageFormat, page: KeptPage) -> list[_Key]:
        """A kept page was answered: the last to go. A template may have been filled for
        another base meanwhile, so it is measured again; the pages to drop, as ``kept``."""
        key = (name, fmt)
        if key not in self._sizes:
            return []
        self._sizes.move_to_end(key)
        if isinstance(page, Page):
            return []
        filled = len(page.filled.made())  # a few: measuring a big template is not
        if self._filled.get(key) == filled:
            return []
        self._filled[key] = filled
        size = page_bytes(page)
        self._total += size - self._sizes[key]
        self._sizes[key] = size
        return self._over_budget(key)

    def _over_budget(self, key: _Key) -> list[_Key]:
        dropped: list[_Key] = []
        while self._total > self._max:
            oldest = next(iter(self._sizes))
            if oldest == key:
                break  # one page over the budget is still kept: it was just asked for
            self._total -= self._sizes.pop(oldest)
            self._filled.pop(oldest, None)
            dropped.append(oldest)
        return dropped

    def forget(self, name: NormalizedName, fmts: Iterable[PageFormat] | None = None) -> None:
        """The catalog dropped these pages of ``name`` (all of them: None)."""
        for fmt in PageFormat if fmts is None else fmts:
            self._total -= self._sizes.pop((name, fmt), 0)
            self._filled.pop((name, fmt), None)
