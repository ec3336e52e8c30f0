"""The order held files are fetched and vetted in: demand first, newest cooled release first.

Files of a project a client asked for go before the watcher's background work, so a
request never waits behind another project's backlog. Among them, each project's newest
cooled release goes first (what a resolver will pick once it is vetted), before the older
releases of any project: a resolver asks for many projects in turn, and the last one
asked must not put its whole 30-day backlog before the newest release of the one asked
just before it. Then the most recently asked project first; within a project, files whose
cooling has ended first, newest release first, then the still-cooling ones; within a
release, the files most installs take first (``install_likelihood``). Among the asked
projects' newest releases, the files most installs take come before the others of any,
the largest first: a resolver's next run needs them all, and the longest inspection
started first ends soonest.

A project asked for after its files were queued is queued again at its new rank; the
stale entries are skipped when they come up. Its files already in a worker's hands move to
their new lane too (``ask`` returns them): on the real index numpy's newest wheels were
taken as background work an instant before pip's request for numpy reached the vetting
process, and waited 70 s for an inspection worker behind what clients asked for.

A file popped carries its lane (``quarantine.inspect.priority``): the asked projects'
newest cooled files that most installs take are *likely* (a resolver waits for them now),
the rest of the asked projects' files come next, the background last. Likely files rank
first, so when the first file waiting is not likely, none is; ``pop(likely_only=True)``
then gives nothing, and the promoter keeps workers free for what a client asks next.
"""

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import total_ordering

from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from packaging.version import Version

from quarantine.filenames import WHEEL_SUFFIX, version_or_none
from quarantine.inspect.priority import BACKGROUND, Lane, Priority
from quarantine.models import FileRecord

MAX_ASKED = 10_000  # projects remembered as asked for; the oldest are forgotten


def install_likelihood(filename: str) -> int:
    """Within a release, the files most installs take first (lower first): a promoted
    file is served at once, so a release's Linux x86_64 wheels (CI runners, servers) and
    its pure-Python wheels come before other platforms' wheels, and the sdist, which
    installers take only without a wheel, last."""
    if not filename.endswith(WHEEL_SUFFIX):
        return 3
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return 2
    platforms = {tag.platform for tag in tags}
    if "any" in platforms or any(p.endswith("x86_64") and "linux" in p for p in platforms):
        return 0
    return 1


@total_ordering
class _Newest:
    """A version that sorts newest first; unparseable versions last."""

    def __init__(self, version: Version | None) -> None:
        self.version = version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Newest) and self.version == other.version

    def __lt__(self, other: "_Newest") -> bool:
        if self.version is None or other.version is None:
            return other.version is None and self.version is not None
        return self.version > other.version


_Key = tuple[str, str]  # (sha256, filename)
_Rank = tuple[int, int, int, int, int, int, _Newest, int, str]


