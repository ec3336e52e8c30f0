"""Import-time inspection of one archive, member by member, then judged as a whole.

:class:`ImportCollector` takes the members as the archive walk meets them: package modules
(scanned through the member cache: facts and payload findings of a source depend only on its
bytes and name), start-up ``.pth`` files, JavaScript files (obfuscator shapes), and the names
of payload-looking files. :meth:`ImportCollector.finish` parses the relays it put aside,
follows the calls (``rules_import_reach``), and returns the profile and a report that
gives the findings against the previous release (``rules_import_diff``) once it is known.

Relays: a module that mentions no capability is not parsed when met. It is kept (up to
:data:`RELAY_BYTES` in all) and parsed at the end only if it mentions the name of a function
that uses a capability, or of another relay's function, for :data:`RELAY_ROUNDS` rounds:
``__init__`` calling ``start()`` from ``._boot`` is followed without parsing every module.
"""

import ast
import contextlib
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import MiB, printable
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.import_diff import (
    Hiding,
    ImportProfile,
    ImportReport,
    import_report,
    profile,
)
from quarantine.inspect.rules.import_facts import SUPPORTING, Body, Capability, ModuleFacts
from quarantine.inspect.rules.import_reach import MAX_DEPTH, Reach, reach
from quarantine.inspect.rules.import_scan import PYTEST_HOOK
from quarantine.inspect.rules.import_source import (
    _DATA_LIB,
    NOT_ANALYSED,
    Scanned,
    pth_facts,
    scan_module,
)
from quarantine.inspect.rules.obfuscation import Signal, js_signals

MODULE_TWICE = rule(
    "module-duplicate",
    Severity.HIGH,
    "content",
    "two members of one archive install as the same module: only one is looked at",
)
RELAY_BYTES = 16 * MiB
# Not worth a relay's parse: alone they are at most reported (a plugin loader's import).
_NOT_ACTING = SUPPORTING | {Capability.DYNAMIC_IMPORT}
RELAY_ROUNDS = 3
_PAYLOAD_SUFFIXES = (
    ".js",
    ".mjs",
    ".cjs",
    ".sh",
    ".bash",
    ".ps1",
    ".bat",
    ".cmd",
    ".vbs",
    ".pyz",
    ".exe",
    ".bin",
    ".elf",
    ".run",
    ".appimage",
)

ModuleScan = Callable[[str, bytes, str, int, bool], Scanned]
ImportNote = tuple[set[str], bool]  # what a source imports by name; whether it loads by path
# Only sources that mention one of these can import a test module by a name we can read.
_IMPORT_HINTS = (b"test", b"import_module", b"__import__")
# The module names an import statement names: "import a.b, c", "from .tests import x".
# (The lookahead only spares the engine the word-boundary test where no match can start.)
_IMPORTED = re.compile(r"(?=[fi])\b(?:from\s+([\w.]+)\s+)?import\s*(?:\(([^)]*)\)|([\w.,\t ]+))")
# import_module("...") / __import__("..."): the literal as written (escapes resolved later).
_IMPORTED_BY_NAME = re.compile(
    r"(?:import_module|__import__)\s*\(\s*((?:[rRuUbB]?)(?:\"[^\"\n]*\"|'[^'\n]*'))"
)
# What imports modules in ways no name can show: then every shipped test module counts.
_OTHER_LOADERS = (
    b"sys.path",
    b"runpy",
    b"spec_from_file_location",
    b"SourceFileLoader",
    b"imp.load",
)


def scan_direct(
    name: str, data: bytes, module: str, max_parse_bytes: int, parse_all: bool
) -> Scanned:
    return scan_module(name, data, module, max_parse_bytes=max_parse_bytes, parse_all=parse_all)


