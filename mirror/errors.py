"""Errors of the serving side. Each carries the HTTP status and a one-line reason.

The app turns any MirrorError into a response in one place (``mirror.app``); the reason
never echoes raw request input.
"""


class MirrorError(Exception):
    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(MirrorError):
    """A setting that cannot be used; the message names the key (and line, in a file)."""


class InvalidProjectName(MirrorError):
    status = 404

    def __init__(self) -> None:
        super().__init__("invalid project name")


class NotFound(MirrorError):
    status = 404


class NotAcceptable(MirrorError):
    status = 406


class FileNotAvailable(MirrorError):
    status = 404


class FileWithdrawn(MirrorError):
    status = 410


class FileRefused(MirrorError):
    """A deferred file vetted on its first download, and not promoted: 403."""

    status = 403


class VettingInProgress(MirrorError):
    """A deferred file's vetting gave no verdict within the wait: 503 (clients retry)."""

    status = 503


class UpstreamRejected(MirrorError):
    """The upstream answered, but not with something we may use: 502."""

    status = 502

    def __init__(self, code: str) -> None:
        super().__init__(f"upstream response rejected: {code}")
        self.code = code


class SizeMismatch(UpstreamRejected):
    """A complete file transfer of another size than the listing's: other bytes than the
    listed ones, as surely as a digest mismatch."""


class UpstreamUnavailable(MirrorError):
    """The upstream could not be reached in time: 504 when nothing is cached."""

    status = 504


class FetchBackingOff(MirrorError):
    """The file's last fetches failed: the next try waits for its backoff to end."""

    status = 503


class UpstreamGone(MirrorError):
    """The upstream says the project does not exist (404/410)."""

    status = 404


class BadRequest(MirrorError):
    status = 400


class LedgerUnavailable(MirrorError):
    """The upstream answered, but the ledger did not record the look (in time)."""

    status = 503
