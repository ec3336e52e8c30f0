"""What ``lazaretto serve`` and ``lazaretto work`` check, and say, before they start.

Both refuse a data directory they cannot write (one line, exit 3, before any ledger is
opened), settle the upstream once (so the line names the URL actually used), and log one
line with what was chosen.
"""

import errno
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from mirror import __version__
from mirror.errors import ConfigError
from mirror.settings import Settings
from mirror.upstream.default_index import pip_index_url
from quarantine.duration import format_duration


@dataclass(frozen=True, slots=True)
class StartUp:
    settings: Settings  # with the upstream resolved
    upstream_from_pip: bool


def prepare(settings: Settings) -> StartUp:
    """The settings to run with, once the data directory is known to be usable."""
    usable_data_dir(settings.data_dir)
    upstream = settings.upstream or pip_index_url()
    if not upstream.endswith("/"):
        upstream += "/"
    return StartUp(replace(settings, upstream=upstream), upstream_from_pip=not settings.upstream)


def usable_data_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it takes a file: ConfigError saying why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise ConfigError(f"data_dir: {path} is a file, not a directory") from error
    except OSError as error:
        raise ConfigError(f"data_dir: cannot create {path}: {_reason(error)}") from error
    try:
        # A real write: permission bits alone miss read-only mounts and full disks.
        with tempfile.TemporaryFile(dir=path, prefix=".lazaretto-probe-"):
            pass
    except OSError as error:
        raise ConfigError(f"data_dir: cannot write in {path}: {_reason(error)}") from error


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOTDIR:
        return "a file is in the way of its path"
    return error.strerror or os.strerror(error.errno or 0)


def startup_line(start: StartUp, config_file: Path | None, listening: bool) -> str:
    """One line: version, upstream, data directory, cooling period, config, vetting, address."""
    settings = start.settings
    upstream = settings.upstream + (" (pip's index)" if start.upstream_from_pip else "")
    parts = [
        f"upstream={upstream}",
        f"data_dir={settings.data_dir}",
        f"cooling_period={format_duration(settings.policy.cooling_period)}",
        f"config={config_file if config_file is not None else 'none'}",
        f"vetting_worker={settings.vetting_worker}",
    ]
    if listening:
        parts.append(f"listening=http://{_host(settings.host)}:{settings.port}")
    return f"lazaretto {__version__}: " + " ".join(parts)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
