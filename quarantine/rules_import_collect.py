"""Import-time inspection of one archive, member by member, then judged as a whole.

:class:`ImportCollector` takes the members as the archive walk meets them: package modules
(scanned through the member cache: facts and payload findings of a source depend only on its
bytes and name), start-up ``.pth`` files, JavaScript files (obfuscator shapes), and the names
of payload-looking files. :meth:`ImportCollector.finish` parses the relays it put aside,
follows the calls (``rules_import_reach``), stores the profile and returns the findings
against the previous release (``rules_import_diff``).

Relays: a module that mentions no capability is not parsed when met. It is kept (up to
:data:`RELAY_BYTES` in all) and parsed at the end only if it mentions the name of a function
that uses a capability, or of another relay's function, for :data:`RELAY_ROUNDS` rounds:
``__init__`` calling ``start()`` from ``._boot`` is followed without parsing every module.
"""

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from quarantine.archive import MiB, printable
from quarantine.evidence import Finding
from quarantine.rules_import_diff import (
    Hiding,
    ImportProfile,
    Previous,
    import_findings,
    profile,
)
from quarantine.rules_import_facts import ModuleFacts
from quarantine.rules_import_reach import reach
from quarantine.rules_import_source import Scanned, pth_facts, scan_module
from quarantine.rules_obfuscation import Signal, js_signals

RELAY_BYTES = 16 * MiB
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


def scan_direct(
    name: str, data: bytes, module: str, max_parse_bytes: int, parse_all: bool
) -> Scanned:
    return scan_module(name, data, module, max_parse_bytes=max_parse_bytes, parse_all=parse_all)


@dataclass
class ImportCollector:
    scan: ModuleScan = scan_direct
    max_parse_bytes: int = 1 * MiB
    modules: dict[str, ModuleFacts] = field(default_factory=dict)
    signals: dict[str, tuple[Signal, ...]] = field(default_factory=dict)
    payloads: dict[str, str] = field(default_factory=dict)  # base name -> member
    relays: list[tuple[str, bytes, str]] = field(default_factory=list)
    relay_bytes: int = 0

    def member(self, name: str) -> None:
        """Any file: payload-looking names are remembered, to weigh what runs them."""
        if name.lower().endswith(_PAYLOAD_SUFFIXES):
            self.payloads.setdefault(posixpath.basename(name), printable(name))

    def module(self, shown: str, data: bytes, module: str) -> list[Finding]:
        """A package module: the payload rules' findings now, its facts for :meth:`finish`."""
        scanned = self.scan(shown, data, module, self.max_parse_bytes, False)
        if scanned.facts is not None:
            self._add(scanned)
        elif not scanned.findings and self.relay_bytes + len(data) <= RELAY_BYTES:
            self.relays.append((shown, data, module))
            self.relay_bytes += len(data)
        return list(scanned.findings)

    def pth(self, name: str, data: bytes, import_lines: tuple[int, ...]) -> list[Finding]:
        """A .pth file ``site`` runs at every interpreter start."""
        scanned = pth_facts(name, data, import_lines)
        self._add(scanned)
        return list(scanned.findings)

    def script(self, shown: str, data: bytes) -> None:
        """A bundled JavaScript file: only how it looks matters (nothing here runs it)."""
        found = js_signals(data)
        if found:
            self.signals[shown] = found

    def add_signals(self, shown: str, found: tuple[Signal, ...]) -> None:
        if found:
            self.signals[shown] = found

    def finish(self, previous: Previous | None) -> tuple[ImportProfile, list[Finding]]:
        self._parse_relays()
        found = reach(self.modules.values())
        hiding = Hiding(self.signals, self.payloads)
        return profile(found), import_findings(found, previous, hiding)

    def _add(self, scanned: Scanned) -> None:
        assert scanned.facts is not None
        self.modules.setdefault(scanned.facts.module, scanned.facts)
        if scanned.signals:
            self.signals[scanned.facts.path] = scanned.signals

    def _parse_relays(self) -> None:
        wanted = self._acting_names(self.modules.values())
        for _round in range(RELAY_ROUNDS):
            if not wanted or not self.relays:
                return
            needed: list[tuple[str, bytes, str]] = []
            waiting: list[tuple[str, bytes, str]] = []
            for relay in self.relays:
                (needed if any(name in relay[1] for name in wanted) else waiting).append(relay)
            self.relays = waiting
            parsed = []
            for shown, data, module in needed:
                scanned = self.scan(shown, data, module, self.max_parse_bytes, True)
                if scanned.facts is not None:
                    self._add(scanned)
                    parsed.append(scanned.facts)
            wanted = {
                name.rsplit(".", 1)[-1].encode()
                for facts in parsed
                for name, body in facts.bodies.items()
                if body.calls
            }

    @staticmethod
    def _acting_names(modules: Iterable[ModuleFacts]) -> set[bytes]:
        """The names of functions, classes and methods that use a capability (as bytes, to
        look for in the sources put aside)."""
        names: set[bytes] = set()
        for facts in modules:
            for name, body in facts.bodies.items():
                if body.uses:
                    names.update(part.encode() for part in name.split("."))
        return names
