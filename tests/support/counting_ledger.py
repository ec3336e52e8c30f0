"""The real SQLite ledger, counting what it is asked for: for tests and benchmarks that
show a project's history is read once, not once per file."""

from pathlib import Path

from packaging.utils import NormalizedName

from quarantine.ledger.sqlite import SqliteLedger
from quarantine.models import FileRecord


class CountingLedger(SqliteLedger):
    """The real ledger, counting whole-project reads and the rows they return."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.files_calls = 0
        self.rows_read = 0

    def files(self, project: NormalizedName) -> list[FileRecord]:
        found = super().files(project)
        self.files_calls += 1
        self.rows_read += len(found)
        return found

    def files_changed_since(self, project: NormalizedName, seq: int) -> list[FileRecord]:
        found = super().files_changed_since(project, seq)
        self.rows_read += len(found)
        return found
