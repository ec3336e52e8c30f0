"""Valid wheels and sdists of a chosen size, the same bytes on every run (for bench/first_use.py).

A file is a real archive the inspector reads like any other: ordinary modules (the same in
every release of a project, as most modules of a real project are), the metadata an
installer reads, and one padding member of seeded random bytes, stored uncompressed, that
brings the archive to the size asked for. Binary wheels carry it as an extension module,
pure ones as package data. Filenames that are neither a wheel nor an sdist pip would read
(.egg, .exe, .msi, .tar.bz2) get seeded random bytes: nothing installs them.
"""

import base64
import functools
import gzip
import hashlib
import io
import random
import tarfile
import zipfile
from dataclasses import dataclass

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

FIXED_TIME = (2020, 2, 2, 0, 0, 0)  # zip timestamps: the bytes must not depend on the day
MODULE_BYTES = 1_500
BYTES_PER_MODULE = 200_000  # one module per this much of the recorded size, up to the cap
MAX_MODULES = 30


@dataclass(frozen=True)
class Wanted:
    """One file to make: its recorded size decides how many modules; ``size`` the bytes."""

    filename: str
    size: int
    recorded_size: int
    requires_python: str | None


def make(wanted: Wanted) -> bytes:
    """The bytes of ``wanted.filename``, close to ``wanted.size`` (never much larger)."""
    rng = random.Random(hashlib.sha256(wanted.filename.encode()).digest())
    if wanted.filename.endswith(".whl"):
        try:
            return _wheel(wanted, rng)
        except InvalidWheelFilename:
            return rng.randbytes(wanted.size)
    if wanted.filename.endswith((".tar.gz", ".zip")):
        try:
            return _sdist(wanted, rng)
        except InvalidSdistFilename:
            return rng.randbytes(wanted.size)
    return rng.randbytes(wanted.size)


# -- the members -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _module(project: str, index: int) -> bytes:
    """A plain module; the same for every release of ``project``."""
    rng = random.Random(f"{project}/{index}")
    words = ["value", "items", "count", "total", "name", "result", "limit", "offset"]
    lines = [f'"""{project}: module {index}."""', "", "import os", ""]
    while sum(len(line) + 1 for line in lines) < MODULE_BYTES:
        name = f"{rng.choice(words)}_{len(lines)}"
        lines += [
            f"def {name}(x: int, y: int = {rng.randint(1, 9)}) -> int:",
            f"    return x * {rng.randint(1, 99)} + y - len(os.sep)",
            "",
        ]
    return "\n".join(lines).encode()


def _modules(package: str, project: str, recorded_size: int) -> dict[str, bytes]:
    count = min(MAX_MODULES, 1 + recorded_size // BYTES_PER_MODULE)
    return {f"{package}/mod_{index}.py": _module(project, index) for index in range(count)}


def _metadata(name: str, version: str, requires_python: str | None) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return ("\n".join(lines) + "\n\n").encode()


def _padding(rng: random.Random, wanted: Wanted, used: int) -> bytes:
    # A stored member costs its name twice plus ~80 bytes of headers.
    return rng.randbytes(max(0, wanted.size - used - 200))


# -- wheels --------------------------------------------------------------------------------------


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _wheel(wanted: Wanted, rng: random.Random) -> bytes:
    name, version, _build, tags = parse_wheel_filename(wanted.filename)
    package = name.replace("-", "_")
    dist_info = f"{package}-{version}.dist-info"
    pure = all(tag.platform == "any" for tag in tags)
    members = {f"{package}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    members.update(_modules(package, name, wanted.recorded_size))
    so_name = f"{package}/_native.abi3.so" if not pure else f"{package}/data/blob.bin"
    members[f"{dist_info}/METADATA"] = _metadata(name, str(version), wanted.requires_python)
    tag_lines = "".join(f"Tag: {tag}\n" for tag in sorted(str(t) for t in tags))
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: lazaretto-bench\nRoot-Is-Purelib: {str(pure).lower()}\n"
        f"{tag_lines}"
    ).encode()
    used = sum(len(path) * 2 + len(data) + 100 for path, data in members.items())
    members[so_name] = _padding(rng, wanted, used + len(so_name) * 2 + 200)
    record = [_record_line(path, data) for path, data in members.items()]
    members[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    return _zip(members, stored={so_name})


def _zip(members: dict[str, bytes], stored: set[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED if path in stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# -- sdists --------------------------------------------------------------------------------------


def _sdist(wanted: Wanted, rng: random.Random) -> bytes:
    name, version = parse_sdist_filename(wanted.filename)
    project = canonicalize_name(name)
    package = project.replace("-", "_")
    top = wanted.filename.removesuffix(".tar.gz").removesuffix(".zip")
    pyproject = (
        f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    members = {
        f"{top}/PKG-INFO": _metadata(name, str(version), wanted.requires_python),
        f"{top}/pyproject.toml": pyproject.encode(),
        f"{top}/src/{package}/__init__.py": f'__version__ = "{version}"\n'.encode(),
    }
    for path, data in _modules(package, project, wanted.recorded_size).items():
        members[f"{top}/src/{path}"] = data
    blob = f"{top}/src/{package}/data/blob.bin"
    used = sum(len(path) + len(data) // 3 + 512 for path, data in members.items())
    members[blob] = _padding(rng, wanted, used + 1024)
    if wanted.filename.endswith(".zip"):
        return _zip(members, stored={blob})
    return _tar_gz(members)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    # mtime=0 in the gzip header: the bytes must be the same on every run.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=1) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 1_580_601_600, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
