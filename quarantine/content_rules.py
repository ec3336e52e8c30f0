"""Rules over the text of archive members: start-up hooks, hidden payloads, install-time code.

Everything here reads text. Python sources are only ever given to ``ast.parse`` (never
compiled to code, never executed) and the tree is walked without recursion, so a hostile
file cannot run, and deep nesting cannot blow the stack. The rules:

- ``.pth`` files: lines that start with ``import`` run at every interpreter start (``site``);
  :func:`pth_file` records each one with its sha256 and those lines. Whether one is new or
  changed since the previous release is ``release_diff``'s business.
- hidden payloads (:func:`scan_python`): ``exec``/``eval``/``compile`` (also reached through
  ``builtins``, ``getattr``, ``__import__``, aliases) of decoded data (base64, zlib, bz2,
  lzma, marshal, hex, ``codecs`` bytes codecs) or of a long unreadable literal is
  ``exec-encoded-payload``; so is a function built (``types.FunctionType``) from a decoded
  code object written in the file. ``exec``/``eval`` of other dynamic input is only
  reported. Only sources that mention an exec-like name (after NFKC normalisation, as
  Python reads identifiers) or hold a long base64-looking run are parsed: parsing is
  most of the cost, and nothing else can match.
- install-time code in an sdist's ``setup.py``: calls that reach the network or spawn
  processes. Calls that run when ``setup.py`` runs (module level, class bodies, and module
  functions called from there) are HIGH; calls only inside other functions and methods
  (a ``build_ext`` command class, say) are LOW.
- the sdist layout (threat model L12): one top directory holding ``PKG-INFO``.
"""

import ast
import hashlib
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from quarantine.archive import MemberKind, MiB, printable
from quarantine.evidence import Finding, Severity

EXEC_ENCODED = "exec-encoded-payload"
EXEC_SUSPECT = "exec-encoded-suspect"  # the same pattern seen in a file we could not parse
DYNAMIC_EXEC = "dynamic-exec"
ENCODED_LITERAL = "encoded-literal"
UNPARSEABLE = "python-unparseable"
NOT_PARSED = "python-not-parsed"
SETUP_NETWORK = "setup-network"
SETUP_SUBPROCESS = "setup-subprocess"
SDIST_LAYOUT = "sdist-layout"

LONG_LITERAL = 1000  # characters; a literal this long passed to exec is a payload
_PARSE_NAME = "<lazaretto-inspected>"  # the filename ast.parse sees, for the warning filter
# Syntax warnings (invalid escapes and the like) about inspected files are nobody's business.
warnings.filterwarnings("ignore", module=re.escape(_PARSE_NAME))


# ----------------------------------------------------------------------------- .pth


@dataclass(frozen=True, slots=True)
class PthFile:
    name: str
    sha256: str
    import_lines: tuple[int, ...]  # 1-based lines that ``site`` would execute
    at_startup: bool  # where ``site`` reads .pth files (site-packages itself)

    @property
    def executable(self) -> bool:
        return self.at_startup and bool(self.import_lines)


_DATA_PTH = re.compile(
    r"[^/]+\.data/(?:(?:purelib|platlib)/|data/(?:.*/)?(?:site|dist)-packages/)[^/]+\.pth",
    re.IGNORECASE,
)


def pth_at_startup(name: str, wheel: bool) -> bool:
    """Whether an installed copy of this member lands where ``site`` processes .pth files.

    In a wheel: the root, or ``*.data/purelib|platlib/``, or a ``*.data/data/`` path ending
    in site-packages. In an sdist nobody knows what the build copies where; a .pth at the
    top of the project counts.
    """
    if not name.lower().endswith(".pth"):
        return False
    if wheel:
        return "/" not in name or _DATA_PTH.fullmatch(name) is not None
    return len(_parts(name)) <= 2


