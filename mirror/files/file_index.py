"""File states by (sha256, filename), kept in memory and in step with the ledger.

Every file request checks the state (URLs can be guessed or cached), but not with a
database round trip: records are cached here and dropped whenever the ledger says their
project changed (the same signal that drops rendered pages).
"""

import asyncio
from collections.abc import Iterable

from packaging.utils import NormalizedName

from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord

MAX_RECORDS = 200_000  # past this the cache starts over; it refills from the ledger


class FileIndex:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._records: dict[tuple[str, str], FileRecord] = {}
        self._by_project: dict[NormalizedName, set[tuple[str, str]]] = {}
        self._forgets = 0  # a read that a forget came during is not kept

    async def get(self, sha256: str, filename: str) -> FileRecord | None:
        """From memory, else read from the ledger in a thread: beside a thread that steps
        through rows, a read on the event loop waited for the GIL (44 ms in the first-use
        replay) and every request with it. A record read while the ledger told of a change
        is answered but not kept: it may be from before the change."""
        record = self._records.get((sha256, filename))
        if record is not None:
            return record
        forgets = self._forgets
        record = await asyncio.to_thread(self._ledger.file_by_digest, sha256, filename)
        if record is not None and forgets == self._forgets:
            self.put(record)
        return record

    def cached(self, sha256: str, filename: str) -> FileRecord | None:
        """Only what is already in memory (the fast path never waits on the ledger)."""
        return self._records.get((sha256, filename))

    def put(self, record: FileRecord) -> None:
        if len(self._records) >= MAX_RECORDS:
            self._records.clear()
            self._by_project.clear()
        key = (record.sha256, record.filename)
        self._records[key] = record
        self._by_project.setdefault(record.project, set()).add(key)

    def forget(self, projects: Iterable[NormalizedName]) -> None:
        self._forgets += 1
        for project in projects:
            for key in self._by_project.pop(project, ()):
                self._records.pop(key, None)
