"""Project names as they arrive in request paths: validate, then normalise (PEP 503)."""

import re

from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import InvalidProjectName

# The index's own grammar for project names; anything else is refused before any lookup.
_VALID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,253}[A-Za-z0-9])?", re.ASCII)


def normalized_project(raw: str) -> NormalizedName:
    """The normalised name, or InvalidProjectName for anything outside the grammar."""
    if not _VALID.fullmatch(raw):
        raise InvalidProjectName()
    return canonicalize_name(raw)