def pth_file(name: str, data: bytes, *, wheel: bool = True) -> PthFile:
    lines = []
    # str.splitlines splits wherever universal newlines do (and at more places), so every
    # line site.py would see starts a line here too.
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        stripped = line.lstrip().lstrip("\ufeff").lstrip()
        if stripped.startswith(("import ", "import\t")):
            lines.append(number)
    digest = hashlib.sha256(data).hexdigest()
    return PthFile(name, digest, tuple(lines), pth_at_startup(name, wheel))


# ---------------------------------------------------------------------- sdist layout


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def is_install_script(name: str) -> bool:
    """``setup.py`` where an installer runs it: at the top of the sdist's directory."""
    parts = _parts(name)
    return bool(parts) and parts[-1] == "setup.py" and len(parts) <= 2


@dataclass
class SdistLayout:
    """Collects, member by member, whether an sdist has one top directory with PKG-INFO."""

    tops: set[str] = field(default_factory=set)
    root_files: int = 0
    pkg_info_in: set[str] = field(default_factory=set)

    def observe(self, name: str, kind: MemberKind) -> None:
        parts = _parts(name)
        if not parts:
            return
        if len(self.tops) <= 100:
            self.tops.add(parts[0])
        if len(parts) == 1 and kind is not MemberKind.DIR:
            self.root_files += 1
        if len(parts) == 2 and parts[1] == "PKG-INFO" and kind is MemberKind.FILE:
            self.pkg_info_in.add(parts[0])

    def findings(self) -> list[Finding]:
        if len(self.tops) != 1 or self.root_files:
            count = f"{len(self.tops)}+" if len(self.tops) > 100 else str(len(self.tops))
            message = f"{count} top-level entries, {self.root_files} of them files"
            return [Finding(SDIST_LAYOUT, Severity.MEDIUM, f"not one top directory: {message}")]
        (top,) = self.tops
        if top not in self.pkg_info_in:
            return [Finding(SDIST_LAYOUT, Severity.MEDIUM, "no PKG-INFO in the top directory", top)]
        return []


# ------------------------------------------------------------------- Python sources

# Qualified names (after aliases and ``builtins.`` are resolved) that run code.
_EXEC_CALLS = frozenset({"exec", "eval", "compile", "types.FunctionType", "types.CodeType"})
_DYNAMIC_CALLS = frozenset({"exec", "eval"})
_RESULT_CALLS = frozenset({"__import__", "import_module", "getattr"})  # calls that name things
_CODE_OBJECT_CALLS = frozenset({"types.FunctionType", "types.CodeType"})
_LITERAL_INPUT = 8  # characters: shorter strings are codec names and the like, not payloads
_DECODERS = frozenset(
    {
        "zlib.decompress",
        "zlib.decompressobj",
        "gzip.decompress",
        "bz2.decompress",
        "bz2.BZ2Decompressor",
        "lzma.decompress",
        "lzma.LZMADecompressor",
        "marshal.loads",
        "bytes.fromhex",
        "bytearray.fromhex",
        "binascii.unhexlify",
    }
)
# Decoders recognised by their last name even when what they hang off is obfuscated.
_DECODER_ATTRS = frozenset(
    {
        "b64decode",
        "standard_b64decode",
        "urlsafe_b64decode",
        "b32decode",
        "b32hexdecode",
        "b16decode",
        "a85decode",
        "b85decode",
        "z85decode",
        "decodebytes",
        "decodestring",
        "decompress",
        "unhexlify",
        "fromhex",
        "a2b_base64",
        "a2b_hex",
        "a2b_uu",
        "a2b_qp",
    }
)
# Codecs that turn bytes into other bytes (or str into str): the ones that hide things.
_HIDING_CODECS = frozenset(
    {
        "base64",
        "base_64",
        "base64_codec",
        "hex",
        "hex_codec",
        "zlib",
        "zip",
        "zlib_codec",
        "bz2",
        "bz2_codec",
        "rot13",
        "rot_13",
        "uu",
        "uu_codec",
        "quopri",
        "quotedprintable",
        "quoted_printable",
        "quopri_codec",
    }
)
_CODEC_CALLS = frozenset(
    {"codecs.decode", "codecs.getdecoder", "codecs.lookup", "codecs.getincrementaldecoder"}
)
_NETWORK = (
    "urllib.request",
    "urllib.urlopen",
    "urllib.urlretrieve",
    "urllib2",
    "urllib3",
    "http.client",
    "httplib",
    "socket",
    "requests",
    "httpx",
    "aiohttp",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc.client",
    "xmlrpclib",
    "asyncio.open_connection",
)
_NOT_NETWORK = frozenset({"socket.gethostname"})
_SUBPROCESS = (
    "subprocess",
    "os.system",
    "os.popen",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.startfile",
    "pty.spawn",
    "commands",
    "popen2",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
)
_NOT_SUBPROCESS = frozenset(
    {"subprocess.CalledProcessError", "subprocess.TimeoutExpired", "subprocess.SubprocessError"}
)

