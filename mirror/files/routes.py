"""``/files/<sha256>/<filename>``: promoted bytes only, by any URL.

The state is checked on every request (URLs can be guessed or cached); a file that is not
promoted never yields a byte. Established files are fetched on first request and checked
against the listed digest before the first byte is sent. A deferred file is vetted on
its first download, which waits for the verdict (``mirror.files.deferred_downloads``).
"""

import asyncio
import hashlib
import logging
from datetime import datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from mirror.blobs.interface import DigestMismatch, StoreUnavailable, TooLarge
from mirror.errors import (
    FileNotAvailable,
    FileWithdrawn,
    MirrorError,
    NotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from mirror.files.accel_redirect import accel_target
from mirror.files.fetch_backoff import count_failure, not_while_backing_off, reject
from mirror.files.mapped_file import MappedFileResponse, OpenFile
from mirror.services import Services
from quarantine.clock import format_timestamp
from quarantine.decide import current_reason, hold_until
from quarantine.feeds.in_force import with_advisories
from quarantine.models import FileRecord, FileState
from quarantine.source import FetchFailed, IntegrityFailure
from quarantine.vetting.fetch_retry import COUNTED, FailureKind, refusal

log = logging.getLogger(__name__)
ACTOR = "system:file-route"
DIGEST_REFUSAL = "its bytes do not match the listed digest"

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
    # An install: a whole file, by GET (a range is a resolver peeking at a wheel's metadata),
    # whoever sends its bytes.
    if services.downloads is not None and not ranged and request.method == "GET":
        services.downloads.note(request.scope, record)
    accel = await _accel_redirect(record, headers, services)
    if accel is not None:
        return accel
    cached = None if ranged else services.blob_cache.get(record.sha256)
    if cached is not None:
        return Response(cached, headers=headers, media_type=OCTET_STREAM)
    found = await _verified_file(record, services, ranged)
    if found is None:
        small = record.size is not None and record.size <= services.blob_cache.max_blob_bytes
        return await _from_store(record.sha256, headers, OCTET_STREAM, services, redirect=not small)
    return _send(found, record.sha256, headers, services, ranged)


async def _accel_redirect(
    record: FileRecord, headers: dict[str, str], services: Services
) -> Response | None:
    """Behind nginx (``accel_redirect``): a stored, verified blob is sent by nginx, from
    disk or from the bucket, ranges included; the answer here is only its headers. Not
    yet stored: None."""
    prefix = services.settings.accel_redirect
    if prefix is None:
        return None
    target = await accel_target(record, services.blobs, prefix)
    if target is None:
        return None
    return Response(b"", headers={**headers, "X-Accel-Redirect": target}, media_type=OCTET_STREAM)


async def _from_store(
    digest: str, headers: dict[str, str], media_type: str, services: Services, *, redirect: bool
) -> Response:
    """A blob the store keeps no local file of (an object store): a redirect to a
    short-lived URL of the store's when it is set to give those, else the bytes through
    the mirror. A small blob is read whole, checked and kept in memory: the fast path
    then answers it, and a redirect would cost more than its bytes. A range is not
    honoured here: the whole file is a valid answer to it."""
    if redirect:
        url = await services.blobs.presigned_url(digest)
        if url is not None:  # the URL expires: neither it nor the redirect may be cached
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    body = await services.blobs.open(digest)  # an unreachable store: 503 before any byte
    if body.size > services.blob_cache.max_blob_bytes:
        # The store holds back the last chunk until the digest matched: a changed object's
        # response ends short of this length, which every client treats as a failure.
        sized = {**headers, "Content-Length": str(body.size)}
        return StreamingResponse(body.chunks, headers=sized, media_type=media_type)
    whole = b"".join([chunk async for chunk in body.chunks])
    if hashlib.sha256(whole).hexdigest() != digest:
        raise StoreUnavailable(f"blob {digest} in the blob store does not match its digest")
    services.blob_cache.put(digest, whole)
    return Response(whole, headers=headers, media_type=media_type)


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
    if not record.stored:
        _not_while_backing_off(record, services)
    try:
        found = await (artifacts.ensure_file(record) if ranged else artifacts.file_to_serve(record))
    except MirrorError as error:
        failure = artifacts.failure(error, record)
        if isinstance(failure, IntegrityFailure):
            _reject(record, refusal(FailureKind.DIGEST, str(failure)), services)
            raise UpstreamRejected(f"file_rejected: {DIGEST_REFUSAL}") from error
        if failure.kind not in COUNTED:
            raise
        refused = _count_failure(record, failure, services)
        if isinstance(error, UpstreamUnavailable) and not refused:
            raise
        verdict = "file_rejected" if refused else "file_unavailable"
        raise UpstreamRejected(f"{verdict}: {failure.reason}") from error
    return found


def _not_while_backing_off(record: FileRecord, services: Services) -> None:
    fetch_settings = services.artifacts.fetch_settings
    not_while_backing_off(record, services.ledger, fetch_settings, services.clock.now())


def _count_failure(record: FileRecord, failure: FetchFailed, services: Services) -> bool:
    refused = count_failure(record, failure, services.ledger, ACTOR, services.clock.now())
    if refused:
        services.catalog.sync()
    return refused


def _reject(record: FileRecord, reason: str, services: Services) -> None:
    reject(record, reason, services.ledger, ACTOR, services.clock.now())
    services.catalog.sync()


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
        digest = record.core_metadata_sha256
        return await _from_store(digest, headers, OCTET_STREAM, services, redirect=False)
    return _send(found, record.core_metadata_sha256, headers, services, ranged=False)


async def _provenance(record: FileRecord, services: Services) -> Response:
    digest = await services.artifacts.ensure_provenance(record)
    if digest is None:
        raise NotFound("not found: no provenance for this file")
    headers = {**_FILE_HEADERS, "ETag": f'"{digest}"'}
    path = services.blobs.local_path(digest)
    if path is not None:
        return FileResponse(path, headers=headers, media_type=PROVENANCE_TYPE)
    return await _from_store(digest, headers, PROVENANCE_TYPE, services, redirect=False)
