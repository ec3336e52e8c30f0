"""A project's releases as the index's JSON API shows them, from its vetted simple page.

The input is the PEP 691 page the catalog serves for ``/simple/<project>/``: it lists the
promoted files only, so everything built here is vetted by construction. Each file's URL
is resolved against that page's address exactly as an installer resolves it, so a lock
tool that matches this API's ``url`` to the link it found on the simple page (pip-tools
does) finds every file.

Only what the mirror knows is written out: no md5 (the upstream's simple page gives
sha256 only), no description, no dependencies (they would need the core metadata).
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from quarantine.filenames import UnservableFile, file_version

_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    filename: str
    version: str
    url: str  # absolute: the page's link resolved against the page's address
    sha256: str
    size: int | None
    upload_time: datetime | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; "": yanked without a reason


@dataclass(frozen=True, slots=True)
class Releases:
    name: NormalizedName
    files: Mapping[str, Sequence[ReleaseFile]]  # version -> its files, oldest version first

    def latest(self) -> str:
        """The version the index's project route describes: the newest one not yanked
        and not a pre-release, else the newest not yanked, else the newest."""
        return max(self.files, key=lambda version: self._preference(version))

    def _preference(self, version: str) -> tuple[bool, bool, tuple[int, Version | None, str]]:
        parsed = _parsed(version)
        stable = parsed is not None and not parsed.is_prerelease
        return not _all_yanked(self.files[version]), stable, _order(version)

    def find(self, requested: str) -> str | None:
        """The listed version ``requested`` names: its own spelling, else the one version
        equal to it under PEP 440 (``1.0.0`` finds ``1.0``); None when none or several."""
        if requested in self.files:
            return requested
        wanted = canonicalize_version(requested)
        equal = [version for version in self.files if canonicalize_version(version) == wanted]
        return equal[0] if len(equal) == 1 else None


def releases_from_page(body: bytes, page_url: str) -> Releases:
    """``body``: the project's PEP 691 JSON page; ``page_url``: where it is served."""
    page = json.loads(body)
    name = canonicalize_name(page["name"])
    resolve = _resolver(page_url)
    grouped: dict[str, list[ReleaseFile]] = {}
    for entry in page["files"]:
        try:
            version = file_version(name, entry["filename"])
        except UnservableFile:
            continue  # never promoted; listed by no page the mirror renders
        grouped.setdefault(version, []).append(_release_file(entry, version, resolve))
    ordered = sorted(grouped, key=_order)
    return Releases(name, {version: tuple(grouped[version]) for version in ordered})


def _resolver(page_url: str) -> Callable[[str], str]:
    """``urljoin(page_url, link)``; for the links the mirror writes (``../../files/...``
    below a page two levels deep), without its cost: 10,000 joins took 0.6 s."""
    root = urljoin(page_url, "../../")

    def resolve(link: str) -> str:
        rest = link[len("../../") :]
        if link.startswith("../../files/") and not any(mark in rest for mark in ("/.", "?", "#")):
            return root + rest
        return urljoin(page_url, link)

    return resolve


def _release_file(
    entry: Mapping[str, object], version: str, resolve: Callable[[str], str]
) -> ReleaseFile:
    yanked = entry.get("yanked", False)
    uploaded = entry.get("upload-time")
    size = entry.get("size")
    requires_python = entry.get("requires-python")
    hashes = entry["hashes"]
    assert isinstance(hashes, dict)
    return ReleaseFile(
        filename=str(entry["filename"]),
        version=version,
        url=resolve(str(entry["url"])),
        sha256=str(hashes["sha256"]),
        size=size if isinstance(size, int) else None,
        upload_time=datetime.fromisoformat(uploaded) if isinstance(uploaded, str) else None,
        requires_python=requires_python if isinstance(requires_python, str) else None,
        yanked=None if yanked is False else (yanked if isinstance(yanked, str) else ""),
    )


def project_json(releases: Releases) -> bytes:
    """``/pypi/<project>/json``: the latest release, and every release with its files."""
    latest = releases.latest()
    document = {
        "info": _info(releases, latest),
        "releases": {
            version: [_file_json(item) for item in files]
            for version, files in releases.files.items()
        },
        "urls": [_file_json(item) for item in releases.files[latest]],
    }
    return _JSON.encode(document).encode()


def release_json(releases: Releases, version: str) -> bytes:
    """``/pypi/<project>/<version>/json``: one release and its files."""
    document = {
        "info": _info(releases, version),
        "urls": [_file_json(item) for item in releases.files[version]],
    }
    return _JSON.encode(document).encode()


def _info(releases: Releases, version: str) -> dict[str, object]:
    files = releases.files[version]
    reasons = [item.yanked for item in files if item.yanked]
    requires_python = {item.requires_python for item in files}
    return {
        "name": releases.name,
        "version": version,
        # The index keeps one per release; the files here carry their own, and when
        # they disagree no single value would be true.
        "requires_python": requires_python.pop() if len(requires_python) == 1 else None,
        # A release counts as yanked when all its files are (a release yank yanks all).
        "yanked": _all_yanked(files),
        "yanked_reason": reasons[0] if reasons and _all_yanked(files) else None,
    }


def _file_json(item: ReleaseFile) -> dict[str, object]:
    wheel = item.filename.endswith(".whl")
    return {
        "filename": item.filename,
        "packagetype": "bdist_wheel" if wheel else "sdist",
        "python_version": _python_tags(item.filename) if wheel else "source",
        "url": item.url,
        "digests": {"sha256": item.sha256},
        "size": item.size,
        "upload_time": _seconds(item.upload_time),
        "upload_time_iso_8601": _iso_8601(item.upload_time),
        "requires_python": item.requires_python,
        "yanked": item.yanked is not None,
        "yanked_reason": item.yanked or None,
    }


def _python_tags(filename: str) -> str | None:
    """The wheel's Python tags as its filename joins them (``py2.py3``, ``cp312``)."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return None
    return ".".join(sorted({tag.interpreter for tag in tags}))


def _seconds(moment: datetime | None) -> str | None:
    """The index's ``upload_time``: UTC to the second, without a zone."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso_8601(moment: datetime | None) -> str | None:
    """The index's ``upload_time_iso_8601``: UTC, microseconds when there are any, ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _all_yanked(files: Sequence[ReleaseFile]) -> bool:
    return all(item.yanked is not None for item in files)


def _parsed(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _order(version: str) -> tuple[int, Version | None, str]:
    """PEP 440 order; versions it cannot parse first, by their text."""
    parsed = _parsed(version)
    return (0, None, version) if parsed is None else (1, parsed, version)
