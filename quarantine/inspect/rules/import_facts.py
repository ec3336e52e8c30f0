"""What one module can do, and when: the facts the import-time rules are built on.

A :class:`ModuleFacts` is what one walk of a module's syntax tree keeps (``rules_import_scan``):
the capabilities used when its body runs, and per function, class and method the
capabilities used inside it and the calls it makes. They depend only on the module's bytes
and its name, so they are cached by digest with the rest of a member's scan, and they pickle
(inspection runs in worker processes). ``rules_import_reach`` follows the calls across the
modules of one distribution.
"""

from dataclasses import dataclass, field
from enum import StrEnum


class Capability(StrEnum):
    PROCESS = "process start"
    DETACHED = "detached start"
    NETWORK = "network"
    DYNAMIC_CODE = "dynamic code"
    DYNAMIC_IMPORT = "import of a computed name"
    WRITE_OUTSIDE = "write outside the package"
    PERSISTENCE = "persistence"
    PAYLOAD = "bundled payload run"
    JS_RUNTIME = "JS runtime"
    # Only ever part of a combination, never a finding on their own: decoding data is
    # everyday work, and so is a scratch file in the temporary directory.
    DECODE = "decoding"
    WRITE_TEMP = "write to the temporary directory"


SUPPORTING = frozenset({Capability.DECODE, Capability.WRITE_TEMP})


@dataclass(frozen=True, slots=True)
class Use:
    """One place a capability is used: ``what`` names it (``subprocess.Popen``, ``curl``)."""

    capability: Capability
    what: str
    path: str  # the archive member, printable
    line: int
    excerpt: str  # the source line, escaped and cut short
    target: str | None = None  # a payload file it names (``run.js``), to weigh its evidence

    @property
    def key(self) -> tuple[str, str]:
        """What a release is compared on: the capability and its name, not the place (code
        moves between modules without doing anything new)."""
        return (self.capability.value, self.what)


@dataclass(frozen=True, slots=True)
class Body:
    """A function, a class (its body and how it is built) or the module body."""

    uses: tuple[Use, ...] = ()
    calls: tuple[str, ...] = ()  # what it calls: "f", "Cls.m" here; "pkg.mod.f" elsewhere


@dataclass(frozen=True, slots=True)
class ModuleFacts:
    module: str  # dotted name: "pkg.sub" for pkg/sub/__init__.py
    path: str  # the archive member, printable
    load: Body  # what runs when the module is imported
    bodies: dict[str, Body] = field(default_factory=dict)  # "f", "Cls", "Cls.m"
    exports: dict[str, str] = field(default_factory=dict)  # names imported from elsewhere
    startup: bool = False  # a .pth file's import lines: run at every interpreter start