@dataclass
class ImportCollector:
    scan: ModuleScan = scan_direct
    note: Callable[[bytes], ImportNote] = field(default_factory=lambda: import_note)
    max_parse_bytes: int = 1 * MiB
    modules: dict[str, ModuleFacts] = field(default_factory=dict)
    signals: dict[str, tuple[Signal, ...]] = field(default_factory=dict)
    payloads: dict[str, str] = field(default_factory=dict)  # base name -> member
    relays: list[tuple[str, bytes, str]] = field(default_factory=list)
    relay_bytes: int = 0
    sdist: bool = False  # then only modules inside packages (an __init__.py) count
    packages: set[str] = field(default_factory=set)  # directories holding an __init__.py
    imported_names: set[str] = field(default_factory=set)  # parts of names modules import
    loads_unseen: bool = False  # a module imports computed names or by path: no test exemption
    # (path, module) -> what a non-test module imports, and whether it loads by path; only
    # modules that are installed count, which is known once every __init__.py is seen
    import_notes: dict[tuple[str, str], tuple[set[str], bool]] = field(default_factory=dict)
    module_paths: dict[str, str] = field(default_factory=dict)  # installed path -> member
    unanalysed_tests: dict[str, Finding] = field(default_factory=dict)  # module -> finding

    def member(self, name: str) -> None:
        """Any file: payload-looking names are remembered, to weigh what runs them."""
        if name.lower().endswith(_PAYLOAD_SUFFIXES):
            self.payloads.setdefault(posixpath.basename(name), printable(name))
        elif name.endswith("/__init__.py"):
            self.packages.add(printable(name.rpartition("/")[0]))

    def module(self, shown: str, data: bytes, module: str) -> list[Finding]:
        """A package module: the payload rules' findings now, its facts for :meth:`finish`."""
        if not _is_test(module):
            self.import_notes[(shown, module)] = self.note(data)
        duplicate = self._duplicate(shown, module)
        scanned = self.scan(shown, data, module, self.max_parse_bytes, False)
        if _is_test(module):
            scanned = self._defer_unanalysed(module, scanned)
        if scanned.facts is not None:
            self._take(scanned)
        elif not scanned.findings and self.relay_bytes + len(data) <= RELAY_BYTES:
            self.relays.append((shown, data, module))
            self.relay_bytes += len(data)
        return duplicate + list(scanned.findings)

    def _defer_unanalysed(self, module: str, scanned: Scanned) -> Scanned:
        kept = [f for f in scanned.findings if f.rule != NOT_ANALYSED]
        for finding in scanned.findings:
            if finding.rule == NOT_ANALYSED:
                self.unanalysed_tests[module] = finding
        return scanned._replace(findings=tuple(kept))

    def _settle_import_notes(self) -> None:
        for (path, module), (names, by_path) in self.import_notes.items():
            if self._installed(path, module, startup=False):
                self.imported_names |= names
                self.loads_unseen |= by_path

    def _duplicate(self, shown: str, module: str) -> list[Finding]:
        """Two members installing as one module (``demo/x.py`` and
        ``demo-1.0.data/purelib/demo/x.py``): the installer keeps the one written last,
        which need not be the one looked at. No ordinary wheel does this."""
        installed = _DATA_LIB.sub("", shown, count=1)  # where the installer writes it
        first = self.module_paths.setdefault(installed, shown)
        if first == shown:
            return []
        message = f"`{installed}` twice: `{first}` and `{shown}`; only one is installed"
        return [Finding(MODULE_TWICE, Severity.HIGH, message, shown)]

    def pth(self, name: str, data: bytes, import_lines: tuple[int, ...]) -> list[Finding]:
        """A .pth file ``site`` runs at every interpreter start."""
        scanned = pth_facts(name, data, import_lines)
        names, by_path = import_note(data)  # a hook importing a test module runs it
        self.imported_names |= names
        self.loads_unseen |= by_path
        self._take(scanned)
        return list(scanned.findings)

    def script(self, shown: str, data: bytes) -> None:
        """A bundled JavaScript file: only how it looks matters (nothing here runs it)."""
        found = js_signals(data)
        if found:
            self.signals[shown] = found

    def add_signals(self, shown: str, found: tuple[Signal, ...]) -> None:
        if found:
            self.signals[shown] = found

    def finish(self) -> tuple[ImportProfile, ImportReport]:
        """The archive's import profile, and what to compare with the previous release's."""
        self._parse_relays()
        self._settle_import_notes()
        importable = [facts for facts in self.modules.values() if self._importable(facts)]
        found = reach([self._as_imported(facts) for facts in importable])
        if not self.loads_unseen and _imports_computed_names(found):
            # Whatever a computed name imports at import could be a shipped test module.
            self.loads_unseen = True
            found = reach(importable)
        hiding = Hiding(self.signals, self.payloads)
        return profile(found), import_report(found, hiding, self._unanalysed_imported_tests())

    def _unanalysed_imported_tests(self) -> list[Finding]:
        """A test module too large to parse is held like any other once a module of the
        package imports it by name: padding must not hide it. (Not for a computed import:
        generated API test suites run past a megabyte, and nothing compares them with the
        previous release; the computed import itself is reported.)"""
        return [
            finding
            for module, finding in self.unanalysed_tests.items()
            if _imports_it(self.imported_names, module)
        ]

    def _importable(self, facts: ModuleFacts) -> bool:
        return self._installed(facts.path, facts.module, facts.startup)

    def _installed(self, path: str, module: str, startup: bool) -> bool:
        """In an sdist, scripts and tools beside the packages (``scripts/``, ``tasks/``,
        ``docs/conf.py``) are not installed: a module counts when every directory above
        it, up to where its dotted name starts, is a package."""
        if not self.sdist or startup:
            return True
        directories = path.split("/")[:-1]
        package = path.endswith("/__init__.py")
        count = module.count(".") + (1 if package else 0)  # the directories named
        first = len(directories) - count + 1
        needed = ["/".join(directories[:cut]) for cut in range(first, len(directories) + 1)]
        return all(directory in self.packages for directory in needed)

    def _as_imported(self, facts: ModuleFacts) -> ModuleFacts:
        """A test module a wheel ships (``conftest.py``, ``test_*.py``, ``*_test.py``, or
        anything in a ``tests`` package) runs when pytest collects it, never on import,
        unless a module of the archive that is not a test imports it by name (then its
        body runs on import and counts as such)."""
        if not _is_test(facts.module) or self.loads_unseen:
            return facts
        if _imports_it(self.imported_names, facts.module):
            return facts
        bodies = {**facts.bodies, PYTEST_HOOK: facts.load}
        return replace(facts, load=Body(), bodies=bodies)

    def _take(self, scanned: Scanned) -> None:
        assert scanned.facts is not None
        self.modules.setdefault(scanned.facts.module, scanned.facts)
        if scanned.signals:
            self.signals[scanned.facts.path] = scanned.signals

    def _parse_relays(self) -> None:
        wanted = _acting_names(self.modules.values(), set())
        for _round in range(RELAY_ROUNDS):
            if not wanted or not self.relays:
                return
            needed: list[tuple[str, bytes, str]] = []
            waiting: list[tuple[str, bytes, str]] = []
            shapes = [_CallShape.of(w) for w in wanted]
            for relay in self.relays:
                source = relay[1]
                (needed if any(s.seen_in(source) for s in shapes) else waiting).append(relay)
            self.relays = waiting
            parsed = []
            for shown, data, module in needed:
                scanned = self.scan(shown, data, module, self.max_parse_bytes, True)
                if scanned.facts is not None:
                    self._take(scanned)
                    parsed.append(scanned.facts)
            wanted = _acting_names(parsed, {name for _module, name in wanted})


