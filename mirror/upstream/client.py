"""The upstream client: one aiohttp session for the process, hostile input assumed.

Timeouts on connect and read, byte caps, redirects followed by hand and checked like any
file URL (public addresses only, besides the index's own host), no proxies from the
environment, and no transparent decompression of files (the hash is over the bytes as sent).
"""

import asyncio
import contextlib
import functools
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from packaging.utils import NormalizedName
from yarl import URL

from mirror import __version__
from mirror.blobs.interface import BlobWriter
from mirror.errors import SizeMismatch, UpstreamGone, UpstreamRejected, UpstreamUnavailable
from mirror.upstream.page_budget import Lease, PageBudget
from mirror.upstream.parse import parse_project_page
from mirror.upstream.parse_gate import ParseGate
from mirror.upstream.resolver import GuardedResolver
from mirror.upstream.url_guard import UrlGuard
from quarantine.models import Snapshot

JSON_PAGE = "application/vnd.pypi.simple.v1+json"
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_HOPS = 3
_CHUNK = 256 * 1024
# A page this large is parsed in a worker thread: parsing takes about 35 ms a megabyte,
# and in the first-use replay pages of 160-800 KB parsed on the event loop held every other
# request for 20-50 ms.
PARSE_IN_THREAD_BYTES = 64 * 1024
# Page bytes parsed at once, all looks together (``ParseGate``): the largest real pages
# (6 MB) are parsed alone, a few ordinary ones side by side.
PARSE_AT_ONCE_BYTES = 2 * 1024 * 1024
INFLATE_IN_THREAD_BYTES = 256 * 1024  # inflating more than this takes a millisecond or more
# Room for this many of the largest pages (each up to max_page_bytes sent, and as much
# again inflated) in memory at once, all looks together.
PAGE_BUDGET_PAGES = 4
_GZIP_MIN_BYTES = 18  # header and trailer
_PLAIN_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # needs no quoting in a URL path


@dataclass(frozen=True, slots=True)
class PageAnswer:
    snapshot: Snapshot | None  # None: not modified since ``etag``
    etag: str | None


class UpstreamClient:
    def __init__(
        self,
        guard: UrlGuard,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_page_bytes: int,
        page_timeout: float = 60.0,
        download_timeout: float = 1800.0,
    ) -> None:
        """``page_timeout``, ``download_timeout``: whole transfers (every read may be in
        time while the whole never ends: a trickle)."""
        self.guard = guard
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._page_deadline = _Deadline(page_timeout, "page_timeout_seconds")
        self._download_deadline = _Deadline(download_timeout, "download_timeout_seconds")
        self._max_page_bytes = max_page_bytes
        self._pages = PageBudget(PAGE_BUDGET_PAGES * max_page_bytes)
        self.parses = ParseGate(PARSE_AT_ONCE_BYTES)
        self._session: aiohttp.ClientSession | None = None
        # Failed upstream requests by kind (UpstreamUnavailable, UpstreamRejected): metrics.
        self.failures: Counter[str] = Counter()
        index = guard.index.with_query(None).with_fragment(None)
        self._index_text = str(index) if str(index).endswith("/") else f"{index}/"

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
            ),
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # an index has no business setting cookies
            headers={"User-Agent": f"lazaretto/{__version__}"},
            connector=aiohttp.TCPConnector(
                limit=64, limit_per_host=16, ttl_dns_cache=300, resolver=GuardedResolver(self.guard)
            ),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream client is not open")
        return self._session

    def project_url(self, name: NormalizedName) -> URL:
        if _PLAIN_NAME.fullmatch(name):
            # A fifth of the cost of joining path segments, on every cold miss.
            return URL(f"{self._index_text}{name}/", encoded=True)
        return self.guard.index / name / ""

    async def project_page(self, name: NormalizedName, etag: str | None) -> PageAnswer:
        headers = {"Accept": JSON_PAGE, "Accept-Encoding": "gzip"}
        if etag:
            headers["If-None-Match"] = etag
        # The page's bytes count against the budget of all pages in memory until parsed.
        async with self._pages.lease() as lease:
            async with (
                self._attempt(self._page_deadline, "the project page"),
                self._get(self.project_url(name), headers, same_origin_only=True) as response,
            ):
                if response.status == 304:
                    return PageAnswer(None, etag)
                if response.status in (404, 410):
                    raise UpstreamGone(f"not found: the upstream has no project {name}")
                if response.status >= 500 or response.status == 429:
                    raise UpstreamUnavailable(f"upstream unavailable (HTTP {response.status})")
                if response.status != 200:
                    raise UpstreamRejected(f"status_{response.status}")
                if response.content_type != JSON_PAGE:
                    raise UpstreamRejected("not_json: the upstream must speak PEP 691 JSON")
                raw = await _read_capped(response, self._max_page_bytes, lease)
                encoding = response.headers.get("Content-Encoding", "identity").lower()
                etag = response.headers.get("ETag")
            body = await self._inflated(raw, encoding, lease)
            del raw  # only the page's own bytes stay while it is parsed
            if len(body) > PARSE_IN_THREAD_BYTES:
                parse = functools.partial(parse_project_page, body, name)
                return PageAnswer(await self.parses.parsed(len(body), parse), etag)
            return PageAnswer(parse_project_page(body, name), etag)

    async def _inflated(self, raw: bytes, encoding: str, lease: Lease) -> bytes:
        """The page as sent, inflated when gzipped: never more bytes than the gzip trailer
        declares (a bomb's trailer gives it away before anything is inflated; one that lies
        is caught once that many are out), and off the event loop when it is large."""
        if encoding in ("", "identity"):
            return raw
        if encoding != "gzip":
            raise UpstreamRejected(f"unsupported_encoding: {encoding[:20]}")
        declared = int.from_bytes(raw[-4:], "little") if len(raw) >= _GZIP_MIN_BYTES else 0
        if declared > self._max_page_bytes:
            raise UpstreamRejected("too_large: page over max_page_bytes")
        await lease.grow(declared)
        if declared > INFLATE_IN_THREAD_BYTES:
            return await asyncio.to_thread(_inflate, raw, declared)
        return _inflate(raw, declared)

    async def download(self, url: URL, writer: BlobWriter, declared_size: int | None) -> bool:
        """Stream ``url`` into ``writer``; the caller commits against the declared digest.
        True when the body's framing (a Content-Length, chunked encoding) shows it arrived
        whole; False for a body ended by the connection's close, which a cut looks like."""
        headers = {"Accept-Encoding": "identity"}
        async with (
            self._attempt(self._download_deadline, "the file transfer"),
            self._get(url, headers, same_origin_only=False) as response,
        ):
            if response.status != 200:
                raise UpstreamUnavailable(f"upstream answered HTTP {response.status} for a file")
            if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
                raise UpstreamRejected("encoded_file: files must arrive as their raw bytes")
            length = response.content_length
            if declared_size is not None and length is not None and length != declared_size:
                # The upstream declares the whole body it sends: another file than listed.
                raise SizeMismatch(
                    f"size_mismatch: upstream sends {length} bytes, listed {declared_size}"
                )
            framed = length is not None or "chunked" in _transfer_encoding(response)
            try:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    await writer.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as error:
                raise UpstreamUnavailable(
                    f"file transfer broke off: {type(error).__name__}"
                ) from error
        if declared_size is not None and writer.size != declared_size:
            if not framed:  # ended by a close: maybe cut short, so not proof of other bytes
                raise UpstreamUnavailable(
                    f"file transfer ended early: got {writer.size} bytes, listed {declared_size}"
                )
            raise SizeMismatch(f"size_mismatch: got {writer.size} bytes, listed {declared_size}")
        return framed

    async def fetch_small(self, url: URL, limit: int) -> bytes | None:
        """A small document such as a provenance object; None when the upstream has none."""
        async with (
            self._attempt(self._page_deadline, "a small document"),
            self._get(url, {"Accept-Encoding": "identity"}, same_origin_only=False) as response,
        ):
            if response.status == 404:
                return None
            if response.status != 200:
                raise UpstreamUnavailable(f"upstream answered HTTP {response.status}")
            return await _read_capped(response, limit)

    @contextlib.asynccontextmanager
    async def _attempt(self, deadline: "_Deadline", what: str) -> AsyncIterator[None]:
        try:
            async with deadline.applied(what):
                yield
        except (UpstreamUnavailable, UpstreamRejected) as error:
            self.failures[type(error).__name__] += 1
            raise

    def _get(self, url: URL, headers: dict[str, str], *, same_origin_only: bool) -> "_Request":
        return _Request(self, url, headers, same_origin_only)

    async def open_response(
        self, url: URL, headers: dict[str, str], same_origin_only: bool
    ) -> aiohttp.ClientResponse:
        for _hop in range(_MAX_HOPS + 1):
            try:
                response = await self.session.get(url, headers=headers, allow_redirects=False)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise UpstreamUnavailable(
                    f"upstream unreachable: {type(error).__name__}"
                ) from error
            if response.status not in _REDIRECTS:
                return response
            location = response.headers.get("Location", "")
            response.release()
            url = self.guard.check(location, url)
            if same_origin_only and not self.guard.same_origin(url):
                raise UpstreamRejected("redirect_policy: redirect off the index origin")
        raise UpstreamRejected("redirect_policy: too many redirects")


