"""The one-host lease: an exclusive ``flock`` on a file in the data directory."""

import fcntl
import os
from pathlib import Path

from quarantine.errors import LedgerError


class FileLease:
    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self._path = path
        self._descriptor: int | None = None

    def acquire(self) -> bool:
        if self._descriptor is not None:
            return True
        try:
            descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise LedgerError(
                f"cannot open the lease file {self._path}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def renew(self) -> bool:
        return self._descriptor is not None  # a flock is held until released or the end

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing drops the flock
            self._descriptor = None

    def close(self) -> None:
        self.release()
