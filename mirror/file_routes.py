"""``/files/<sha256>/<filename>``: promoted bytes only, by any URL.

The state is checked on every request (URLs can be guessed or cached); a file that is not
promoted never yields a byte. Established files are fetched on first request and checked
against the listed digest before the first byte is sent. A deferred file is vetted on
its first download, which waits for the verdict (``mirror.deferred_downloads``).
"""

import asyncio
import contextlib
import logging
from datetime import datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from mirror.blobs import DigestMismatch, TooLarge
from mirror.errors import (
    FileNotAvailable,
    FileWithdrawn,
    MirrorError,
    NotFound,
    UpstreamRejected,
)
from mirror.mapped_file import MappedFileResponse, OpenFile
from mirror.services import Services
from quarantine.clock import format_timestamp
from quarantine.decide import current_reason, hold_until
from quarantine.errors import StaleTransition
from quarantine.feeds import with_advisories
from quarantine.models import FileRecord, FileState

log = logging.getLogger(__name__)

_FILE_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}
PROVENANCE_TYPE = "application/vnd.pypi.integrity.v1+json"
OCTET_STREAM = "application/octet-stream"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _split(name: str) -> tuple[str, str]:
    for suffix in (".metadata", ".provenance"):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def check_servable(record: FileRecord, services: Services) -> None:
    if record.state is FileState.PROMOTED:
        return
    if record.state in (FileState.WITHDRAWN, FileState.BLOCKED):
        raise FileWithdrawn(f"withdrawn: {record.reason}")
    if record.state is FileState.REVIEW:
        raise FileNotAvailable(f"not available: held for review ({record.reason})")
    if record.state is FileState.HELD:
        raise FileNotAvailable(f"not available: {_held_note(record, services)}")
    raise FileNotAvailable(f"not available: {record.state.value} ({record.reason})")


def _held_note(record: FileRecord, services: Services) -> str:
    """Why a held file is not served, as things stand now; never a release time past."""
    policy = services.policy.current()
    outside = policy.exclusion(record.filename)
    if outside is not None:
        return f"{outside} (platforms, python_versions): never fetched nor served"
    project = services.ledger.project(record.project)
    now = services.clock.now()
    reason = record.reason
    if project is not None:
        stored = services.ledger.evidence(record.project, record.filename)
        evidence = with_advisories(record, stored, services.feeds)
        frozen = services.ledger.freeze_reason()
        reason = current_reason(record, project, policy, now, frozen, evidence)
    until: datetime = hold_until(record, policy)
    if until > now:
        return f"held until {format_timestamp(until)} ({reason})"
    return f"held; its cooling ended {format_timestamp(until)} ({reason})"


class _LargeFileResponse(FileResponse):
    """For range requests (starlette parses and answers those)."""

    chunk_size = 1024 * 1024  # fewer thread hops per megabyte than the default 64 KiB


async def serve_file(request: Request) -> Response:
    services = _services(request)
    filename, suffix = _split(request.path_params["filename"])
    record = await services.catalog.file_record(request.path_params["sha256"], filename)
    if record is None:
        raise NotFound("not found")
    if services.deferred.applies(record):
        record = await services.deferred.promoted(record)  # vetted first, on this download
    check_servable(record, services)
    if suffix == ".metadata":
        return await _metadata(record, services)
    if suffix == ".provenance":
        return await _provenance(record, services)
    headers = {**_FILE_HEADERS, "ETag": f'"{record.sha256}"'}
    ranged = "range" in request.headers
    cached = None if ranged else services.blob_cache.get(record.sha256)
    if cached is not None:
        return Response(cached, headers=headers, media_type=OCTET_STREAM)
    found = await _verified_file(record, services, ranged)
    if found is None:
        return StreamingResponse(
            services.blobs.read(record.sha256), headers=headers, media_type=OCTET_STREAM
        )
    return _send(found, record.sha256, headers, services, ranged)


async def _verified_file(
    record: FileRecord, services: Services, ranged: bool
) -> bytes | OpenFile | Path | None:
    """The file's verified bytes, fetching an established file on first request (a range
    is sent from the stored file, so it waits for that)."""
    if record.stored:
        return await _checked_file(record, services, ranged)
    # The metadata file is fetched beside the file rather than after it, so an outage
    # later serves both without the first download waiting for two fetches in a row.
    found, _ = await asyncio.gather(
        _checked_file(record, services, ranged), _keep_metadata(record, services)
    )
    current = services.ledger.file(record.project, record.filename)
    if current is not None:
        services.catalog.files.put(current)
    return found


