"""The release a recorded file belongs to: for ``explain X==VERSION`` and for ordering.

A file the mirror holds or serves has the version packaging read from its name. A file
rejected because packaging could not read its name (an ``.egg``, an installer, an archive
kind the mirror refuses) has none recorded; its release is read from its name the way
pip reads a name it cannot parse: after the parts that spell the project, the longest
leading run of dot-separated pieces that is a version (``X-1.0.win32.exe`` is 1.0).
"""

from collections.abc import Iterable

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from quarantine.models import FileRecord


def release_of(record: FileRecord) -> Version | None:
    """The file's release, or None when neither its record nor its name says one."""
    if record.version:
        try:
            return Version(record.version)
        except InvalidVersion:
            pass
    return version_in_name(record.project, record.filename)


def version_in_name(project: NormalizedName, filename: str) -> Version | None:
    parts = filename.split("-")
    for cut in range(1, len(parts)):
        if canonicalize_name("-".join(parts[:cut]), validate=False) == project:
            return _leading_version(parts[cut])
    return None


def _leading_version(text: str) -> Version | None:
    pieces = text.split(".")
    for end in range(len(pieces), 0, -1):
        try:
            return Version(".".join(pieces[:end]))
        except InvalidVersion:
            continue
    return None


def newest_first(records: Iterable[FileRecord]) -> list[FileRecord]:
    """Newest release first, compared as versions (10.0 after 9.0); files of one release by
    name; files with no readable release last, by name. The same order every time."""
    by_name = sorted(records, key=lambda record: record.filename)
    releases = [(release_of(record), record) for record in by_name]
    known = [(version, record) for version, record in releases if version is not None]
    known.sort(key=lambda pair: pair[0], reverse=True)  # stable: names stay in order
    return [record for _, record in known] + [
        record for version, record in releases if version is None
    ]
