"""``/simple/``: the PEP 503 / PEP 691 index pages."""

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mirror.catalog import Page
from mirror.names import normalized_project
from mirror.negotiate import negotiate
from mirror.services import Services

PAGE_MAX_AGE_SECONDS = 60


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in header.split(",")}
    return etag in candidates or "*" in candidates


def page_headers(page: Page, stale_seconds: float | None = None) -> dict[str, str]:
    headers = {
        "ETag": page.etag,
        "Vary": "Accept",
        "Cache-Control": f"max-age={PAGE_MAX_AGE_SECONDS}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
    }
    if stale_seconds is not None:
        headers["X-Mirror-Stale"] = str(int(stale_seconds))
        headers["X-Mirror-Upstream"] = "unreachable"
    return headers


def page_response(request: Request, page: Page, stale_seconds: float | None = None) -> Response:
    headers = page_headers(page, stale_seconds)
    if etag_matches(request.headers.get("if-none-match"), page.etag):
        return Response(status_code=304, headers=headers)
    return Response(page.body, headers=headers, media_type=page.content_type)


async def simple_root(request: Request) -> Response:
    fmt = negotiate(request.headers.get("accept"), request.query_params.get("format"))
    return page_response(request, _services(request).catalog.root_page(fmt))


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
    served = await _services(request).catalog.project_page(name, fmt)
    return page_response(request, served.page, served.stale_seconds)
