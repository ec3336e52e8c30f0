"""``/pypi/<project>/json`` and ``/pypi/<project>/<version>/json``: the part of the index's
JSON API that lock tools read hashes from, answered from vetted files only.

``pip-compile --generate-hashes`` reads ``releases[<version>]``, and of each file its
``url``, ``packagetype`` and ``digests.sha256``; when this API is missing it downloads
every file of every pinned version to hash it. The answer is re-shaped from the
project's simple page as ``/simple/`` serves it (``mirror.simple.releases``): the same first
look, reserved names and stale answers, and the same promoted files at the same URLs.
The upstream's JSON API is never asked.

pip-tools before 7.6.1 asks ``<index root>/pypi/<project>/json`` (give it the index
without its trailing slash, as the index itself is spelt); 7.6.1 and later ask
``<index root>/<project>/json``, which the public index does not answer: served here too,
or those versions would download every file through the mirror.
"""

import asyncio
import functools
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from packaging.utils import NormalizedName
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mirror.errors import NotFound
from mirror.http.request_base import RequestBase
from mirror.simple.catalog import Catalog
from mirror.simple.names import normalized_project
from mirror.simple.negotiate import PageFormat
from mirror.simple.page import KeptByBase, Page, page_of
from mirror.simple.releases import Releases, project_json, release_json, releases_from_page
from mirror.simple.routes import PAGE_MAX_AGE_SECONDS, etag_matches, page_for, variant

# The index's versions are PEP 440 (normalised here); anything else names no release
# and never reaches a header.
_VERSION = re.compile(r"[A-Za-z0-9._+!-]{1,128}")
# Answers from pages this big (~600 files) are made in a worker thread: a 10,000-file
# project's took 0.4 s, which the event loop must not stall for.
THREAD_FROM_BYTES = 256 * 1024
# Re-shaped projects kept, least recently used out first, weighed by their page and
# answers' bytes.
KEPT_BYTES = 64 * 1024 * 1024
MEDIA_TYPE = "application/json"

_Handler = Callable[[Request], Awaitable[Response]]


def _answer(body: bytes) -> Page:
    return page_of(0, body, MEDIA_TYPE)


class _Kept:
    """One project's releases as re-shaped from one page at one address, and the answers
    made from them, by the version asked for (None: the project's)."""

    def __init__(self, page_etag: str, releases: Releases, weight: int) -> None:
        self.page_etag = page_etag
        self.releases = releases
        self.weight = weight
        self.answers: dict[str | None, Page] = {}


