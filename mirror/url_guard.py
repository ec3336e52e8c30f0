"""Which upstream URLs the mirror may fetch: the upstream is hostile input.

A file URL from a listing must resolve to the index's own origin, or to an https host the
operator allowed. No userinfo, no downgrade to plain http, no path tricks. The URL is
parsed with yarl, the parser aiohttp fetches with, so what is checked is what is fetched.
"""

from urllib.parse import urlsplit

from yarl import URL

from mirror.errors import UpstreamRejected


class UrlGuard:
    def __init__(self, index_url: str, file_hosts: tuple[str, ...]) -> None:
        self._index = URL(index_url)
        self._file_hosts = frozenset(host.lower() for host in file_hosts)

    @property
    def index(self) -> URL:
        return self._index

    def same_origin(self, url: URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self._index.scheme,
            self._index.host,
            self._index.port,
        )

    def check(self, raw: str, base: URL) -> URL:
        """The absolute URL to fetch for ``raw`` (found on page ``base``), or UpstreamRejected."""
        if any(character in raw for character in "\\\x00\r\n\t "):
            raise UpstreamRejected("offhost_url: control or separator characters")
        try:
            given = URL(raw)
            url = base.join(given)
            host = url.host
        except (ValueError, TypeError) as error:  # UnicodeError (IDNA) is a ValueError
            raise UpstreamRejected("offhost_url: unparseable") from error
        if given.scheme and not given.raw_host:
            raise UpstreamRejected("offhost_url: userinfo or no host")
        if _dot_segments(raw):
            raise UpstreamRejected("offhost_url: encoded separators or dot segments")
        if url.user is not None or url.password is not None or not host:
            raise UpstreamRejected("offhost_url: userinfo or no host")
        if (
            "%2f" in url.raw_path.lower()
            or "%5c" in url.raw_path.lower()
            or "/../" in url.path + "/"
        ):
            raise UpstreamRejected("offhost_url: encoded separators or dot segments")
        if self.same_origin(url):
            return url
        if url.scheme != "https":
            raise UpstreamRejected("offhost_url: plain http to another origin")
        if self._file_hosts and host.lower() not in self._file_hosts:
            raise UpstreamRejected("offhost_url: host not in file_hosts")
        return url


def _dot_segments(raw: str) -> bool:
    """A '.' or '..' segment (plain or %2e) in the path as written, before resolution.

    Only a relative reference may start by climbing from the page ('../../x').
    """
    parts = urlsplit(raw)
    segments = parts.path.split("/")
    start = 0
    if not parts.scheme and not parts.netloc and not parts.path.startswith("/"):
        while start < len(segments) and segments[start] in (".", ".."):
            start += 1
    return any(seg.lower().replace("%2e", ".") in (".", "..") for seg in segments[start:])
