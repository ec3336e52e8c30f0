"""``/pypi/<project>/json`` and ``/pypi/<project>/<version>/json``: the part of the index's
JSON API that lock tools read hashes from, answered from vetted files only.

``pip-compile --generate-hashes`` reads ``releases[<version>]``, and of each file its
``url``, ``packagetype`` and ``digests.sha256``; when this API is missing it downloads
every file of every pinned version to hash it. The answer is re-shaped from the
project's simple page as ``/simple/`` serves it (``mirror.releases``): the same first
look, reserved names and stale answers, and the same promoted files at the same URLs.
The upstream's JSON API is never asked.

pip-tools before 7.6.1 asks ``<index root>/pypi/<project>/json`` (give it the index
without its trailing slash, as the index itself is spelt); 7.6.1 and later ask
``<index root>/<project>/json``, which the public index does not answer: served here too,
or those versions would download every file through the mirror.
"""

import asyncio
import functools
import gzip
import hashlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from packaging.utils import NormalizedName
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mirror.catalog import Catalog
from mirror.errors import NotFound
from mirror.names import normalized_project
from mirror.negotiate import PageFormat
from mirror.page import Page, PageTemplate
from mirror.releases import Releases, project_json, release_json, releases_from_page
from mirror.request_base import RequestBase
from mirror.simple_routes import (
    PAGE_MAX_AGE_SECONDS,
    accepts_gzip,
    etag_matches,
    filled,
    sent_for,
)

# The index's versions are PEP 440 (normalised here); anything else names no release
# and never reaches a header.
_VERSION = re.compile(r"[A-Za-z0-9._+!-]{1,128}")
# Answers from pages this big (~600 files) are made in a worker thread: a 10,000-file
# project's took 0.4 s, which the event loop must not stall for.
THREAD_FROM_BYTES = 256 * 1024
GZIP_MIN_BYTES = 16 * 1024  # below this, compressing costs more than it saves
# Re-shaped projects kept, least recently used out first, weighed by their page and
# answers' bytes.
KEPT_BYTES = 64 * 1024 * 1024

_Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    etag: str
    gzipped: bytes | None


def _answer(body: bytes) -> Answer:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    packed = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
    return Answer(body, etag, packed if packed is not None and len(packed) < len(body) else None)


class _Kept:
    """One project's releases as re-shaped from one page at one address, and the answers
    made from them, by the version asked for (None: the project's)."""

    def __init__(self, page_etag: str, releases: Releases, weight: int) -> None:
        self.page_etag = page_etag
        self.releases = releases
        self.weight = weight
        self.answers: dict[str | None, Answer] = {}


class JsonApi:
    def __init__(self, catalog: Catalog, request_base: RequestBase) -> None:
        self._catalog = catalog
        self._request_base = request_base
        self._kept: OrderedDict[tuple[NormalizedName, str], _Kept] = OrderedDict()

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
        # proxies and all, as its provenance URLs): its links resolve against that address,
        # and so do the URLs given here.
        base = self._request_base.of(request.scope)
        page = served.page
        if isinstance(page, PageTemplate):
            page = sent_for(page, base) or await filled(page, base)
        page_url = f"{base}simple/{name}/"
        answer = await self._answer(name, page, page_url, version)
        body, etag, encoding = answer.body, answer.etag, None
        if answer.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding")):
            # Another encoding is another representation: its own strong ETag.
            body, etag, encoding = answer.gzipped, etag[:-1] + '-gzip"', "gzip"
        headers = {
            "ETag": etag,
            "Cache-Control": f"max-age={PAGE_MAX_AGE_SECONDS}",
            "X-Content-Type-Options": "nosniff",
        }
        if answer.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        if served.stale_seconds is not None:
            headers["X-Mirror-Stale"] = str(int(served.stale_seconds))
            headers["X-Mirror-Upstream"] = "unreachable"
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    async def _answer(
        self, name: NormalizedName, page: Page, page_url: str, version: str | None
    ) -> Answer:
        """The answer for the project (``version`` None) or the version asked for, kept
        until the page changes; a big page's is made in a worker thread."""
        key = (name, page_url)
        kept = self._kept.get(key)
        if kept is not None and kept.page_etag == page.etag:
            self._kept.move_to_end(key)
            if version in kept.answers:
                return kept.answers[version]
        else:
            kept = None
        make = functools.partial(
            _made, page.body, page_url, kept.releases if kept else None, version
        )
        releases, answer = (
            await asyncio.to_thread(make) if len(page.body) >= THREAD_FROM_BYTES else make()
        )
        if not releases.files:
            raise NotFound(f"not found: {name} has no vetted files")
        if kept is None:
            kept = _Kept(page.etag, releases, len(page.body))
            self._keep(key, kept)
        if answer is None:
            raise NotFound(f"not found: {name} has no vetted files of that version")
        kept.answers[version] = answer
        kept.weight += len(answer.body) + len(answer.gzipped or b"")
        self._evict()
        return answer

    def _keep(self, key: tuple[NormalizedName, str], kept: _Kept) -> None:
        self._kept.pop(key, None)
        self._kept[key] = kept
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used projects while all weigh more than KEPT_BYTES
        (a sum over a few hundred entries at most, only when something was added)."""
        weight = sum(kept.weight for kept in self._kept.values())
        while weight > KEPT_BYTES and len(self._kept) > 1:
            _key, oldest = self._kept.popitem(last=False)
            weight -= oldest.weight


def _made(
    body: bytes, page_url: str, releases: Releases | None, version: str | None
) -> tuple[Releases, Answer | None]:
    """The releases (re-shaped from the page unless given) and the answer asked for; None
    when the version is not among them."""
    releases = releases or releases_from_page(body, page_url)
    if not releases.files:
        return releases, None
    if version is None:
        return releases, _answer(project_json(releases))
    found = releases.find(version)
    return releases, None if found is None else _answer(release_json(releases, found))


def json_api_routes(catalog: Catalog, request_base: RequestBase) -> list[Route]:
    return JsonApi(catalog, request_base).routes()
