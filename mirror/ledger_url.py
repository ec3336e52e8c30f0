"""The ``ledger`` setting: "sqlite" or a PostgreSQL URL, and that URL as messages show it."""

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mirror.config_values import as_str

SQLITE = "sqlite"
_SCHEMES = ("postgresql", "postgres")


def as_ledger(value: Any) -> str:
    """``"sqlite"`` or a ``postgresql://`` URL (raises ValueError naming what is wrong)."""
    text = as_str(value).strip()
    if text == SQLITE:
        return text
    if urlsplit(text).scheme not in _SCHEMES:
        raise ValueError(
            f'{redacted(text)!r} is neither "sqlite" nor a postgresql:// URL such as '
            "postgresql://lazaretto@db.internal:5432/lazaretto"
        )
    import psycopg  # here: a SQLite mirror's commands never pay for importing it
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(text)
    except psycopg.ProgrammingError as error:
        raise ValueError(f"{redacted(text)!r} is not a valid PostgreSQL URL: {error}") from None
    return text


_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redacted(url: str) -> str:
    """The URL with any password (in its user part or its query) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(key, "***" if key in _SECRET_PARAMETERS else value) for key, value in pairs]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts)