class WorkQueue:
    def __init__(self, cooled_at: Callable[[FileRecord], datetime]) -> None:
        self._cooled_at = cooled_at
        self._asked: dict[NormalizedName, int] = {}  # project: when asked (a counter)
        self._ahead: set[NormalizedName] = set()  # of those, asked ahead of a client
        self._ticks = itertools.count(1)
        self._heap: list[tuple[_Rank, int, FileRecord]] = []
        self._queued: dict[_Key, FileRecord] = {}  # waiting, by key (latest record)
        self._in_hand: dict[_Key, Priority] = {}  # popped and not yet done
        self._in_hand_files: dict[_Key, tuple[FileRecord, int]] = {}  # and their cooling
        self._rank: dict[_Key, _Rank] = {}
        self._open: Counter[NormalizedName] = Counter()  # queued or in hand, per project
        self._newest_cooled: dict[NormalizedName, Version] = {}  # of files queued or in hand
        self._order = itertools.count()
        self._popped = itertools.count()

    def ask(
        self, project: NormalizedName, ahead: bool = False
    ) -> list[tuple[FileRecord, Priority]]:
        """A client asked for ``project``: its files go first from now on. Returns its
        files in hand whose lane this raised, with their new priority. ``ahead``: no client
        asked, a release being vetted requires it (``quarantine.vetting.ahead``): its files
        are in the same lanes, but never go first for their size."""
        if ahead:
            if project in self._asked:
                return []  # a client's ask stands
            self._ahead.add(project)
        else:
            self._ahead.discard(project)
        self._asked.pop(project, None)
        self._asked[project] = next(self._ticks)
        while len(self._asked) > MAX_ASKED:
            forgotten = next(iter(self._asked))
            del self._asked[forgotten]
            self._ahead.discard(forgotten)
        self._requeue(project)
        return self._raise_in_hand(project)

    def _raise_in_hand(self, project: NormalizedName) -> list[tuple[FileRecord, Priority]]:
        raised = []
        for key, (record, cooling) in self._in_hand_files.items():
            if record.project != project:
                continue
            now = self._in_hand[key]
            lane = _lane(self._rank_of(record, cooling))
            if lane < now.lane:
                self._in_hand[key] = Priority(lane, now.order)
                raised.append((record, self._in_hand[key]))
        return raised

    def asked(self, project: NormalizedName) -> bool:
        return project in self._asked

    def put(self, record: FileRecord, now: datetime) -> None:
        """Queue ``record`` unless it waits already or is in a worker's hands (a project
        asked for mid-round offers its held files again: none is vetted twice at once)."""
        key = (record.sha256, record.filename)
        if key in self._queued or key in self._in_hand:
            return
        self._queued[key] = record
        self._open[record.project] += 1
        if self._raises_newest(record, now):
            self._requeue(record.project)  # the old newest release is an older one now
        self._push(key, record, now)

    def pop(self, likely_only: bool = False) -> FileRecord | None:
        """The most urgent file, now in hand until ``done``; None when nothing waits (or,
        ``likely_only``, when no likely file does)."""
        while self._heap:
            rank, _, record = self._heap[0]
            key = (record.sha256, record.filename)
            if self._rank.get(key) != rank or key not in self._queued:
                heapq.heappop(self._heap)
                continue  # queued again at another rank, or already taken
            lane = _lane(rank)
            if likely_only and lane is not Lane.LIKELY:
                return None
            heapq.heappop(self._heap)
            del self._queued[key], self._rank[key]
            self._in_hand[key] = Priority(lane, next(self._popped))
            self._in_hand_files[key] = (record, _cooling(rank))
            return record
        return None

    def priority(self, record: FileRecord) -> Priority:
        """The priority of a file in hand: its lane, and its place in the queue's order."""
        return self._in_hand.get((record.sha256, record.filename), BACKGROUND)

    def installs_next(self, record: FileRecord) -> bool:
        """Whether the file in hand is one a resolver would install from its project now
        (its newest cooled release, a file most installs take), asked for or not."""
        held = self._in_hand_files.get((record.sha256, record.filename))
        if held is None:
            return False
        newest, unlikely = self._rank_of(*held)[1:3]
        return not newest and not unlikely

    def in_hand(self) -> int:
        """Files popped and not yet done."""
        return len(self._in_hand)

    def unlikely_in_hand(self) -> int:
        """Files popped and not yet done that no client is about to install."""
        return sum(not priority.likely for priority in self._in_hand.values())

    def done(self, record: FileRecord) -> bool:
        """The file in hand is finished; whether its project has nothing left queued."""
        self._in_hand.pop((record.sha256, record.filename), None)
        self._in_hand_files.pop((record.sha256, record.filename), None)
        self._open[record.project] -= 1
        if self._open[record.project] > 0:
            return False
        del self._open[record.project]
        self._newest_cooled.pop(record.project, None)
        return True

    def _raises_newest(self, record: FileRecord, now: datetime) -> bool:
        version = version_or_none(record.version)
        if version is None or self._cooled_at(record) > now:
            return False
        newest = self._newest_cooled.get(record.project)
        if newest is not None and newest >= version:
            return False
        self._newest_cooled[record.project] = version
        return newest is not None

    def _requeue(self, project: NormalizedName) -> None:
        for key, record in list(self._queued.items()):
            if record.project == project:
                self._push(key, record)

    def _push(self, key: _Key, record: FileRecord, now: datetime | None = None) -> None:
        previous = self._rank.get(key)
        cooling = _cooling(previous) if previous is not None and now is None else None
        if cooling is None:
            cooling = 0 if now is None or self._cooled_at(record) <= now else 1
        rank = self._rank_of(record, cooling)
        self._rank[key] = rank
        heapq.heappush(self._heap, (rank, next(self._order), record))

    def _first_for_size(self, record: FileRecord, newest: bool, likelihood: int) -> bool:
        """A likely file of a project a client asked for (not one asked ahead: a large
        dependency guessed must not go before what a client waits for)."""
        asked = record.project in self._asked and record.project not in self._ahead
        return asked and newest and likelihood == 0

    def _rank_of(self, record: FileRecord, cooling: int) -> _Rank:
        asked = self._asked.get(record.project)
        version = version_or_none(record.version)
        newest = cooling == 0 and version is not None
        newest = newest and version == self._newest_cooled.get(record.project)
        likelihood = install_likelihood(record.filename)
        rank: _Rank = (
            0 if asked is not None else 1,
            0 if newest else 1,
            # Among the newest releases, every project's Linux x86_64 and pure-Python
            # wheels before any project's other files: on the real index a resolver's
            # first projects waited minutes behind the later ones' Windows and macOS wheels.
            # An sdist ranks with the other files here: it is all a release without
            # wheels has.
            min(likelihood, 1) if newest else 0,
            # Among the files clients are about to install, the largest first: the
            # longest inspections start first, so the last verdict comes soonest. Most
            # recently asked first put litellm's wheel (43 MB, 3,135 modules, asked first
            # by pip) behind the 70 projects pip asked after it: its inspection began
            # 28 s after the request, when every other verdict was in.
            -(record.size or 0) if self._first_for_size(record, newest, likelihood) else 0,
            -(asked or 0),
            cooling,
            _Newest(version),
            likelihood,
            record.filename,
        )
        return rank


def _cooling(rank: _Rank) -> int:
    """Whether the file still cooled when it was queued (1) or not (0)."""
    return rank[5]


def _lane(rank: _Rank) -> Lane:
    asked, newest, unlikely = rank[:3]
    if asked:
        return Lane.BACKGROUND
    return Lane.LIKELY if not newest and not unlikely else Lane.ASKED
