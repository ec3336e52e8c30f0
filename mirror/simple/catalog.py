"""Project pages: upstream looks folded into the ledger, rendered once per change.

A warm page costs no database round trip: pages are kept as bytes keyed by (project,
format) and the project's change counter, which a follower keeps in step with the ledger:
woken at once by a change on PostgreSQL (LISTEN/NOTIFY), and polling besides, so a
decision made by another replica or the CLI shows within a moment.

A look a request waits for hands its records to the waiting requests first and writes
them to the ledger right after, so a cold miss is answered without waiting on the
write; but only where this process alone serves from its ledger: beside other serving
processes (replicas, ``--workers``) a file on the page may be asked of another one, so
the page waits for the write there. The page lists only files the policy promoted; their
bytes are served only once the ledger holds their records, and nothing is served from a
look whose write failed.

Every project is read, observed, written and rendered in worker threads: the event loop
never waits on the ledger. A read there waited for the GIL once per row while other threads
ran (sqlite3 lets it go around each step), and a write waited for SQLite's write lock while
the vetting process held it; every other request waited with it. A big project
(BIG_PROJECT_FILES or more) has its page kept in parts (``PageParts``) too, and a change
reads and renders only the files it touched: a promotion in a 10,000-file project costs a
join, not a full rebuild.
"""

import asyncio
import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName

from mirror.errors import (
    LedgerUnavailable,
    NotFound,
    UpstreamGone,
    UpstreamRejected,
    UpstreamUnavailable,
)
from mirror.files.file_index import FileIndex
from mirror.simple.names import ReservedNames
from mirror.simple.negotiate import PageFormat
from mirror.simple.page import (
    KeptPage,
    Page,
    PageTemplate,
    make_page,
    mention_check,
    page_or_template,
)
from mirror.simple.page_cache import DEFAULT_PAGE_CACHE_BYTES, PageCache
from mirror.simple.page_parts import PageParts
from mirror.simple.render import (
    HeldSummary,
    bases_for,
    project_html,
    project_json,
    root_html,
    root_json,
)
from mirror.upstream.client import UpstreamClient
from quarantine.clock import Clock
from quarantine.clock_guard import ClockGuard
from quarantine.decide import hold_until, listed_unvetted, lists_deferred
from quarantine.feeds.in_force import Feeds, with_advisories
from quarantine.ledger.interface import ChangeListener, Ledger, NotListening
from quarantine.live_policy import PolicySource
from quarantine.models import FileRecord, FileState, ProjectRecord, ProjectStatus, Snapshot
from quarantine.observe import Observation, observe
from quarantine.policy import Policy

log = logging.getLogger(__name__)
ACTOR = "system:upstream-look"


@dataclass(frozen=True, slots=True)
class Served:
    page: KeptPage  # a template is filled for the request's base before it is sent
    stale_seconds: float | None  # set when the upstream could not be asked


