"""Malware feeds in force: the merged OSV index, reloaded on a schedule, applied at once.

A reload that brings a new advisory condemns matching files wherever they are: held
files are blocked, promoted ones withdrawn (their URLs answer 410), with the advisory
recorded as evidence.
"""

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from packaging.utils import NormalizedName

from quarantine.decide import decide
from quarantine.errors import StaleTransition
from quarantine.evidence import Action, Evidence
from quarantine.feeds.osv import FeedIndex, feed_evidence, load_feed, merge
from quarantine.ledger.interface import Ledger
from quarantine.models import FileRecord, FileState
from quarantine.policy import Policy

log = logging.getLogger(__name__)
ACTOR = "system:malware-feed"
_LIVE_STATES = (FileState.HELD, FileState.REVIEW, FileState.PROMOTED)


class Feeds:
    """The advisories in force. ``prefixes`` picks which record ids count (default: the
    malicious-package ``MAL-`` records; ordinary vulnerability advisories do not block)."""

    def __init__(self, sources: Sequence[Path] = (), prefixes: Sequence[str] = ("MAL-",)) -> None:
        self._sources = tuple(sources)
        self._prefixes = tuple(prefixes)
        self._loaded: dict[Path, FeedIndex] = {}
        self._index: FeedIndex = merge([])
        self.problems: list[str] = []

    @property
    def digest(self) -> str:
        return self._index.digest

    @property
    def records_count(self) -> int:
        return self._index.records_count

    def reload(self, sources: Sequence[Path] | None = None) -> bool:
        """Read every feed again; True when what they say changed.

        A feed that cannot be read now keeps its last good copy in force: a broken
        download must never lift a block.
        """
        if sources is not None:
            self._sources = tuple(sources)
        problems: list[str] = []
        for source in self._sources:
            try:
                self._loaded[source] = load_feed(source)
            except OSError as error:  # FeedError is an OSError too
                kept = "keeping its last good copy" if source in self._loaded else "not loaded"
                problems.append(f"{source}: {error}; {kept}")
                continue
            problems.extend(f"{source}: {problem}" for problem in self._loaded[source].problems)
        merged = merge([self._loaded[source] for source in self._sources if source in self._loaded])
        changed = merged.digest != self._index.digest
        self._index, self.problems = merged, problems
        return changed

    def evidence_for(self, project: NormalizedName, version: str) -> Evidence | None:
        """The feeds' evidence for one release, or None when no advisory names it."""
        if not version:
            return None
        matches = [
            record
            for record in self._index.matches(project, version)
            if not self._prefixes or record.id.startswith(self._prefixes)
        ]
        return feed_evidence(matches) if matches else None

    def projects(self) -> set[NormalizedName]:
        return self._index.projects()


def with_advisories(
    record: FileRecord, stored: Mapping[str, Sequence[Evidence]], feeds: "Feeds | None"
) -> list[Evidence]:
    """A file's stored evidence plus what the malware feeds say about it right now."""
    found = list(stored.get(record.filename, []))
    if feeds is not None:
        advisory = feeds.evidence_for(record.project, record.version)
        if advisory is not None:
            found.append(advisory)
    return found


def apply_feeds(ledger: Ledger, feeds: Feeds, policy: Policy, at: datetime) -> list[FileRecord]:
    """Block or withdraw every live file an advisory names; the files that changed."""
    condemned = []
    known = set(ledger.projects())
    for project in sorted(feeds.projects() & known):
        state = ledger.project(project)
        if state is None:
            continue
        for record in ledger.files(project):
            evidence = feeds.evidence_for(project, record.version)
            if record.state not in _LIVE_STATES or evidence is None:
                continue
            if evidence.action is not Action.BLOCK:
                continue
            ledger.record_evidence(record, evidence, at)
            verdict = decide(record, state, policy, at, evidence=[evidence])
            try:
                changed = ledger.transition(record, verdict.state, verdict.reason, ACTOR, at)
                condemned.append(changed)
            except StaleTransition:
                log.info("%s changed while an advisory was applied; next pass", record.filename)
    return condemned
