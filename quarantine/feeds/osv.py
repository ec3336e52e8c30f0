"""Malware feeds: OSV records that condemn chosen versions of chosen projects.

The records come from a directory (a checkout of an advisory repository, or files an
admin dropped there) or from a downloaded OSV export (a ``.zip`` of one JSON file per
record). Both are hostile input: a record that is not valid JSON, has a field of the
wrong type, or is too large is skipped and named in ``FeedIndex.problems``; it never
stops the other records from loading. A source that cannot be read at all raises
``FeedError``, so that a caller reloading on a schedule keeps the index it had rather
than dropping every block at once.

Only ``affected`` entries of the ``PyPI`` ecosystem count. Names are compared after
PEP 503 normalization and versions as PEP 440 versions (``1.0`` is ``1.0.0``); a version
string that is not PEP 440 only ever matches the same string exactly.

Range evaluation follows the OSV schema's algorithm: the events of an ``ECOSYSTEM`` or
``SEMVER`` range are sorted by version (``introduced: "0"`` first, ties kept in the
order given); ``introduced`` opens an affected interval, ``fixed`` closes it before
that version, ``last_affected`` closes it after that version, an interval left open
covers every later version, and ``limit`` events (if any) admit only versions below one
of them. ``GIT`` ranges need the repository's history and are ignored.

This module never downloads anything: the serving side fetches an export to a file (or
into memory) and hands it to ``load_feed`` (or ``load_feed_bytes``).
"""

import hashlib
import io
import json
import lzma
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from quarantine.clock import parse_timestamp
from quarantine.errors import QuarantineError
from quarantine.evidence import Action, Evidence, Finding, Severity, action_for, strongest
from quarantine.inspect.rules.catalog import rule

CHECK = "feeds"
RULE = rule(
    "malware-advisory",
    Severity.CRITICAL,
    CHECK,
    "an OSV malware record names this release (always blocks)",
    fixed=Action.BLOCK,
)
ECOSYSTEM = "PyPI"

MiB = 1024 * 1024
SUMMARY_CHARS = 200
MAX_PROBLEMS = 1000  # past this, problems are only counted
_CHUNK = MiB

# An OSV id is "<PREFIX>-<ENTRYID>"; the prefixes in use are letters, digits and dashes,
# entry ids add dots, colons and underscores. Anything else is not an id we show.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
_RANGE_TYPES = frozenset({"ECOSYSTEM", "SEMVER", "GIT"})
_EVENT_KINDS = frozenset({"introduced", "fixed", "last_affected", "limit"})


class FeedError(QuarantineError, OSError):
    """A feed source that cannot be read at all (missing, not a directory or a zip).

    An ``OSError`` too, since it is one to a caller. A caller that reloads feeds should
    keep what that source said before rather than drop its blocks.
    """


class MalformedRecord(ValueError):
    """One OSV record that is not usable; the message is the reason, safe to show."""


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """What one load may cost. The defaults fit the real exports many times over."""

    max_record_bytes: int = 16 * MiB  # one JSON record
    max_member_bytes: int = 64 * MiB  # one zip member, decompressed (a bomb stops here)
    max_members: int = 200_000  # zip members, or files in a directory, read per source
    max_total_bytes: int = 2048 * MiB  # decompressed over one whole source


DEFAULT_LIMITS = FeedLimits()


@dataclass(frozen=True, slots=True)
class OsvRange:
    """An ``ECOSYSTEM`` or ``SEMVER`` range: its events as given, ``(kind, version)``."""

    type: str
    events: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class OsvAffected:
    """One ``affected`` entry of the PyPI ecosystem."""

    name: NormalizedName
    versions: tuple[str, ...]
    ranges: tuple[OsvRange, ...]


@dataclass(frozen=True, slots=True)
class OsvRecord:
    id: str
    summary: str  # one line, no control characters, at most SUMMARY_CHARS
    aliases: tuple[str, ...]
    modified: str  # as the record gives it (validated as an RFC 3339 timestamp)
    affected: tuple[OsvAffected, ...]  # the PyPI entries only

    @property
    def modified_at(self) -> datetime:
        return parse_timestamp(self.modified)


# --- text -----------------------------------------------------------------------------


