"""Why a file's fetch failed, told apart for ``quarantine.vetting.fetch_retry``.

Only a digest mismatch, or a complete transfer of another size than listed, says the
upstream's bytes are wrong: a body cut short (or ended by a close, which a cut looks
like) says only that the transfer failed. A refusal our settings made (a size cap, a host, a
redirect) is a configuration failure; every other one is the transfer's.
"""

from mirror.blobs.interface import DigestMismatch, StoreUnavailable, TooLarge
from mirror.errors import MirrorError, SizeMismatch, UpstreamRejected
from quarantine.vetting.fetch_retry import FailureKind

# Codes of UpstreamRejected that our settings decide (file_hosts, upstream_private_networks).
_SETTINGS_CODES = ("offhost_url", "forbidden_address", "redirect_policy")


def failure_kind(error: MirrorError, declared_size: int | None, max_file_bytes: int) -> FailureKind:
    if isinstance(error, DigestMismatch | SizeMismatch):
        return FailureKind.DIGEST
    if isinstance(error, StoreUnavailable):
        return FailureKind.STORE
    if isinstance(error, TooLarge):
        # Over the declared size is the upstream sending too much; over the cap is the cap.
        if declared_size is None or declared_size > max_file_bytes:
            return FailureKind.CONFIG
        return FailureKind.TRANSIENT
    if isinstance(error, UpstreamRejected) and error.code.startswith(_SETTINGS_CODES):
        return FailureKind.CONFIG
    return FailureKind.TRANSIENT


def failure_reason(error: MirrorError, max_file_bytes: int) -> str:
    """One line saying what failed, without the generic prefix of upstream refusals."""
    if isinstance(error, UpstreamRejected):
        return error.code
    if isinstance(error, TooLarge):
        return f"too_large: {error.reason} (max_file_bytes is {max_file_bytes})"
    return error.reason
