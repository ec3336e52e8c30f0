"""Content inspection of one downloaded file: the "content" check's evidence.

``inspect_file`` walks the archive once with
:class:`~quarantine.inspect.archive.reader.ArchiveReader`
(bounded memory, limits on everything), runs the text rules of
:mod:`quarantine.inspect.rules.content` on the members that matter, summarises the file and compares
the summary with the previous release (:mod:`quarantine.inspect.release_diff`). Nothing from the
archive is extracted, imported or executed. A hostile or broken archive gives findings,
never an exception.

The walk (``inspect_alone``, the expensive part) needs nothing from the previous release;
the comparison (:meth:`Inspected.against`) is cheap and comes after, so a file and its
previous release can be inspected side by side, not one after the other.
"""

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from quarantine.evidence import (
    DEFAULT_SEVERITY_ACTIONS,
    Action,
    Evidence,
    Finding,
    Severity,
    action_for,
    strongest,
)
from quarantine.inspect.archive.reader import (
    ArchiveKind,
    ArchiveReader,
    Limits,
    Member,
    MemberKind,
    is_text_of_interest,
    printable,
)
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.release_diff import ArchiveSummary, SummaryBuilder, compare
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.content import (
    SETUP_NETWORK,
    SETUP_SUBPROCESS,
    SdistLayout,
    is_install_script,
    pth_file,
    scan_python,
)
from quarantine.inspect.rules.import_collect import ImportCollector, scan_direct
from quarantine.inspect.rules.import_diff import RULES as IMPORT_RULES
from quarantine.inspect.rules.import_diff import ImportReport, Previous, previous_of, weigh
from quarantine.inspect.rules.import_source import module_name
from quarantine.inspect.rules.obfuscation import Signal, source_signals

log = logging.getLogger(__name__)

CHECK = "content"
MAX_KEPT_FINDINGS = 50
TEXT_NOT_SCANNED = rule(
    "text-not-scanned", Severity.LOW, CHECK, "a source file over the scan size limit, not scanned"
)
PTH_NOT_SCANNED = rule(
    "pth-not-scanned",
    Severity.HIGH,
    CHECK,
    "a .pth file too large to read: it may run code at interpreter start",
)
INSPECTION_ERROR = rule(
    "inspection-error",
    Severity.HIGH,
    CHECK,
    "the archive could not be inspected (a limit or a failure): a person decides",
)
_CLEAN_CHARS = 1000  # a safety net: the rules already bound what they quote


@dataclass(frozen=True, slots=True)
class Inspection:
    summary: ArchiveSummary | None  # None when the archive could not be read through
    findings: tuple[Finding, ...]
    compared_with: str | None = None  # the previous release's file; None: the first

    def evidence(
        self,
        severity_actions: Mapping[Severity, Action] = DEFAULT_SEVERITY_ACTIONS,
        rule_actions: Mapping[str, Action] | None = None,
    ) -> Evidence:
        """The content check's evidence: the strongest action any finding calls for (PASS
        when there is none), the most important findings, counts, and the summary."""
        actions = [action_for(f, severity_actions, rule_actions) for f in self.findings]
        action = strongest(actions)
        ranked = sorted(
            range(len(self.findings)),
            key=lambda i: (-actions[i].rank, -_SEVERITY_RANK[self.findings[i].severity], i),
        )
        kept = tuple(self.findings[i] for i in ranked[:MAX_KEPT_FINDINGS])
        severities = Counter(f.severity.value for f in self.findings)
        details: dict[str, object] = {
            "counts": {s.value: severities[s.value] for s in Severity if severities[s.value]},
            "rules": dict(sorted(Counter(f.rule for f in self.findings).items())),
            "omitted": len(self.findings) - len(kept),
        }
        if self.summary is not None:
            details["summary"] = self.summary.to_json()
            details["compared_with"] = self.compared_with
        return Evidence(CHECK, action, self._summary_line(action, kept), kept, details)

    def _summary_line(self, action: Action, kept: tuple[Finding, ...]) -> str:
        if not self.findings:
            return "no findings"
        severities = Counter(f.severity for f in self.findings)
        counts = ", ".join(
            f"{severities[s]} {s.value}" for s in reversed(Severity) if severities[s]
        )
        worst = kept[0]
        where = f" in {worst.path}" if worst.path else ""
        where += f":{worst.line}" if worst.path and worst.line else ""
        return f"{action.value}: {counts}; worst {worst.rule}{where}"