def clean_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """One line a terminal, a log or a page can show: controls and format characters
    (bidi overrides, zero-width) removed, whitespace runs folded, at most ``limit``."""
    kept = []
    for character in text:
        category = unicodedata.category(character)
        if category in ("Zs", "Zl", "Zp") or character in "\t\n\r\x0b\x0c":
            kept.append(" ")
        elif category[0] != "C":  # Cc, Cf, Cs, Co, Cn
            kept.append(character)
    line = " ".join("".join(kept).split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def _where(text: str) -> str:
    """A file or member name as it may appear in a problem."""
    return clean_line(text, 160) or "(unnamed)"


# --- one record -----------------------------------------------------------------------


def _malformed(reason: str) -> NoReturn:
    raise MalformedRecord(reason)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _malformed(f"duplicate key {clean_line(key, 40)!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    _malformed(f"{name} is not JSON")


def _load_json(data: bytes, limit: int) -> Any:
    if len(data) > limit:
        _malformed(f"larger than {limit // MiB} MiB")
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except MalformedRecord:
        raise
    except RecursionError:
        _malformed("nested too deeply")
    except UnicodeDecodeError:
        _malformed("not UTF-8")
    except ValueError:
        _malformed("not valid JSON")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        _malformed(f"{what} is not a string")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        _malformed(f"{what} is not a list")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _malformed(f"{what} is not an object")
    return value


def _strings(value: Any, what: str) -> list[str]:
    return [_string(item, f"an entry of {what}") for item in _list(value, what)]


def parse_record(data: bytes, limits: FeedLimits = DEFAULT_LIMITS) -> OsvRecord | None:
    """One OSV record, or ``None`` when it has nothing to say about PyPI or was withdrawn.

    Raises ``MalformedRecord`` (with a reason safe to show) for anything else.
    """
    document = _object(_load_json(data, limits.max_record_bytes), "the record")
    record_id = _string(document.get("id"), "id")
    if not _ID.fullmatch(record_id):
        _malformed("id is not an OSV id")
    try:
        return _record(record_id, document)
    except MalformedRecord as error:
        raise MalformedRecord(f"{record_id}: {error}") from None


def _record(record_id: str, document: dict[str, Any]) -> OsvRecord | None:
    modified = _string(document.get("modified"), "modified")
    try:
        parse_timestamp(modified)
    except ValueError:
        _malformed("modified is not a timestamp")
    withdrawn = document.get("withdrawn")
    if withdrawn is not None:
        _string(withdrawn, "withdrawn")
        return None
    aliases = tuple(
        alias for alias in _strings(document.get("aliases", []), "aliases") if _ID.fullmatch(alias)
    )
    summary = _string(document.get("summary", ""), "summary")
    details = _string(document.get("details", ""), "details")
    if not summary.strip():
        summary = next((line for line in details.splitlines() if line.strip()), "")
    affected = tuple(
        entry
        for entry in (_affected(item) for item in _list(document.get("affected", []), "affected"))
        if entry is not None
    )
    if not affected:
        return None
    return OsvRecord(
        id=record_id,
        summary=clean_line(summary),
        aliases=aliases,
        modified=modified,
        affected=affected,
    )


def _affected(value: Any) -> OsvAffected | None:
    entry = _object(value, "an affected entry")
    package = _object(entry.get("package"), "affected package")
    ecosystem = _string(package.get("ecosystem"), "affected package ecosystem")
    if ecosystem != ECOSYSTEM:
        return None  # another ecosystem's name says nothing about a PyPI project
    name = _string(package.get("name"), "affected package name").strip()
    if not name or not name.isprintable() or len(name) > 200:
        _malformed("affected package name is not a project name")
    versions = tuple(_strings(entry.get("versions", []), "versions"))
    if any(not version.strip() for version in versions):
        _malformed("versions has an empty entry")
    ranges = tuple(
        parsed
        for parsed in (_range(item) for item in _list(entry.get("ranges", []), "ranges"))
        if parsed is not None
    )
    return OsvAffected(name=canonicalize_name(name), versions=versions, ranges=ranges)


def _range(value: Any) -> OsvRange | None:
    entry = _object(value, "a range")
    kind = _string(entry.get("type"), "range type")
    if kind not in _RANGE_TYPES:
        _malformed(f"range type {clean_line(kind, 20)!r} is not ECOSYSTEM, SEMVER or GIT")
    events: list[tuple[str, str]] = []
    for item in _list(entry.get("events"), "range events"):
        event = _object(item, "a range event")
        if len(event) != 1:
            _malformed("a range event has more or less than one of introduced/fixed/...")
        ((event_kind, bound),) = event.items()
        if event_kind not in _EVENT_KINDS:
            _malformed(f"unknown range event {clean_line(event_kind, 20)!r}")
        bound = _string(bound, f"a {event_kind} event")
        if not bound.strip():
            _malformed(f"a {event_kind} event is empty")
        events.append((event_kind, bound))
    kinds = {event_kind for event_kind, _bound in events}
    if "introduced" not in kinds:
        _malformed("a range has no introduced event")
    if {"fixed", "last_affected"} <= kinds:
        _malformed("a range has both fixed and last_affected events")
    if kind == "GIT":
        return None  # commits: needs the repository's history
    return OsvRange(type=kind, events=tuple(events))


# --- matching ---------------------------------------------------------------------------


_ZERO = Version("0")


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


@dataclass(frozen=True, slots=True)
class _Range:
    orderable: bool  # False when a bound is not PEP 440: then only ``exact`` counts
    events: tuple[tuple[str, Version | None], ...]  # sorted; None is introduced "0"
    limits: tuple[Version | None, ...]  # None is "*": no limit
    everything: bool  # affects every version, including ones that are not PEP 440
    exact: frozenset[str] = frozenset()

    def contains(self, version: Version | None, raw: str) -> bool:
        if self.everything:
            return True
        if not self.orderable or version is None:
            return raw in self.exact
        if self.limits and not any(limit is None or version < limit for limit in self.limits):
            return False
        affected = False
        for kind, bound in self.events:
            if kind == "introduced":
                affected = affected or bound is None or version >= bound
            elif bound is not None and (version > bound or (kind == "fixed" and version == bound)):
                affected = False  # fixed: from that version on; last_affected: after it
        return affected


def _compile_range(source: OsvRange) -> _Range:
    events: list[tuple[str, Version | None]] = []
    limits: list[Version | None] = []
    orderable = True
    for kind, bound in source.events:
        if kind == "introduced" and bound == "0":
            events.append((kind, None))
        elif kind == "limit" and "*" in bound:
            limits.append(None)
        else:
            parsed = _version(bound)
            orderable = orderable and parsed is not None
            if kind == "limit":
                limits.append(parsed)
            else:
                events.append((kind, parsed))
    if not orderable:
        # A bound that cannot be ordered makes the whole range unorderable: what it
        # still says for certain is that its introduced and last_affected versions
        # are affected, and those are compared as exact strings.
        exact = frozenset(
            bound
            for kind, bound in source.events
            if kind in ("introduced", "last_affected") and bound != "0"
        )
        return _Range(orderable=False, events=(), limits=(), everything=False, exact=exact)
    # The schema's evaluation sorts the events by version ("0" first); the sort is
    # stable, so events at one version keep the order the record gives them.
    events.sort(key=lambda event: (0, _ZERO) if event[1] is None else (1, event[1]))
    everything = (
        any(bound is None for _kind, bound in events)
        and all(kind == "introduced" for kind, _bound in events)
        and all(limit is None for limit in limits)
    )
    return _Range(orderable=True, events=tuple(events), limits=tuple(limits), everything=everything)


def _range_problem(source: OsvRange) -> str | None:
    for kind, bound in source.events:
        if (kind == "introduced" and bound == "0") or (kind == "limit" and "*" in bound):
            continue
        if _version(bound) is None:
            return (
                f"{kind} {clean_line(bound, 40)!r} is not a PEP 440 version; "
                "that range only matches its bounds exactly"
            )
    return None


@dataclass(frozen=True, slots=True)
class _Matcher:
    versions: frozenset[Version]
    exact: frozenset[str]  # listed versions that are not PEP 440
    ranges: tuple[_Range, ...]

    def contains(self, version: Version | None, raw: str) -> bool:
        if raw in self.exact or (version is not None and version in self.versions):
            return True
        return any(item.contains(version, raw) for item in self.ranges)


def _compile(affected: OsvAffected) -> _Matcher:
    parsed = {text: _version(text) for text in affected.versions}
    return _Matcher(
        versions=frozenset(version for version in parsed.values() if version is not None),
        exact=frozenset(text for text, version in parsed.items() if version is None),
        ranges=tuple(_compile_range(item) for item in affected.ranges),
    )


# --- the index --------------------------------------------------------------------------


class FeedIndex:
    """Every usable record of one or more feeds, looked up by project."""

    def __init__(
        self,
        records: Iterable[OsvRecord] = (),
        problems: Iterable[str] = (),
        ignored: int = 0,
    ) -> None:
        chosen: dict[str, OsvRecord] = {}
        for record in records:
            held = chosen.get(record.id)
            # Two records with one id: the later ``modified`` is authoritative (OSV).
            if held is None or record.modified_at > held.modified_at:
                chosen[record.id] = record
        self._records = tuple(sorted(chosen.values(), key=lambda record: record.id))
        self._by_project: dict[NormalizedName, list[tuple[OsvRecord, _Matcher]]] = {}
        for record in self._records:
            for affected in record.affected:
                entries = self._by_project.setdefault(affected.name, [])
                entries.append((record, _compile(affected)))
        self.problems: list[str] = list(problems)
        self.ignored_count = ignored  # withdrawn records, and records for other ecosystems
        self.digest = _digest(self._records)

    @property
    def records_count(self) -> int:
        return len(self._records)

    @property
    def records(self) -> tuple[OsvRecord, ...]:
        return self._records

    def projects(self) -> set[NormalizedName]:
        return set(self._by_project)

    def matches(self, project: NormalizedName, version: str) -> list[OsvRecord]:
        """The records that condemn this version of this project, by id, each once."""
        entries = self._by_project.get(canonicalize_name(project), [])
        if not entries:
            return []
        parsed = _version(version)
        found: dict[str, OsvRecord] = {}
        for record, matcher in entries:
            if record.id not in found and matcher.contains(parsed, version):
                found[record.id] = record
        return [found[key] for key in sorted(found)]

    def __repr__(self) -> str:
        return (
            f"FeedIndex(records={self.records_count}, problems={len(self.problems)}, "
            f"digest={self.digest[:12]})"
        )


def _digest(records: Iterable[OsvRecord]) -> str:
    """Changes when a record is added, dropped, re-dated or its PyPI content changes."""
    hasher = hashlib.sha256()
    for record in records:  # sorted by id
        content = [
            [
                item.name,
                list(item.versions),
                [[r.type, [list(e) for e in r.events]] for r in item.ranges],
            ]
            for item in record.affected
        ]
        line = json.dumps([record.id, record.modified, content], separators=(",", ":"))
        hasher.update(line.encode("utf-8") + b"\n")
    return hasher.hexdigest()


def merge(indexes: Iterable[FeedIndex]) -> FeedIndex:
    """One index over several feeds (``--osv-feed`` given more than once)."""
    records: list[OsvRecord] = []
    problems: list[str] = []
    ignored = 0
    for index in indexes:
        records.extend(index.records)
        problems.extend(index.problems)
        ignored += index.ignored_count
    return FeedIndex(records, _capped(problems), ignored)


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]


# --- loading ------------------------------------------------------------------------------


class _Loader:
    def __init__(self, limits: FeedLimits) -> None:
        self.limits = limits
        self.records: list[OsvRecord] = []
        self.problems: list[str] = []
        self.extra_problems = 0
        self.ignored = 0
        self.total = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.extra_problems += 1

    def add(self, where: str, data: bytes) -> None:
        try:
            record = parse_record(data, self.limits)
        except MalformedRecord as error:
            self.problem(f"{where}: skipped: {error}")
            return
        if record is None:
            self.ignored += 1
            return
        for affected in record.affected:
            for item in affected.ranges:
                note = _range_problem(item)
                if note is not None:
                    self.problem(f"{where}: {record.id}: {note}")
        self.records.append(record)

    def index(self) -> FeedIndex:
        problems = list(self.problems)
        if self.extra_problems:
            problems.append(f"... and {self.extra_problems} more problems")
        return FeedIndex(self.records, problems, self.ignored)


def load_feed(source: Path, limits: FeedLimits = DEFAULT_LIMITS) -> FeedIndex:
    """Read a directory of ``*.json`` records (recursively), an OSV ``.zip`` export, or
    one ``.json`` record. Raises ``FeedError`` when the source cannot be read at all."""
    try:
        info = source.stat()
    except OSError as error:
        raise FeedError(f"osv feed {_where(str(source))}: {error.strerror or error}") from None
    loader = _Loader(limits)
    if stat.S_ISDIR(info.st_mode):
        _read_directory(loader, source)
    elif stat.S_ISREG(info.st_mode) and source.suffix.lower() == ".zip":
        try:
            with source.open("rb") as stream:
                _read_zip(loader, stream, _where(source.name))
        except OSError as error:
            raise FeedError(f"osv feed {_where(str(source))}: {error}") from None
    elif stat.S_ISREG(info.st_mode) and source.suffix.lower() == ".json":
        try:
            data = _read_file(source, limits.max_record_bytes)
        except OSError as error:
            raise FeedError(f"osv feed {_where(str(source))}: {error}") from None
        _add_file(loader, _where(source.name), data, limits)
    else:
        raise FeedError(
            f"osv feed {_where(str(source))}: not a directory, a .zip export or a .json record"
        )
    return loader.index()


def load_feed_bytes(data: bytes, name: str, limits: FeedLimits = DEFAULT_LIMITS) -> FeedIndex:
    """The same for a downloaded export held in memory: ``name`` ends in ``.zip`` for an
    export, ``.json`` for a single record."""
    loader = _Loader(limits)
    where = _where(name)
    if name.lower().endswith(".zip"):
        _read_zip(loader, io.BytesIO(data), where)
    elif name.lower().endswith(".json"):
        loader.add(where, data)
    else:
        raise FeedError(f"osv feed {where}: neither a .zip export nor a .json record")
    return loader.index()


def _add_file(loader: _Loader, where: str, data: bytes | None, limits: FeedLimits) -> None:
    if data is None:
        loader.problem(f"{where}: skipped: larger than {limits.max_record_bytes // MiB} MiB")
    else:
        loader.add(where, data)


def _read_file(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes, or ``None`` past ``limit``. Never blocks on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        if info.st_size > limit:
            return None
        data = stream.read(limit + 1)
    return None if len(data) > limit else data


def _json_files(root: Path, on_error: Callable[[OSError], None]) -> Iterator[Path]:
    """``*.json`` below ``root`` in a stable order; hidden directories (``.git``) and
    symbolic links to directories are not entered."""
    for directory, subdirectories, files in os.walk(root, onerror=on_error):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".json"):
                yield Path(directory) / name


def _read_directory(loader: _Loader, root: Path) -> None:
    limits = loader.limits

    def unreadable(error: OSError) -> None:
        where = _where(str(error.filename or root))
        loader.problem(f"{where}: not read: {error.strerror or error}")

    for count, path in enumerate(_json_files(root, unreadable)):
        where = _where(str(path.relative_to(root)))
        if count >= limits.max_members:
            loader.problem(f"more than {limits.max_members} files; the rest were not read")
            return
        if loader.total >= limits.max_total_bytes:
            loader.problem(
                f"more than {limits.max_total_bytes // MiB} MiB read; the rest were not read"
            )
            return
        try:
            data = _read_file(path, limits.max_record_bytes)
        except OSError as error:
            loader.problem(f"{where}: skipped: {error.strerror or error}")
            continue
        if data is not None:
            loader.total += len(data)
        _add_file(loader, where, data, limits)


def _read_zip(loader: _Loader, stream: BinaryIO, where: str) -> None:
    limits = loader.limits
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise FeedError(f"osv feed {where}: not a readable zip: {error}") from None
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and info.filename.lower().endswith(".json")
        ]
        if len(members) > limits.max_members:
            loader.problem(
                f"{where}: {len(members)} members, more than {limits.max_members}; "
                "the rest were not read"
            )
            members = members[: limits.max_members]
        for info in members:
            if loader.total >= limits.max_total_bytes:
                loader.problem(
                    f"{where}: more than {limits.max_total_bytes // MiB} MiB decompressed; "
                    "the rest were not read"
                )
                return
            name = f"{where}:{_where(info.filename)}"
            data = _read_member(loader, archive, info, name)
            if data is not None:
                loader.add(name, data)


