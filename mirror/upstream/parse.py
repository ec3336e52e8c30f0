"""Parse an upstream PEP 691 project page into a Snapshot, treating it as hostile input.

Duplicate keys, NaN, deep nesting, wrong types and a page for another project are all a
rejected listing, never a crash and never a partial read.

A file entry becomes its compact ``UpstreamFile`` as soon as the decoder has read it,
not after the whole page: a 15,000-file page (6 MB) then never holds a decoded object
tree of every entry at once (21 MB at its peak before, beside the page's bytes).
"""

import json
import re
from typing import Any, NoReturn

from packaging.utils import NormalizedName, canonicalize_name

from mirror.errors import UpstreamRejected
from quarantine.clock import parse_timestamp
from quarantine.models import ProjectStatus, Snapshot, UpstreamFile

# C0 and C1 controls (tab aside) never reach a page, a terminal or a log.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _reject(code: str) -> NoReturn:
    raise UpstreamRejected(code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _reject("listing_malformed: duplicate key")
        result[key] = value
    return result


# The keys that make an object a file entry: read into an UpstreamFile where it is decoded.
# Such an object anywhere else on a page fails the checks made there (fail closed).
_FILE_KEYS = ("filename", "url", "hashes")


def _entry_or_object(pairs: list[tuple[str, Any]]) -> UpstreamFile | dict[str, Any]:
    found = _no_duplicates(pairs)
    if all(key in found for key in _FILE_KEYS) and "files" not in found:
        return _file(found)
    return found


def _no_constants(name: str) -> NoReturn:
    _reject(f"listing_malformed: {name} is not JSON")


def load_json(body: bytes) -> Any:
    """The decoded page, each file entry in it already an ``UpstreamFile``."""
    try:
        return json.loads(body, object_pairs_hook=_entry_or_object, parse_constant=_no_constants)
    except RecursionError:
        _reject("listing_malformed: nested too deeply")
    except (ValueError, UnicodeDecodeError):
        _reject("listing_malformed: not valid JSON")


def clean_text(value: str) -> str:
    return _CONTROLS.sub("", value)


def parse_project_page(body: bytes, expected: NormalizedName) -> Snapshot:
    page = load_json(body)
    if not isinstance(page, dict):
        _reject("listing_malformed: not an object")
    name = page.get("name")
    if not isinstance(name, str) or canonicalize_name(name) != expected:
        _reject("listing_inconsistent: the page is for another project")
    files = page.get("files")
    if not isinstance(files, list):
        _reject("listing_malformed: files is not a list")
    entries = tuple(_entry(entry) for entry in files)
    if len({entry.filename for entry in entries}) != len(entries):
        _reject("listing_inconsistent: a filename is listed twice")
    status, reason = _status(page.get("project-status"))
    return Snapshot(
        name=expected,
        files=entries,
        status=status,
        status_reason=reason,
        serial=_serial(page.get("meta")),
        versions=_versions(page.get("versions")),
    )


def _versions(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None  # an upstream before PEP 700 (api-version 1.0)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        _reject("listing_malformed: versions")
    return tuple(clean_text(item) for item in value)


def _serial(meta: Any) -> int | None:
    if not isinstance(meta, dict):
        _reject("listing_malformed: meta is not an object")
    serial = meta.get("_last-serial")
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else None


def _status(value: Any) -> tuple[ProjectStatus, str | None]:
    if value is None:
        return ProjectStatus.ACTIVE, None
    if not isinstance(value, dict) or not isinstance(value.get("status"), str):
        _reject("listing_malformed: project-status")
    try:
        status = ProjectStatus(value["status"])
    except ValueError:
        # An unknown marker is treated as the most restrictive one: fail closed.
        status = ProjectStatus.QUARANTINED
    if status is ProjectStatus.REMOVED:
        _reject("listing_malformed: project-status")
    reason = value.get("reason")
    return status, clean_text(reason) if isinstance(reason, str) else None


def _entry(entry: Any) -> UpstreamFile:
    if isinstance(entry, UpstreamFile):
        return entry
    if not isinstance(entry, dict):
        _reject("listing_malformed: a file entry is not an object")
    return _file(entry)  # an entry without all of _FILE_KEYS: refused with the one it lacks


def _file(entry: dict[str, Any]) -> UpstreamFile:
    filename = _string(entry, "filename")
    url = _string(entry, "url")
    hashes = entry.get("hashes")
    if not isinstance(hashes, dict):
        _reject("listing_malformed: hashes")
    sha256 = hashes.get("sha256")
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=sha256 if isinstance(sha256, str) else None,
        size=_size(entry.get("size")),
        upload_time=_upload_time(entry.get("upload-time")),
        requires_python=_optional_text(entry.get("requires-python"), "requires-python"),
        yanked=_yanked(entry.get("yanked", False)),
        core_metadata_sha256=_metadata_hash(entry),
        provenance_url=_optional_text(entry.get("provenance"), "provenance"),
    )


def _string(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        _reject(f"listing_malformed: {key}")
    return value


def _optional_text(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        _reject(f"listing_malformed: {key}")
    return clean_text(value)


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _reject("listing_malformed: size")
    return value


def _upload_time(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        _reject("listing_malformed: upload-time")
    try:
        return parse_timestamp(value)
    except ValueError:
        _reject("listing_malformed: upload-time")


def _yanked(value: Any) -> str | None:
    if value is False or value is None:
        return None
    if value is True:
        return ""
    if isinstance(value, str):
        return clean_text(value)
    _reject("listing_malformed: yanked")


def _metadata_hash(entry: dict[str, Any]) -> str | None:
    value = entry.get("core-metadata", entry.get("dist-info-metadata", False))
    if value is False or value is None or value is True:
        # ``true`` promises metadata without a hash we could check it against: not offered.
        return None
    if not isinstance(value, dict):
        _reject("listing_malformed: core-metadata")
    digest = value.get("sha256")
    return digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest) else None
