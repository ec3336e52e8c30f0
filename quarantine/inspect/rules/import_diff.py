"""Import-time behaviour judged against the previous release: what is new is a finding.

- a capability used at import (``rules_import_reach``) that the previous release did not use
  at import: ``import-capability-new``, HIGH (held for review); an import of a computed name
  or a bare ``compile`` is only LOW (plugin loaders and compiled table conditions are
  everyday work; running the code is what holds);
- a combination at import (fetch then run, decode then run, write outside the package then
  start something, persistence): ``import-time-combination``, CRITICAL (blocked), whatever
  the previous release did: a compromised project's previous release does not excuse it;
- a project's first release, or a previous release inspected before these rules existed
  (its stored summary has no import-time part): capabilities at import are
  ``import-capability-first``, LOW (nothing to compare with; reported, not held), while
  combinations still block;
- a capability new since the previous release but only inside functions nothing calls at
  import (a ``subprocess.run(["git", ...])`` helper): ``function-capability-new``, LOW;
- a finding about a file that also hides what it does (``rules_obfuscation``) is raised a
  step, with an ``obfuscation-signal`` finding (INFO) saying what was seen.

:class:`ImportProfile` is the part of the archive summary the next release is compared with.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from quarantine.evidence import Finding, Severity
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.import_facts import SUPPORTING, Capability, Use
from quarantine.inspect.rules.import_reach import Combination, Reach, Reached
from quarantine.inspect.rules.import_scan import PYTEST_HOOK, SCRIPT
from quarantine.inspect.rules.obfuscation import OBFUSCATION, Signal, raised

IMPORT_NEW = rule(
    "import-capability-new",
    Severity.HIGH,
    "content",
    "a capability used at import that the previous release did not use at import",
)
IMPORT_FIRST = rule(
    "import-capability-first",
    Severity.LOW,
    "content",
    "a capability used at import, with no earlier release (or summary) to compare with",
)
IMPORT_COMBINATION = rule(
    "import-time-combination",
    Severity.CRITICAL,
    "content",
    "at import: fetch then run, decode then run, write then start, or persistence",
)
FUNCTION_NEW = rule(
    "function-capability-new",
    Severity.LOW,
    "content",
    "a capability new since the previous release, only in functions not called at import",
)
RULES = frozenset({IMPORT_NEW, IMPORT_FIRST, IMPORT_COMBINATION, FUNCTION_NEW, OBFUSCATION})

MAX_KEPT = 200  # capabilities kept in a summary, each kind
MAX_FINDINGS = 10  # per rule
_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ImportProfile:
    """What a release does at import, and in functions only: (capability, what) pairs, with
    the first place each is used at import."""

    at_import: tuple[tuple[str, str, str, int], ...] = ()  # capability, what, path, line
    in_functions: tuple[_Key, ...] = ()
    complete: bool = True

    @property
    def import_keys(self) -> frozenset[_Key]:
        return frozenset((capability, what) for capability, what, _p, _l in self.at_import)

    def to_json(self) -> dict[str, Any]:
        return {
            "at_import": [list(item) for item in self.at_import],
            "in_functions": [list(item) for item in self.in_functions],
            "complete": self.complete,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "ImportProfile":
        return cls(
            tuple((str(c), str(w), str(p), int(n)) for c, w, p, n in raw.get("at_import", ())),
            tuple((str(c), str(w)) for c, w in raw.get("in_functions", ())),
            bool(raw.get("complete", True)),
        )


def profile(found: Reach) -> ImportProfile:
    at_import: dict[_Key, tuple[str, str, str, int]] = {}
    for reached in found.at_import:
        use = reached.use
        if use.capability not in SUPPORTING and len(at_import) < MAX_KEPT:
            at_import.setdefault(use.key, (*use.key, use.path, use.line))
    in_functions = {
        r.use.key for r in found.in_functions if r.use.capability not in SUPPORTING
    } - set(at_import)
    return ImportProfile(
        tuple(at_import.values()), tuple(sorted(in_functions))[:MAX_KEPT], found.complete
    )


@dataclass(frozen=True, slots=True)
class Previous:
    """The release compared with: its version, and its profile (None: stored before the
    import-time rules)."""

    label: str
    profile: ImportProfile | None


def previous_of(filename: str, stored: ImportProfile | None) -> Previous:
    return Previous(release_label(filename), stored)


def release_label(filename: str) -> str:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return filename


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one archive does at import, kept to what the comparison with the previous
    release reads: built where the archive is inspected (a worker process), compared
    where the previous release's profile is known, which may be later."""

    found: Reach  # the first use of each kind only: all :func:`import_findings` reads
    hiding: "Hiding"
    holding: tuple[Finding, ...] = ()  # findings whatever the previous release did

    def findings(self, previous: Previous | None) -> list[Finding]:
        return import_findings(self.found, previous, self.hiding) + list(self.holding)


def import_report(found: Reach, hiding: "Hiding", holding: Iterable[Finding]) -> ImportReport:
    """``found`` cut to what the comparison reads (a big package reaches thousands of
    uses, most of them the same few kinds), for a cheap trip out of a worker process."""
    kept = Reach(
        tuple(_first_of_each(r for r in found.at_import if r.use.capability not in SUPPORTING)),
        tuple(_first_of_each(r for r in found.in_functions if r.use.capability not in SUPPORTING)),
        found.combinations[:MAX_FINDINGS],
        found.complete,
    )
    return ImportReport(kept, hiding, tuple(holding))


