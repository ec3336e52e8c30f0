"""A project's release history, read from the ledger once and then kept in step.

Every file is judged against the project's earlier releases, in two views:

* the *trusted* ones (promoted: vetted, or established): the previous release's content
  summary is taken from these only, so a held release cannot vouch for the next one's
  contents;
* the *standing* ones (any state but rejected or blocked): the expected publisher also
  comes from these, so on first sight of a project (every project, on a new mirror) an
  attested release still held is seen when its unattested successor is vetted, whichever
  is vetted first.

Reading the whole project for each file made vetting N files of a project cost N full
reads (regex has 9,220 files, pydantic-core 15,057). Here a project is read once;
afterwards only the rows written since the project's change counter (``ProjectRecord.seq``)
last moved are read again, so a promotion or a withdrawal between two files is seen by
the second.

Only what a judgement needs is kept (a filename and whether it is attested, per file):
a big project costs a few MB, and only the most recently used projects are kept.
"""

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from packaging.utils import NormalizedName
from packaging.version import Version

from quarantine.filenames import version_or_none
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState

TRUSTED = (FileState.PROMOTED,)  # only vetted or established files set the content baseline
# Files in these states never set an expectation: they were refused (bad hash or name,
# removed or yanked while held) or condemned (a blocking finding, a malware advisory).
NOT_STANDING = (FileState.REJECTED, FileState.BLOCKED)
KEPT_PROJECTS = 16


def file_kind(filename: str) -> str:
    return "wheel" if filename.endswith(".whl") else "sdist"


@dataclass(frozen=True, slots=True)
class EarlierRelease:
    """One release before the judged file's, by the names of its files in one view."""

    version: Version
    filenames: tuple[str, ...]  # sorted, as the ledger lists a project's files
    attested: tuple[str, ...]  # those with a provenance URL, sorted

    def first_of_kind(self, kind: str) -> str | None:
        return next((name for name in self.filenames if file_kind(name) == kind), None)


@dataclass
class _Releases:
    """The files of one view, by release, with the versions kept sorted."""

    by_version: dict[Version, dict[str, bool]] = field(default_factory=dict)  # name: attested
    versions: list[Version] = field(default_factory=list)  # sorted keys of ``by_version``

    def add(self, version: Version, filename: str, attested: bool) -> None:
        release = self.by_version.get(version)
        if release is None:
            release = self.by_version[version] = {}
            bisect.insort(self.versions, version)
        release[filename] = attested

    def remove(self, version: Version, filename: str) -> None:
        release = self.by_version.get(version)
        if release is None or release.pop(filename, None) is None:
            return
        if not release:
            del self.by_version[version]
            del self.versions[bisect.bisect_left(self.versions, version)]

    def before(self, version: Version) -> list[Version]:
        """Versions older than ``version``, oldest first."""
        return self.versions[: bisect.bisect_left(self.versions, version)]

    def release(self, version: Version) -> EarlierRelease:
        files = self.by_version[version]
        names = tuple(sorted(files))
        return EarlierRelease(version, names, tuple(name for name in names if files[name]))

    def recent(self, version: Version, count: int) -> tuple[EarlierRelease, ...]:
        """The ``count`` newest releases older than ``version``, oldest first."""
        if count <= 0:
            return ()
        return tuple(self.release(v) for v in self.before(version)[-count:])


@dataclass
class _Project:
    seq: int
    known: dict[str, Version] = field(default_factory=dict)  # filename: version, either view
    trusted: _Releases = field(default_factory=_Releases)
    standing: _Releases = field(default_factory=_Releases)

    def take(self, record: FileRecord) -> None:
        """Fold one current ledger row in (it may leave, join or move within the history)."""
        earlier = self.known.pop(record.filename, None)
        if earlier is not None:
            self.trusted.remove(earlier, record.filename)
            self.standing.remove(earlier, record.filename)
        version = version_or_none(record.version)
        if version is None or record.state in NOT_STANDING:
            return
        attested = record.provenance_url is not None
        self.known[record.filename] = version
        self.standing.add(version, record.filename, attested)
        if record.state in TRUSTED:
            self.trusted.add(version, record.filename, attested)


@dataclass(frozen=True, slots=True)
class Earlier:
    """What one file is judged against, taken from the history at one moment."""

    recent: tuple[EarlierRelease, ...]  # the newest trusted releases before it, oldest first
    previous: str | None  # the first file of its kind in the newest trusted release with one
    # the newest standing releases before it (any state but rejected/blocked), oldest first
    standing: tuple[EarlierRelease, ...] = ()


class ReleaseHistory:
    """Earlier releases of a project, for the file being vetted."""

    def __init__(self, ledger: Ledger, kept_projects: int = KEPT_PROJECTS) -> None:
        self._ledger = ledger
        self._kept = kept_projects
        self._projects: OrderedDict[NormalizedName, _Project] = OrderedDict()
        self._lock = threading.Lock()

    def earlier(self, record: FileRecord, recent: int) -> Earlier:
        """The ``recent`` newest trusted and standing releases older than ``record``'s,
        and the trusted file of its kind it is compared with. Safe from several threads."""
        mine = version_or_none(record.version)
        if mine is None:
            return Earlier((), None)
        kind = file_kind(record.filename)
        with self._lock:  # vetting threads share the history; one reads a project at a time
            project = self._current(record.project)
            trusted = project.trusted
            previous = None
            for version in reversed(trusted.before(mine)):
                previous = trusted.release(version).first_of_kind(kind)
                if previous is not None:
                    break
            return Earlier(
                trusted.recent(mine, recent), previous, project.standing.recent(mine, recent)
            )

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
