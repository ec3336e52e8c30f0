"""A project's trusted release history, read from the ledger once and then kept in step.

Every file is judged against the project's earlier trusted (promoted) releases: the
publisher of the last few, and the previous release's content summary. Reading the whole
project for each file made vetting N files of a project cost N full reads (regex has
9,220 files, pydantic-core 15,057). Here a project is read once; afterwards only the rows
written since the project's change counter (``ProjectRecord.seq``) last moved are read
again, so a promotion or a withdrawal between two files is seen by the second.

Only what a judgement needs is kept (a filename and whether it is attested, per trusted
file): a big project costs a few MB, and only the most recently used projects are kept.
"""

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.filenames import version_or_none
from quarantine.ledger import Ledger
from quarantine.models import FileRecord, FileState

TRUSTED = (FileState.PROMOTED,)  # only vetted or established files set the baseline
KEPT_PROJECTS = 16


def file_kind(filename: str) -> str:
    return "wheel" if filename.endswith(".whl") else "sdist"


@dataclass(frozen=True, slots=True)
class EarlierRelease:
    """One trusted release before the judged file's, by the names of its trusted files."""

    version: Version
    filenames: tuple[str, ...]  # sorted, as the ledger lists a project's files
    attested: tuple[str, ...]  # those with a provenance URL, sorted

    def first_of_kind(self, kind: str) -> str | None:
        return next((name for name in self.filenames if file_kind(name) == kind), None)


@dataclass
class _Project:
    seq: int
    trusted: dict[str, tuple[Version, bool]] = field(default_factory=dict)  # name: (v, attested)
    releases: dict[Version, dict[str, bool]] = field(default_factory=dict)
    versions: list[Version] = field(default_factory=list)  # sorted keys of ``releases``

    def take(self, record: FileRecord) -> None:
        """Fold one current ledger row in (it may leave, join or move within the history)."""
        self._drop(record.filename)
        version = version_or_none(record.version)
        if version is None or record.state not in TRUSTED:
            return
        attested = record.provenance_url is not None
        self.trusted[record.filename] = (version, attested)
        release = self.releases.get(version)
        if release is None:
            release = self.releases[version] = {}
            bisect.insort(self.versions, version)
        release[record.filename] = attested

    def _drop(self, filename: str) -> None:
        known = self.trusted.pop(filename, None)
        if known is None:
            return
        version = known[0]
        release = self.releases[version]
        del release[filename]
        if not release:
            del self.releases[version]
            del self.versions[bisect.bisect_left(self.versions, version)]

    def before(self, version: Version) -> list[Version]:
        """Trusted versions older than ``version``, oldest first."""
        return self.versions[: bisect.bisect_left(self.versions, version)]

    def release(self, version: Version) -> EarlierRelease:
        files = self.releases[version]
        names = tuple(sorted(files))
        return EarlierRelease(version, names, tuple(name for name in names if files[name]))


@dataclass(frozen=True, slots=True)
class Earlier:
    """What one file is judged against, taken from the history at one moment."""

    recent: tuple[EarlierRelease, ...]  # the newest trusted releases before it, oldest first
    previous: str | None  # the first file of its kind in the newest release that has one


class ReleaseHistory:
    """Earlier trusted releases of a project, for the file being vetted."""

    def __init__(self, ledger: Ledger, kept_projects: int = KEPT_PROJECTS) -> None:
        self._ledger = ledger
        self._kept = kept_projects
        self._projects: OrderedDict[NormalizedName, _Project] = OrderedDict()
        self._lock = threading.Lock()

    def earlier(self, record: FileRecord, recent: int) -> Earlier:
        """The ``recent`` newest trusted releases older than ``record``'s, and the file of
        its kind it is compared with. Safe from several threads at once."""
        mine = version_or_none(record.version)
        if mine is None:
            return Earlier((), None)
        kind = file_kind(record.filename)
        with self._lock:  # vetting threads share the history; one reads a project at a time
            project = self._current(record.project)
            versions = project.before(mine)
            chosen = tuple(project.release(v) for v in versions[-recent:]) if recent > 0 else ()
            previous = None
            for version in reversed(versions):
                previous = project.release(version).first_of_kind(kind)
                if previous is not None:
                    break
        return Earlier(chosen, previous)

    def _current(self, name: NormalizedName) -> _Project:
        # The seq is read before the rows, so a write in between is read again next time.
        state = self._ledger.project(name)
        seq = state.seq if state is not None else 0
        project = self._projects.get(name)
        if project is None:
            project = _Project(seq)
            for record in self._ledger.files(name):
                project.take(record)
            self._projects[name] = project
            while len(self._projects) > self._kept:
                self._projects.popitem(last=False)
        elif seq != project.seq:
            for record in self._ledger.files_changed_since(name, project.seq):
                project.take(record)
            project.seq = seq
        self._projects.move_to_end(name)
        return project
