"""Which members are modules of the distribution, and scanning one: payload rules and facts.

A wheel's ``.py`` members are its modules (``*.data/purelib|platlib/`` included); in an
sdist, the package sources are the ``.py`` files under the project directory (a ``src/``
or ``lib/`` layout unwrapped), leaving out ``setup.py`` (install time, ``rules_python_scan``)
and tests, docs, examples and benchmarks, which nobody imports from the installed package.

Parsing is most of the cost, so a module is parsed only when it could show something: it
mentions an exec-like name (the payload rules) or a capability (:func:`may_act_at_import`).
Others wait: ``rules_import_reach`` parses them later only if they call, by name, a function
that does something (a relay between a module body and the capability).
"""

import ast
import re
from typing import NamedTuple

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import ArchiveKind, printable
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.import_facts import ModuleFacts
from quarantine.inspect.rules.import_scan import ImportScan
from quarantine.inspect.rules.obfuscation import Signal, source_signals
from quarantine.inspect.rules.python import (
    _PARSE_NAME,
    _worth_parsing,
    collector_paused,
    scan_python,
)

# Build and tool scripts at the top of an sdist, which nothing imports (setup.py: install
# time). Deeper down, a module of any name is a package module: a package can import its
# ``testing`` or ``setup`` module, so only the test-module rule of ``rules_import_collect``
# (a test module nothing else imports runs under pytest) sets modules apart.
NOT_ANALYSED = rule(
    "import-time-not-analysed",
    Severity.HIGH,
    "content",
    "a package module too large to parse that mentions what the import-time rules look for",
)
_TOOL_SCRIPTS = frozenset({"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "dodo.py"})
_LAYOUT_DIRS = frozenset({"src", "lib", "python"})
_DATA_LIB = re.compile(r"[^/]+\.data/(?:purelib|platlib)/")
# Words a module must contain to be worth parsing for what it does at import.
# Words that name a capability wherever they are (os functions, computed imports)...
_CAPABILITY_CALLS = (
    b"os.system",
    b"os.popen",
    b"os.exec",
    b"os.spawn",
    b"os.fork",
    b"os.posix_spawn",
    b"os.startfile",
    b"os.setsid",
    b"create_subprocess",
    b"open_connection",
    b"__import__",
    b"import_module",
)
# ...and modules that matter only when imported: a lexer's keyword list or a docstring
# mentions "socket" or "requests" without using them.
_CAPABILITY_MODULES = (
    b"subprocess",
    b"socket",
    b"urllib",
    b"http",
    b"requests",
    b"aiohttp",
    b"ftplib",
    b"smtplib",
    b"telnetlib",
    b"dns",
    b"multiprocessing",
    b"pty",
    b"marshal",
    b"pickle",
    b"runpy",
    b"os",
)
_IMPORTS_CAPABILITY = re.compile(
    rb"^[ \t]*(?:import|from)[ \t][^\n#]*?\b(?:subprocess|socket|urllib\d?|http|httplib|requests"
    rb"|httpx|aiohttp|ftplib|smtplib|telnetlib|dns|multiprocessing|pty|marshal|c?[Pp]ickle|dill"
    rb"|runpy)\b|^[ \t]*from[ \t]+os[ \t]+import[ \t][^\n#]*\b(?:system|popen|exec|spawn|fork)",
    re.MULTILINE,
)
_WRITE_WORDS = (b"open", b"write", b"copy", b"move")
# Where a write must point to matter (home, start-up hooks, persistence, temp).
_PLACE_WORDS = (  # as code names them: "HOME" alone is also a terminal's cursor key
    b"expanduser",
    b".home()",
    b"'HOME'",
    b'"HOME"',
    b"$HOME",
    b"APPDATA",
    b"USERPROFILE",
    b"'~",
    b'"~',
    b"crontab",
    b"/etc/cron",
    b"cron.d",
    b"bashrc",
    b"zshrc",
    b".profile",
    b"bash_profile",
    b"config.fish",
    b"systemd",
    b"LaunchAgents",
    b"LaunchDaemons",
    b"autostart",
    b".pth",
    b"sitecustomize",
    b"usercustomize",
    b"site-packages",
    b"dist-packages",
    b"getsitepackages",
    b"getusersitepackages",
    b"CurrentVersion",
    b"gettempdir",
    b"mkdtemp",
    b"mkstemp",
    b"/tmp",
    b"'TEMP'",
    b'"TEMP"',
    b"TMPDIR",
)


class Scanned(NamedTuple):
    findings: tuple[Finding, ...]  # the payload rules' findings
    facts: ModuleFacts | None  # None: not parsed (nothing to see, or a parse failure)
    signals: tuple[Signal, ...]  # obfuscation, for a module that uses a capability


def module_name(name: str, kind: ArchiveKind) -> str | None:
    """The dotted module a ``.py`` member installs as, or None (not a package source)."""
    if not name.endswith(".py"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if kind is ArchiveKind.WHEEL:
        data = _DATA_LIB.match(name)
        if data is not None:
            parts = [part for part in name[data.end() :].split("/") if part]
        elif parts[0].endswith((".data", ".dist-info")):
            return None
    else:
        parts = parts[1:]  # the sdist's top directory
        if not parts or (len(parts) == 1 and parts[0] in _TOOL_SCRIPTS):
            return None
        if parts[0] in _LAYOUT_DIRS and len(parts) > 1:
            parts = parts[1:]
    parts[-1] = parts[-1][:-3]
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def may_act_at_import(data: bytes) -> bool:
    """Whether a source mentions anything the import-time rules look for."""
    if any(word in data for word in _CAPABILITY_CALLS):
        return True
    mentioned = any(word in data for word in _CAPABILITY_MODULES)
    if mentioned and _IMPORTS_CAPABILITY.search(data) is not None:
        return True
    return any(w in data for w in _WRITE_WORDS) and any(w in data for w in _PLACE_WORDS)


def scan_module(
    name: str, data: bytes, module: str, *, max_parse_bytes: int, parse_all: bool = False
) -> Scanned:
    """The payload rules' findings and the import-time facts of one package module.
    ``parse_all``: parse even a source that mentions nothing (a relay, see the module doc)."""
    if len(data) > max_parse_bytes:
        found = scan_python(name, data, max_parse_bytes=max_parse_bytes)
        if may_act_at_import(data):  # padding must not hide what a module does
            message = f"{len(data)} bytes, too large to see what it does at import"
            found.append(Finding(NOT_ANALYSED, Severity.HIGH, message, name))
        return Scanned(tuple(found), None, ())
    if not parse_all and not _worth_parsing(data) and not may_act_at_import(data):
        return Scanned((), None, ())
    with collector_paused():
        try:
            tree = ast.parse(data, filename=_PARSE_NAME)
        except (SyntaxError, ValueError, RecursionError):
            found = scan_python(name, data, max_parse_bytes=max_parse_bytes)
            return Scanned(tuple(found), None, ())
        text = data.decode("utf-8", "replace")
        scan = ImportScan(name, tree, module, _package(name, module), text)
        findings = tuple(scan.run())
        facts = scan.facts()
        del scan, tree  # freed here, while the collector is off
    acts = facts.load.uses or any(body.uses for body in facts.bodies.values())
    return Scanned(findings, facts, source_signals(data) if acts else ())


def pth_facts(name: str, data: bytes, import_lines: tuple[int, ...]) -> Scanned:
    """What a .pth file's import lines do at every interpreter start (``site`` runs each
    line on its own; a line that does not parse alone would not run either)."""
    lines = data.decode("utf-8", "replace").splitlines()
    kept = [""] * len(lines)
    for number in import_lines:
        line = lines[number - 1].lstrip().lstrip("\ufeff")
        try:
            ast.parse(line, filename=_PARSE_NAME)
        except (SyntaxError, ValueError, RecursionError):
            continue
        kept[number - 1] = line
    text = "\n".join(kept)
    tree = ast.parse(text, filename=_PARSE_NAME)
    shown = printable(name)
    scan = ImportScan(shown, tree, "<pth>", "", text)
    findings = tuple(scan.run())
    facts = scan.facts()
    facts = ModuleFacts(f"<{shown}>", shown, facts.load, facts.bodies, startup=True)
    return Scanned(findings, facts, source_signals(data))


def _package(name: str, module: str) -> str:
    return module if name.endswith("__init__.py") else module.rpartition(".")[0]
