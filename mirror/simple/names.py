"""Project names as they arrive in request paths: validate, then normalise (PEP 503)."""

import re
from fnmatch import fnmatchcase

from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import InvalidProjectName

# The index's own grammar for project names; anything else is refused before any lookup.
MAX_NAME_CHARS = 255
_VALID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,253}[A-Za-z0-9])?", re.ASCII)


def normalized_project(raw: str) -> NormalizedName:
    """The normalised name, or InvalidProjectName for anything outside the grammar."""
    if not _VALID.fullmatch(raw):
        raise InvalidProjectName()
    return canonicalize_name(raw)


class ReservedNames:
    """Private names (exact, or globs such as ``acme-*``) that are never asked upstream.

    Asking would leak the name to the upstream's logs, and any answer invites
    dependency confusion.
    """

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._patterns = tuple(canonicalize_name(pattern, validate=False) for pattern in patterns)

    def __contains__(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self._patterns)
