"""The entry point for Python sources: which to parse, and what to say about the others.

Python sources are only ever given to ``ast.parse`` (never compiled to code, never
executed). Only sources that mention an exec-like name (after NFKC normalisation, as Python
reads identifiers) or hold a long base64-looking run are parsed: parsing is most of the
cost, and nothing else can match. A source too large to parse, or that does not parse, gets
a pattern scan instead. The rules over the parsed tree are in ``rules_python_scan``.
"""

import ast
import contextlib
import gc
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterator

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import MiB, printable
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.python_scan import _Scan

EXEC_SUSPECT = rule(
    "exec-encoded-suspect",
    Severity.HIGH,
    "content",
    "exec of decoded data, seen by the pattern scan in a source that could not be parsed",
)  # the same pattern seen in a file we could not parse
UNPARSEABLE = rule(
    "python-unparseable",
    Severity.INFO,
    "content",
    "a Python source that does not parse: pattern scan only",
)
NOT_PARSED = rule(
    "python-not-parsed",
    Severity.INFO,
    "content",
    "a Python source too large to parse: pattern scan only",
)

_PARSE_NAME = "<lazaretto-inspected>"  # the filename ast.parse sees, for the warning filter
# Syntax warnings (invalid escapes and the like) about inspected files are nobody's business.
warnings.filterwarnings("ignore", module=re.escape(_PARSE_NAME))

# Only files that mention one of these (after NFKC normalisation, which Python applies to
# identifiers) or hold a long base64-looking run can contain what the AST rules look for.
# Plain substring searches: a regular expression here costs more than the parse it saves.
_HINT_WORDS = ("exec", "eval", "compile")  # as whole words, not attributes
_HINT_ANYWHERE = ("builtins", "__import__", "FunctionType", "CodeType")
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MARK = bytes(1 if byte in _B64_CHARS else 0 for byte in range(256))  # translate table
_B64_RUN_LENGTH = 76
_SUSPECT_EXEC = re.compile(rb"(?<![\w.])(?:exec|eval|compile)\s*\(")
_SUSPECT_DECODE = re.compile(
    rb"b64decode|b32decode|b16decode|a85decode|b85decode|decodebytes|decompress|unhexlify"
    rb"|fromhex|a2b_base64|a2b_hex|marshal\s*\.\s*loads|codecs\s*\.\s*decode"
)


def scan_python(
    name: str, data: bytes, *, install_time: bool = False, max_parse_bytes: int = 1 * MiB
) -> list[Finding]:
    """Findings for one Python source. ``install_time``: it is an sdist's ``setup.py``."""
    if len(data) > max_parse_bytes:
        found = [Finding(NOT_PARSED, Severity.INFO, f"{len(data)} bytes: pattern scan only", name)]
        return found + _suspect(name, data)
    if not install_time and not _worth_parsing(data):
        return []
    with collector_paused():
        try:
            tree = ast.parse(data, filename=_PARSE_NAME)
        except (SyntaxError, ValueError, RecursionError) as exc:  # MemoryError: a limit
            line = getattr(exc, "lineno", None)
            reason = printable(type(exc).__name__ + ": " + str(getattr(exc, "msg", exc)), 120)
            found = [Finding(UNPARSEABLE, Severity.INFO, f"not parseable ({reason})", name, line)]
            return found + _suspect(name, data)
        return _Scan(name, tree, install_time).run()


_pause_lock = threading.Lock()
_pauses = 0
_was_on = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a source is parsed and walked.

    A syntax tree is tens of thousands of objects that all live until the walk ends, so
    the collector runs again and again over them (and over everything else alive in the
    process, the member cache included) and finds nothing: a tree holds no cycles, and
    reference counting frees it. That was half of ``ast.parse``'s time in a worker
    process. Pauses are counted (threads may overlap): the last one to end turns it back
    on, if it was on when the first began.
    """
    global _pauses, _was_on
    with _pause_lock:
        if _pauses == 0:
            _was_on = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_on:
                gc.enable()


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