@dataclass(frozen=True, slots=True)
class _Deadline:
    seconds: float
    key: str  # the setting that sets it, for the message

    @contextlib.asynccontextmanager
    async def applied(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.seconds):
                yield
        except TimeoutError as error:
            raise UpstreamUnavailable(
                f"upstream too slow: {what} took longer than {self.key} ({self.seconds:g} s)"
            ) from error


class _Request:
    """``async with`` around one guarded GET, so every exit releases the connection."""

    def __init__(
        self, client: UpstreamClient, url: URL, headers: dict[str, str], same_origin_only: bool
    ) -> None:
        self._args = (client, url, headers, same_origin_only)
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        client, url, headers, same_origin_only = self._args
        self._response = await client.open_response(url, headers, same_origin_only)
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            self._response.release()


def _inflate(gzipped: bytes, declared: int) -> bytes:
    """Exactly the ``declared`` bytes a gzip member's trailer gives, or refused."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(gzipped, declared + 1)
    except zlib.error as error:
        raise UpstreamRejected("listing_malformed: bad gzip") from error
    if len(body) > declared or inflater.unconsumed_tail:
        raise UpstreamRejected("listing_malformed: gzip inflates past its declared size")
    if not inflater.eof:
        raise UpstreamRejected("listing_malformed: truncated gzip")
    return body


async def _read_capped(
    response: aiohttp.ClientResponse, limit: int, lease: Lease | None = None
) -> bytes:
    """The body, refused past ``limit``; each chunk taken from ``lease``'s budget first."""
    if response.content_length is not None and response.content_length > limit:
        raise UpstreamRejected("too_large: over the configured cap")
    parts: list[bytes] = []
    total = 0
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise UpstreamRejected("too_large: over the configured cap")
            if lease is not None:
                await lease.grow(len(chunk))
            parts.append(chunk)
    except (TimeoutError, aiohttp.ClientError) as error:
        raise UpstreamUnavailable(f"upstream read broke off: {type(error).__name__}") from error
    return b"".join(parts)


def _transfer_encoding(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Transfer-Encoding", "").lower()
