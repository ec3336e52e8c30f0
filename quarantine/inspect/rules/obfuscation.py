"""Signs that a file hides what it does: supporting evidence, never a hold on its own.

- code after a long run of blanks on one line (the ``requests`` fork of September 2026 put
  its ``setup.py`` payload after 434 spaces on an ordinary line: off the edge of any screen);
- very long lines (minified or generated code);
- large high-entropy literals (base64 of compressed or encrypted data);
- the shapes JavaScript obfuscators leave (``_0x3f2a`` names, the ``p,a,c,k,e,d`` packer,
  walls of ``\\x`` escapes).

A signal raises the severity of a finding about the same file (``rules_import_diff``); a
file with signals and nothing else is at most reported.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass

from quarantine.evidence import Severity
from quarantine.inspect.rules.catalog import rule
from quarantine.inspect.rules.import_scan import excerpt

OBFUSCATION = rule(
    "obfuscation-signal",
    Severity.INFO,
    "content",
    "code hidden after blanks, very long lines, high-entropy literals, obfuscated JS",
)

BLANK_RUN = 120  # blanks before code on one line: nobody aligns code that far
LONG_LINE = 5000  # characters
HIGH_ENTROPY_CHARS = 256
HIGH_ENTROPY_BITS = 5.0  # per character; base64 of random data is near 6, hex at most 4
_HIDDEN_CODE = re.compile(rb"\S[ \t\f]{%d,}(?=[^\s#])" % BLANK_RUN)  # \f: blank to Python
_ENCODED_RUN = re.compile(rb"[A-Za-z0-9+/=_-]{%d,}" % HIGH_ENTROPY_CHARS)
_JS_NAMES = re.compile(rb"\b_0x[0-9a-f]{4,6}\b")
_JS_PACKER = re.compile(rb"eval\(function\(p,a,c,k,e,[dr]\)")
_JS_ESCAPES = re.compile(rb"\\x[0-9a-fA-F]{2}")
_JS_NAME_COUNT = 10
_JS_ESCAPE_COUNT = 200
_MAX_ENCODED_RUNS = 50  # looked at per file


@dataclass(frozen=True, slots=True)
class Signal:
    what: str  # one line for a person
    line: int


def source_signals(data: bytes) -> tuple[Signal, ...]:
    """Signals in a Python source, a .pth file or a script."""
    found = [*_hidden_code(data), *_long_lines(data), *_high_entropy(data)]
    return tuple(found)


def js_signals(data: bytes) -> tuple[Signal, ...]:
    """Signals in a JavaScript file: an obfuscator's shapes first."""
    found: list[Signal] = []
    names = _JS_NAMES.findall(data, 0, 4 * 1024 * 1024)
    if len(names) >= _JS_NAME_COUNT:
        first = _JS_NAMES.search(data)
        assert first is not None
        found.append(Signal(f"JS obfuscator names ({len(names)} like _0x…)", _line(data, first)))
    packer = _JS_PACKER.search(data)
    if packer is not None:
        found.append(Signal("JS packer (eval(function(p,a,c,k,e,d)…)", _line(data, packer)))
    escapes = len(_JS_ESCAPES.findall(data))
    if escapes >= _JS_ESCAPE_COUNT and escapes * 8 > len(data) // 10:
        found.append(Signal(f"{escapes} \\x escapes", 1))
    return tuple(found) + tuple(_hidden_code(data))  # long lines: every minified bundle


def _line(data: bytes, hit: re.Match[bytes]) -> int:
    return data.count(b"\n", 0, hit.start()) + 1


def _hidden_code(data: bytes) -> list[Signal]:
    hit = _HIDDEN_CODE.search(data)
    if hit is None:
        return []
    blanks = len(hit.group(0)) - 1
    end = data.find(b"\n", hit.end())
    hidden = data[hit.end() : end if end >= 0 else len(data)].decode("utf-8", "replace")
    what = f"code after {blanks} blanks on one line: `{excerpt(hidden, 80)}`"
    return [Signal(what, _line(data, hit))]


def _long_lines(data: bytes) -> list[Signal]:
    if len(data) < LONG_LINE:
        return []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if len(line) >= LONG_LINE:
            return [Signal(f"a line of {len(line)} characters", number)]
    return []


def _high_entropy(data: bytes) -> list[Signal]:
    for index, hit in enumerate(_ENCODED_RUN.finditer(data)):
        if index >= _MAX_ENCODED_RUNS:
            break
        text = hit.group(0)
        if entropy(text) >= HIGH_ENTROPY_BITS:
            bits = entropy(text)
            what = f"a {len(text)}-character literal of {bits:.1f} bits per character"
            return [Signal(what, _line(data, hit))]
    return []


def entropy(text: bytes) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def raised(severity: Severity) -> Severity:
    """One step up, for a finding about a file that also hides what it does; findings that
    do not hold (INFO, LOW) stay as they are: a signal never holds a file by itself."""
    if severity in (Severity.MEDIUM, Severity.HIGH):
        return Severity.CRITICAL if severity is Severity.HIGH else Severity.HIGH
    return severity
