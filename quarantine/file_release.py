"""The release a recorded file belongs to: for ``explain X==VERSION`` and for ordering.

A file the mirror holds or serves has the version packaging read from its name. A file
rejected because its name could not be read (an ``.egg``, an installer, an archive kind
the mirror refuses) has none recorded; its release is read from its name with pip's rule
for an sdist's name (:func:`~quarantine.filenames.version_text`), then the longest
leading run of dot-separated pieces that is a version (``X-1.0.win32.exe`` is 1.0,
``X-1.2.0-1.tar.zst`` 1.2.0.post1). Wheels, eggs and rpms name their version in one
``-``-separated field (what follows it is a build tag, a Python tag or an rpm release).
"""

from collections.abc import Iterable

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.filenames import archive_suffix, version_or_none, version_text
from quarantine.models import FileRecord

_VERSION_IN_ONE_FIELD = (".whl", ".egg", ".rpm")


def release_of(record: FileRecord) -> Version | None:
    """The file's release, or None when neither its record nor its name says one."""
    recorded = version_or_none(record.version)
    if recorded is not None:
        return recorded
    return version_in_name(record.project, record.filename)


def version_in_name(project: NormalizedName, filename: str) -> Version | None:
    text = version_text(project, filename)
    if text is None:
        return None
    if archive_suffix(filename) in _VERSION_IN_ONE_FIELD:
        text = text.split("-", 1)[0]
    return _leading_version(text)


def _leading_version(text: str) -> Version | None:
    pieces = text.split(".")
    for end in range(len(pieces), 0, -1):
        version = version_or_none(".".join(pieces[:end]))
        if version is not None:
            return version
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
