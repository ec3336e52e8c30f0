"""A big project's page kept in parts, so a change re-renders only the files it touched.

Rebuilding a 10,000-file page from scratch reads every record and renders every entry,
hundreds of ms for one promoted file. Kept here instead: the project's records, each
listed file's rendered part (the HTML parts only once an HTML page is asked for: pip
and uv ask for JSON), the listed filenames and versions in page order. A change brings
in only the rows the ledger wrote since (``files_changed_since``) and the page is
joined from the parts. The bytes are those a full render gives.

Not thread-safe: the catalog hands a project's parts to one thread at a time.
"""

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Sequence

from packaging.version import Version

from mirror.render import (
    Bases,
    HeldSummary,
    file_html_part,
    file_json_part,
    html_from_parts,
    json_from_parts,
    sorted_versions,
    version_order,
)
from quarantine.models import FileRecord, FileState, ProjectRecord

# Past this many changed records, sorting everything once beats inserting one by one.
BULK_CHANGES = 64


class PageParts:
    def __init__(self, project: ProjectRecord, records: Sequence[FileRecord], bases: Bases) -> None:
        self.project = project
        self._bases = bases
        self.records: dict[str, FileRecord] = {}
        self._json: dict[str, str] = {}  # listed files only (promoted)
        self._html: dict[str, str] | None = None
        self._order: list[str] = []  # listed filenames, in page order
        self._per_version: Counter[str] = Counter()  # listed files of each version
        self._versions: list[str] = []  # in page order
        self._version_keys: dict[str, tuple[int, Version | str, str]] = {}
        self.update(project, records)

    @property
    def seq(self) -> int:
        """The project's seq these parts are up to date with."""
        return self.project.seq

    def update(self, project: ProjectRecord, changed: Sequence[FileRecord]) -> None:
        """Take the project record and the file records written since ``seq``."""
        one_by_one = len(changed) <= BULK_CHANGES
        for record in changed:
            before = self.records.get(record.filename)
            self.records[record.filename] = record
            if before is not None and before.state is FileState.PROMOTED:
                self._unlist(before, one_by_one)
            if record.state is FileState.PROMOTED:
                self._list(record, one_by_one)
        if not one_by_one:
            self._order = sorted(self._json)
            self._versions = sorted_versions(self._per_version)
        self.project = project  # last: the seq says every record above is in

    def json(self, held: HeldSummary) -> bytes:
        parts = [self._json[filename] for filename in self._order]
        return json_from_parts(self.project, self._versions, parts, held)

    def html(self, held: HeldSummary) -> bytes:
        if self._html is None:
            self._html = {
                filename: file_html_part(self.records[filename], self._bases)
                for filename in self._order
            }
        html = self._html
        return html_from_parts(self.project, [html[filename] for filename in self._order], held)

    def _list(self, record: FileRecord, one_by_one: bool) -> None:
        filename, version = record.filename, record.version
        self._json[filename] = file_json_part(record, self._bases)
        if self._html is not None:
            self._html[filename] = file_html_part(record, self._bases)
        self._per_version[version] += 1
        if one_by_one:
            insort(self._order, filename)
            if self._per_version[version] == 1:
                insort(self._versions, version, key=self._version_key)

    def _unlist(self, record: FileRecord, one_by_one: bool) -> None:
        filename, version = record.filename, record.version
        del self._json[filename]
        if self._html is not None:
            del self._html[filename]
        self._per_version[version] -= 1
        gone = self._per_version[version] == 0
        if gone:
            del self._per_version[version]
        if one_by_one:
            del self._order[bisect_left(self._order, filename)]
            if gone:
                key = self._version_key(version)
                del self._versions[bisect_left(self._versions, key, key=self._version_key)]

    def _version_key(self, version: str) -> tuple[int, Version | str, str]:
        key = self._version_keys.get(version)
        if key is None:
            key = self._version_keys[version] = version_order(version)
        return key
