"""Behind nginx (``accel_redirect``): the app decides, nginx sends the bytes.

The file route has checked the file (promoted, its bytes verified before they were stored)
before it asks here; its answer is then the headers and ``X-Accel-Redirect`` to nginx's
internal location, which no client can reach by guessing its URL (``internal``: 404):

- blobs on disk: ``<prefix>ab/cd/<sha256>``, a path under the location's alias of the blob
  directory;
- blobs in S3: ``<prefix><host[:port]><path>?<signed query>``, a GET of the object signed
  for a short while. nginx proxies it to the S3 endpoint it is configured with, sending
  that Host (the signature covers it) and none of the client's headers.
"""

from urllib.parse import urlsplit

from mirror.blobs.interface import BlobStore, StoreUnavailable
from mirror.blobs.s3_options import UNESCAPED
from quarantine.models import FileRecord


async def accel_target(record: FileRecord, blobs: BlobStore, prefix: str) -> str | None:
    """Where nginx finds the verified blob of ``record``; None when the mirror sends it
    itself (not stored yet: fetched, verified and sent while it is stored)."""
    # A blob is on disk only once verified; a cached record's "stored" may lag behind.
    path = blobs.local_path(record.sha256)
    if path is not None:
        return prefix + "/".join(path.parts[-3:])  # ab/cd/<sha256>, under the blob directory
    # A bucket's object is written only once its bytes were verified. A record's "stored"
    # may lag behind here too (this process's memory of it was taken during the upload,
    # or another replica stored it): the store then tells, from memory after once.
    if not (record.stored or await blobs.contains(record.sha256)):
        return None
    url = await blobs.signed_url(record.sha256)
    return None if url is None else prefix + _proxied(url)


def _proxied(url: str) -> str:
    """``host[:port]/path?query`` of a signed URL, which nginx's internal location splits."""
    parts = urlsplit(url)
    if not UNESCAPED.fullmatch(parts.path):  # settings check the prefix: never, then
        raise StoreUnavailable(
            f"the blob key {parts.path!r} holds characters nginx would escape again, which "
            "breaks its signature: give blob_store a prefix of letters, digits and . _ ~ - /"
        )
    return f"{parts.netloc}{parts.path}?{parts.query}"
