"""The ``ledger`` setting: "sqlite" or a PostgreSQL URL, and that URL as messages show it."""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