class JsonApi:
    def __init__(self, catalog: Catalog, request_base: RequestBase) -> None:
        self._catalog = catalog
        self._request_base = request_base
        # By project, least recently used first; in each, by the base asked through (a
        # few at most, so a client naming a new host each time churns no other's).
        self._kept: OrderedDict[NormalizedName, KeptByBase[_Kept]] = OrderedDict()

    def routes(self) -> list[Route]:
        methods = ["GET", "HEAD"]
        return [
            Route("/pypi/{project}/json", self._project("json"), methods=methods),
            Route("/pypi/{project}/json/", self._project("json/"), methods=methods),
            Route("/pypi/{project}/{version}/json", self._release(""), methods=methods),
            Route("/pypi/{project}/{version}/json/", self._release("/"), methods=methods),
            Route("/{project}/json", self._project("json"), methods=methods),
        ]

    def _project(self, tail: str) -> _Handler:
        async def project(request: Request) -> Response:
            return await self._respond(request, None, tail)

        return project

    def _release(self, slash: str) -> _Handler:
        async def release(request: Request) -> Response:
            version = request.path_params["version"]
            if not _VERSION.fullmatch(version):
                raise NotFound("not found: no such version")
            return await self._respond(request, version, f"{quote(version)}/json{slash}")

        return release

    async def _respond(self, request: Request, version: str | None, tail: str) -> Response:
        raw = request.path_params["project"]
        name = normalized_project(raw)
        if raw != name:
            # Relative, like /simple/'s redirects: up from the tail's folders and the name.
            return RedirectResponse("../" * (1 + tail.count("/")) + f"{name}/{tail}", 301)
        served = await self._catalog.project_page(name, PageFormat.JSON)
        # Where the simple page is, as the client asking reaches it (the same base, trusted
        # proxies and public_base_url and all, as its provenance URLs): its links resolve
        # against that address, and so do the URLs given here.
        base = self._request_base.of(request.scope)
        page = await page_for(served.page, self._request_base, request.scope)
        answer = await self._answer(name, page, base, version)
        chosen = await variant(answer, request.headers.get("accept-encoding"))
        headers = {
            "ETag": chosen.etag,  # another encoding is another representation: its own
            "Cache-Control": f"max-age={PAGE_MAX_AGE_SECONDS}",
            "X-Content-Type-Options": "nosniff",
        }
        if answer.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if chosen.encoding is not None:
            headers["Content-Encoding"] = chosen.encoding
        if served.stale_seconds is not None:
            headers["X-Mirror-Stale"] = str(int(served.stale_seconds))
            headers["X-Mirror-Upstream"] = "unreachable"
        if etag_matches(request.headers.get("if-none-match"), chosen.etag):
            return Response(status_code=304, headers=headers)
        return Response(chosen.body, headers=headers, media_type=MEDIA_TYPE)

    async def _answer(
        self, name: NormalizedName, page: Page, base: str, version: str | None
    ) -> Page:
        """The answer for the project (``version`` None) or the version asked for, kept
        until the page changes; a big page's is made in a worker thread."""
        by_base = self._kept.get(name)
        kept = by_base.get(base) if by_base is not None else None
        if by_base is not None:
            self._kept.move_to_end(name)
        if kept is not None and kept.page_etag == page.etag:
            if version in kept.answers:
                return kept.answers[version]
        else:
            kept = None
        make = functools.partial(
            _made, page, f"{base}simple/{name}/", kept.releases if kept else None, version
        )
        releases, answer = (
            await asyncio.to_thread(make) if page.size >= THREAD_FROM_BYTES else make()
        )
        if not releases.files:
            raise NotFound(f"not found: {name} has no vetted files")
        if kept is None:
            kept = _Kept(page.etag, releases, page.size)
            self._keep(name, base, kept)
        if answer is None:
            raise NotFound(f"not found: {name} has no vetted files of that version")
        kept.answers[version] = answer
        kept.weight += answer.kept_bytes
        self._evict()
        return answer

    def _keep(self, name: NormalizedName, base: str, kept: _Kept) -> None:
        by_base = self._kept.get(name)
        if by_base is None:
            by_base = self._kept[name] = KeptByBase()
        by_base.keep(base, kept)
        self._kept.move_to_end(name)
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used projects while all weigh more than KEPT_BYTES
        (a sum over a few hundred entries at most, only when something was added)."""
        weights = {name: _weight(by_base) for name, by_base in self._kept.items()}
        weight = sum(weights.values())
        while weight > KEPT_BYTES and len(self._kept) > 1:
            name, _oldest = self._kept.popitem(last=False)
            weight -= weights[name]


def _weight(by_base: KeptByBase[_Kept]) -> int:
    return sum(kept.weight for kept in by_base.made())


def _made(
    page: Page, page_url: str, releases: Releases | None, version: str | None
) -> tuple[Releases, Page | None]:
    """The releases (re-shaped from the page unless given) and the answer asked for; None
    when the version is not among them."""
    releases = releases or releases_from_page(page.body, page_url)
    if not releases.files:
        return releases, None
    if version is None:
        return releases, _answer(project_json(releases))
    found = releases.find(version)
    return releases, None if found is None else _answer(release_json(releases, found))


def json_api_routes(catalog: Catalog, request_base: RequestBase) -> list[Route]:
    return JsonApi(catalog, request_base).routes()
