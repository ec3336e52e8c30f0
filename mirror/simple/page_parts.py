"""A big project's page kept in parts, so a change re-renders only the files it touched.

Rebuilding a 10,000-file page from scratch reads every record and renders every entry,
hundreds of ms for one promoted file. Kept here instead: the project's records, each
listed file's rendered part (the HTML parts only once an HTML page is asked for: pip
and uv ask for JSON), the listed filenames in page order, and the page's versions, made
again only when a version comes or goes or the upstream spells them anew. A change brings
in only the rows the ledger wrote since (``files_changed_since``) and the page is
joined from the parts. The bytes are those a full render gives.

Not thread-safe: the catalog hands a project's parts to one thread at a time.
"""

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Sequence

from mirror.simple.render import (
    Bases,
    HeldSummary,
    file_html_part,
    file_json_part,
    html_from_parts,
    json_from_parts,
    page_versions,
)
from quarantine.decide import listed_unvetted
from quarantine.models import FileRecord, FileState, ProjectRecord
from quarantine.platforms import PlatformFilter

# Past this many changed records, sorting everything once beats inserting one by one.
BULK_CHANGES = 64
_HELD = (FileState.HELD, FileState.REVIEW)


class PageParts:
    def __init__(
        self,
        project: ProjectRecord,
        records: Sequence[FileRecord],
        bases: Bases,
        wheel_filter: PlatformFilter,
        vets_on_download: bool = True,
    ) -> None:
        self.project = project
        self._bases = bases
        self.wheel_filter = wheel_filter  # lists only its files; another filter, other parts
        # Deferred files are listed (``listed_unvetted``, when ``lists_deferred`` says so);
        # another answer, other parts.
        self.vets_on_download = vets_on_download
        self.records: dict[str, FileRecord] = {}
        self._json: dict[str, str] = {}  # listed files only (promoted, inside the filter)
        self._html: dict[str, str] | None = None
        self._order: list[str] = []  # listed filenames, in page order
        self._per_version: Counter[str] = Counter()  # listed files of each version
        self._versions: list[str] | None = None  # the page's, made anew when they change
        # Held or in review, inside the filter: the page's held-files note, without asking
        # the filter about every file of the project at each rebuild.
        self._held: dict[str, FileRecord] = {}
        self.update(project, records)

    @property
    def seq(self) -> int:
        """The project's seq these parts are up to date with."""
        return self.project.seq

    def update(self, project: ProjectRecord, changed: Sequence[FileRecord]) -> None:
        """Take the project record and the file records written since ``seq``."""
        one_by_one = len(changed) <= BULK_CHANGES
        if project.versions != self.project.versions:
            self._versions = None  # the upstream spells them anew
        for record in changed:
            before = self.records.get(record.filename)
            self.records[record.filename] = record
            if before is not None and before.filename in self._json:
                self._unlist(before, one_by_one)
            self._held.pop(record.filename, None)
            if not self.wheel_filter.admits(record.filename):
                continue
            if record.state is FileState.PROMOTED or listed_unvetted(record, self.vets_on_download):
                self._list(record, one_by_one)
            elif record.state in _HELD:
                self._held[record.filename] = record
        if not one_by_one:
            self._order = sorted(self._json)
        self.project = project  # last: the seq says every record above is in

    @property
    def held(self) -> list[FileRecord]:
        """The records held or in review, of files inside the filter."""
        return list(self._held.values())

    def json(self, held: HeldSummary) -> bytes:
        parts = [self._json[filename] for filename in self._order]
        if self._versions is None:
            self._versions = page_versions(self._per_version, self.project.versions)
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
        if self._per_version[version] == 1:
            self._versions = None
        if one_by_one:
            insort(self._order, filename)

    def _unlist(self, record: FileRecord, one_by_one: bool) -> None:
        filename, version = record.filename, record.version
        del self._json[filename]
        if self._html is not None:
            del self._html[filename]
        self._per_version[version] -= 1
        if self._per_version[version] == 0:
            del self._per_version[version]
            self._versions = None
        if one_by_one:
            del self._order[bisect_left(self._order, filename)]
