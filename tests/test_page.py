"""Pages kept as templates: filled for a request's base, they are the pages rendered for it."""

import hashlib
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_render import PROJECT, RECORD

from mirror.simple.negotiate import PageFormat
from mirror.simple.page import (
    MAX_BASES_KEPT,
    Page,
    PageTemplate,
    make_page,
    page_or_template,
)
from mirror.simple.render import (
    Bases,
    HeldSummary,
    bases_for,
    file_html_part,
    file_json_part,
    html_from_parts,
    json_from_parts,
    project_html,
    project_json,
)
from quarantine.models import FileRecord

HELD = HeldSummary(0, None)
BASE = "http://mirror.example:8070/"
# Upstream text that spells the places provenance URLs begin, quotes and all.
TRICKS = ['"provenance":"', 'data-provenance="', '","provenance":"x', "\\", "\x00", ">=3.8"]


def _records(spec: list[tuple[bool, str | None, str | None]]) -> list[FileRecord]:
    return [
        replace(
            RECORD,
            filename=f"demo-{number}.0-py3-none-any.whl",
            version=f"{number}.0",
            sha256=f"{number:064x}",
            provenance_url=f"https://upstream.invalid/{number}" if attested else None,
            yanked=yanked,
            requires_python=python,
        )
        for number, (attested, yanked, python) in enumerate(spec)
    ]


def _rendered_for(records: list[FileRecord], fmt: PageFormat, base: str) -> bytes:
    """The page rendered with provenance URLs under ``base`` from the start."""
    bases = Bases("../../", base)
    if fmt is PageFormat.JSON:
        parts = [file_json_part(record, bases) for record in records]
        versions = [record.version for record in records]
        return json_from_parts(PROJECT, versions, parts, HELD)
    return html_from_parts(PROJECT, [file_html_part(record, bases) for record in records], HELD)


def _template(records: list[FileRecord], fmt: PageFormat) -> Page | PageTemplate:
    render = project_json if fmt is PageFormat.JSON else project_html
    return page_or_template(7, render(PROJECT, records, HELD), fmt, open_base=True)


texts = st.none() | st.sampled_from(TRICKS) | st.text(max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), texts, texts), min_size=1, max_size=6),
    st.sampled_from(list(PageFormat)),
)
def test_a_template_filled_for_a_base_is_the_page_rendered_for_it(
    spec: list[tuple[bool, str | None, str | None]], fmt: PageFormat
) -> None:
    records = _records(spec)
    kept = _template(records, fmt)
    if not any(record.provenance_url for record in records):
        assert isinstance(kept, Page)  # nothing to fill: one page for every base
        return
    assert isinstance(kept, PageTemplate)
    for base in (BASE, "https://[::1]:8443/prefix/", BASE):
        assert kept.for_base(base).body == _rendered_for(records, fmt, base)


def test_a_filled_page_is_a_page_of_its_own() -> None:
    records = _records([(True, None, None)])
    kept = _template(records, PageFormat.JSON)
    assert isinstance(kept, PageTemplate)
    one, other = kept.for_base(BASE), kept.for_base("https://pypi.example/")
    assert one.etag != other.etag
    assert kept.for_base(BASE) is one  # kept, not filled again
    assert one.content_type == PageFormat.JSON.value and one.seq == 7


def _large_template() -> PageTemplate:
    records = _records([(True, "a long reason " * 200, None)] * 8)  # over GZIP_MIN_BYTES
    kept = _template(records, PageFormat.LEGACY_HTML)
    assert isinstance(kept, PageTemplate)
    return kept


def test_bases_are_kept_least_recently_used_out_first_and_a_dropped_one_is_filled_alike() -> None:
    kept = _large_template()
    first = kept.for_base("http://h0/")
    assert first.gzipped is not None  # a large page gets its gzip variant when filled
    for number in range(1, MAX_BASES_KEPT):
        kept.for_base(f"http://h{number}/")
    assert kept.for_base("http://h0/") is first  # used again: now the most recent
    kept.for_base("http://new/")  # on trial: all places are taken
    assert "http://new/" not in kept.bases
    kept.for_base("http://new/")  # asked again: kept, the least recently used out
    assert kept.bases == ["http://h2/", "http://h3/", "http://h0/", "http://new/"]
    assert kept.for_base("http://h0/") is first
    dropped = kept.fill("http://h1/")
    again = kept.for_base("http://h1/")
    assert (again.body, again.etag, again.gzipped) == (dropped.body, dropped.etag, dropped.gzipped)


def test_a_new_host_on_every_request_drops_none_of_the_kept_bases() -> None:
    kept = _large_template()
    pages = {base: kept.for_base(base) for base in ("http://a/", "http://b/", BASE)}
    pages["http://c/"] = kept.for_base("http://c/")
    for number in range(50):
        host = f"http://attacker{number}.example/"
        assert kept.for_base(host).body == kept.fill(host).body
    assert kept.bases == ["http://a/", "http://b/", BASE, "http://c/"]
    assert all(kept.for_base(base) is page for base, page in pages.items())


def test_a_rebuilt_page_is_filled_at_once_for_the_most_recently_used_base_only() -> None:
    records = _records([(True, None, None)])
    body = project_json(PROJECT, records, HELD)
    old = page_or_template(7, body, PageFormat.JSON, open_base=True)
    assert isinstance(old, PageTemplate)
    for base in ("http://a/", BASE, "http://b/", BASE):
        old.for_base(base)
    assert old.carried_bases == [BASE]
    kept = page_or_template(8, body, PageFormat.JSON, open_base=True, bases=old.carried_bases)
    assert isinstance(kept, PageTemplate)
    assert kept.bases == [BASE]


def test_with_public_base_url_every_page_is_whole() -> None:
    records = _records([(True, None, None)])
    public = "https://pypi.example.org/mirror"
    body = project_json(PROJECT, records, HELD, public)
    kept = page_or_template(9, body, PageFormat.JSON, open_base=False)
    assert isinstance(kept, Page)
    assert f'"provenance":"{public}/files/'.encode() in kept.body
    assert bases_for(public) == Bases(public + "/", public + "/")


def test_a_large_page_keeps_its_gzip_variant_only_and_gives_the_same_plain_bytes() -> None:
    """pip and uv take gzip: the plain bytes of a large page are not kept beside it, and a
    client that does not take gzip gets them inflated, under the plain bytes' ETag."""
    body = project_json(PROJECT, _records([(False, "a long reason " * 200, None)] * 8), HELD)
    large = make_page(3, body, PageFormat.JSON)
    assert large.plain is None and large.gzipped is not None
    assert large.body == body and large.size == len(body)
    assert large.etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    assert large.kept_bytes == len(large.gzipped) < len(body) // 4
    small = make_page(4, b'{"files":[]}', PageFormat.JSON)
    assert small.plain == small.body == b'{"files":[]}' and small.gzipped is None
    assert small.kept_bytes == len(small.body)