async def _checked_file(
    record: FileRecord, services: Services, ranged: bool
) -> bytes | OpenFile | Path | None:
    artifacts = services.artifacts
    try:
        found = await (artifacts.ensure_file(record) if ranged else artifacts.file_to_serve(record))
    except (DigestMismatch, TooLarge, UpstreamRejected) as error:
        reason = (
            f"hash_mismatch: {error.reason}" if isinstance(error, DigestMismatch) else error.reason
        )
        with contextlib.suppress(StaleTransition):  # concurrent requests: one records it
            services.ledger.transition(
                record, FileState.REJECTED, reason, "system:file-route", services.clock.now()
            )
        services.catalog.sync()
        raise UpstreamRejected(f"file_rejected: {_refusal(error)}") from error
    return found


def _refusal(error: MirrorError) -> str:
    """The true reason, once: a size, encoding or host refusal is no digest mismatch."""
    if isinstance(error, DigestMismatch):
        return "its bytes do not match the listed digest"
    if isinstance(error, UpstreamRejected):
        return error.code
    return f"too_large: {error.reason}"


def _send(
    found: bytes | OpenFile | Path,
    digest: str,
    headers: dict[str, str],
    services: Services,
    ranged: bool,
) -> Response:
    # Bytes and an open file are verified, and still being made durable.
    if isinstance(found, bytes):
        services.blob_cache.put(digest, found)
        return Response(found, headers=headers, media_type=OCTET_STREAM)
    if isinstance(found, OpenFile):
        return MappedFileResponse(found, found.size, headers, OCTET_STREAM)
    return _from_disk(found, digest, headers, services, ranged)


def _from_disk(
    path: Path, digest: str, headers: dict[str, str], services: Services, ranged: bool
) -> Response:
    facts = path.stat()
    if not ranged and facts.st_size <= services.blob_cache.max_blob_bytes:
        body = path.read_bytes()  # small and usually in the page cache: cheaper than a thread
        services.blob_cache.put(digest, body)
        return Response(body, headers=headers, media_type=OCTET_STREAM)
    if not ranged:
        return MappedFileResponse(path, facts.st_size, headers, OCTET_STREAM)
    return _LargeFileResponse(path, headers=headers, media_type=OCTET_STREAM, stat_result=facts)


async def _keep_metadata(record: FileRecord, services: Services) -> None:
    """Fetched on first download with the file, so an outage later serves both (its
    download is done when this returns; making it durable needs no upstream)."""
    try:
        await services.artifacts.metadata_to_serve(record)
    except MirrorError as error:
        log.warning("metadata of %s not kept: %s", record.filename, error.reason)
        if isinstance(error, DigestMismatch):
            services.catalog.sync()  # no longer offered: the pages show it now


async def _metadata(record: FileRecord, services: Services) -> Response:
    if record.core_metadata_sha256 is None:
        raise NotFound("not found: no metadata file for this distribution")
    try:
        found = await services.artifacts.metadata_to_serve(record)
    except (DigestMismatch, TooLarge) as error:
        services.catalog.sync()  # a mismatch is no longer offered: the pages show it now
        raise UpstreamRejected("metadata_rejected: does not match the listed digest") from error
    headers = {**_FILE_HEADERS, "ETag": f'"{record.core_metadata_sha256}"'}
    if found is None:
        return StreamingResponse(services.blobs.read(record.core_metadata_sha256), headers=headers)
    return _send(found, record.core_metadata_sha256, headers, services, ranged=False)


async def _provenance(record: FileRecord, services: Services) -> Response:
    digest = await services.artifacts.ensure_provenance(record)
    if digest is None:
        raise NotFound("not found: no provenance for this file")
    headers = {**_FILE_HEADERS, "ETag": f'"{digest}"'}
    path = services.blobs.local_path(digest)
    if path is not None:
        return FileResponse(path, headers=headers, media_type=PROVENANCE_TYPE)
    return StreamingResponse(
        services.blobs.read(digest), headers=headers, media_type=PROVENANCE_TYPE
    )
