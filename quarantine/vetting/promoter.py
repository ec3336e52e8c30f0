"""The background worker that moves held files towards promotion.

It fetches the bytes of held files early (so promotion is not waiting on a download),
vets each file as soon as its bytes are stored (a pipeline with bounded concurrency for
each step, in the order of ``quarantine.vetting.queue``: what clients asked for first), asks
the upstream again when a cooled file needs a fresh look, and applies the decisions. A
project a client asks for while a round runs joins that round at the front, and is
decided as soon as its own files are done. One failing file never stops the others.

Files a client is about to install (the *likely* lane, see ``quarantine.vetting.queue``)
never wait for a worker, a fetch or a vetting turn held by other work: the other files
keep the bounds they always had (``2 * concurrency`` in hand, ``concurrency`` fetched and
``concurrency`` vetted at once), and likely files have workers and fetches of their own,
twice as many (a resolver's first run asks for a hundred of them, mostly small: their
fetches wait on the network, not on this machine), and the inspection pool serves them
first.

A likely file's release also brings what it requires (``quarantine.vetting.ahead``): once
its wheel is here, its dependencies are looked at and join the round as if a client had
asked for them, so they are vetted beside it, not after the resolver's next run.

A round must stay cheap with thousands of held files, because it shares the event loop
with serving: the held files are read once per round, a file known to be vetted is not
asked about again, and a project whose held files are all just cooling is not decided
again until its first hold ends or something it depends on changes (its records, the
policy, the freeze, the feeds). Every project is still decided afresh at least once a
minute, so nothing this cache misses can stall a promotion for long.
"""

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from packaging.utils import NormalizedName

from quarantine.clock import Clock
from quarantine.clock_guard import ClockGuard
from quarantine.decide import Verdict, awaits_download, decide, hold_until
from quarantine.errors import StaleTransition
from quarantine.feeds.in_force import Feeds, with_advisories
from quarantine.inspect.priority import Priority
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import PolicySource
from quarantine.models import FileRecord, FileState
from quarantine.platforms import PlatformFilter
from quarantine.policy import Policy
from quarantine.source import ArtifactSource, FetchFailed, IntegrityFailure, LookFailed
from quarantine.vetting.ahead import MAX_DEPTH, environments, needed, wheel_requirements
from quarantine.vetting.fetch_retry import COUNTED, FailureKind, refusal, refused_by_config
from quarantine.vetting.queue import MAX_ASKED, WorkQueue

if TYPE_CHECKING:  # the worker runs without a vetter in tests of the time rules alone
    from quarantine.vetting.worker import Vetter

log = logging.getLogger(__name__)
ACTOR = "system:promoter"


RECHECK_AT_LEAST_EVERY = timedelta(minutes=1)
WAKE_DELAY_SECONDS = 1.0  # first sights wait this long, so a burst of them is one round
SETTLE_EVERY_SECONDS = 10.0  # a project with files in flight is decided at most this often
# Workers beyond the usual ones, for likely files only: each holds its file until it is
# vetted, so these let the inspection pool's line see every likely file (the largest goes
# first there). On the real index sixteen workers all held files waiting in that line,
# and litellm's wheel, asked for meanwhile, was not even fetched for 8 s.
LIKELY_IN_LINE = 64


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A project whose held files were all cooling when last decided, and on what."""

    records: tuple[FileRecord, ...]
    policy: Policy
    frozen: str | None
    feeds: str
    until: datetime  # the first hold ends (or the safety recheck is due)

    def still(self, records: tuple[FileRecord, ...], inputs: "_Inputs") -> bool:
        return (
            inputs.now < self.until
            and records == self.records
            and inputs.policy == self.policy
            and inputs.frozen == self.frozen
            and inputs.feeds == self.feeds
        )


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What every decision of one round depends on besides the project's own records."""

    policy: Policy
    frozen: str | None
    feeds: str
    now: datetime