_SEVERITY_RANK = {severity: index for index, severity in enumerate(Severity)}


@dataclass(frozen=True, slots=True)
class Inspected:
    """One file inspected, not yet compared with the previous release: what a worker
    process sends back."""

    findings: tuple[Finding, ...]  # what the archive shows on its own
    summary: ArchiveSummary | None = None  # None when the archive was not read through
    imports: ImportReport | None = None  # with a summary
    failed: bool = False  # an inspection error: nothing to compare

    def against(self, previous: ArchiveSummary | None) -> Inspection:
        """The inspection compared with ``previous``, the summary of the project's
        previous release of the same kind (None: its first release)."""
        if self.failed:
            return Inspection(None, self.findings)
        found = list(self.findings)
        if self.summary is not None and self.imports is not None:
            found = _known_install_time(found, previous) + compare(self.summary, previous)
            at_import = self.imports.findings(_previous(previous))
            found = _weighed(found, self.imports.hiding.by_path) + at_import
        compared_with = None if previous is None else previous.filename
        return Inspection(self.summary, tuple(_clean(f) for f in found), compared_with)


def inspect_file(
    path: Path,
    filename: str,
    previous: ArchiveSummary | None,
    limits: Limits | None = None,
    cache: MemberCache | None = None,
) -> Inspection:
    """Inspect the wheel or sdist at ``path`` (named ``filename`` upstream) against the
    summary of the project's previous release of the same kind (None: first release).
    ``cache``: Python sources already scanned (by their bytes), shared across files."""
    return inspect_alone(path, filename, limits, cache).against(previous)


def inspect_alone(
    path: Path, filename: str, limits: Limits | None = None, cache: MemberCache | None = None
) -> Inspected:
    """As :func:`inspect_file`, the comparison with the previous release left to
    :meth:`Inspected.against`."""
    try:
        return inspect_or_run_out(path, filename, limits, cache)
    except MemoryError:
        return inspection_failed("inspection ran out of memory; a person must look")


def inspect_or_run_out(
    path: Path, filename: str, limits: Limits | None = None, cache: MemberCache | None = None
) -> Inspected:
    """As :func:`inspect_alone`, but running out of memory raises MemoryError: in a worker
    process under a memory limit, that is the mirror's limit, not the file's verdict."""
    try:
        return _inspect(path, filename, limits or Limits(), cache)
    except MemoryError:
        raise
    except Exception as exc:
        log.exception("inspecting %s failed", filename)
        return inspection_failed(f"inspection failed ({type(exc).__name__}); a person must look")


def inspection_failed(message: str) -> Inspected:
    return Inspected((Finding(INSPECTION_ERROR, Severity.HIGH, message),), failed=True)


def inspection_error(message: str) -> Inspection:
    return inspection_failed(message).against(None)


def _inspect(path: Path, filename: str, limits: Limits, cache: MemberCache | None) -> Inspected:
    reader = ArchiveReader(path, filename, limits)
    kind = reader.kind or ArchiveKind.SDIST
    builder = SummaryBuilder(filename, kind)
    layout = SdistLayout() if kind is ArchiveKind.SDIST else None
    imports = ImportCollector(scan_direct if cache is None else cache.scan_module)
    if cache is not None:
        imports.note = cache.import_note
    imports.max_parse_bytes = limits.max_parse_bytes
    imports.sdist = kind is ArchiveKind.SDIST
    found: list[Finding] = []
    for member in reader:
        builder.observe(member)
        if layout is not None:
            layout.observe(member.name, member.kind)
        if member.kind is MemberKind.FILE:
            imports.member(member.name)
            found += _member_findings(member, kind, builder, imports, limits, cache)
    found = reader.findings + found
    if not reader.finished:
        return Inspected(tuple(found))
    if layout is not None:
        found += layout.findings()
    found += builder.findings
    summary = builder.build(reader.total_bytes, reader.compressed_size, reader.entry_count)
    install_time = tuple(sorted({f.rule for f in found if _runs_at_install(f)}))
    profile, report = imports.finish()
    summary = replace(summary, install_time_rules=install_time, import_time=profile)
    return Inspected(tuple(found), summary, report)


