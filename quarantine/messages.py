"""What a notification says: outbox entries, grouped per release, rendered for a person.

Pure: no clock, no ledger, no network. The notifier hands in the entries of one group
and, per file, when its hold ends; every channel (webhook, Slack, email) renders the same
``Message``, so they all say the same thing.

Filenames and reasons can come from the upstream (hostile input): they are cleaned of
control and format characters before they reach any text.
"""

import hashlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.download_log.interface import ExposureSummary
from quarantine.feeds.osv import clean_line
from quarantine.outbox import OutboxEntry

GLOBAL = "*"  # the project of events that concern the whole mirror (cutoff, freeze)
MAX_FILES = 20  # files listed by name in one message; the rest are counted
MAX_REASONS = 10
REASON_CHARS = 500
_SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
_HELD_STATES = ("held", "review", "anomaly")  # an anomaly seen at first sight stays held


@dataclass(frozen=True, slots=True, order=True)
class ReleaseKey:
    """What one message is about: one kind of change to one release."""

    project: str
    version: str  # "" when the change concerns a whole project, or the whole mirror
    kind: str


@dataclass(frozen=True, slots=True)
class FileLine:
    filename: str
    sha256: str | None
    from_state: str | None
    to_state: str
    hold_until: str | None  # RFC 3339, for a file still held; None otherwise