@dataclass
class Round:
    """What one pass did, for logs and tests."""

    fetched: int = 0
    fetch_failures: int = 0
    rejected: int = 0
    decided: int = 0  # projects whose held files were decided again
    looks: int = 0
    look_failures: int = 0
    vetted: int = 0
    vetting_failures: int = 0
    promoted: list[str] = field(default_factory=list)
    vetting_order: list[str] = field(default_factory=list)  # files vetted, in order
    vetted_projects: set[NormalizedName] = field(default_factory=set)
    settled_early: set[NormalizedName] = field(default_factory=set)  # decided mid-round


class Promoter:
    def __init__(
        self,
        ledger: Ledger,
        source: ArtifactSource,
        policy: PolicySource,
        clock: Clock,
        concurrency: int = 4,
        on_change: Callable[[], object] = lambda: None,
        guard: ClockGuard | None = None,
        vetter: "Vetter | None" = None,
        feeds: Feeds | None = None,
        fetch_settings: str = "",
        settle_every_seconds: float = SETTLE_EVERY_SECONDS,
    ) -> None:
        """``fetch_settings`` names the settings that decide whether a file may be fetched
        at all (a size cap, allowed hosts): files they refused under others are tried again."""
        self._ledger = ledger
        self._source = source
        self._policies = policy  # read at each use: admins change it at run time
        self._clock = clock
        self._concurrency = concurrency
        # Fetches at once, for likely files and for the others; unlikely files vetted at once.
        self._fetching = {
            True: asyncio.Semaphore(concurrency * 2),
            False: asyncio.Semaphore(concurrency),
        }
        self._vetting = asyncio.Semaphore(concurrency)
        self._queue = WorkQueue(lambda record: hold_until(record, self._policies.current()))
        self._round: Round | None = None  # the round running now
        self._wake = asyncio.Event()
        self._work_arrived = asyncio.Event()  # a file queued or finished during a round
        self._settle_every = settle_every_seconds
        self._settled_at: dict[NormalizedName, float] = {}  # projects with work in flight
        self._lock = asyncio.Lock()
        self._on_change = on_change  # lets the serving side drop pages that changed
        self._guard = guard or ClockGuard(ledger, clock)
        self._vetter = vetter
        self._feeds = feeds
        self._waiting: dict[NormalizedName, _Waiting] = {}
        self._vetted: set[tuple[str, str]] = set()  # (sha256, filename), all checks reported
        self._vetted_for: tuple[str, ...] = ()  # the required checks _vetted is complete for
        # The filter the last round decided with. A round after it changes reads every held
        # file, those outside the old filter too, and decides them all again.
        self._filter: PlatformFilter | None = None
        self._everything = True  # this round reads the files outside the filter too
        self._fetch_settings = fetch_settings
        self._settings_reconsidered: str | None = None
        self._backing_off: set[tuple[NormalizedName, str]] = set()  # failed lately: not yet
        # Dependencies asked for ahead (``quarantine.vetting.ahead``): how many steps from
        # what a client asked for, and the extras asked of them; releases already read.
        self._ahead: dict[NormalizedName, tuple[int, frozenset[str]]] = {}
        self._read_ahead: set[tuple[NormalizedName, str]] = set()
        self._asking_ahead: set[asyncio.Task[None]] = set()
        self._ahead_looks = asyncio.Semaphore(concurrency)

    @property
    def vets(self) -> bool:
        """Whether this promoter has a vetter: one without may only run in tests of the
        time rules, never beside a server."""
        return self._vetter is not None

    def close(self) -> None:
        """Stop the vetter's inspection workers."""
        for task in self._asking_ahead:
            task.cancel()
        if self._vetter is not None:
            self._vetter.close()

    def wake(self, project: NormalizedName | None = None, asked: bool = False) -> None:
        """New held files were seen (of ``project``, which a client ``asked`` for): fetch
        and vet them soon, and before the background's backlog when a client asked."""
        if project is not None and asked:
            self._ahead.pop(project, None)  # a client asks for it: no longer ahead of one
            self._join(project)
        self._wake.set()

    def _join(self, project: NormalizedName, ahead: bool = False) -> None:
        """``project``'s files go first from now on, in the round running if there is one
        (``ahead``: after those of the projects clients asked for)."""
        for record, priority in self._queue.ask(project, ahead):
            if self._vetter is not None:  # in hand already: its inspections move up too
                self._vetter.hurry(record, priority)
        if self._round is not None:  # a round is running: join it now, at the front
            self._offer_project(project, self._round)
            self._work_arrived.set()

    async def run_forever(
        self, interval_seconds: float, wake_delay_seconds: float = WAKE_DELAY_SECONDS
    ) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a broken round must not end the worker; the next one retries
                log.exception("promotion round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_seconds)
                # A resolver walking a dependency tree sees many projects in a burst: answer
                # them first, then fetch and vet everything they held in one round.
                await asyncio.sleep(wake_delay_seconds)
            self._wake.clear()

    async def run_once(self) -> Round:
        async with self._lock:
            result = Round()
            self._forget_vetted_if_checks_changed()
            self._reconsider_settings_refusals()
            now = self._clock.now()
            self._backing_off = {
                (attempts.project, attempts.filename)
                for attempts in self._ledger.fetch_attempts()
                if attempts.waiting(now)
            }
            policy = self._policies.current()
            wheel_filter = policy.wheel_filter
            self._everything = wheel_filter != self._filter
            held = self._held()
            self._round = result
            try:
                for record in held:
                    self._offer(record, result, policy)
                self._vetted &= {(record.sha256, record.filename) for record in held}
                await self._work_through(result)
            finally:
                self._round = None
            held = self._held()  # stored flags and states moved
            by_project: dict[NormalizedName, list[FileRecord]] = defaultdict(list)
            for record in held:
                by_project[record.project].append(record)
            for project in result.vetted_projects - result.settled_early:
                self._waiting.pop(project, None)
            self._waiting = {p: w for p, w in self._waiting.items() if p in by_project}
            inputs = self._inputs()
            for project in sorted(by_project.keys() - result.settled_early):
                waiting = self._waiting.get(project)
                if waiting is not None and waiting.still(tuple(by_project[project]), inputs):
                    continue
                await self._settle_project(project, inputs, result)
            self._filter = wheel_filter
            self._on_change()
            return result

    def _held(self, project: NormalizedName | None = None) -> list[FileRecord]:
        if self._everything:
            return self._ledger.held(project)
        return self._ledger.held_inside(project)

    def _inputs(self) -> _Inputs:
        feeds = self._feeds.digest if self._feeds is not None else ""
        return _Inputs(self._policies.current(), self._guard.frozen(), feeds, self._clock.now())

    # -- the pipeline: each file fetched, then vetted at once, most urgent first ----------
    def _forget_vetted_if_checks_changed(self) -> None:
        required = self._policies.current().required_checks
        if required != self._vetted_for:
            self._vetted, self._vetted_for = set(), required

    def _offer_project(self, project: NormalizedName, result: Round) -> None:
        policy = self._policies.current()
        for record in self._held(project):
            self._offer(record, result, policy)

    def _offer(self, record: FileRecord, result: Round, policy: Policy) -> None:
        """Queue ``record`` if its bytes or its vetting are missing, and it is a file of
        the configured platforms and Pythons (others are never fetched nor vetted) that
        is not deferred (fetched only when a client asks for it)."""
        if not policy.wheel_filter.admits(record.filename) or awaits_download(record, policy):
            return
        if not record.stored:
            if record.sha256 and (record.project, record.filename) not in self._backing_off:
                self._queue.put(record, self._clock.now())
            return
        if self._needs_vetting(record):
            self._queue.put(record, self._clock.now())

    def _needs_vetting(self, record: FileRecord) -> bool:
        key = (record.sha256, record.filename)
        if self._vetter is None or key in self._vetted:
            return False
        if self._vetter.needs_vetting(record):
            return True
        self._vetted.add(key)
        return False

    async def _work_through(self, result: Round) -> None:
        """Until the queue is empty: the files asked for join it while this runs."""
        # A group: a worker that fails stops its siblings, none goes on past the round.
        async with asyncio.TaskGroup() as group:
            for _ in range(self._concurrency * 4 + LIKELY_IN_LINE):
                group.create_task(self._work(result))

    async def _work(self, result: Round) -> None:
        while True:
            # Half the workers at most on unlikely files: the others wait for likely ones.
            busy = self._queue.unlikely_in_hand() >= self._concurrency * 2
            record = self._queue.pop(likely_only=busy)
            if record is None:
                if not self._queue.in_hand() and not self._asking_ahead:
                    return  # nothing waits and nobody works: the round is over
                # Files a client asks for may still join the round: a worker that found
                # the queue empty stays, or they would wait behind the files in hand (a
                # big wheel's vetting takes minutes).
                self._work_arrived.clear()
                await self._work_arrived.wait()
                continue
            likely = self._queue.priority(record).likely
            try:
                await self._fetch_and_vet(record, result)
            finally:
                drained = self._queue.done(record)
                self._work_arrived.set()  # the last file done ends the round for all
            if self._settle_due(record.project, drained):
                # Promote what a client waits for now, not after the rest of the backlog,
                # and let every project's reasons say what its files wait for now.
                await self._settle_project(record.project, self._inputs(), result)
                result.settled_early.add(record.project)
            elif not await self._settle_file(record, result) and likely:
                # A file a resolver waits for, cooled and vetted, but the last look is too
                # old: the project's decision looks once, for all its files.
                await self._settle_project(record.project, self._inputs(), result)
                result.settled_early.add(record.project)

    def _settle_due(self, project: NormalizedName, drained: bool) -> bool:
        """Whether to decide ``project`` now: when its last queued file is done, and while
        a big release is still being vetted, after its first file and then every
        ``settle_every`` seconds. In between, each file done is decided alone
        (``_settle_file``): pydantic-core's wheel for CPython 3.12 waited 44 s for its
        Windows wheels on the real index, when only the project was decided."""
        now = time.monotonic()
        if drained:
            self._settled_at.pop(project, None)
            return True
        last = self._settled_at.get(project)
        if last is not None and now - last < self._settle_every:
            return False
        self._settled_at[project] = now
        return True

    async def _fetch_and_vet(self, record: FileRecord, result: Round) -> None:
        priority = self._queue.priority(record)
        if not record.stored:
            fetched = await self._fetch_one(record, result, priority)
            if fetched is not None and self._brings_dependencies(fetched):
                self._ask_ahead_of(fetched)
            if fetched is None or not self._needs_vetting(fetched):
                return
            record = fetched
        elif self._brings_dependencies(record):
            self._ask_ahead_of(record)
        if self._vetter is None:
            return
        priority = self._queue.priority(record)  # a client may have asked meanwhile
        if priority.likely:
            await self._vet_one(record, result, priority)  # no turn: the pool serves it first
        else:
            async with self._vetting:
                # A client may have asked meanwhile: the turn is taken, the lane is new.
                await self._vet_one(record, result, self._queue.priority(record))
        result.vetted_projects.add(record.project)

    # -- dependencies asked for ahead (quarantine.vetting.ahead) ---------------------------
    def _brings_dependencies(self, record: FileRecord) -> bool:
        """A file a client is about to install, or one of a project asked for ahead that
        its resolver would install: its release's requirements are asked for ahead."""
        if self._queue.priority(record).likely:
            return True
        return record.project in self._ahead and self._queue.installs_next(record)

    def _ask_ahead_of(self, record: FileRecord) -> None:
        """Ask for what the release of ``record`` (a file a client is about to install)
        requires, once per release, in the background: its vetting does not wait."""
        depth, extras = self._ahead.get(record.project, (0, frozenset()))
        release = (record.project, record.version)
        if depth >= MAX_DEPTH or release in self._read_ahead:
            return
        if len(self._read_ahead) >= MAX_ASKED:
            self._read_ahead.clear()  # at worst a release is read again
        self._read_ahead.add(release)
        task = asyncio.create_task(self._ask_ahead(record, depth + 1, extras))
        self._asking_ahead.add(task)
        task.add_done_callback(self._asked_ahead)

    def _asked_ahead(self, task: "asyncio.Task[None]") -> None:
        self._asking_ahead.discard(task)
        self._work_arrived.set()  # the round may be over, or have new files
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.warning("asking ahead failed: %s", error, exc_info=error)

    async def _ask_ahead(self, record: FileRecord, depth: int, extras: frozenset[str]) -> None:
        try:
            path = await self._source.local_copy(record)
        except (FetchFailed, IntegrityFailure) as failure:
            log.info("requirements of %s not read: %s", record.filename, failure)
            return
        lines = await asyncio.to_thread(wheel_requirements, path, record.filename)
        where = environments(self._policies.current().wheel_filter)
        wanted = needed(lines, where, extras)
        for name in [n for n in wanted if self._queue.asked(n) or n in self._ahead]:
            del wanted[name]  # asked already (by a client, or ahead of another release)
        for name, its_extras in wanted.items():
            self._ahead[name] = (depth, its_extras)
        while len(self._ahead) > MAX_ASKED:
            del self._ahead[next(iter(self._ahead))]
        await asyncio.gather(*(self._look_ahead(name) for name in sorted(wanted)))

    async def _look_ahead(self, project: NormalizedName) -> None:
        async with self._ahead_looks:
            try:
                await self._source.look(project)
            except LookFailed as failure:
                log.info("dependency %s not asked for ahead: %s", project, failure)
                return
        self._join(project, ahead=True)
        self._wake.set()

    async def _fetch_one(
        self, record: FileRecord, result: Round, priority: Priority
    ) -> FileRecord | None:
        async with self._fetching[priority.likely]:
            try:
                started = time.monotonic()
                fetched = await self._source.fetch(record)
                result.fetched += 1
                log.info(
                    "fetched %s (%.1f MB) in %.1f s (%s)",
                    record.filename,
                    (record.size or 0) / 1e6,
                    time.monotonic() - started,
                    priority.lane.name.lower(),
                )
                return fetched
            except IntegrityFailure as failure:
                result.rejected += 1
                self._reject(record, refusal(FailureKind.DIGEST, str(failure)))
            except FetchFailed as failure:
                result.fetch_failures += 1
                self._count_failure(record, failure, result)
        return None

    def _count_failure(self, record: FileRecord, failure: FetchFailed, result: Round) -> None:
        """Try again later, a bounded number of times: a glitch never refuses a file."""
        if failure.kind not in COUNTED:
            log.warning("fetching %s failed, will retry: %s", record.filename, failure)
            return
        attempts = self._ledger.record_fetch_failure(
            record, failure.kind, failure.reason, failure.config, ACTOR, self._clock.now()
        )
        if attempts.exhausted():
            result.rejected += 1
            self._reject(record, refusal(failure.kind, failure.reason))
            return
        log.warning(
            "fetching %s failed (attempt %d), next try after %s: %s",
            record.filename,
            attempts.attempts,
            attempts.next_attempt_at,
            failure,
        )

    def _reconsider_settings_refusals(self) -> None:
        """Files the fetch settings refused are tried again once the settings change: a
        restart with a fixed config brings them back."""
        if self._settings_reconsidered == self._fetch_settings:
            return
        for attempts in self._ledger.fetch_attempts():
            if not attempts.settings_changed(self._fetch_settings):
                continue
            self._ledger.forget_fetch_attempts(attempts.project, attempts.filename)
            record = self._ledger.file(attempts.project, attempts.filename)
            if record is not None and refused_by_config(record):
                note = "fetch settings changed since it was refused: fetched again"
                with contextlib.suppress(StaleTransition):
                    self._ledger.transition(record, FileState.HELD, note, ACTOR, self._clock.now())
        self._settings_reconsidered = self._fetch_settings

    async def _vet_one(self, record: FileRecord, result: Round, priority: Priority) -> None:
        assert self._vetter is not None
        try:
            await self._vetter.vet(record, priority)
            result.vetted += 1
            result.vetting_order.append(record.filename)
        except (FetchFailed, IntegrityFailure) as failure:
            log.warning("vetting %s must wait: %s", record.filename, failure)
        except Exception:  # one broken file never stops the others; it stays held
            result.vetting_failures += 1
            log.exception("vetting %s failed; it stays held", record.filename)

    def _reject(self, record: FileRecord, reason: str) -> None:
        current = self._ledger.file(record.project, record.filename)
        if current is None or current.state is not FileState.HELD:
            return
        try:
            self._ledger.transition(current, FileState.REJECTED, reason, ACTOR, self._clock.now())
        except StaleTransition:
            log.info("%s changed while being rejected; the next round looks again", record.filename)

    async def _settle_project(
        self, project: NormalizedName, inputs: _Inputs, result: Round
    ) -> None:
        result.decided += 1
        verdicts = self._verdicts(project)
        if any(verdict.needs_look for _, verdict in verdicts):
            try:
                await self._source.look(project)
                result.looks += 1
            except LookFailed as failure:
                # No fresh look, no promotion: a takedown may be what we cannot see.
                result.look_failures += 1
                log.warning("upstream look for %s failed; nothing promoted: %s", project, failure)
                return
            verdicts = self._verdicts(project)
        after = [self._apply(record, verdict, result) for record, verdict in verdicts]
        if all(record is not None for record in after):
            # Unmoved, or only their reasons told anew (vetted while cooling, say): only
            # time can change them now.
            now_stored = [
                (record, verdict)
                for record, (_, verdict) in zip(after, verdicts, strict=True)
                if record
            ]
            self._remember_waiting(project, now_stored, inputs)

    async def _settle_file(self, record: FileRecord, result: Round) -> bool:
        """Decide one file just fetched or vetted, alone: cheap beside deciding a project of
        thousands of files. On the real index a vetted wheel of a big release otherwise
        waited up to a minute, until another file of its project was done (its cooling
        siblings come last). A file that needs a fresh look leaves it to the project's
        next decision, which looks once for all its files: then False."""
        project = self._ledger.project(record.project)
        current = self._ledger.file(record.project, record.filename)
        if project is None or current is None or current.state is not FileState.HELD:
            return True
        stored = self._ledger.evidence(record.project, record.filename)
        evidence = with_advisories(current, stored, self._feeds)
        inputs = self._inputs()
        verdict = decide(current, project, inputs.policy, inputs.now, inputs.frozen, evidence)
        if verdict.needs_look:
            return False
        self._apply(current, verdict, result)
        return True

    def _remember_waiting(
        self,
        project: NormalizedName,
        verdicts: list[tuple[FileRecord, Verdict]],
        inputs: _Inputs,
    ) -> None:
        """Note when this project's decisions can next change, if only time can change them."""
        self._waiting.pop(project, None)
        ends = []
        for record, verdict in verdicts:
            if record.state is not FileState.HELD or verdict.state is not FileState.HELD:
                return
            if verdict.needs_bytes or verdict.needs_vetting or verdict.needs_look:
                return  # resolved by work in flight: decide again next round
            if verdict.hold_until is not None:
                ends.append(verdict.hold_until)
        until = min([*ends, inputs.now + RECHECK_AT_LEAST_EVERY])
        records = tuple(record for record, _ in verdicts)
        self._waiting[project] = _Waiting(
            records, inputs.policy, inputs.frozen, inputs.feeds, until
        )

    def _verdicts(self, project: NormalizedName) -> list[tuple[FileRecord, Verdict]]:
        state = self._ledger.project(project)
        if state is None:
            return []
        frozen = self._guard.frozen()
        now = self._clock.now()
        policy = self._policies.current()
        stored = self._ledger.evidence(project)
        verdicts = []
        for record in self._held(project):
            evidence = with_advisories(record, stored, self._feeds)
            verdicts.append((record, decide(record, state, policy, now, frozen, evidence)))
        return verdicts

    def _apply(self, record: FileRecord, verdict: Verdict, result: Round) -> FileRecord | None:
        """Record the verdict: the file's record as the ledger now has it when it is still
        held (None when it moved to another state, or someone else moved it)."""
        if verdict.state == record.state and verdict.reason == record.reason:
            return record
        try:
            after = self._ledger.transition(
                record, verdict.state, verdict.reason, ACTOR, self._clock.now()
            )
        except StaleTransition:
            return None  # someone else moved it; the next round decides again from fresh data
        if verdict.state is FileState.PROMOTED:
            result.promoted.append(record.filename)
        return after if after.state is record.state else None
