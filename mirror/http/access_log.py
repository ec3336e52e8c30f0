"""The access log never keeps a secret a client put in a URL.

uvicorn logs each request's path with its query string. For the admin API the whole
query is replaced (``?[redacted]``), and so is any query, on any route, that carries a key
tokens are sent under by mistake (``?token=``): the admin API refuses and revokes such a
token, and the log must not keep a copy either.
"""

import logging
from urllib.parse import parse_qsl

ACCESS_LOGGER = "uvicorn.access"
ADMIN_PATHS = "/-/admin/"
QUERY_KEYS = frozenset({"token", "access_token", "api_key", "apikey", "key", "password"})
REDACTED = "[redacted]"
# uvicorn's access line: client, method, path with query, HTTP version, status.
_PATH_ARGUMENT, _ACCESS_ARGUMENTS = 2, 5


def redacted_target(target: str) -> str:
    """``target`` (a path and query, as logged) with a query that may hold a secret hidden."""
    path, has_query, query = target.partition("?")
    if not has_query:
        return target
    if path.startswith(ADMIN_PATHS) or _names_a_secret(query):
        return f"{path}?{REDACTED}"
    return target


def _names_a_secret(query: str) -> bool:
    pairs = parse_qsl(query, keep_blank_values=True)
    return any(key.strip().lower() in QUERY_KEYS for key, _ in pairs)


class RedactQueries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == _ACCESS_ARGUMENTS:
            target = args[_PATH_ARGUMENT]
            if isinstance(target, str):
                record.args = (
                    *args[:_PATH_ARGUMENT],
                    redacted_target(target),
                    *args[_PATH_ARGUMENT + 1 :],
                )
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger, once (logging config keeps it)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactQueries) for existing in logger.filters):
        logger.addFilter(RedactQueries())
