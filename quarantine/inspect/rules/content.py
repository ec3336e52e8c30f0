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

This module is the front the inspector imports, and every rule name and entry point is
importable from here; each concept lives in its own module: ``rules_pth`` (.pth files),
``rules_layout`` (the sdist layout, where ``setup.py`` runs), ``rules_python`` (which
sources to parse, and the pattern scan for the rest), ``rules_python_walk`` (the tree walk
and name resolution) and ``rules_python_scan`` (the payload and install-time rules).
"""

from quarantine.inspect.rules.layout import (
    SDIST_LAYOUT,
    SdistLayout,
    is_install_script,
)
from quarantine.inspect.rules.pth import (
    PthFile,
    pth_at_startup,
    pth_file,
)
from quarantine.inspect.rules.python import (
    EXEC_SUSPECT,
    NOT_PARSED,
    UNPARSEABLE,
    scan_python,
)
from quarantine.inspect.rules.python_scan import (
    DYNAMIC_EXEC,
    ENCODED_LITERAL,
    EXEC_ENCODED,
    SETUP_NETWORK,
    SETUP_SUBPROCESS,
)
from quarantine.inspect.rules.python_walk import (
    LONG_LITERAL,
)

__all__ = [
    "DYNAMIC_EXEC",
    "ENCODED_LITERAL",
    "EXEC_ENCODED",
    "EXEC_SUSPECT",
    "LONG_LITERAL",
    "NOT_PARSED",
    "SDIST_LAYOUT",
    "SETUP_NETWORK",
    "SETUP_SUBPROCESS",
    "UNPARSEABLE",
    "PthFile",
    "SdistLayout",
    "is_install_script",
    "pth_at_startup",
    "pth_file",
    "scan_python",
]
