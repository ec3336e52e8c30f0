"""``/simple/``: the PEP 503 / PEP 691 index pages."""

import asyncio
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mirror.http.request_base import RequestBase, Scope
from mirror.services import Services
from mirror.simple.names import normalized_project
from mirror.simple.negotiate import negotiate
from mirror.simple.page import THREAD_FILL_BYTES, KeptPage, Page, PageTemplate

PAGE_MAX_AGE_SECONDS = 60


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in header.split(",")}
    return etag in candidates or "*" in candidates


def accepts_gzip(header: str | None) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (an explicit ``q=0`` refuses it)."""
    if not header:
        return False
    qualities: dict[str, float] = {}
    for part in header.split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[coding.lower()] = quality
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0  # NaN compares false


@dataclass(frozen=True, slots=True)
class Variant:
    """The bytes one client gets for a page: plain, or its gzip variant."""

    body: bytes
    etag: str
    encoding: str | None


async def variant(page: Page, accept_encoding: str | None) -> Variant:
    """The gzip variant when the client takes it; else the plain bytes, inflated from the
    gzip variant when only that is kept (a large page's in a thread)."""
    if page.gzipped is not None and accepts_gzip(accept_encoding):
        return Variant(page.gzipped, page.etag[:-1] + '-gzip"', "gzip")
    if page.plain is None and page.size > THREAD_FILL_BYTES:
        return Variant(await asyncio.to_thread(lambda: page.body), page.etag, None)
    return Variant(page.body, page.etag, None)


def page_headers(page: Page, chosen: Variant, stale_seconds: float | None = None) -> dict[str, str]:
    headers = {
        "ETag": chosen.etag,
        "Vary": "Accept, Accept-Encoding" if page.gzipped is not None else "Accept",
        "Cache-Control": f"max-age={PAGE_MAX_AGE_SECONDS}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
    }
    if chosen.encoding is not None:
        headers["Content-Encoding"] = chosen.encoding
    if stale_seconds is not None:
        headers["X-Mirror-Stale"] = str(int(stale_seconds))
        headers["X-Mirror-Upstream"] = "unreachable"
    return headers


async def page_for(kept: KeptPage, request_base: RequestBase, scope: Scope) -> Page:
    """The page to send: ``kept`` itself, or the template's page for the request's base
    (``RequestBase.of``), filled the first time (a large one in a thread) and kept."""
    if not isinstance(kept, PageTemplate):
        return kept
    base = request_base.of(scope)
    page = kept.filled.get(base)
    if page is not None:
        return page
    if kept.large:
        return kept.filled.keep(base, await asyncio.to_thread(kept.fill, base))
    return kept.filled.keep(base, kept.fill(base))


async def page_response(
    request: Request, page: Page, stale_seconds: float | None = None
) -> Response:
    chosen = await variant(page, request.headers.get("accept-encoding"))
    headers = page_headers(page, chosen, stale_seconds)
    if etag_matches(request.headers.get("if-none-match"), chosen.etag):
        return Response(status_code=304, headers=headers)
    return Response(chosen.body, headers=headers, media_type=page.content_type)


async def simple_root(request: Request) -> Response:
    fmt = negotiate(request.headers.get("accept"), request.query_params.get("format"))
    return await page_response(request, await _services(request).catalog.root_page(fmt))


async def simple_root_without_slash(_request: Request) -> Response:
    return RedirectResponse("simple/", status_code=301)


async def simple_project(request: Request) -> Response:
    raw = request.path_params["project"]
    name = normalized_project(raw)
    trailing = request.url.path.endswith("/")
    if raw != name or not trailing:
        # Relative, so the mirror works behind a path prefix; built from the
        # normalised name only, so nothing from the request reaches the header.
        location = f"../{name}/" if trailing else f"{name}/"
        return RedirectResponse(location, status_code=301)
    fmt = negotiate(request.headers.get("accept"), request.query_params.get("format"))
    services = _services(request)
    served = await services.catalog.project_page(name, fmt)
    page = await page_for(served.page, services.request_base, request.scope)
    return await page_response(request, page, served.stale_seconds)