def import_note(data: bytes) -> ImportNote:
    """What a source imports by name, and whether it loads modules by path (it depends
    only on the bytes: the member cache keeps it by their digest)."""
    named = not data.isascii() or any(hint in data for hint in _IMPORT_HINTS)
    return (_imported_names(data) if named else set()), any(w in data for w in _OTHER_LOADERS)


def _imports_computed_names(found: Reach) -> bool:
    return any(r.use.capability is Capability.DYNAMIC_IMPORT for r in found.at_import)


def _is_test(module: str) -> bool:
    *packages, last = module.split(".")
    if last == "conftest" or last.startswith("test_") or last.endswith("_test"):
        return True
    return any(part in ("tests", "test") for part in packages)


def _imported_names(source: bytes) -> set[str]:
    """The parts of the module names ``source`` imports, read as Python reads them: NFKC
    identifiers (a fullwidth letter is the plain one) and string escapes resolved."""
    text = unicodedata.normalize("NFKC", source.decode("utf-8", "replace"))
    dotted: list[str] = []
    for origin, grouped, listed in _IMPORTED.findall(text):
        dotted += re.split(r"[,\s]+", ",".join((origin, grouped, listed)))
    by_name = "import_module" in text or "__import__" in text  # cheaper than the search
    for literal in _IMPORTED_BY_NAME.findall(text) if by_name else ():
        # Not MemoryError: a name dropped for want of memory would be cached by digest.
        with contextlib.suppress(ValueError, SyntaxError, RecursionError):
            value = ast.literal_eval(literal)
            if isinstance(value, str):
                dotted.append(unicodedata.normalize("NFKC", value))
    return {part for name in dotted for part in name.split(".") if part}