@dataclass(frozen=True, slots=True)
class Message:
    key: str  # idempotency key: the same on every retry of the same group
    kind: str
    severity: str
    title: str
    details: tuple[str, ...]  # why, which files, until when, who: one line each
    project: str | None
    version: str | None
    files: tuple[FileLine, ...]
    reasons: tuple[str, ...]
    until: str | None  # until when it is held (a sentence), if that applies
    commands: tuple[str, ...]
    actors: tuple[str, ...]
    event_ids: tuple[str, ...]
    at: datetime  # when the latest change of the group was recorded
    # For a withdrawal: how often its files were served before (None: not known here).
    exposure: ExposureSummary | None = None

    @property
    def lines(self) -> tuple[str, ...]:
        """The whole plain-text message: what happened, the details, the commands."""
        commands = tuple(f"  {command}" for command in self.commands)
        return (f"{self.title}.", "", *self.details, "", "To act:", *commands)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class HeldFile(Protocol):
    """One held file for the digest (``quarantine.admin.Hold`` fits)."""

    @property
    def project(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def hold_until(self) -> str | None: ...


def clean(text: object, limit: int = REASON_CHARS) -> str:
    """One printable line: upstream text must not forge lines, headers or terminal codes."""
    return clean_line(str(text), limit)


def release_key(entry: OutboxEntry) -> ReleaseKey:
    payload = entry.payload
    return ReleaseKey(
        clean(payload.get("project") or GLOBAL, 200),
        clean(payload.get("version") or "", 100),
        entry.kind,
    )


def group_entries(entries: Iterable[OutboxEntry]) -> dict[ReleaseKey, list[OutboxEntry]]:
    """Entries per release and kind, in the order they were written."""
    groups: dict[ReleaseKey, list[OutboxEntry]] = {}
    for entry in sorted(entries, key=lambda item: item.id):
        groups.setdefault(release_key(entry), []).append(entry)
    return groups


def idempotency_key(event_ids: Iterable[str]) -> str:
    """The same set of events gives the same key, whatever order they come in."""
    digest = hashlib.sha256("\n".join(sorted(set(event_ids))).encode()).hexdigest()
    return f"msg_{digest[:32]}"  # 128 bits; short enough for one unfolded mail header


def render(
    entries: Sequence[OutboxEntry],
    holds: Mapping[str, datetime] | None = None,
    exposure: ExposureSummary | None = None,
) -> Message:
    """The message for one group (entries of one ``ReleaseKey``).

    ``holds`` maps a filename to the end of its cooling period, for files still held;
    ``exposure``, for a withdrawal, how often its files were served before it.
    """
    if not entries:
        raise ValueError("a message needs at least one outbox entry")
    key = release_key(entries[0])
    files = _files(entries, holds or {})
    reasons = _distinct(clean(entry.payload.get("reason", "")) for entry in entries)
    actors = _distinct(clean(entry.payload.get("actor", ""), 100) for entry in entries)
    event_ids = tuple(entry.event_id for entry in entries)
    at = max(entry.created_at for entry in entries)
    title = _title(key, len(files))
    until = _until(key.kind, files)
    commands = _commands(key, files, reasons)
    details = _details(files, reasons[:MAX_REASONS], until, actors, at)
    if exposure is not None:
        details.insert(-1, f"Served before: {exposure_text(exposure)}")
        commands = (f"lazaretto exposure {_target(key)}", *commands)
    return Message(
        key=idempotency_key(event_ids),
        kind=key.kind,
        severity=_severity(entry.severity for entry in entries),
        title=title,
        details=tuple(details),
        project=None if key.project == GLOBAL else key.project,
        version=key.version or None,
        files=files,
        reasons=reasons[:MAX_REASONS],
        until=until,
        commands=commands,
        actors=actors,
        event_ids=event_ids,
        at=at,
        exposure=exposure,
    )


def exposure_text(exposure: ExposureSummary) -> str:
    """One line: how many downloads, by how many clients, first and last."""
    if not exposure.downloads or exposure.first is None or exposure.last is None:
        return "no download recorded (within the download log's retention)"
    downloads = f"{exposure.downloads} download{'s' if exposure.downloads != 1 else ''}"
    clients = f"{exposure.clients} client{'s' if exposure.clients != 1 else ''}"
    first, last = format_timestamp(exposure.first), format_timestamp(exposure.last)
    return f"{downloads} by {clients}, first {first}, last {last}"


def _target(key: ReleaseKey) -> str:
    return shlex.quote(f"{key.project}=={key.version}" if key.version else key.project)


def _distinct(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def _severity(values: Iterable[str]) -> str:
    return max(values, key=lambda value: _SEVERITY_ORDER.get(value, 0), default="info")


def _files(entries: Sequence[OutboxEntry], holds: Mapping[str, datetime]) -> tuple[FileLine, ...]:
    found: dict[str, FileLine] = {}
    for entry in entries:
        raw = entry.payload.get("filename")
        if not raw:
            continue  # a change to a whole project or the mirror: no file
        to_state = clean(entry.payload.get("to_state", ""), 40)
        until = holds.get(raw) if to_state in _HELD_STATES else None
        found[raw] = FileLine(  # a later entry for the same file wins
            filename=clean(raw, 300),
            sha256=_sha256(entry.payload.get("sha256")),
            from_state=clean(entry.payload["from_state"], 40)
            if entry.payload.get("from_state")
            else None,
            to_state=to_state,
            hold_until=format_timestamp(until) if until else None,
        )
    return tuple(found.values())


def _sha256(value: object) -> str | None:
    text = str(value or "").lower()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _what(key: ReleaseKey) -> str:
    if key.project == GLOBAL:
        return "the mirror"
    return f"{key.project} {key.version}" if key.version else key.project


_TITLES = {
    "held-for-review": "{what} is held for review",
    "blocked": "{what} is blocked",
    "withdrawn": "{what} was withdrawn",
    "promoted-early": "{what} was promoted early by a person",
    "anomaly": "Anomaly in {what}",
    "frozen": "Promotion is frozen on {what}",
    "cutoff": "A cutoff is in force on {what}",
    "exempted": "{what} is exempt from the hold",
    "unblocked": "{what} was unblocked",
    "blocked-by-admin": "{what} was blocked by an admin",
    "decision": "A person decided on {what}",
}


def _title(key: ReleaseKey, file_count: int) -> str:
    title = _TITLES.get(key.kind, clean(key.kind, 40) + ": {what}").format(what=_what(key))
    if file_count > 1:
        title += f" ({file_count} files)"
    return title


def _states(files: Sequence[FileLine]) -> set[str]:
    """The states the files are in now (an anomaly event leaves its file held)."""
    return {"held" if line.to_state == "anomaly" else line.to_state for line in files}


def _until(kind: str, files: Sequence[FileLine]) -> str | None:
    states = _states(files)
    ends = sorted(line.hold_until for line in files if line.hold_until)
    if "review" in states:
        cooling = f"; its cooling period ends {ends[-1]}" if ends else ""
        return f"Held until a person decides (a review is never ended by time alone{cooling})."
    if "held" in states:
        if ends:
            return f"Held until {ends[-1]} (end of its cooling period), unless a check objects."
        return "Held until its cooling period ends and its checks pass."
    if "blocked" in states:
        return "Blocked: never served unless a person overrides the block."
    if "withdrawn" in states:
        return "Withdrawn: no longer served (installs get 410) unless a person decides otherwise."
    if kind == "blocked-by-admin":
        return "Blocked for files still to come, too, until a person unblocks it."
    return None


def _commands(
    key: ReleaseKey, files: Sequence[FileLine], reasons: Sequence[str]
) -> tuple[str, ...]:
    """The exact commands to act on it, promote and block first."""
    if key.project == GLOBAL:
        return _mirror_commands(key.kind)
    target = _target(key)
    states = _states(files)
    commands = []
    if key.version and states & {"held", "review"}:
        commands.append(f'lazaretto promote {target} --reason "..."')
    if key.version and "blocked" in states:
        commands.append(f'lazaretto promote {target} --force --reason "..."')
    if key.kind == "exempted":
        commands.append(f'lazaretto unexempt {target} --reason "..."')
    admin_block = key.kind == "blocked-by-admin" or any(
        reason.startswith("blocked by an admin") for reason in reasons
    )
    if admin_block:
        commands.append(f'lazaretto unblock {target} --reason "..."')
    elif not files or states & {"held", "review", "promoted"}:
        commands.append(f'lazaretto block {target} --reason "..."')
    commands.append(f"lazaretto explain {target}")
    return tuple(commands)


def _mirror_commands(kind: str) -> tuple[str, ...]:
    if kind == "frozen":
        return ('lazaretto unfreeze --reason "..."', "lazaretto holds")
    if kind == "cutoff":
        return ('lazaretto cutoff clear --reason "..."', "lazaretto holds")
    return ("lazaretto holds",)


def _details(
    files: Sequence[FileLine],
    reasons: Sequence[str],
    until: str | None,
    actors: Sequence[str],
    at: datetime,
) -> list[str]:
    lines = ["Why:"]
    lines.extend(f"  - {reason}" for reason in reasons or ("(no reason recorded)",))
    if files:
        lines.append(f"Files ({len(files)}):")
        lines.extend(f"  - {_file_text(line)}" for line in files[:MAX_FILES])
        if len(files) > MAX_FILES:
            lines.append(f"  - and {len(files) - MAX_FILES} more")
    if until:
        lines.append(f"Until: {until}")
    lines.append(f"Recorded: {format_timestamp(at)} by {', '.join(actors) or 'unknown'}")
    return lines


def _file_text(line: FileLine) -> str:
    change = f"{line.from_state} -> {line.to_state}" if line.from_state else line.to_state
    digest = f", sha256 {line.sha256[:16]}..." if line.sha256 else ""
    until = f", held until {line.hold_until}" if line.hold_until else ""
    return f"{line.filename} ({change}{digest}{until})"


# -- the daily digest of routine holds -------------------------------------------------------


def render_digest(held: Sequence[HeldFile], day: datetime) -> Message:
    """One message listing every release still held, for a daily look (routine holds)."""
    releases: dict[tuple[str, str], list[HeldFile]] = {}
    for item in held:
        releases.setdefault((clean(item.project, 200), clean(item.version, 100)), []).append(item)
    review = sum(1 for item in held if item.state == "review")
    title = (
        f"Daily digest {day:%Y-%m-%d}: {len(held)} files of {len(releases)} releases held"
        f" ({review} for review)"
    )
    lines = ["Held releases:"]
    for (project, version), items in sorted(releases.items()):
        lines.append(f"  - {_digest_line(project, version, items)}")
    if not releases:
        lines = ["Nothing is held."]
    stamp = format_timestamp(day)[:10]
    return Message(
        key=f"digest_{stamp}",  # one digest a day: a re-send the same day is a duplicate
        kind="digest",
        severity="info",
        title=title,
        details=tuple(lines),
        project=None,
        version=None,
        files=tuple(
            FileLine(clean(item.filename, 300), None, None, clean(item.state, 40), item.hold_until)
            for item in held
        ),
        reasons=(),
        until=None,
        commands=("lazaretto holds", "lazaretto explain PROJECT==VERSION"),
        actors=(),
        event_ids=(),
        at=day,
    )


def _digest_line(project: str, version: str, items: Sequence[HeldFile]) -> str:
    states = sorted({clean(item.state, 40) for item in items})
    ends = sorted(item.hold_until for item in items if item.hold_until)
    if "review" in states:
        until = "until a person decides"
    elif ends:
        until = f"until {format_timestamp(parse_timestamp(ends[-1]))}"
    else:
        until = "until its checks pass"
    reason = clean(items[0].reason, 200)
    count = f"{len(items)} file{'s' if len(items) != 1 else ''}"
    return f"{project} {version}: {count}, {'/'.join(states)} {until} ({reason})"
