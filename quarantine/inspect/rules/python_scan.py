"""The rules over a walked Python syntax tree: hidden payloads and install-time calls.

:class:`_Scan` extends the walk (``rules_python_walk``) with the rules: ``exec``/``eval``/
``compile`` of decoded data, or of a long unreadable literal, is ``exec-encoded-payload``,
and so is a function built from a decoded code object written in the file; ``exec``/``eval``
of other dynamic input is only reported; long base64-looking literals are noted; and in an
sdist's ``setup.py``, calls that reach the network or spawn processes are HIGH when they run
as ``setup.py`` runs, LOW when only inside other functions and command classes.
"""

import ast
import re
from collections import Counter

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import printable
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.python_walk import LONG_LITERAL, _const_str, _Walk

EXEC_ENCODED = rule(
    "exec-encoded-payload",
    Severity.CRITICAL,
    "content",
    "exec/eval/compile of decoded data (base64, zlib, marshal...): a hidden payload",
)
DYNAMIC_EXEC = rule("dynamic-exec", Severity.LOW, "content", "exec/eval of other dynamic input")
ENCODED_LITERAL = rule(
    "encoded-literal", Severity.INFO, "content", "long base64-looking string literals"
)
SETUP_NETWORK = rule(
    "setup-network",
    Severity.HIGH,
    "content",
    "setup.py reaches the network when it runs (LOW: only inside a command class)",
)
SETUP_SUBPROCESS = rule(
    "setup-subprocess",
    Severity.HIGH,
    "content",
    "setup.py starts a process when it runs (LOW: only inside a command class)",
)

_DYNAMIC_CALLS = frozenset({"exec", "eval"})
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

_B64_TEXT = re.compile(r"[A-Za-z0-9+/=_\-\s]+")


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


class _Scan(_Walk):
    """The rules, run over one module's walk."""

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

    # ------------------------------------------------------------------ decoding

    def _decoder(self, call: ast.Call) -> str | None:
        """The decoder a call is, if any."""
        names = [name for name in self._names(call.func) if _may_decode(name)]
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


def _may_decode(name: str) -> bool:
    """Whether ``name`` is one :meth:`_Scan._decoder` looks at (most calls name none)."""
    return name in _DECODERS or name in _CODEC_CALLS or name.startswith(_DECODER_PREFIXES)


_DECODER_PREFIXES = ("base64.", "binascii.a2b_")


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        if name == prefix or name.startswith(prefix + "."):
            return True
        if prefix in ("os.exec", "os.spawn", "os.posix_spawn") and name.startswith(prefix):
            return True
    return False
