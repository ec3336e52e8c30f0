"""Real pip and real uv, run against the mirror with no machine-wide configuration."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import uv


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def clean_env() -> dict[str, str]:
    """The environment without any pip or uv setting this machine happens to have."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_")) and key.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def _run(command: list[str], timeout: float) -> Outcome:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )
    return Outcome(done.returncode, done.stdout + done.stderr)


def pip_install(
    index_url: str, target: Path, *requirements: str, extra: tuple[str, ...] = ()
) -> Outcome:
    command = [
        sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-compile",
        "--index-url", index_url, "--target", str(target), *extra, *requirements,
    ]  # fmt: skip
    return _run(command, 180)


def uv_install(
    index_url: str, target: Path, *requirements: str, extra: tuple[str, ...] = ()
) -> Outcome:
    command = [
        uv.find_uv_bin(), "pip", "install", "--no-cache", "--python", sys.executable,
        "--index-url", index_url, "--target", str(target), *extra, *requirements,
    ]  # fmt: skip
    return _run(command, 180)


def installed(target: Path) -> dict[str, str]:
    """Installed distributions in a --target directory: normalised name -> version."""
    found: dict[str, str] = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[name.lower().replace("_", "-")] = version
    return found