def import_findings(found: Reach, previous: Previous | None, signals: "Hiding") -> list[Finding]:
    """The findings for what this release does at import, against ``previous`` (None: the
    project's first release of this kind)."""
    out: list[Finding] = []
    for combination in found.combinations[:MAX_FINDINGS]:
        out += _combination(combination, signals)
    known = previous.profile if previous is not None else None
    at_import = _first_of_each(r for r in found.at_import if r.use.capability not in SUPPORTING)
    if known is None:
        out += _first_sight(at_import, previous, signals)
    else:
        assert previous is not None
        new = [r for r in at_import if r.use.key not in known.import_keys]
        for reached in new[:MAX_FINDINGS]:
            out += _new(reached, previous.label, signals)
        before = known.import_keys | set(known.in_functions)
        fresh = _first_of_each(
            r
            for r in found.in_functions
            if r.use.capability not in SUPPORTING and r.use.key not in before
        )
        out += [_function_new(r, previous.label) for r in fresh[:MAX_FINDINGS]]
    return out


@dataclass(frozen=True, slots=True)
class Hiding:
    """The obfuscation signals per archive member, and payload members by base name."""

    by_path: Mapping[str, tuple[Signal, ...]]
    by_basename: Mapping[str, str]  # run.js -> pkg/assets/run.js

    def of(self, uses: Iterable[Use]) -> list[tuple[str, Signal]]:
        seen: list[tuple[str, Signal]] = []
        for use in uses:
            paths = [use.path]
            if use.target is not None and use.target in self.by_basename:
                paths.append(self.by_basename[use.target])
            for path in paths:
                seen += [(path, signal) for signal in self.by_path.get(path, ())]
        return seen


def _first_of_each(reached: Iterable[Reached]) -> list[Reached]:
    firsts: dict[_Key, Reached] = {}
    for one in reached:
        firsts.setdefault(one.use.key, one)
    return list(firsts.values())


def _where(reached: Reached) -> str:
    use = reached.use
    place = f"`{use.path}:{use.line}`"
    if reached.via is not None:
        place += f" (in `{reached.via}`, run when `{reached.entry}` is imported)"
    return f"{place}: `{use.excerpt}`"


def _named(use: Use) -> str:
    return f"`{use.what}` ({use.capability.value})"


def _combination(found: Combination, signals: Hiding) -> list[Finding]:
    parts = " then ".join(f"{_named(r.use)} at {_where(r)}" for r in found.uses)
    message = f"{found.name} at import of `{found.entry}`: {parts}"
    first = found.uses[0].use
    finding = Finding(IMPORT_COMBINATION, Severity.CRITICAL, message, first.path, first.line)
    return _weighed(finding, [r.use for r in found.uses], signals)


def _new(reached: Reached, since: str, signals: Hiding) -> list[Finding]:
    use = reached.use
    severity = Severity.LOW if _only_prepares(use) else Severity.HIGH
    message = f"new since {since}: {_named(use)} at import in {_where(reached)}"
    finding = Finding(IMPORT_NEW, severity, message, use.path, use.line)
    return _weighed(finding, [use], signals)


def _first_sight(
    reached: list[Reached], previous: Previous | None, signals: Hiding
) -> list[Finding]:
    if previous is None:
        why = "first release of this kind, nothing to compare with"
    else:
        why = f"{previous.label} was inspected before import-time rules, nothing to compare with"
    out = []
    for one in reached[:MAX_FINDINGS]:
        message = f"{_named(one.use)} at import in {_where(one)} ({why})"
        finding = Finding(IMPORT_FIRST, Severity.LOW, message, one.use.path, one.use.line)
        out += _weighed(finding, [one.use], signals)
    return out


def _only_prepares(use: Use) -> bool:
    """An import of a computed name (a plugin loader) or a bare ``compile`` (a code object
    nothing runs yet: fontTools compiles its table conditions at import) is everyday work;
    running code is what ``exec``, ``eval`` and the combinations catch."""
    if use.capability is Capability.DYNAMIC_IMPORT:
        return True
    return use.capability is Capability.DYNAMIC_CODE and use.what == "compile"


def _function_new(reached: Reached, since: str) -> Finding:
    use = reached.use
    where = f"`{use.path}:{use.line}`"
    if reached.via == SCRIPT:
        place = f"only when `{reached.entry}` runs as a script ({where}), never on import"
    elif reached.via == PYTEST_HOOK:
        place = f"only when pytest loads `{reached.entry}` ({where}), never on import"
    else:
        place = f"only inside `{reached.via}` ({where}), which nothing calls at import"
    message = f"new since {since}: {_named(use)} {place}"
    return Finding(FUNCTION_NEW, Severity.LOW, message, use.path, use.line)


def _weighed(finding: Finding, uses: list[Use], signals: Hiding) -> list[Finding]:
    seen = signals.of(uses)
    if not seen:
        return [finding]
    return weigh(finding, seen)


def weigh(finding: Finding, seen: list[tuple[str, Signal]]) -> list[Finding]:
    """``finding`` raised a step for the signals seen (when it holds the file already), and
    each signal as a finding of its own (INFO: it points at the place)."""
    severity = raised(finding.severity)
    if severity is finding.severity:
        return [finding]
    hidden = "; ".join(f"{signal.what} at `{path}:{signal.line}`" for path, signal in seen[:3])
    message = f"{finding.message}; the code hides itself: {hidden}"
    out = [Finding(finding.rule, severity, message, finding.path, finding.line)]
    for path, signal in seen[:3]:
        out.append(Finding(OBFUSCATION, Severity.INFO, signal.what, path, signal.line))
    return out
