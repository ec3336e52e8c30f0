"""The upstream a fresh install uses: whatever index pip on this machine is set up for.

The address is read from pip at run time (its environment, its configuration, else its
built-in default), so no registry address is written into this code.
"""

import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

from mirror.errors import ConfigError

_CONFIG_LINE = re.compile(r"^(?P<scope>[\w:.-]+)\.index-url='(?P<url>[^']*)'$")


def pip_index_url() -> str:
    from_env = os.environ.get("PIP_INDEX_URL", "").strip()
    if from_env:
        return from_env.split()[0]
    configured = _configured_index()
    return configured if configured else _builtin_index()


def _configured_index() -> str | None:
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        match = _CONFIG_LINE.match(line.strip())
        if match:
            found[match.group("scope").rsplit(".", 1)[-1]] = match.group("url")
    # pip's own precedence: the install command's setting before the global one.
    return found.get("install") or found.get("global") or None


def _builtin_index() -> str:
    try:
        from pip._internal.models.index import PyPI  # pip's built-in default index
    except ImportError as error:
        raise ConfigError(
            "no upstream configured and pip is not installed to tell its default index: "
            "pass --upstream URL (a PEP 691 simple index) or set LAZARETTO_UPSTREAM"
        ) from error
    return str(PyPI.simple_url)


def pip_file_hosts(index_url: str) -> tuple[str, ...]:
    """The host pip knows serves the files of ``index_url`` (its built-in index keeps them
    on a host of their own), or none: then only the index's own origin serves files."""
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        return ()
    index_host = urlsplit(index_url).hostname
    known_host = urlsplit(PyPI.url).hostname
    if index_host is None or index_host != known_host:
        return ()
    return (PyPI.file_storage_domain,)