# Only files that mention one of these (after NFKC normalisation, which Python applies to
# identifiers) or hold a long base64-looking run can contain what the AST rules look for.
# Plain substring searches: a regular expression here costs more than the parse it saves.
_HINT_WORDS = ("exec", "eval", "compile")  # as whole words, not attributes
_HINT_ANYWHERE = ("builtins", "__import__", "FunctionType", "CodeType")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MARK = bytes(1 if byte in _B64_CHARS else 0 for byte in range(256))  # translate table
_B64_RUN_LENGTH = 76
_B64_TEXT = re.compile(r"[A-Za-z0-9+/=_\-\s]+")
_SUSPECT_EXEC = re.compile(rb"(?<![\w.])(?:exec|eval|compile)\s*\(")
_SUSPECT_DECODE = re.compile(
    rb"b64decode|b32decode|b16decode|a85decode|b85decode|decodebytes|decompress|unhexlify"
    rb"|fromhex|a2b_base64|a2b_hex|marshal\s*\.\s*loads|codecs\s*\.\s*decode"
)
_MAX_CANDIDATES = 8  # names one expression may resolve to; more is noise
_Assignment = ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr
_FUNCTION_KINDS = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda})
_ASSIGN_KINDS = frozenset({ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr})
# Nodes no rule needs to descend into: names, contexts and operators.
_LEAF_KINDS = frozenset(
    {ast.Name, ast.alias}
    | {
        kind
        for base in (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
        for kind in base.__subclasses__()
    }
)
# The last part of every name in _EXEC_CALLS: an attribute call ending otherwise is not one.
_EXEC_LAST = frozenset(name.rsplit(".", 1)[-1] for name in _EXEC_CALLS)


def scan_python(
    name: str, data: bytes, *, install_time: bool = False, max_parse_bytes: int = 1 * MiB
) -> list[Finding]:
    """Findings for one Python source. ``install_time``: it is an sdist's ``setup.py``."""
    if len(data) > max_parse_bytes:
        found = [Finding(NOT_PARSED, Severity.INFO, f"{len(data)} bytes: pattern scan only", name)]
        return found + _suspect(name, data)
    if not install_time and not _worth_parsing(data):
        return []
    try:
        tree = ast.parse(data, filename=_PARSE_NAME)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        reason = printable(type(exc).__name__ + ": " + str(getattr(exc, "msg", exc)), 120)
        found = [Finding(UNPARSEABLE, Severity.INFO, f"not parseable ({reason})", name, line)]
        return found + _suspect(name, data)
    return _Scan(name, tree, install_time).run()


def _worth_parsing(data: bytes) -> bool:
    """Whether the syntax tree could show anything: parsing is the expensive part."""
    if _has_hint(data.decode("latin-1")) or _has_base64_run(data):
        return True
    if data.isascii():
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return True  # another encoding (a coding cookie): let the parser decide
    return _has_hint(unicodedata.normalize("NFKC", text))


def _has_hint(text: str) -> bool:
    if any(literal in text for literal in _HINT_ANYWHERE):
        return True
    for word in _HINT_WORDS:
        start = text.find(word)
        while start >= 0:
            end = start + len(word)
            before = text[start - 1] if start else " "
            after = text[end] if end < len(text) else " "
            if not (before.isalnum() or before in "_.") and not (after.isalnum() or after == "_"):
                return True
            start = text.find(word, end)
    return False


def _has_base64_run(data: bytes) -> bool:
    """A run of base64 characters long enough to be a payload, not part of a URL or path."""
    marked = data.translate(_B64_MARK)
    run = b"\x01" * _B64_RUN_LENGTH
    start = marked.find(run)
    while start >= 0:
        before = data[start - 1 : start]
        if before not in (b".", b":", b"/", b"-", b"_"):
            return True
        following = marked.find(b"\x00", start)
        if following < 0:
            return False
        start = marked.find(run, following)
    return False


def _suspect(name: str, data: bytes) -> list[Finding]:
    """What can be said about a source without its syntax tree."""
    hit = _SUSPECT_EXEC.search(data)
    if hit is None or _SUSPECT_DECODE.search(data) is None:
        return []
    line = data.count(b"\n", 0, hit.start()) + 1
    message = "exec/eval/compile and a decoder in a file that could not be fully parsed"
    return [Finding(EXEC_SUSPECT, Severity.HIGH, message, name, line)]


def _looks_encoded(text: str) -> bool:
    """Long and nearly without whitespace: not something a person reads."""
    spaces = sum(1 for char in text if char.isspace())
    return len(text) - spaces >= LONG_LITERAL and spaces * 20 < len(text)


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value.decode("latin-1")
    return None


def _const_str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_constant_text(node: ast.AST) -> bool:
    """An expression made only of constants (concatenated, or in a tuple or list) that
    holds a string of some length: ``DATA = "..." "..."``, ``KEY = b"..." + b"..."``."""
    text = False
    for child in ast.walk(node):
        if isinstance(child, ast.Constant):
            text = text or (isinstance(child.value, str | bytes) and len(child.value) >= 8)
        elif not isinstance(child, _CONSTANT_GLUE):
            return False
    return text


_CONSTANT_GLUE = (ast.BinOp, ast.operator, ast.Tuple, ast.List, ast.expr_context)


def _is_literal(node: ast.AST) -> bool:
    return _literal_text(node) is not None


def _canonical(name: str) -> str:
    for prefix in ("builtins.", "__builtins__."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


@dataclass(slots=True)
class _Call:
    node: ast.Call
    scope: int  # index into _Scan.scopes
    runs_at_load: bool  # runs when the module body runs (not only when a function is called)


class _Scan:
    def __init__(self, path: str, tree: ast.Module, install_time: bool) -> None:
        self.path = path
        self.tree = tree
        self.install_time = install_time
        self.aliases: dict[str, set[str]] = {}
        self.star_modules: set[str] = set()
        self.calls: list[_Call] = []
        self.assigns: list[tuple[int, str, ast.AST, bool]] = []  # scope, name, value, simple
        self.scopes: list[str | None] = [None]  # per scope: the module function it belongs to
        self.literals: list[ast.Constant] = []
        self.exec_calls: list[tuple[_Call, set[str]]] = []  # calls that may run code
        self.module_functions: set[str] = set()
        self.tainted: dict[int, dict[str, bool]] = {}  # name -> decoded from a literal
        self.constants: dict[int, set[str]] = {}  # names bound to string literals
        self.cache: dict[int, set[str]] | None = None  # _names of whole expressions, once
        # aliases are complete

    # -------------------------------------------------------------------- the walk

    def run(self) -> list[Finding]:
        self._walk()
        self._follow_assignments()
        self.cache = {}
        for call in self.calls:
            names = self._exec_names(call.node)
            if names:
                self.exec_calls.append((call, names))
        self._taint()
        found: list[Finding] = []
        found += self._exec_findings()
        found += self._literal_findings()
        if self.install_time:
            found += self._install_findings()
        return found

    def _walk(self) -> None:
        """One pass, no recursion: record imports, assignments, calls and long literals,
        each with its scope and whether it runs when the module body runs. Leaves that no
        rule looks at (names, operators, contexts) are not visited."""
        top_level = set()
        for statement in self.tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                self.module_functions.add(statement.name)
                top_level.add(id(statement))
        # (node, scope index, whether it runs when the module body runs)
        stack: list[tuple[ast.AST, int, bool]] = [(self.tree, 0, True)]
        pop, push = stack.pop, stack.append
        calls, literals = self.calls, self.literals
        leaves, functions, assignments = _LEAF_KINDS, _FUNCTION_KINDS, _ASSIGN_KINDS
        node_base, constant, text = ast.AST, ast.Constant, (str, bytes)
        while stack:
            node, scope, at_load = pop()
            kind = type(node)
            if kind is ast.Call:
                calls.append(_Call(cast(ast.Call, node), scope, at_load))
            elif kind in functions:
                self._enter(node, scope, at_load, id(node) in top_level, push)
                continue
            elif kind is ast.Import or kind is ast.ImportFrom:
                self._import(cast(ast.Import | ast.ImportFrom, node))
                continue
            elif kind in assignments:
                self._assign(cast(_Assignment, node), scope)
            # The node's fields (and its position numbers, which are no nodes) without
            # one getattr per field: this loop is most of the scan's own cost.
            for value in vars(node).values():
                for child in value if type(value) is list else (value,):
                    child_kind = type(child)
                    if child_kind is constant:
                        held = child.value
                        if type(held) in text and len(held) >= LONG_LITERAL:
                            literals.append(cast(ast.Constant, child))
                    elif child_kind not in leaves and isinstance(child, node_base):
                        push((child, scope, at_load))
        calls.sort(key=lambda call: (call.node.lineno, call.node.col_offset))

    def _enter(
        self,
        node: ast.AST,
        scope: int,
        at_load: bool,
        top_level: bool,
        push: Callable[[tuple[ast.AST, int, bool]], None],
    ) -> None:
        """A function or lambda: its body is a new scope that does not run at load; its
        defaults, decorators and annotations run where it is defined."""
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        owner = node.name if top_level and not isinstance(node, ast.Lambda) else None
        self.scopes.append(owner if scope == 0 else self.scopes[scope])
        inner = len(self.scopes) - 1
        outer: list[ast.AST] = [*node.args.defaults]
        outer += [default for default in node.args.kw_defaults if default is not None]
        if isinstance(node, ast.Lambda):
            push((node.body, inner, False))
        else:
            outer += node.decorator_list
            outer += [node.returns] if node.returns else []
            arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            arguments += [a for a in (node.args.vararg, node.args.kwarg) if a]
            outer += [a.annotation for a in arguments if a.annotation]
            for statement in node.body:
                push((statement, inner, False))
        for part in outer:
            push((part, scope, at_load))

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self._alias(alias.asname, alias.name)
                else:
                    top = alias.name.split(".")[0]
                    self._alias(top, top)
            return
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                if len(self.star_modules) < _MAX_CANDIDATES:
                    self.star_modules.add(module)
            else:
                self._alias(alias.asname or alias.name, f"{module}.{alias.name}")

    def _alias(self, name: str, target: str) -> None:
        known = self.aliases.setdefault(name, set())
        if len(known) < _MAX_CANDIDATES:
            known.add(target)

    def _assign(self, node: "_Assignment", scope: int) -> None:
        value = node.value
        if value is None:
            return
        targets: list[ast.expr] = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            simple = isinstance(target, ast.Name) and not isinstance(node, ast.AugAssign)
            pending: list[ast.expr] = [target]
            while pending:  # the names a target binds: a.b = and a[0] = bind none
                part = pending.pop()
                if isinstance(part, ast.Name):
                    self.assigns.append((scope, part.id, value, simple))
                elif isinstance(part, ast.Tuple | ast.List):
                    pending.extend(part.elts)
                elif isinstance(part, ast.Starred):
                    pending.append(part.value)

    def _follow_assignments(self) -> None:
        """``name = <module or function expression>`` makes ``name`` an alias too
        (``b = __import__("base64")``, ``run = getattr(builtins, "exec")``)."""
        for _round in range(3):
            before = sum(len(targets) for targets in self.aliases.values())
            for _scope, name, value, simple in self.assigns:
                if simple:
                    for resolved in self._names(value):
                        if resolved != name:
                            self._alias(name, resolved)
            if sum(len(targets) for targets in self.aliases.values()) == before:
                return

    # ---------------------------------------------------------------- resolution

    def _names(self, node: ast.AST, depth: int = 0) -> set[str]:
        """The dotted names an expression may stand for (aliases followed)."""
        if depth == 0 and self.cache is not None:
            known = self.cache.get(id(node))
            if known is None:
                known = self.cache[id(node)] = self._resolve(node, 0)
            return known
        return self._resolve(node, depth)

    def _resolve(self, node: ast.AST, depth: int) -> set[str]:
        if depth > 20:
            return set()
        if isinstance(node, ast.Name):
            found = {node.id} | self.aliases.get(node.id, set())
            for module in self.star_modules:
                found.add(f"{module}.{node.id}")
            return {_canonical(name) for name in found}
        if isinstance(node, ast.Attribute):
            bases = self._names(node.value, depth + 1)
            return {_canonical(f"{base}.{node.attr}") for base in bases}
        if isinstance(node, ast.Call):
            return self._call_result_names(node, depth)
        if isinstance(node, ast.Subscript):
            key = _const_str(node.slice)
            if key is None:
                return set()
            value = node.value
            called = (
                value.func.id
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                else None
            )
            if isinstance(value, ast.Attribute) and value.attr == "__dict__":
                bases = self._names(value.value, depth + 1)
            elif isinstance(value, ast.Call) and called == "vars" and value.args:
                bases = self._names(value.args[0], depth + 1)
            elif called in ("globals", "locals"):
                return {_canonical(key)}
            else:
                bases = self._names(value, depth + 1)
            return {_canonical(f"{base}.{key}") for base in bases}
        return set()

    def _call_result_names(self, node: ast.Call, depth: int) -> set[str]:
        """Names for calls that return a module or attribute: __import__, getattr. Any other
        call (``a.b().c().d()`` chains, say) stands for no name, and is not descended."""
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in _RESULT_CALLS and func.id not in self.aliases:
                return set()
        elif not isinstance(func, ast.Attribute) or func.attr not in _RESULT_CALLS:
            return set()
        names = self._resolve(func, depth + 1)
        if not names.isdisjoint({"__import__", "importlib.import_module"}) and node.args:
            module = _const_str(node.args[0])
            return {_canonical(module)} if module else set()
        if "getattr" in names and len(node.args) >= 2:
            attr = _const_str(node.args[1])
            if attr is None:
                return set()
            bases = self._resolve(node.args[0], depth + 1)
            return {_canonical(f"{base}.{attr}") for base in bases}
        return set()

    def _exec_names(self, call: ast.Call) -> set[str]:
        """What exec-like builtins a call may be (cheap refusals first)."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr not in _EXEC_LAST:
            return set()
        plain = isinstance(func, ast.Name) and func.id not in _EXEC_LAST
        if plain and not self.star_modules and getattr(func, "id", "") not in self.aliases:
            return set()
        return self._names(func) & _EXEC_CALLS

    # ------------------------------------------------------------------ decoding

    def _decoder(self, call: ast.Call) -> str | None:
        """The decoder a call is, if any."""
        names = self._names(call.func)
        for name in sorted(names):
            if name in _DECODERS or (name.startswith("base64.") and "decode" in name):
                return name
            if name.startswith("binascii.a2b_"):
                return name
            position = 1 if name == "codecs.decode" else 0
            if name in _CODEC_CALLS and self._hiding_codec(call, position):
                return name
        if isinstance(call.func, ast.Attribute):
            attr = call.func.attr
            if attr in _DECODER_ATTRS:
                return attr
            if attr == "decode" and self._hiding_codec(call, 0):
                return ".decode"
        elif isinstance(call.func, ast.Name) and call.func.id in _DECODER_ATTRS:
            return call.func.id
        return None

    @staticmethod
    def _hiding_codec(call: ast.Call, position: int) -> bool:
        codec = None
        if len(call.args) > position:
            codec = _const_str(call.args[position])
        for keyword in call.keywords:
            if keyword.arg in ("encoding", "name"):
                codec = _const_str(keyword.value)
        if codec is None:
            return False
        return codec.lower().replace("-", "_").replace(" ", "_") in _HIDING_CODECS

    def _decoding_in(self, node: ast.AST, scope: int) -> tuple[str, bool] | None:
        """What in an expression decodes or hides data (a decoder call, a name holding
        decoded data, a long unreadable literal), and whether that data is written in the
        file itself (a literal, or a name bound to one) rather than coming from outside."""
        tainted = {**self.tainted.get(0, {}), **self.tainted.get(scope, {})}
        constants = self.constants.get(0, set()) | self.constants.get(scope, set())
        found: tuple[str, bool] | None = None
        for child in ast.walk(node):
            if isinstance(child, ast.Call):
                decoder = self._decoder(child)
                if decoder is not None:
                    if self._literal_input(child, tainted, constants):
                        return decoder, True
                    found = found or (decoder, False)
            elif isinstance(child, ast.Name) and child.id in tainted:
                if tainted[child.id]:
                    return f"{child.id} (decoded data)", True
                found = found or (f"{child.id} (decoded data)", False)
            else:
                text = _literal_text(child)
                if text is not None and len(text) >= LONG_LITERAL and _looks_encoded(text):
                    return f"a {len(text)}-character literal", True
        return found

    @staticmethod
    def _literal_input(call: ast.Call, tainted: dict[str, bool], constants: set[str]) -> bool:
        """Whether a decoder's input is written in the file: its data argument (or, for a
        method such as ``"...".decode("base64")``, its receiver) holds a string literal,
        a name bound to one, or decoded literal data."""
        parts: list[ast.AST] = list(call.args[:1])
        if isinstance(call.func, ast.Attribute):
            parts.append(call.func.value)
        for part in parts:
            for child in ast.walk(part):
                text = _literal_text(child)
                if text is not None and len(text) >= _LITERAL_INPUT:
                    return True
                if isinstance(child, ast.Name) and (tainted.get(child.id) or child.id in constants):
                    return True
        return False

    def _taint(self) -> None:
        """Names bound to string literals, and names assigned decoded data (with whether it
        was decoded from a literal), per scope, to a fixed point (bounded). Only scopes that
        call something exec-like (and the module scope, whose names they see) matter."""
        wanted = {call.scope for call, _names in self.exec_calls}
        if not wanted:
            return
        wanted.add(0)
        for scope, name, value, _simple in self.assigns:
            if scope in wanted and _is_constant_text(value):
                self.constants.setdefault(scope, set()).add(name)
        for _round in range(5):
            changed = False
            for scope, name, value, _simple in self.assigns:
                known = self.tainted.get(scope, {})
                if scope not in wanted or known.get(name):
                    continue
                decoding = self._decoding_in(value, scope)
                if decoding is not None and known.get(name) != decoding[1]:
                    self.tainted.setdefault(scope, {})[name] = decoding[1]
                    changed = True
            if not changed:
                return

    # ------------------------------------------------------------------ findings

    def _exec_findings(self) -> list[Finding]:
        found: list[Finding] = []
        dynamic: list[int] = []
        for call, names in self.exec_calls:
            what = min(names)
            arguments = [*call.node.args, *(k.value for k in call.node.keywords)]
            decoding = None
            for argument in arguments:
                decoding = self._decoding_in(argument, call.scope)
                if decoding is not None:
                    break
            # exec/eval/compile of decoded data is a payload wherever the data comes from;
            # building a function from a decoded code object is one only when the data is
            # written in the file (Keras and pyscf rebuild functions sent to them, say).
            if decoding is not None and (what not in _CODE_OBJECT_CALLS or decoding[1]):
                message = f"{what}() of decoded data: {printable(decoding[0], 80)}"
                found.append(
                    Finding(EXEC_ENCODED, Severity.CRITICAL, message, self.path, call.node.lineno)
                )
            elif decoding is not None or self._dynamic(what, call.node):
                dynamic.append(call.node.lineno)
        if dynamic:
            message = f"code run from dynamic input (exec/eval) at {len(dynamic)} place(s)"
            found.append(Finding(DYNAMIC_EXEC, Severity.LOW, message, self.path, min(dynamic)))
        return found

    @staticmethod
    def _dynamic(what: str, call: ast.Call) -> bool:
        return what in _DYNAMIC_CALLS and bool(call.args) and not _is_literal(call.args[0])

    def _literal_findings(self) -> list[Finding]:
        encoded = []
        for node in self.literals:
            text = _literal_text(node)
            if text is not None and _looks_encoded(text) and _B64_TEXT.fullmatch(text):
                encoded.append(node)
        if not encoded:
            return []
        first = min(encoded, key=lambda node: node.lineno)
        message = f"{len(encoded)} long base64-looking literal(s)"
        return [Finding(ENCODED_LITERAL, Severity.INFO, message, self.path, first.lineno)]

    def _install_findings(self) -> list[Finding]:
        reachable = self._reachable()
        found: list[Finding] = []
        per_rule: Counter[tuple[str, bool]] = Counter()
        for call in self.calls:
            names = self._names(call.node.func)
            rule = None
            if any(_matches(name, _NETWORK) and name not in _NOT_NETWORK for name in names):
                rule = SETUP_NETWORK
            elif any(_matches(name, _SUBPROCESS) and name not in _NOT_SUBPROCESS for name in names):
                rule = SETUP_SUBPROCESS
            if rule is None:
                continue
            owner = self.scopes[call.scope]
            at_setup = call.runs_at_load or (owner is not None and owner in reachable)
            per_rule[(rule, at_setup)] += 1
            if per_rule[(rule, at_setup)] > 5:
                continue
            what = printable(min(names), 80)
            if at_setup:
                message = f"setup.py calls {what} when it runs"
                severity = Severity.HIGH
            else:
                message = f"setup.py calls {what} inside a function or command class"
                severity = Severity.LOW
            found.append(Finding(rule, severity, message, self.path, call.node.lineno))
        return found

    def _reachable(self) -> set[str]:
        """Module-level functions called (by name) when the module body runs, transitively."""
        calls_from: dict[str | None, set[str]] = {}
        for call in self.calls:
            func = call.node.func
            if not isinstance(func, ast.Name) or func.id not in self.module_functions:
                continue
            key = None if call.runs_at_load else self.scopes[call.scope]
            if key is None and not call.runs_at_load:
                continue  # a call inside a method or lambda: not known to run at load
            calls_from.setdefault(key, set()).add(func.id)
        reachable: set[str] = set()
        pending = list(calls_from.get(None, ()))
        while pending:
            name = pending.pop()
            if name not in reachable:
                reachable.add(name)
                pending.extend(calls_from.get(name, ()))
        return reachable


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        if name == prefix or name.startswith(prefix + "."):
            return True
        if prefix in ("os.exec", "os.spawn", "os.posix_spawn") and name.startswith(prefix):
            return True
    return False
