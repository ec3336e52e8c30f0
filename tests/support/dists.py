"""Build real, installable Python distributions in memory for tests.

Everything here is pure Python (zipfile/tarfile) so tests never need a build
backend, a subprocess or the network, and the output is byte-for-byte
deterministic: equal inputs give equal bytes, which lets tests compare hashes.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import (
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

__all__ = [
    "Dist",
    "build_sdist",
    "build_wheel",
    "dist_name",
    "metadata_bytes",
]

# The earliest timestamp a zip file can store; any fixed value works, this one
# is the conventional choice for reproducible wheels.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Same instant as a Unix timestamp, for tar members.
_TAR_EPOCH = 315532800
# "Unix" as the zip creator system, fixed so the bytes do not depend on the
# platform the tests run on.
_ZIP_UNIX = 3
_FILE_MODE = 0o644
_DIR_MODE = 0o755


@dataclass(frozen=True)
class Dist:
    """A built distribution: its filename, its bytes and its core metadata.

    ``metadata`` is the wheel's ``METADATA`` or the sdist's ``PKG-INFO``,
    exactly as stored in the archive, i.e. what a PEP 658 ``.metadata`` file
    must contain.
    """

    filename: str
    data: bytes
    metadata: bytes

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def project(self) -> str:
        """Normalized project name, taken from the filename."""
        if self.is_wheel:
            return str(parse_wheel_filename(self.filename)[0])
        return str(parse_sdist_filename(self.filename)[0])

    @property
    def version(self) -> Version:
        if self.is_wheel:
            return parse_wheel_filename(self.filename)[1]
        return parse_sdist_filename(self.filename)[1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata_sha256(self) -> str:
        return hashlib.sha256(self.metadata).hexdigest()


def dist_name(name: str) -> str:
    """The project name as it appears in wheel and sdist filenames."""
    return canonicalize_name(name, validate=True).replace("-", "_")


def metadata_bytes(
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires_dist: Iterable[str] | None = None,
    metadata_version: str = "2.1",
) -> bytes:
    """Core metadata (the ``METADATA`` / ``PKG-INFO`` file) for a project."""
    canonicalize_name(name, validate=True)  # reject names no index would accept
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {Version(version)}",
    ]
    if requires_python is not None:
        lines.append(f"Requires-Python: {SpecifierSet(requires_python)}")
    for requirement in requires_dist or ():
        # Round-trip through Requirement so typos in tests fail loudly here
        # rather than as a confusing resolver error later.
        lines.append(f"Requires-Dist: {Requirement(requirement)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_wheel(
    name: str,
    version: str,
    *,
    modules: Mapping[str, str] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    requires_python: str | None = None,
    requires_dist: Iterable[str] | None = None,
    tag: str = "py3-none-any",
) -> Dist:
    """Build a wheel in memory.

    ``modules`` maps archive paths (``"pkg/__init__.py"``, ``"single.py"``) to
    source text; by default one package named after the project is created
    whose ``__init__`` sets ``__version__``. ``extra_files`` maps archive paths
    to raw bytes and may also target the ``.dist-info`` directory.
    """
    ver = str(Version(version))
    base = dist_name(name)
    tags = sorted(str(t) for t in parse_tag(tag))
    dist_info = f"{base}-{ver}.dist-info"
    metadata = metadata_bytes(
        name, ver, requires_python=requires_python, requires_dist=requires_dist
    )

    contents = _payload(base, ver, modules)
    for path, data in (extra_files or {}).items():
        contents[_checked_path(path)] = data
    generated = {
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": _wheel_file(tags),
    }
    _reject_clashes(contents, [*generated, f"{dist_info}/RECORD"])
    # The wheel spec recommends the .dist-info files come last, RECORD last.
    contents.update(generated)
    record_path = f"{dist_info}/RECORD"
    contents[record_path] = _record(contents, record_path)

    filename = f"{base}-{ver}-{_compress_tags(tag)}.whl"
    return Dist(filename=filename, data=_zip(contents), metadata=metadata)


def build_sdist(
    name: str,
    version: str,
    *,
    modules: Mapping[str, str] | None = None,
    requires_python: str | None = None,
) -> Dist:
    """Build a source distribution (``.tar.gz``) in memory.

    It is well formed (one top directory, ``PKG-INFO``, ``pyproject.toml``
    with the setuptools backend) but building it would need setuptools from
    an index, so tests should treat it as opaque bytes.
    """
    ver = str(Version(version))
    top = f"{dist_name(name)}-{ver}"
    # The sdist spec requires metadata version 2.2 or later for PKG-INFO.
    pkg_info = metadata_bytes(name, ver, requires_python=requires_python, metadata_version="2.2")
    contents = _payload(dist_name(name), ver, modules)
    generated = {
        "PKG-INFO": pkg_info,
        "pyproject.toml": _pyproject(name, ver, requires_python),
    }
    _reject_clashes(contents, list(generated))
    contents = {**generated, **contents}
    data = _tar_gz({f"{top}/{path}": data for path, data in contents.items()}, top)
    return Dist(filename=f"{top}.tar.gz", data=data, metadata=pkg_info)


def _payload(importable: str, version: str, modules: Mapping[str, str] | None) -> dict[str, bytes]:
    if modules is None:
        modules = {f"{importable}/__init__.py": f'__version__ = "{version}"\n'}
    return {_checked_path(path): src.encode("utf-8") for path, src in modules.items()}


def _checked_path(path: str) -> str:
    # Archive paths must be relative POSIX paths that stay inside the archive;
    # anything else would produce a wheel installers reject (or worse, accept).
    normal = posixpath.normpath(path)
    if (
        not path
        or "\\" in path
        or path.startswith("/")
        or normal != path
        or normal.split("/")[0] == ".."
    ):
        raise ValueError(f"bad archive path: {path!r}")
    return path


def _reject_clashes(contents: Mapping[str, bytes], reserved: Iterable[str]) -> None:
    clashes = sorted(set(contents) & set(reserved))
    if clashes:
        raise ValueError(f"these paths are generated and cannot be given: {clashes}")


def _compress_tags(tag: str) -> str:
    """The tag set written the way wheel filenames write it (``py2.py3-none-any``)."""
    parsed = parse_tag(tag)
    parts = [
        sorted({t.interpreter for t in parsed}),
        sorted({t.abi for t in parsed}),
        sorted({t.platform for t in parsed}),
    ]
    return "-".join(".".join(p) for p in parts)


def _wheel_file(tags: Iterable[str]) -> bytes:
    lines = [
        "Wheel-Version: 1.0",
        "Generator: lazaretto-tests",
        "Root-Is-Purelib: true",
        *(f"Tag: {t}" for t in tags),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _record(contents: Mapping[str, bytes], record_path: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in contents.items():
        writer.writerow([path, f"sha256={_record_hash(data)}", str(len(data))])
    writer.writerow([record_path, "", ""])  # RECORD cannot hash itself
    return out.getvalue().encode("utf-8")


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _zip(contents: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in contents.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _ZIP_UNIX
            info.external_attr = (0o100000 | _FILE_MODE) << 16  # regular file
            archive.writestr(info, data)
    return buffer.getvalue()


def _pyproject(name: str, version: str, requires_python: str | None) -> bytes:
    # json.dumps yields a valid TOML basic string for any str value.
    lines = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(name)}",
        f"version = {json.dumps(version)}",
    ]
    if requires_python is not None:
        specifier = str(SpecifierSet(requires_python))
        lines.append(f"requires-python = {json.dumps(specifier)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _tar_gz(contents: Mapping[str, bytes], top: str) -> bytes:
    buffer = io.BytesIO()
    # mtime=0 and no filename keep the gzip header identical between builds.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for directory in _directories(contents, top):
            tar.addfile(_tar_info(directory, tarfile.DIRTYPE, _DIR_MODE, 0))
        for path, data in contents.items():
            info = _tar_info(path, tarfile.REGTYPE, _FILE_MODE, len(data))
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _directories(contents: Iterable[str], top: str) -> list[str]:
    """Every directory needed for ``contents``, parents before children."""
    found = {top}
    for path in contents:
        parent = posixpath.dirname(path)
        while parent and parent not in found:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(found, key=lambda d: (d.count("/"), d))


def _tar_info(path: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = _TAR_EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
