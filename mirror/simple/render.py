"""Render the Simple API pages (PEP 503 HTML, PEP 691 JSON) from the ledger's records.

Only promoted files reach these functions' output; the caller filters. File URLs are
relative to the page (or under ``public_base_url``). Provenance URLs, which PEP 740 wants
fully qualified, are under ``public_base_url``; without it they are left starting at the
mirror's root, for ``mirror.simple.page`` to put the request's base in front of them.
"""

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from urllib.parse import quote

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from quarantine.clock import format_timestamp
from quarantine.models import FileRecord, ProjectRecord

API_VERSION = "1.4"
# One encoder for every page: json.dumps builds a new one per call when given options,
# and pages are plain trees (no cycles to check for).
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)
_JSON_HEAD = '{"meta":{"api-version":"' + API_VERSION + '"},"name":'


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """What the page says about files it does not list (PEP 691 reserves ``_`` keys)."""

    held: int
    next_release: datetime | None  # when the next cooling ends; never a time past


# The characters quote() leaves alone (its default ``safe="/"``): nearly every wheel and
# sdist name is made of them only, and quoting 10,000 names cost a big page 40 ms.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")


def file_path(record: FileRecord, base: str) -> str:
    name = record.filename
    return f"{base}files/{record.sha256}/{name if _UNQUOTED.fullmatch(name) else quote(name)}"


@dataclass(frozen=True, slots=True)
class Bases:
    """What a page's file and provenance URLs start with."""

    files: str
    provenance: str


def bases_for(public_base_url: str | None) -> Bases:
    if public_base_url:
        root = public_base_url.rstrip("/") + "/"
        return Bases(root, root)
    # From /simple/<name>/ the mirror's root is two levels up; provenance URLs start at
    # the root, and the request's base goes in front of them when the page is sent.
    return Bases("../../", "")


@functools.lru_cache(maxsize=4096)  # a big page's versions are looked at on each rebuild
def version_class(text: str) -> Version | str:
    """What a version equals others by: its PEP 440 value, or its text if it has none."""
    try:
        return Version(text)
    except InvalidVersion:
        return text


def page_versions(listed: Iterable[str], upstream: tuple[str, ...] | None) -> list[str]:
    """PEP 700 ``versions`` for files of the ``listed`` versions: each version once (PEP
    440-equal spellings are one version), spelled as the upstream lists it, else as the
    least of its files' spellings; unparsable ones first, then in PEP 440 order."""
    spellings = _upstream_spellings(upstream) if upstream else {}
    chosen: dict[Version | str, str] = {}
    for text in listed:
        key = version_class(text)
        current = chosen.get(key)
        if current is None:
            chosen[key] = spellings.get(key, text)
        elif key not in spellings and text < current:
            chosen[key] = text
    unparsable = sorted(text for key, text in chosen.items() if isinstance(key, str))
    parsed = sorted(key for key in chosen if isinstance(key, Version))
    return unparsable + [chosen[key] for key in parsed]


@functools.lru_cache(maxsize=256)  # one list per project, the same until it changes upstream
def _upstream_spellings(upstream: tuple[str, ...]) -> dict[Version | str, str]:
    spellings: dict[Version | str, str] = {}
    for text in sorted(upstream, reverse=True):  # of equal spellings, the least is kept
        spellings[version_class(text)] = text
    return spellings


def _yanked_json(record: FileRecord) -> bool | str:
    if record.yanked is None:
        return False
    return record.yanked or True


def project_json(
    project: ProjectRecord,
    files: list[FileRecord],
    held: HeldSummary,
    public_base_url: str | None = None,
) -> bytes:
    bases = bases_for(public_base_url)
    # One encoding of all the entries is the joined parts, at a fraction of the calls.
    entries = _JSON.encode([_file_json(record, bases) for record in files])[1:-1]
    versions = page_versions((record.version for record in files), project.versions)
    return json_from_parts(project, versions, (entries,), held)


