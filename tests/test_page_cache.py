"""Rendered pages in memory stay within page_cache_mb; a dropped page is rendered again."""

import urllib.request
from datetime import timedelta
from pathlib import Path

from packaging.utils import NormalizedName

from mirror.simple.negotiate import PageFormat
from mirror.simple.page import PageTemplate, make_page
from mirror.simple.page_cache import PageCache, page_bytes
from support.clock import FakeClock
from support.dists import build_wheel
from support.mirror import running_mirror, settings_for
from support.upstream import Upstream, UpstreamFile

JSON = PageFormat.JSON
HTML = PageFormat.LEGACY_HTML


def _name(text: str) -> NormalizedName:
    return NormalizedName(text)


def test_the_least_recently_used_pages_go_first_and_never_the_one_just_kept() -> None:
    page = make_page(1, b"x" * 400, JSON)
    budget = PageCache(max_bytes=1000)
    assert budget.kept(_name("a"), JSON, page) == []
    assert budget.kept(_name("b"), JSON, page) == []
    assert budget.used(_name("a"), JSON, page) == []  # b is now the least recently used
    assert budget.kept(_name("c"), JSON, page) == [(_name("b"), JSON)]
    assert budget.total == 2 * page_bytes(page)
    budget.forget(_name("a"))
    assert budget.total == page_bytes(page)
    huge = make_page(2, b"y" * 5000, HTML)
    assert budget.kept(_name("d"), HTML, huge) == [(_name("c"), JSON)]  # alone, over budget
    assert budget.total == page_bytes(huge)


def test_a_mirror_keeps_its_pages_within_the_budget_and_renders_a_dropped_one_again(
    tmp_path: Path, upstream: Upstream, clock: FakeClock
) -> None:
    old = clock.now() - timedelta(days=300)
    names = [f"proj{i}" for i in range(12)]
    for name in names:
        for minor in range(30):
            upstream.add(name, UpstreamFile(build_wheel(name, f"1.{minor}"), old))
    with running_mirror(settings_for(tmp_path / "data", upstream.url), clock) as mirror:
        assert mirror.services is not None
        catalog = mirror.services.catalog
        _page(mirror.origin, names[-1])
        one_page = page_bytes(catalog._live[_name(names[-1])].pages[JSON])  # as kept: gzip
        budget = 5 * one_page  # page_cache_mb counts in MiB: a smaller one for small pages
        catalog._page_cache = PageCache(max_bytes=budget)
        first = {name: _page(mirror.origin, name) for name in names}
        kept = sum(len(live.pages) for live in catalog._live.values())
        assert catalog._page_cache.total <= budget
        assert 0 < kept < len(names)  # the first ones asked were dropped
        assert not catalog._live[_name(names[0])].pages
        assert _page(mirror.origin, names[0]) == first[names[0]]  # rendered again, the same
        assert catalog._live[_name(names[0])].pages


def _page(origin: str, name: str) -> bytes:
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(f"{origin}/simple/{name}/", headers=accept)
    with urllib.request.urlopen(request, timeout=30) as reply:
        body: bytes = reply.read()
        return body


def test_a_template_is_measured_again_once_filled_for_more_bases() -> None:
    """Without public_base_url a page is a template filled for each base clients name
    (the Host header): those pages count against the budget too."""
    template = PageTemplate(1, JSON, (b'{"files":[{"provenance":"', b'p.json"}]}' * 200))
    cache = PageCache(max_bytes=10**9)
    assert cache.kept(_name("t"), JSON, template) == []
    before = cache.total
    for host in ("a", "b", "c", "d"):
        template.for_base(f"https://{host}.example/")
    assert cache.used(_name("t"), JSON, template) == []
    assert cache.total > before
    assert cache.total == page_bytes(template)