def _read_member(
    loader: _Loader, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str
) -> bytes | None:
    cap = loader.limits.max_member_bytes
    if info.file_size > cap:
        loader.problem(f"{name}: skipped: declares {info.file_size} bytes, over {cap // MiB} MiB")
        return None
    # zipfile already stops at the declared size (and then fails the CRC check); the
    # running count is kept anyway so that no reader change can turn a bomb into an OOM.
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                size += len(chunk)
                loader.total += len(chunk)
                if size > cap:
                    loader.problem(f"{name}: skipped: decompresses past {cap // MiB} MiB")
                    return None
                chunks.append(chunk)
    except (
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        OSError,
        RuntimeError,  # encrypted
        NotImplementedError,  # an unsupported compression method
        ValueError,
    ) as error:
        loader.problem(f"{name}: skipped: unreadable member: {clean_line(str(error), 80)}")
        return None
    return b"".join(chunks)


# --- evidence ------------------------------------------------------------------------------


def feed_evidence(matches: list[OsvRecord]) -> Evidence:
    """The ``feeds`` check's verdict for one file, given the records that match it."""
    if not matches:
        return Evidence(check=CHECK, action=Action.PASS, summary="no malware advisory")
    findings = tuple(
        Finding(
            rule=RULE,
            severity=Severity.CRITICAL,
            message=f"{record.id}: {record.summary or 'malware advisory'}",
        )
        for record in matches
    )
    ids = [record.id for record in matches]
    return Evidence(
        check=CHECK,
        action=strongest([action_for(finding) for finding in findings]),
        summary=clean_line(f"malware advisory {', '.join(ids)}"),
        findings=findings,
        details={
            "ids": ids,
            "advisories": [
                {"id": record.id, "modified": record.modified, "aliases": list(record.aliases)}
                for record in matches
            ],
        },
    )
