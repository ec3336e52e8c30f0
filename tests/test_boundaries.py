"""Architecture and hygiene checks over the source tree itself.

- The vetting side (``quarantine``) never imports the serving side or its frameworks, so
  its rules stay pure and testable without a server.
- No source or test file names the public package registries' hosts: the default upstream
  comes from pip's configuration, never from the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IMPORTS = frozenset({"mirror", "starlette", "aiohttp", "uvicorn"})
# Built from pieces so this file does not contain what it looks for.
FORBIDDEN_HOSTS = (
    "pypi" + ".org",
    "pypi" + ".python" + ".org",
    "files." + "python" + "hosted" + ".org",
    "python" + "hosted" + ".org",
    "pypi" + ".io",
)
SCANNED_DIRS = ("mirror", "quarantine", "tests")
SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}


def imported_roots(source: str, filename: str = "<source>") -> set[str]:
    """The top-level package of every import in ``source``, static or by a literal name."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            if isinstance(function, ast.Name):
                name = function.id
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                roots.add(first.value.split(".")[0])
    return roots


def quarantine_modules() -> list[Path]:
    return sorted(
        path
        for path in (ROOT / "quarantine").rglob("*.py")
        if not SKIPPED_PARTS.intersection(path.parts)
    )


def scanned_files() -> Iterator[Path]:
    for directory in SCANNED_DIRS:
        for path in sorted((ROOT / directory).rglob("*")):
            if path.is_file() and not SKIPPED_PARTS.intersection(path.parts):
                yield path


def forbidden_hosts_in(text: str) -> list[str]:
    lowered = text.lower()
    return [host for host in FORBIDDEN_HOSTS if host in lowered]


# -- the scanners themselves can fail ----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import mirror", {"mirror"}),
        ("import mirror.upstream.parse as p", {"mirror"}),
        ("from mirror.errors import MirrorError", {"mirror"}),
        ("from starlette.responses import Response", {"starlette"}),
        ("import os, aiohttp.web", {"os", "aiohttp"}),
        ("def f():\n    import uvicorn\n", {"uvicorn"}),
        ("try:\n    import uvicorn\nexcept ImportError:\n    pass\n", {"uvicorn"}),
        ("import importlib\nimportlib.import_module('mirror.app')", {"importlib", "mirror"}),
        ("__import__('aiohttp')", {"aiohttp"}),
        ("from . import models", set()),
        ("from .clock import Clock", set()),
        ("x = 'import mirror'", set()),
    ],
)
def test_import_scanner(source: str, expected: set[str]) -> None:
    assert imported_roots(source) == expected


def test_host_scanner() -> None:
    assert forbidden_hosts_in("upstream = 'https://" + "PyPI" + ".org/simple/'") == [
        "pypi" + ".org"
    ]
    assert forbidden_hosts_in("https://files." + "python" + "hosted.org/packages/x") != []
    assert forbidden_hosts_in("https://files.example/packages/x") == []
    assert forbidden_hosts_in("pypi is an index; pypiserver too") == []


# -- the tree ------------------------------------------------------------------------------


def test_quarantine_modules_are_found() -> None:
    names = {path.name for path in quarantine_modules()}
    assert {"decide.py", "observe.py", "interface.py", "sqlite.py", "policy.py"} <= names


@pytest.mark.parametrize(
    "module", quarantine_modules(), ids=lambda path: str(path.relative_to(ROOT))
)
def test_quarantine_never_imports_the_serving_side(module: Path) -> None:
    roots = imported_roots(module.read_text(encoding="utf-8"), str(module))
    assert not roots & FORBIDDEN_IMPORTS, (
        f"{module.relative_to(ROOT)} imports {roots & FORBIDDEN_IMPORTS}"
    )


def test_no_file_names_a_public_registry_host() -> None:
    offenders: list[str] = []
    count = 0
    for path in scanned_files():
        count += 1
        text = path.read_bytes().decode("utf-8", errors="replace")
        for host in forbidden_hosts_in(text):
            offenders.append(f"{path.relative_to(ROOT)}: {host}")
    assert count > 20  # the scan saw the tree, not an empty directory
    assert offenders == []


def test_this_file_is_part_of_the_scan() -> None:
    assert Path(__file__).resolve() in {path.resolve() for path in scanned_files()}