def json_from_parts(
    project: ProjectRecord, versions: list[str], parts: Iterable[str], held: HeldSummary
) -> bytes:
    """The JSON page from its files' parts (``file_json_part``), in page order."""
    encode = _JSON.encode
    extra = ""
    if held.held:
        summary = {
            "held-files": held.held,
            "next-release": format_timestamp(held.next_release) if held.next_release else None,
        }
        extra = f',"_lazaretto":{encode(summary)}'
    return (
        f'{_JSON_HEAD}{encode(project.name)},"versions":{encode(versions)},'
        f'"files":[{",".join(parts)}],"project-status":{encode(_status_json(project))}{extra}}}'
    ).encode()


def file_json_part(record: FileRecord, bases: Bases) -> str:
    """One file's entry of the JSON page, encoded."""
    return _JSON.encode(_file_json(record, bases))


def _status_json(project: ProjectRecord) -> dict[str, str]:
    status = {"status": project.status.value}
    if project.status_reason:
        status["reason"] = project.status_reason
    return status


def _file_json(record: FileRecord, bases: Bases) -> dict[str, object]:
    url = file_path(record, bases.files)
    metadata: object = (
        {"sha256": record.core_metadata_sha256} if record.core_metadata_sha256 else False
    )
    entry: dict[str, object] = {
        "filename": record.filename,
        "url": url,
        "hashes": {"sha256": record.sha256},
        "requires-python": record.requires_python,
        "yanked": _yanked_json(record),
        "core-metadata": metadata,
        "dist-info-metadata": metadata,
        "provenance": _provenance(record, bases) if record.provenance_url else None,
    }
    # PEP 700 makes size mandatory. The upstream's, or the held bytes' (``mark_stored``):
    # a file the upstream gives none for is promoted only once its bytes are held
    # (``decide``). Unknown only for a file a person promoted before that, until its
    # first download.
    if record.size is not None:
        entry["size"] = record.size
    if record.upload_time is not None:
        entry["upload-time"] = format_timestamp(record.upload_time)
    return entry


def project_html(
    project: ProjectRecord,
    files: list[FileRecord],
    held: HeldSummary,
    public_base_url: str | None = None,
) -> bytes:
    bases = bases_for(public_base_url)
    return html_from_parts(project, [file_html_part(record, bases) for record in files], held)


def html_from_parts(project: ProjectRecord, parts: Iterable[str], held: HeldSummary) -> bytes:
    """The HTML page from its files' parts (``file_html_part``), in page order."""
    name = escape(project.name)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f'    <meta name="pypi:project-status" content="{escape(project.status.value)}">',
        f"    <title>Links for {name}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {name}</h1>",
    ]
    lines.extend(parts)
    if held.held:
        until = (
            f"next release {format_timestamp(held.next_release)}"
            if held.next_release
            else "no release time yet (waiting for vetting or a review)"
        )
        lines.append(f"    <!-- lazaretto: {held.held} file(s) held; {until} -->")
    lines.extend(["  </body>", "</html>", ""])
    return "\n".join(lines).encode()


def file_html_part(record: FileRecord, bases: Bases) -> str:
    """One file's line of the HTML page."""
    return f"    {_anchor(record, bases)}<br />"


def _anchor(record: FileRecord, bases: Bases) -> str:
    url = file_path(record, bases.files)
    attributes = [f'href="{escape(url)}#sha256={record.sha256}"']
    if record.requires_python:
        attributes.append(f'data-requires-python="{escape(record.requires_python)}"')
    if record.yanked is not None:
        attributes.append(f'data-yanked="{escape(record.yanked)}"')
    if record.core_metadata_sha256:
        value = f"sha256={record.core_metadata_sha256}"
        attributes.append(f'data-core-metadata="{value}" data-dist-info-metadata="{value}"')
    if record.provenance_url:
        attributes.append(f'data-provenance="{escape(_provenance(record, bases))}"')
    return f"<a {' '.join(attributes)}>{escape(record.filename)}</a>"


def _provenance(record: FileRecord, bases: Bases) -> str:
    return file_path(record, bases.provenance) + ".provenance"


def root_json(names: list[NormalizedName]) -> bytes:
    page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": name} for name in names]}
    return _JSON.encode(page).encode()


def root_html(names: list[NormalizedName]) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    lines.extend(f'    <a href="{quote(name)}/">{escape(name)}</a><br />' for name in names)
    lines.extend(["  </body>", "</html>", ""])
    return "\n".join(lines).encode()
