"""PEP 691 content negotiation (``mirror.simple.negotiate``), project names (``.names``)."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from mirror.errors import InvalidProjectName, NotAcceptable
from mirror.simple.names import normalized_project
from mirror.simple.negotiate import PageFormat, negotiate

JSON = PageFormat.JSON
HTML = PageFormat.HTML
LEGACY = PageFormat.LEGACY_HTML

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
# pypi-simple's default (ACCEPT_ANY): no preference between JSON and HTML.
PYPI_SIMPLE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, text/html;q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)


# -- negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON),
        (UV_ACCEPT, JSON),
        ("text/html", LEGACY),
        ("*/*", LEGACY),
        (None, LEGACY),
        ("", LEGACY),
        ("   ", LEGACY),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", HTML),
        ("application/vnd.pypi.simple.v1+json", JSON),
        ("application/vnd.pypi.simple.v1+html", HTML),
        ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", JSON),
        ("text/*", LEGACY),
        ("application/*", HTML),
        # Browsers: html wins, JSON is never chosen over an equally acceptable HTML.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", LEGACY),
        # Highest q wins over the order of preference.
        ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6", JSON),
        # JSON and HTML named alike: JSON, in whichever order they are named.
        ("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.5", JSON),
        ("text/html, application/vnd.pypi.simple.v1+json", JSON),
        ("application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.latest+json", JSON),
        (PYPI_SIMPLE_ACCEPT, JSON),
        # Both HTML types named alike: plain HTML, as before.
        ("application/vnd.pypi.simple.v1+html, text/html", LEGACY),
        # A tie that only wildcards reach is not JSON by name: HTML.
        ("*/*, text/*", LEGACY),
        ("application/vnd.pypi.simple.v1+json;q=0.5, */*", LEGACY),
        # A specific entry beats a wildcard for the same type.
        ("*/*;q=0.9, application/vnd.pypi.simple.v1+json", JSON),
        ("application/vnd.pypi.simple.v1+json;q=0.2, */*;q=0.9", LEGACY),
        # q=0 excludes, also when a wildcard would otherwise allow it.
        ("application/vnd.pypi.simple.v1+json;q=0, */*", LEGACY),
        ("text/html;q=0, */*", HTML),
        ("text/html;q=0, application/vnd.pypi.simple.v1+html;q=0, */*", JSON),
        ("text/html; q=0.0, application/vnd.pypi.simple.latest+json; q=0.001", JSON),
        # Out-of-range q values are clamped.
        ("text/html;q=5, application/vnd.pypi.simple.v1+json;q=0.999", LEGACY),
        # Extra media parameters do not matter.
        ("application/vnd.pypi.simple.v1+json; charset=utf-8", JSON),
    ],
)
def test_accept_header(accept: str | None, expected: PageFormat) -> None:
    assert negotiate(accept, None) is expected


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "image/png",
        "*/*;q=0",
        "text/html;q=0",
        "application/vnd.pypi.simple.v1+json;q=0, text/*;q=0, application/*;q=0",
        "application/vnd.pypi.simple.v2+json",
        "text/plain",
        ",,,",
    ],
)
def test_unacceptable_header_is_406(accept: str) -> None:
    with pytest.raises(NotAcceptable) as caught:
        negotiate(accept, None)
    assert caught.value.status == 406
    # One fixed line naming what is served; the request's header is never echoed.
    assert caught.value.reason == (
        "not acceptable: this index serves text/html, application/vnd.pypi.simple.v1+html, "
        "application/vnd.pypi.simple.v1+json"
    )


@pytest.mark.parametrize("quality", ["bogus", "", "nan", "-1"])
def test_unreadable_q_value_is_not_acceptable(quality: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(f"text/html;q={quality}", None)
    assert negotiate(f"text/html;q={quality}, application/vnd.pypi.simple.v1+json;q=0.1", None) is (
        JSON
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("json", JSON),
        ("html", HTML),
        ("JSON", JSON),
        (" html ", HTML),
        ("application/vnd.pypi.simple.v1+json", JSON),
        ("application/vnd.pypi.simple.v1+html", HTML),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", HTML),
        ("text/html", LEGACY),
        # A literal "+" in the query string arrives form-decoded, as a space.
        ("application/vnd.pypi.simple.v1 json", JSON),
        ("application/vnd.pypi.simple.v1 html", HTML),
        ("application/vnd.pypi.simple.latest json", JSON),
    ],
)
def test_format_parameter_overrides_accept(value: str, expected: PageFormat) -> None:
    for accept in (None, "text/html", PIP_ACCEPT, "image/png", "*/*;q=0"):
        assert negotiate(accept, value) is expected


@pytest.mark.parametrize("value", ["", "xml", "application/json", "json;q=1", "*/*"])
def test_unknown_format_parameter_is_406(value: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(PIP_ACCEPT, value)


media_types = st.sampled_from(
    [f.value for f in PageFormat]
    + ["*/*", "text/*", "application/*", "application/json", "image/png"]
    + ["application/vnd.pypi.simple.latest+json", "application/vnd.pypi.simple.latest+html"]
)
qualities = st.none() | st.integers(0, 1000).map(lambda n: n / 1000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(media_types, qualities), min_size=1, max_size=6))
def test_property_choice_is_a_best_acceptable_offer(offers: list[tuple[str, float | None]]) -> None:
    header = ", ".join(media if q is None else f"{media};q={q}" for media, q in offers)

    def quality(page: PageFormat) -> float:
        """RFC 9110: the most specific matching range decides the quality."""
        best: tuple[int, float] | None = None
        for media, q in offers:
            media = {
                "application/vnd.pypi.simple.latest+json": JSON.value,
                "application/vnd.pypi.simple.latest+html": HTML.value,
            }.get(media, media)
            specificity = (
                2
                if media == page.value
                else 1
                if media == page.value.split("/")[0] + "/*"
                else 0
                if media == "*/*"
                else -1
            )
            if specificity >= 0 and (best is None or specificity > best[0]):
                best = (specificity, 1.0 if q is None else q)
        return 0.0 if best is None else best[1]

    scores = {page: quality(page) for page in PageFormat}
    try:
        chosen = negotiate(header, None)
    except NotAcceptable:
        assert all(score == 0 for score in scores.values())
        return
    assert scores[chosen] > 0
    assert scores[chosen] == max(scores.values())
    named = {media for media, _ in offers} & {JSON.value, "application/vnd.pypi.simple.latest+json"}
    json_named_at = [q for media, q in offers if media in named]
    if named and scores[JSON] == max(scores.values()) and len(json_named_at) == 1:
        assert chosen is JSON  # named, and as acceptable as anything: JSON wins the tie


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.none() | st.text(max_size=10))
def test_property_any_header_gives_a_format_or_406(accept: str, fmt: str | None) -> None:
    with contextlib.suppress(NotAcceptable):
        assert negotiate(accept, fmt) in set(PageFormat)


# -- project names --------------------------------------------------------------------------


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("requests", "requests"),
        ("Django", "django"),
        ("zope.interface", "zope-interface"),
        ("typing_extensions", "typing-extensions"),
        ("A__B--C..D", "a-b-c-d"),
        ("Foo._-Bar", "foo-bar"),
        ("a", "a"),
        ("0", "0"),
        ("x" * 255, "x" * 255),
        ("a" + "-" * 253 + "b", "a-b"),
    ],
)
def test_valid_names_normalise(raw: str, expected: str) -> None:
    assert normalized_project(raw) == expected
    assert normalized_project(raw) == canonicalize_name(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-foo",
        "foo-",
        ".foo",
        "foo.",
        "_foo",
        "foo_",
        "fo o",
        " foo",
        "foo\t",
        "foo\n",
        "foo/bar",
        "foo\\bar",
        "..",
        "../etc",
        ".",
        "foo\x00",
        "\x00",
        "\ufb01le",  # the fi ligature: canonicalize_name keeps it
        "na\u00efve",
        "foo\u202ebar",
        "\uff26\uff4f\uff4f",  # fullwidth
        "\uff46\uff4f\uff4f",
        "foo\u200b",
        "\u0663",  # an Arabic-Indic digit is a digit to str.isdigit, not to the grammar
        "foo%2e",
        "foo@1",
        "foo+bar",
        "foo:bar",
        "x" * 256,
        "a" + "-" * 254 + "b",
    ],
)
def test_invalid_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidProjectName) as caught:
        normalized_project(raw)
    assert caught.value.status == 404
    assert caught.value.reason == "invalid project name"


NAME_GRAMMAR = r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,40}[A-Za-z0-9])?\Z"


@settings(max_examples=200, deadline=None)
@given(st.from_regex(NAME_GRAMMAR, fullmatch=True))
def test_property_valid_names_normalise_like_packaging(name: str) -> None:
    normalized = normalized_project(name)
    assert normalized == canonicalize_name(name) == pep503(name)
    assert normalized_project(normalized) == normalized
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", normalized)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.from_regex(r"\A[A-Za-z0-9]{1,6}\Z", fullmatch=True), min_size=1, max_size=5),
    st.data(),
)
def test_property_spellings_of_one_name_agree(words: list[str], data: st.DataObject) -> None:
    separators = st.text(alphabet="-_.", min_size=1, max_size=3)
    first = words[0]
    spelled = first
    plain = first
    for word in words[1:]:
        spelled += data.draw(separators) + "".join(
            c.upper() if data.draw(st.booleans()) else c.lower() for c in word
        )
        plain += "-" + word
    assert normalized_project(spelled) == normalized_project(plain) == pep503(plain)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_property_any_text_is_a_valid_name_or_refused(raw: str) -> None:
    try:
        normalized = normalized_project(raw)
    except InvalidProjectName:
        assert not re.fullmatch(NAME_GRAMMAR.replace("{0,40}", "{0,253}"), raw, re.ASCII)
        return
    assert raw.isascii() and 0 < len(raw) <= 255
    assert normalized == canonicalize_name(raw) == pep503(raw)