def _imports_it(imported: set[str], module: str) -> bool:
    """Whether an import statement elsewhere names the module or its test package."""
    *packages, last = module.split(".")
    return last in imported or any(p in imported for p in packages if p in ("tests", "test"))


@dataclass(frozen=True, slots=True)
class _CallShape:
    """How a source that may call ``wanted`` (the module it is in, the name) looks: it names
    both, since calling another module's function means importing it from there (a
    package's own functions can be imported with ``from . import name``: only the name,
    then), and it calls the name (``name(``), decorates with it (``@name``) or imports it
    (to export it again: ``api.py`` holding ``from ._impl import Client``). Built once per
    round of relays, then tried on each of them."""

    module: bytes | None
    name: bytes
    shapes: "re.Pattern[bytes]"

    @classmethod
    def of(cls, wanted: tuple[str | None, str]) -> "_CallShape":
        module, name = wanted
        called = re.escape(name.encode())
        shapes = rb"\b%s\s*\(|@[\w.]*\b%s\b|\bimport\b[^\n]*\b%s\b" % (called, called, called)
        return cls(None if module is None else module.encode(), name.encode(), re.compile(shapes))

    def seen_in(self, source: bytes) -> bool:
        if self.name not in source:  # the rarer word first: most sources name neither
            return False
        if self.module is not None and self.module not in source:
            return False
        return self.shapes.search(source) is not None


def _acting_names(modules: Iterable[ModuleFacts], wanted: set[str]) -> set[tuple[str | None, str]]:
    """The functions and classes another module can call (top-level names) that use a
    capability, or call one of ``wanted``, within a few calls inside their module; with
    the last part of their module's name (None for a package's ``__init__``)."""
    names: set[tuple[str | None, str]] = set()
    for facts in modules:
        package = facts.path.endswith("__init__.py")
        module = None if package else facts.module.rsplit(".", 1)[-1]
        for name in facts.bodies:
            if "." not in name and name[0] != "<" and _acts(facts, name, wanted):
                names.add((module, name))
        for name, target in facts.exports.items():
            if target.rsplit(".", 1)[-1] in wanted:
                names.add((module, name))
    return names


def _acts(facts: ModuleFacts, name: str, wanted: set[str]) -> bool:
    pending, seen = [(name, 0)], {name}
    while pending:
        current, depth = pending.pop()
        body = facts.bodies.get(current)
        if body is None:
            continue
        if any(use.capability not in _NOT_ACTING for use in body.uses):
            return True
        if any(call.rsplit(".", 1)[-1] in wanted for call in body.calls):
            return True
        for call in body.calls:
            if call in facts.bodies and call not in seen and depth < MAX_DEPTH:
                seen.add(call)
                pending.append((call, depth + 1))
    return False
