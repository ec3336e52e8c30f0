"""PEP 691 content negotiation: pick HTML or JSON from ``Accept`` and ``?format=``."""

import functools
from enum import StrEnum

from mirror.errors import NotAcceptable


class PageFormat(StrEnum):
    JSON = "application/vnd.pypi.simple.v1+json"
    HTML = "application/vnd.pypi.simple.v1+html"
    LEGACY_HTML = "text/html"


_ALIASES = {
    "application/vnd.pypi.simple.latest+json": PageFormat.JSON,
    "application/vnd.pypi.simple.latest+html": PageFormat.HTML,
    "json": PageFormat.JSON,
    "html": PageFormat.HTML,
}
# On a tie in quality, a type the client names beats one a wildcard reaches, and then an
# order decides: among wildcard matches this one, plain HTML first, for browsers and bare
# clients (*/*); it is also the order the 406 reason names them in. Among named types
# JSON first (a client naming JSON and HTML alike, as pypi-simple does, gets the richer
# page, as from the public index).
_PREFERENCE = (PageFormat.LEGACY_HTML, PageFormat.HTML, PageFormat.JSON)
_NAMED_ORDER = (PageFormat.JSON, PageFormat.LEGACY_HTML, PageFormat.HTML)
_NAMED = 2  # the specificity of an offer that names the type itself


@functools.lru_cache(maxsize=512)  # clients send a handful of distinct Accept headers
def negotiate(accept: str | None, format_param: str | None) -> PageFormat:
    if format_param is not None:
        return _explicit(format_param)
    if accept is None or not accept.strip():
        return PageFormat.LEGACY_HTML
    offers = _parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen: PageFormat | None = None
    for candidate in _PREFERENCE:
        quality, specificity = _quality(candidate, offers)
        if quality <= 0:
            continue
        order = _NAMED_ORDER if specificity == _NAMED else _PREFERENCE
        key = (quality, specificity, -order.index(candidate))
        if best is None or key > best:
            best, chosen = key, candidate
    if chosen is None:
        raise NotAcceptable("not acceptable: this index serves " + ", ".join(_PREFERENCE))
    return chosen


def _explicit(value: str) -> PageFormat:
    # A literal "+" in a query string reads as a space once form-decoded, and no media
    # type has a space: ?format=application/vnd.pypi.simple.v1+json means the JSON page.
    value = value.strip().lower().replace(" ", "+")
    if value in _ALIASES:
        return _ALIASES[value]
    for candidate in PageFormat:
        if value == candidate.value:
            return candidate
    raise NotAcceptable("unknown format: use application/vnd.pypi.simple.v1+json or +html")


def _parse_accept(header: str) -> list[tuple[str, float]]:
    offers = []
    for part in header.split(","):
        pieces = [piece.strip() for piece in part.split(";")]
        media = _ALIASES.get(pieces[0].lower(), pieces[0].lower())
        quality = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    parsed = float(value)
                    quality = min(max(parsed, 0.0), 1.0) if parsed == parsed else 0.0
                except ValueError:
                    quality = 0.0
        if media:
            offers.append((str(media), quality))
    return offers


def _quality(candidate: PageFormat, offers: list[tuple[str, float]]) -> tuple[float, int]:
    """The quality of the most specific offer that matches ``candidate``."""
    major = candidate.value.split("/")[0]
    found: tuple[int, float] | None = None
    for media, quality in offers:
        if media == candidate.value:
            specificity = _NAMED
        elif media == f"{major}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if found is None or specificity > found[0]:
            found = (specificity, quality)
    return (0.0, 0) if found is None else (found[1], found[0])
