"""How many rendered pages stay in memory: a byte budget, least recently used out first.

Every project ever asked for keeps its rendered pages (JSON and HTML, and the gzipped
copy of a large one) so that a warm page costs no database round trip. Without a bound
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
    """The memory a kept page holds, near enough. A template is counted with one filled
    page beside it: the mirror is reached by one base, mostly."""
    if isinstance(page, Page):
        return len(page.body) + len(page.gzipped or b"")
    return 2 * sum(map(len, page.pieces))


class PageCache:
    """The sizes of the pages the catalog keeps (never the pages: a page the catalog
    drops must not stay alive here); the catalog tells it each page kept and dropped."""

    def __init__(self, max_bytes: int = DEFAULT_PAGE_CACHE_BYTES) -> None:
        self._max = max_bytes
        self._sizes: OrderedDict[_Key, int] = OrderedDict()  # least recently used first
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def kept(self, name: NormalizedName, fmt: PageFormat, page: KeptPage) -> list[_Key]:
        """``page`` is kept now; the pages to drop to stay within the budget, least
        recently used first (never this one)."""
        key = (name, fmt)
        self._total -= self._sizes.pop(key, 0)
        size = page_bytes(page)
        self._sizes[key] = size
        self._total += size
        dropped: list[_Key] = []
        while self._total > self._max:
            oldest = next(iter(self._sizes))
            if oldest == key:
                break  # one page over the budget is still kept: it was just asked for
            self._total -= self._sizes.pop(oldest)
            dropped.append(oldest)
        return dropped

    def used(self, name: NormalizedName, fmt: PageFormat) -> None:
        """A kept page was answered: the last to go."""
        key = (name, fmt)
        if key in self._sizes:
            self._sizes.move_to_end(key)

    def forget(self, name: NormalizedName, fmts: Iterable[PageFormat] | None = None) -> None:
        """The catalog dropped these pages of ``name`` (all of them: None)."""
        for fmt in PageFormat if fmts is None else fmts:
            self._total -= self._sizes.pop((name, fmt), 0)