@dataclass
class _Live:
    """What this process knows about a project without asking the ledger."""

    looked_at: datetime | None = None  # last attempt
    ok_at: datetime | None = None  # last successful look
    unreachable: bool = False
    pages: dict[PageFormat, KeptPage] = field(default_factory=dict)
    written: "_Written | None" = None  # what the last look wrote, until its page is rendered
    unwritten: bool = False  # ``written`` is still on its way to the ledger
    # BIG_PROJECT_FILES or more: pages are built off the event loop (None: not known yet,
    # as after a restart, so the first build is made there too)
    big: bool | None = None
    # When a page's held-files note names a release time, it is built again once that
    # time comes: the note never shows a release time in the past.
    renew_at: dict[PageFormat, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Written:
    """A project's records exactly as a look commits them to the ledger.

    The page a cold miss waits for is rendered from these instead of reading back what
    was written a moment ago; kept until the write is done and that first render.
    """

    project: ProjectRecord
    files: list[FileRecord]


# A page, whether its project is big, and when its held-files note is due to change.
_Built = tuple[KeptPage, bool, datetime | None]

UNWRITTEN_SEQ = -1  # a page rendered before its look's write; given the real seq after
# From this many files on, a project's page is kept in parts and, while its rebuild after
# a change runs on, answered with the page before: 10,000 files take over a second to
# rebuild whole. Even 700 files (fastapi) rebuilt after each promotion held pages up
# 100-500 ms in the first-use bench.
BIG_PROJECT_FILES = 200
# A big page whose rebuild after a change takes longer than this is answered with the
# page before the change, when that lists nothing taken back since: a rebuild can take a
# second, and while vetting runs projects change every second.
PREVIOUS_PAGE_AFTER_SECONDS = 0.02
# Big pages kept in parts, least recently built first out: their records and rendered
# parts take about 0.8 KB a file (tracemalloc in the first-use replay: 33 MB for 40,000),
# so this bounds them near 16 MB. A project whose parts went out is read whole at its next
# change, in a thread, while its page before goes out if still right.
KEPT_PARTS_FILES = 20_000
# Told of a change, the follower reads the ledger this much later: the writes of a burst
# that come meanwhile are read together, while a decision still shows well within a second.
TOLD_SYNC_GAP_SECONDS = 0.05
# How long a request waits for the ledger to record a look the upstream has answered.
LEDGER_WRITE_WAIT_SECONDS = 30.0


async def _until_set(event: asyncio.Event) -> None:
    await event.wait()


async def _first_of(waiting: "asyncio.Future[None]", event: asyncio.Event) -> None:
    """Until ``waiting`` is done (its error raised) or ``event`` is set."""
    watching = asyncio.ensure_future(_until_set(event))
    try:
        await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        waiting.cancel()  # this request's wait only: the look goes on
        raise
    finally:
        watching.cancel()
    if waiting.done():
        waiting.result()


class _Flight:
    """One look that requests wait for, and their waits (each its own, to time out alone)."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self._waits: list[asyncio.Future[None]] = []
        self._outcome: BaseException | None = None
        self._answered = False
        # The upstream has answered: what is left is folding it into the ledger.
        self.upstream_answered = asyncio.Event()

    def wait(self) -> "asyncio.Future[None]":
        waiting = asyncio.get_running_loop().create_future()
        if self._answered:
            self._settle(waiting)
        else:
            self._waits.append(waiting)
        return waiting

    @property
    def answered(self) -> bool:
        return self._answered

    def answer(self, error: BaseException | None = None) -> None:
        """The page can be rendered now (or ``error`` says why not)."""
        if self._answered:
            return
        self._answered, self._outcome = True, error
        for waiting in self._waits:
            self._settle(waiting)
        self._waits.clear()

    def _settle(self, waiting: "asyncio.Future[None]") -> None:
        if waiting.done():
            return  # that request timed out or went away
        if self._outcome is None:
            waiting.set_result(None)
        else:
            waiting.set_exception(self._outcome)


class Catalog:
    def __init__(
        self,
        ledger: Ledger,
        client: UpstreamClient,
        policy: PolicySource,
        clock: Clock,
        *,
        index_ttl_seconds: float,
        request_wait_seconds: float,
        public_base_url: str | None,
        on_new_held: Callable[[NormalizedName, bool], None],
        reserved: ReservedNames | None = None,
        guard: ClockGuard | None = None,
        feeds: Feeds | None = None,
        max_file_bytes: int | None = None,
        shared_ledger: bool = False,
        page_cache_bytes: int = DEFAULT_PAGE_CACHE_BYTES,
    ) -> None:
        self._ledger = ledger
        # Other processes (replicas, serving workers) answer file requests from the same
        # ledger: a page may then go out only once its records are committed, or a file it
        # lists can be asked of a process that finds no record yet.
        self._hands_over_before_write = not shared_ledger
        self._max_file_bytes = max_file_bytes  # a larger file is never deferred
        self._client = client
        self._policies = policy  # read at each use: admins change it at run time
        self._clock = clock
        self._ttl = index_ttl_seconds
        self._wait = request_wait_seconds
        self._public_base_url = public_base_url
        self.on_new_held = on_new_held  # the demand signal; the app may point it elsewhere
        self.warm_hits = 0  # pages answered from memory, no look needed (metrics)
        self.warm_misses = 0
        self._reserved = reserved or ReservedNames(())
        self._guard = guard or ClockGuard(ledger, clock)
        self._feeds = feeds
        self._live: dict[NormalizedName, _Live] = {}
        self._seq: dict[NormalizedName, int] = {}
        self._seen_seq = ledger.change_seq()
        self._flights: dict[NormalizedName, _Flight] = {}
        self._misses: dict[NormalizedName, datetime] = {}
        self._root: dict[PageFormat, Page] = {}
        self._building: dict[
            tuple[NormalizedName, PageFormat], tuple[asyncio.Future[_Built], _Written | None]
        ] = {}
        # Looks' writes in threads, and the project each writes.
        self._writing: dict[asyncio.Future[int], NormalizedName] = {}
        self._writes_ended = 0
        self._rebuilding: set[asyncio.Future[Any]] = set()  # previous pages went out
        self._unasked_rebuilds = asyncio.Semaphore(1)
        # A big page built whole (its parts not kept) reads and renders every file: 0.5-0.8 s
        # for 15,000 files in the first-use replay, and memory in proportion. Two at once (the
        # parts of two big projects taking turns in KEPT_PARTS_FILES) made the serving
        # process's RSS peak there, and took the GIL from the event loop together.
        self._whole_big_builds = asyncio.Semaphore(1)
        self._bases = bases_for(public_base_url)
        self._open_base = not public_base_url  # provenance URLs take the request's base
        self._kept: OrderedDict[NormalizedName, PageParts] = OrderedDict()
        self._kept_lock = threading.Lock()  # held only to take parts out or put them back
        self.files = FileIndex(ledger)
        self._page_cache = PageCache(page_cache_bytes)
        self.listener: ChangeListener = NotListening()  # while following the ledger

    # -- keeping in step with the ledger ------------------------------------------------
    def sync(self) -> bool:
        """Catch up with the ledger; whether anything changed since the last call."""
        seen = self._seen_seq
        return self._take_changes(seen, *self._changes_since(seen))

    async def synced(self) -> bool:
        """``sync``, its reads in a thread: the event loop never waits on the ledger."""
        return await self._synced_changes() is not None

    async def _synced_changes(self) -> dict[NormalizedName, int] | None:
        """``synced``: the projects that changed (None when nothing did)."""
        seen = self._seen_seq
        current, changed = await asyncio.to_thread(self._changes_since, seen)
        return changed if self._take_changes(seen, current, changed) else None

    def _changes_since(self, seen: int) -> tuple[int, dict[NormalizedName, int]]:
        current = self._ledger.change_seq()
        return current, {} if current == seen else self._ledger.changed_since(seen)

    def _take_changes(self, seen: int, current: int, changed: dict[NormalizedName, int]) -> bool:
        if current == self._seen_seq:
            return False
        if seen != self._seen_seq and current < self._seen_seq:
            return False  # read before another catch-up that has already gone further
        for name, seq in changed.items():
            # Read in a thread: a write that ended meanwhile (``_write_ended``) may have
            # set a newer seq, and a page kept at the older one must not pass for current.
            if seq > self._seq.get(name, seq - 1):
                self._seq[name] = seq
        self.files.forget(changed)
        self._seen_seq = current
        return True

    async def follow_ledger(
        self, interval_seconds: float = 1.0, on_change: Callable[[], None] = lambda: None
    ) -> None:
        """Keep in step with the ledger: at once when it tells of a change (another
        replica's decision shows within a moment), and every ``interval_seconds`` besides,
        for a change it could not tell of. ``on_change`` runs after a read that found one."""
        told = asyncio.Event()
        loop = asyncio.get_running_loop()

        def tell() -> None:  # called in the listener's thread
            with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
                loop.call_soon_threadsafe(told.set)

        self.listener = self._ledger.listen(tell)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval_seconds):
                        await told.wait()
                        # A burst of writes (a vetting round) is read once, not per write.
                        await asyncio.sleep(TOLD_SYNC_GAP_SECONDS)
                told.clear()
                await self._follow_once(on_change)
        finally:
            self.listener.close()

    async def _follow_once(self, on_change: Callable[[], None]) -> None:
        try:
            changed = await self._synced_changes()
        except Exception:  # a locked or busy database is retried at the next tick
            log.exception("could not read the ledger's change counter")
            return
        if changed is not None:
            self._rebuild_big_pages(changed)
            on_change()

    def _rebuild_big_pages(self, changed: Iterable[NormalizedName]) -> None:
        """Start rebuilding the kept pages of big projects that changed, before anyone asks:
        a request meanwhile gets the page before while it is still right
        (``_rendered_or_previous``), which lacks the files promoted since. On the real
        index pip's next run got litellm's page without its newest wheel, promoted 12 s
        earlier, because only that request began the rebuild."""
        for name in changed:
            live = self._live.get(name)
            if live is None or live.big is not True or live.unwritten:
                continue
            for fmt in list(live.pages):
                rebuilding = asyncio.ensure_future(self._rebuild_unasked(name, fmt, live))
                self._rebuilding.add(rebuilding)
                rebuilding.add_done_callback(self._rebuilt)

    async def _rebuild_unasked(self, name: NormalizedName, fmt: PageFormat, live: _Live) -> None:
        """One such rebuild at a time: the threads are also where requests read the ledger."""
        async with self._unasked_rebuilds:
            page = live.pages.get(fmt)
            if page is None or page.seq == self._seq.get(name) or (name, fmt) in self._building:
                return  # asked for meanwhile, rebuilt, or dropped from the cache
            await self._rendered(name, fmt, live)

    # -- pages -----------------------------------------------------------------------------
    async def project_page(self, name: NormalizedName, fmt: PageFormat) -> Served:
        self._refuse_reserved(name)
        live = self._live.setdefault(name, _Live())
        now = self._clock.now()
        if live.looked_at is None or (now - live.looked_at).total_seconds() >= self._ttl:
            await self._refresh_for_request(name, live)
        page = live.pages.get(fmt)
        if page is None or self._due(live, fmt, now):
            page = await self._rendered(name, fmt, live)
        elif page.seq != self._seq.get(name) and not live.unwritten:
            page = await self._rendered_or_previous(name, fmt, live, page)
        else:
            self._drop_pages(self._page_cache.used(name, fmt, page))
        stale = None
        if live.unreachable:
            since = live.ok_at or now
            stale = max(0.0, (now - since).total_seconds())
        return Served(page, stale)

    async def _rendered_or_previous(
        self, name: NormalizedName, fmt: PageFormat, live: _Live, previous: KeptPage
    ) -> KeptPage:
        """The page rebuilt after a change; while a big page's rebuild runs past
        PREVIOUS_PAGE_AFTER_SECONDS, the previous page instead when it is still right
        but for files promoted since (``_previous_still_right``). The rebuild goes on."""
        rebuilding = asyncio.ensure_future(self._rendered(name, fmt, live))
        if live.big is not True:
            return await rebuilding
        # Asked at once, beside the rebuild: both read the ledger in threads.
        checking = asyncio.ensure_future(
            asyncio.to_thread(self._previous_still_right, name, previous)
        )
        checking.add_done_callback(_checked)
        done, _ = await asyncio.wait({rebuilding}, timeout=PREVIOUS_PAGE_AFTER_SECONDS)
        if not done:
            await asyncio.wait({rebuilding, checking}, return_when=asyncio.FIRST_COMPLETED)
        if rebuilding.done() or not _still_right(checking):
            return await rebuilding
        self._rebuilding.add(rebuilding)
        rebuilding.add_done_callback(self._rebuilt)
        return previous

    def _rebuilt(self, rebuilding: "asyncio.Future[Any]") -> None:
        self._rebuilding.discard(rebuilding)
        if not rebuilding.cancelled() and rebuilding.exception() is not None:
            # The next request builds again, and waits for it: nothing stale is sent then.
            log.warning("rebuilding a page failed: %s", rebuilding.exception())

    def _previous_still_right(self, name: NormalizedName, previous: KeptPage) -> bool:
        """Whether ``previous`` lists nothing the ledger took back since it was built:
        every file written since is promoted (its listing is only missing from
        ``previous``) or was never on it (a promoted file only ever leaves for withdrawn,
        so a held or condemned one on the page would have been taken back). The project
        must be active still (a removal or a PEP 792 status waits for the rebuild)."""
        project = self._ledger.project(name)
        if project is None or project.status is not ProjectStatus.ACTIVE:
            return False
        changed = self._ledger.files_changed_since(name, previous.seq)
        taken_back = [record for record in changed if record.state is not FileState.PROMOTED]
        if not taken_back:
            return True
        may_mention = mention_check(previous)
        return not any(may_mention(record.filename) for record in taken_back)

    def warm_page(self, name: NormalizedName, fmt: PageFormat) -> KeptPage | None:
        """The page as bytes when nothing needs doing first (fast path), else None."""
        page = self._warm(name, fmt)
        if page is None:
            self.warm_misses += 1
        else:
            self.warm_hits += 1
        return page

    def _warm(self, name: NormalizedName, fmt: PageFormat) -> KeptPage | None:
        live = self._live.get(name)
        if live is None or live.unreachable or live.looked_at is None:
            return None
        page = live.pages.get(fmt)
        if page is None or page.seq != self._seq.get(name):
            return None
        now = self._clock.now()
        if (now - live.looked_at).total_seconds() >= self._ttl or self._due(live, fmt, now):
            return None
        self._drop_pages(self._page_cache.used(name, fmt, page))
        return page

    @staticmethod
    def _due(live: _Live, fmt: PageFormat, now: datetime) -> bool:
        renew_at = live.renew_at.get(fmt)
        return renew_at is not None and now >= renew_at

    def _refuse_reserved(self, name: NormalizedName) -> None:
        if name in self._reserved:
            raise NotFound(f"not found: {name} is a reserved private name, never asked upstream")

    async def _rendered(self, name: NormalizedName, fmt: PageFormat, live: _Live) -> KeptPage:
        """The page built anew in a thread (it reads the ledger, and a read waits for the
        GIL once per row while other threads run), once for all who ask meanwhile; a big
        project's from its kept parts."""
        key = (name, fmt)
        if key in self._building:
            building, written = self._building[key]
        else:
            written = self._written(name, live)
            bases = _bases_served(live.pages.get(fmt))
            parts = live.big is not False
            build = functools.partial(
                self._build, name, fmt, written, with_parts=parts, bases=bases
            )
            whole = parts and name not in self._kept  # read and rendered whole, or not known
            building = asyncio.ensure_future(self._built(build, whole=whole))
            self._building[key] = building, written
            building.add_done_callback(lambda _done: self._building.pop(key, None))
        return self._keep(name, fmt, live, await asyncio.shield(building), written)

    async def _built(self, build: Callable[[], _Built], *, whole: bool) -> _Built:
        """``build()`` in a thread; a big page built whole waits for any other one."""
        if not whole:
            return await asyncio.to_thread(build)
        async with self._whole_big_builds:
            return await asyncio.to_thread(build)

    def _keep(
        self,
        name: NormalizedName,
        fmt: PageFormat,
        live: _Live,
        built: _Built,
        written: "_Written | None",
    ) -> KeptPage:
        page, live.big, renew_at = built
        if page.seq == UNWRITTEN_SEQ and written is not None:
            # Built from a look's records before their write; a thread may have taken
            # long enough for the write to end, or for another look to begin.
            now = live.written
            if now is None or now.files is not written.files:
                return page  # the write failed or a newer look came: answer, keep nothing
            if now.project.seq != UNWRITTEN_SEQ:
                page = replace(page, seq=now.project.seq)
        if page.seq != UNWRITTEN_SEQ:
            self._seq.setdefault(name, page.seq)
        live.pages[fmt] = page
        self._drop_pages(self._page_cache.kept(name, fmt, page))
        if renew_at is None:
            live.renew_at.pop(fmt, None)
        else:
            live.renew_at[fmt] = renew_at
        if written is not None and not live.unwritten and _same_look(live.written, written):
            # Rendered, and in the ledger: a whole project's records are not kept for a
            # page that may never be asked again (another format reads the ledger).
            live.written = None
        return page

    def _build(
        self,
        name: NormalizedName,
        fmt: PageFormat,
        written: "_Written | None",
        *,
        with_parts: bool,
        bases: Sequence[str] = (),
    ) -> _Built:
        """The page and whether the project is big, in a thread; touches no state but the
        kept parts, and those only ``with_parts`` (a small page is never built behind a big
        one's parts lock). ``bases``: the request bases to fill a template for at once."""
        policy = self._policies.current()  # a ledger read: once per page, not once per file
        if not with_parts:
            project, files = (written.project, written.files) if written else self._read(name)
            return self._rendered_whole(name, fmt, project, files, policy, bases)
        if written is not None and (written.project.seq == UNWRITTEN_SEQ or name not in self._kept):
            # Records not in the ledger yet never go into the parts: a write that fails
            # would leave them there. Nor do records already written: another process
            # may have changed one of them since the look read it.
            return self._rendered_whole(name, fmt, written.project, written.files, policy, bases)
        parts = self._taken_parts(name)
        if parts is not None and parts.wheel_filter != policy.wheel_filter:
            parts = None  # listed under another filter: made anew, once
        if parts is not None:
            project = self._caught_up(name, parts)
            if parts.vets_on_download != lists_deferred(parts.records.values(), policy):
                parts = None  # deferred files listed now, or no longer: made anew, once
        if parts is None:
            project, files = self._read(name)
            if len(files) < BIG_PROJECT_FILES:
                return self._rendered_whole(name, fmt, project, files, policy, bases)
            deferred = lists_deferred(files, policy)
            parts = PageParts(project, files, self._bases, policy.wheel_filter, deferred)
        if project.status is ProjectStatus.REMOVED:
            raise NotFound(f"not found: {name}")
        held = self._summary(parts.held, policy)
        body = parts.json(held) if fmt is PageFormat.JSON else parts.html(held)
        self._keep_parts(name, parts)
        return self._kept_page(project.seq, body, fmt, bases), True, held.next_release

    def _taken_parts(self, name: NormalizedName) -> PageParts | None:
        """The project's kept parts, this thread's alone until ``_keep_parts`` puts them
        back: the lock is held only for that, never for a read or a render, and parts
        an error interrupted are never kept."""
        with self._kept_lock:
            return self._kept.pop(name, None)

    def _caught_up(self, name: NormalizedName, parts: PageParts) -> ProjectRecord:
        project = self._ledger.project(name)  # the seq before the rows it covers
        if project is None:
            raise NotFound(f"not found: {name}")
        parts.update(project, self._ledger.files_changed_since(name, parts.seq))
        return project

    def _rendered_whole(
        self,
        name: NormalizedName,
        fmt: PageFormat,
        project: ProjectRecord,
        files: list[FileRecord],
        policy: Policy,
        bases: Sequence[str] = (),
    ) -> _Built:
        if project.status is ProjectStatus.REMOVED:
            raise NotFound(f"not found: {name}")
        admits, on_download = policy.wheel_filter.admits, lists_deferred(files, policy)
        served = [
            r
            for r in files
            if (r.state is FileState.PROMOTED or listed_unvetted(r, on_download))
            and admits(r.filename)
        ]
        held = self._held_summary(files, policy)
        render = project_json if fmt is PageFormat.JSON else project_html
        body = render(project, served, held, self._public_base_url)
        page = self._kept_page(project.seq, body, fmt, bases)
        return page, len(files) >= BIG_PROJECT_FILES, held.next_release

    def _kept_page(self, seq: int, body: bytes, fmt: PageFormat, bases: Sequence[str]) -> KeptPage:
        return page_or_template(seq, body, fmt, open_base=self._open_base, bases=bases)

    def _drop_pages(self, dropped: list[tuple[NormalizedName, PageFormat]]) -> None:
        """Out of memory: rendered again when next asked for (see PageCache)."""
        for name, fmt in dropped:
            self._live[name].pages.pop(fmt, None)

    def _keep_parts(self, name: NormalizedName, parts: PageParts) -> None:
        with self._kept_lock:
            self._kept[name] = parts  # the latest used: last out
            kept_files = sum(len(kept.records) for kept in self._kept.values())
            while kept_files > KEPT_PARTS_FILES:
                _oldest, dropped = self._kept.popitem(last=False)
                kept_files -= len(dropped.records)

    def _written(self, name: NormalizedName, live: _Live) -> "_Written | None":
        """The records the last look wrote, when they are what the ledger holds now."""
        if live.unwritten and live.written is not None:
            return live.written  # the ledger has not got them yet
        written, live.written = live.written, None
        if written is not None and written.project.seq == self._seq.get(name):
            return written
        return None

    def _read(self, name: NormalizedName) -> tuple[ProjectRecord, list[FileRecord]]:
        project = self._ledger.project(name)  # read the counter before the files it covers
        if project is None:
            raise NotFound(f"not found: {name}")
        return project, self._ledger.files(name)

    def _held_summary(self, files: Iterable[FileRecord], policy: Policy) -> HeldSummary:
        """The files held for this organisation's platforms, and the next time one of
        them cools: only a time still to come (one past is waiting for its vetting)."""
        admits, on_download = policy.wheel_filter.admits, lists_deferred(files, policy)
        held = [
            r
            for r in files
            if r.state in (FileState.HELD, FileState.REVIEW)
            and admits(r.filename)
            and not listed_unvetted(r, on_download)
        ]
        return self._summary(held, policy)

    def _summary(self, held: list[FileRecord], policy: Policy) -> HeldSummary:
        """``held``: records held or in review, inside the filter."""
        now = self._clock.now()
        ends = [
            until
            for record in held
            if record.state is FileState.HELD and (until := hold_until(record, policy)) > now
        ]
        return HeldSummary(len(held), min(ends, default=None))

    async def root_page(self, fmt: PageFormat) -> Page:
        """Every project whose page went out: after the writes in flight, read in a thread."""
        await self.writes_done()
        await self.synced()
        page = self._root.get(fmt)
        if page is None or page.seq != self._seen_seq:
            seq = self._seen_seq
            names = await asyncio.to_thread(self._ledger.projects)
            body = root_json(names) if fmt is PageFormat.JSON else root_html(names)
            page = make_page(seq, body, fmt)
            self._root[fmt] = page
        return page

    # -- upstream looks --------------------------------------------------------------------
    async def _refresh_for_request(self, name: NormalizedName, live: _Live) -> None:
        miss = self._misses.get(name)
        now = self._clock.now()
        if miss is not None and (now - miss).total_seconds() < self._ttl:
            raise NotFound(f"not found: {name}")
        flight = await self._start_look(name)
        waiting = flight.wait()
        try:
            # Only this request's own wait is cancelled by the timeout: the look runs on
            # and its answer is still recorded.
            async with asyncio.timeout(self._wait):
                if self._hands_over_before_write:
                    # Awaited directly: the page goes out in the loop's next turn, before
                    # the write the look runs after its one yield (see _apply).
                    await waiting
                else:
                    await _first_of(waiting, flight.upstream_answered)
            if not waiting.done():
                await self._recorded(name, waiting)
        except TimeoutError:
            live.unreachable = True
            await self._serve_stale_or_raise(
                name, UpstreamUnavailable(f"upstream timeout; no cached data for {name}")
            )
        except UpstreamGone as gone:
            raise NotFound(f"not found: {name}") from gone
        except (UpstreamUnavailable, UpstreamRejected) as error:
            await self._serve_stale_or_raise(name, error)

    async def _recorded(self, name: NormalizedName, waiting: "asyncio.Future[None]") -> None:
        """The upstream answered within the request's wait; beside other serving
        processes the page also waits for the ledger's write, under a bound of its own
        (a slow database is not an upstream timeout)."""
        try:
            async with asyncio.timeout(LEDGER_WRITE_WAIT_SECONDS):
                await waiting
        except TimeoutError:
            raise LedgerUnavailable(
                f"the ledger is slow to record the look at {name}: retry in a moment"
            ) from None

    async def _serve_stale_or_raise(
        self, name: NormalizedName, error: UpstreamUnavailable | UpstreamRejected
    ) -> None:
        project = await asyncio.to_thread(self._ledger.project, name)
        if project is None or project.status is ProjectStatus.REMOVED:
            # Nothing known: the next request must ask again, not find "no such project".
            self._live[name].looked_at = None
            if isinstance(error, UpstreamUnavailable) and "no cached data" not in error.reason:
                raise UpstreamUnavailable(f"{error.reason}; no cached data for {name}") from error
            raise error
        log.warning("serving %s from the last good look: %s", name, error.reason)

    async def _start_look(self, name: NormalizedName) -> _Flight:
        """The look in flight to wait for, or a new one. A look that has answered its
        requests is only writing what it saw: a request that wants a newer look waits for
        that write (a look beside it would compare with records the write is replacing)."""
        while (flight := self._flights.get(name)) is not None and flight.answered:
            assert flight.task is not None
            await asyncio.wait({flight.task})
        if flight is None:
            flight = _Flight()
            flight.task = asyncio.ensure_future(self._fly(name, flight))
            self._flights[name] = flight
            flight.task.add_done_callback(lambda _done: self._flights.pop(name, None))
        return flight

    async def _fly(self, name: NormalizedName, flight: _Flight) -> None:
        try:
            await self._look(name, flight)
        except Exception as error:  # noqa: BLE001  (handed to the requests, which raise it)
            flight.answer(error)  # a no-op once answered: a failed write was logged
        except asyncio.CancelledError:
            flight.answer(UpstreamUnavailable(f"the look at {name} was stopped"))
            raise
        else:
            flight.answer()

    async def look(self, name: NormalizedName) -> None:
        """Ask the upstream about ``name`` now and fold the answer into the ledger."""
        await self._look(name, None)

    async def _look(self, name: NormalizedName, flight: _Flight | None) -> None:
        """``flight``: the requests waiting to render this project's page from the answer."""
        self._refuse_reserved(name)
        live = self._live.setdefault(name, _Live())
        before = await asyncio.to_thread(self._ledger.project, name)
        now = self._clock.now()
        live.looked_at = now
        if live.ok_at is None and before is not None:
            live.ok_at = before.last_look_ok
        usable = before is not None and before.status is not ProjectStatus.REMOVED
        try:
            answer = await self._client.project_page(
                name, before.etag if usable and before else None
            )
        except UpstreamGone:
            self._misses[name] = now
            if usable:
                await asyncio.to_thread(self._ledger.record_project_gone, name, now, ACTOR)
                await self.synced()
            raise
        except (UpstreamUnavailable, UpstreamRejected):
            live.unreachable = True
            raise
        if flight is not None:
            flight.upstream_answered.set()
        self._misses.pop(name, None)
        if answer.snapshot is None:
            await asyncio.to_thread(self._ledger.touch_look, name, now)
        else:
            await self._apply(before, answer.snapshot, answer.etag, now, flight)
        live.unreachable = False
        live.ok_at = now
        await self.synced()

    async def _apply(
        self,
        before: ProjectRecord | None,
        snapshot: Snapshot,
        etag: str | None,
        now: datetime,
        flight: _Flight | None,
    ) -> None:
        live = self._live.setdefault(snapshot.name, _Live())
        live.big = len(snapshot.files) >= BIG_PROJECT_FILES
        # A page kept in parts is rebuilt from the rows a write changed in a few ms; a
        # whole render of the look's records before the write would take far longer.
        kept = live.big and snapshot.name in self._kept
        known, observation = await asyncio.to_thread(self._observe, before, snapshot, now, kept)
        early = self._hands_over_before_write and not kept
        if flight is not None and early and _alters_pages(before, observation):
            live.written = _records_after(known, observation, etag, UNWRITTEN_SEQ)
            live.unwritten, live.unreachable, live.ok_at = True, False, now
            live.pages.clear()
            self._page_cache.forget(snapshot.name)
            flight.answer()
            await asyncio.sleep(0)  # the waiting requests send their page before the write
            await self._write_handed_over(live, observation, etag)
        else:
            try:
                seq = await self._write(observation, etag)
            except Exception as error:
                live.looked_at = None  # a look the ledger did not take: the next one looks anew
                log.exception("could not record the look at %s", snapshot.name)
                if flight is None or not kept:
                    reason = f"could not record the look at {snapshot.name} in the ledger: retry"
                    raise LedgerUnavailable(reason) from error
                # As for a page handed over before a write that failed: these requests
                # get the page last recorded.
                flight.answer()
                raise
            # A big project's page is read from the ledger instead, into parts that a
            # later change only adds to.
            rendering = flight is not None and not live.big
            if rendering and not any(page.seq == seq for page in live.pages.values()):
                # Only for a page about to be rendered: the watcher's looks of projects
                # nobody asks for must not keep their records in memory.
                live.written = _records_after(known, observation, etag, seq)
        if any(record.state is FileState.HELD for record in observation.new):
            self.on_new_held(snapshot.name, flight is not None)  # asked: a request waits

    def _observe(
        self, before: ProjectRecord | None, snapshot: Snapshot, now: datetime, kept: bool
    ) -> tuple[dict[str, FileRecord], Observation]:
        """The records known before and what the look changes; run in a thread, it touches
        no state but the kept parts (only when ``kept`` is set: a big project's)."""
        policy, frozen = self._policies.current(), self._guard.frozen()
        # A project never seen has no records and no evidence: skip two reads on a cold miss.
        known = {} if before is None else self._known(snapshot.name, kept)
        stored = {} if before is None else self._ledger.evidence(snapshot.name)
        observation = observe(
            before,
            known,
            snapshot,
            now,
            policy,
            frozen,
            lambda record: with_advisories(record, stored, self._feeds),
            self._max_file_bytes,
        )
        return known, observation

    def _known(self, name: NormalizedName, kept: bool) -> dict[str, FileRecord]:
        """The project's records by filename; from its kept parts, brought up to date with
        the rows written since, when there are any (``kept``: never on the event loop,
        which must not wait for the parts' lock)."""
        parts = self._taken_parts(name) if kept else None
        if parts is None:
            return {record.filename: record for record in self._ledger.files(name)}
        self._caught_up(name, parts)
        known = dict(parts.records)  # before they are put back for another thread to take
        self._keep_parts(name, parts)
        return known

    async def _write(self, observation: Observation, etag: str | None) -> int:
        """The look's records into the ledger, in a thread: a big project's first look
        writes thousands of rows, and any write may wait seconds for the database's write
        lock (the vetting process takes it in turn); the event loop answers everyone else
        meanwhile. A file of the project waits for the write in ``file_record``."""
        name = observation.project.name
        writing = asyncio.ensure_future(
            asyncio.to_thread(self._ledger.apply, observation, etag, ACTOR)
        )
        self._writing[writing] = name
        writing.add_done_callback(functools.partial(self._write_ended, name))
        return await asyncio.shield(writing)

    def _write_ended(self, name: NormalizedName, writing: "asyncio.Future[int]") -> None:
        """Run as the write ends, before anyone waiting for it: the new seq is known at
        once (the follower reads it later; a page stamped with a seq the catalog does not
        know yet would be built again), and no file the look changed is answered from its
        record before."""
        del self._writing[writing]
        self._writes_ended += 1
        if writing.cancelled() or writing.exception() is not None:
            return
        seq = writing.result()
        self._seq[name] = max(seq, self._seq.get(name, seq))
        self.files.forget([name])

    def writing(self, name: NormalizedName) -> bool:
        """Whether a look's write of ``name`` is in flight (its files wait for it)."""
        return name in self._writing.values()

    async def writes_done(self) -> None:
        """Once every look's write in flight when called is in the ledger (not those begun
        since: under a steady stream of looks that would never end)."""
        if self._writing:
            await asyncio.wait(set(self._writing))

    async def file_record(self, sha256: str, filename: str) -> FileRecord | None:
        """A file's record, None when the ledger has none. A page goes out before its
        look's write (in a thread) ends, so a file it lists, or one the look withdrew, can
        be asked for before the ledger has its new record: a miss, or a file of a project
        being written, waits for those writes and looks again."""
        ended = self._writes_ended
        record = await self.files.get(sha256, filename)  # from the ledger in a thread
        pending = [
            writing
            for writing, name in self._writing.items()
            if record is None or name == record.project
        ]
        if pending or ended != self._writes_ended:  # a write may have ended after the read
            if pending:
                await asyncio.wait(pending)
            record = await self.files.get(sha256, filename)
        if record is not None and record.state is not FileState.PROMOTED:
            # Refused from memory only after asking the ledger: another process (a replica,
            # the worker) may have promoted it since this one last followed the ledger.
            fresh = await asyncio.to_thread(self._ledger.file_by_digest, sha256, filename)
            if fresh is not None and fresh != record:
                self.files.put(fresh)
                record = fresh
        return record

    async def _write_handed_over(
        self, live: _Live, observation: Observation, etag: str | None
    ) -> None:
        try:
            seq = await self._write(observation, etag)
        except Exception:
            # The page of a look the ledger did not take is not served again: the next
            # request looks anew.
            log.exception("could not record the look at %s", observation.project.name)
            live.unwritten, live.written, live.looked_at = False, None, None
            live.pages.clear()
            self._page_cache.forget(observation.project.name)
            raise
        live.unwritten = False
        # Only the pages rendered from this look's records: a build that began before the
        # look may have kept an older page meanwhile, which must not pass for this seq.
        live.pages = {
            fmt: replace(page, seq=seq) if page.seq == UNWRITTEN_SEQ else page
            for fmt, page in live.pages.items()
        }
        if live.written is None:
            return
        name = observation.project.name
        rendered = any(page.seq == seq for page in live.pages.values())
        if rendered and not any(building == name for building, _fmt in self._building):
            live.written = None  # its page is made; the ledger has them now (see _keep)
        else:
            live.written = replace(live.written, project=replace(live.written.project, seq=seq))


def _checked(checking: "asyncio.Future[bool]") -> None:
    if not checking.cancelled() and checking.exception() is not None:
        # The request waits for the rebuild then, which meets the same ledger.
        log.warning("could not compare a page with the ledger: %s", checking.exception())


def _still_right(checking: "asyncio.Future[bool]") -> bool:
    """Whether the check is done and found the page before still right."""
    if not checking.done() or checking.cancelled() or checking.exception() is not None:
        return False
    return checking.result()


def _same_look(kept: _Written | None, used: _Written) -> bool:
    return kept is not None and kept.files is used.files


def _bases_served(page: KeptPage | None) -> list[str]:
    """The request bases to fill a page's successor for at once (the most recently used)."""
    return page.carried_bases if isinstance(page, PageTemplate) else []


def _alters_pages(before: ProjectRecord | None, observation: Observation) -> bool:
    """Whether the ledger gives the project a new seq for this observation."""
    return (
        before is None
        or observation.alters_pages
        or observation.project.status is not before.status
        or observation.project.versions != before.versions
    )


def _records_after(
    known: dict[str, FileRecord], observation: Observation, etag: str | None, seq: int
) -> _Written:
    records = known | {old.filename: new for old, new in observation.changed}
    records |= {record.filename: record for record in observation.new}
    return _Written(
        replace(observation.project, seq=seq, etag=etag),
        sorted(records.values(), key=lambda record: record.filename),  # ledger order
    )