def _previous(previous: ArchiveSummary | None) -> Previous | None:
    return None if previous is None else previous_of(previous.filename, previous.import_time)


def _weighed(found: list[Finding], signals: Mapping[str, tuple[Signal, ...]]) -> list[Finding]:
    """Findings about a file that hides what it does, a step up (an sdist's setup.py with
    its payload after a run of blanks, say)."""
    out: list[Finding] = []
    for finding in found:
        seen = signals.get(finding.path or "", ()) if finding.rule not in IMPORT_RULES else ()
        out += weigh(finding, [(finding.path or "", s) for s in seen]) if seen else [finding]
    return out


_INSTALL_TIME_RULES = frozenset({SETUP_NETWORK, SETUP_SUBPROCESS})


def _runs_at_install(finding: Finding) -> bool:
    return finding.rule in _INSTALL_TIME_RULES and finding.severity is Severity.HIGH


def _known_install_time(found: list[Finding], previous: ArchiveSummary | None) -> list[Finding]:
    """What the previous release's setup.py already did is reported, not held again.

    Many packages with C extensions probe compilers from setup.py; the signal is a
    network or process call that is new (or any, in a project's first release).
    """
    if previous is None:
        return found
    return [
        replace(f, severity=Severity.LOW, message=f"{f.message} (as in the previous release)")
        if _runs_at_install(f) and f.rule in previous.install_time_rules
        else f
        for f in found
    ]


def _member_findings(
    member: Member,
    kind: ArchiveKind,
    builder: SummaryBuilder,
    imports: ImportCollector,
    limits: Limits,
    cache: MemberCache | None,
) -> list[Finding]:
    name = member.name
    lower = name.lower()
    shown = printable(name)
    if member.data is None:
        if not member.complete or not is_text_of_interest(name) or lower.endswith(".js"):
            return []
        if lower.endswith(".pth"):
            message = f".pth file of {member.size} bytes too large to read; may run code"
            return [Finding(PTH_NOT_SCANNED, Severity.HIGH, message, shown)]
        message = f"{member.size} bytes, over the {limits.max_text_bytes}-byte scan limit"
        return [Finding(TEXT_NOT_SCANNED, Severity.LOW, message, shown)]
    if lower.endswith(".pth"):
        pth = pth_file(name, member.data, wheel=kind is ArchiveKind.WHEEL)
        builder.add_pth(pth)
        return imports.pth(name, member.data, pth.import_lines) if pth.executable else []
    if lower.endswith(".js"):
        imports.script(shown, member.data)
        return []
    if lower.endswith(".py"):
        module = module_name(name, kind)
        if module is not None:
            return imports.module(shown, member.data, module)
        install_time = kind is ArchiveKind.SDIST and is_install_script(name)
        if install_time:
            imports.add_signals(shown, source_signals(member.data))
        scan = scan_python if cache is None else cache.scan
        return scan(
            shown, member.data, install_time=install_time, max_parse_bytes=limits.max_parse_bytes
        )
    return []


def _clean(finding: Finding) -> Finding:
    """One line, no control characters, bounded length: whatever built the message."""
    message = printable(finding.message, _CLEAN_CHARS)
    path = None if finding.path is None else printable(finding.path, _CLEAN_CHARS)
    if message == finding.message and path == finding.path:
        return finding
    return Finding(finding.rule, finding.severity, message, path, finding.line)
