"""Build real, installable Python distributions in memory for tests.

Everything here is pure Python (zipfile/tarfile) so tests never need a build
backend, a subprocess or the network, and the output is byte-for-byte
deterministic: equal inputs give equal bytes, which lets tests compare hashes.
Sdists come in every archive format pip installs from an index, and can carry
a build backend of their own so pip and uv build them with nothing from an index.
"""

from __future__ import annotations

import base64
import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import posixpath
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from packaging.metadata import parse_email
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import (
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

__all__ = [
    "SDIST_SUFFIXES",
    "Dist",
    "build_sdist",
    "build_wheel",
    "dist_name",
    "metadata_bytes",
    "opaque_file",
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
    def project(self) -> NormalizedName:
        """Normalized project name: from the metadata, which old filenames do not always
        spell the way packaging's parsers split them; else from the filename."""
        name = self._metadata_field("name")
        if name is None:
            return self._parsed_filename()[0]
        return canonicalize_name(name)

    @property
    def version(self) -> Version:
        version = self._metadata_field("version")
        if version is None:
            return self._parsed_filename()[1]
        return Version(version)

    def _metadata_field(self, key: str) -> str | None:
        raw, _unparsed = parse_email(self.metadata)
        value = raw.get(key)
        return value if isinstance(value, str) else None

    def _parsed_filename(self) -> tuple[NormalizedName, Version]:
        if self.is_wheel:
            return parse_wheel_filename(self.filename)[:2]
        return parse_sdist_filename(self.filename)

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
    suffix: str = ".tar.gz",
    stem: str | None = None,
    buildable: bool = False,
) -> Dist:
    """Build a source distribution in memory, in the archive format ``suffix`` names.

    It is well formed (one top directory named like the file, ``PKG-INFO``,
    ``pyproject.toml``). ``stem`` spells the filename (and top directory) the way
    an old upload may have, e.g. ``cffi-1.2.0-1`` for cffi 1.2.0.post1. By default
    the build backend is setuptools, which building would need from an index, so
    tests treat the sdist as opaque bytes; ``buildable`` ships a small backend
    inside the sdist instead (PEP 517 ``backend-path``), so pip and uv really
    build and install it.
    """
    ver = str(Version(version))
    top = stem if stem is not None else f"{dist_name(name)}-{ver}"
    # The sdist spec requires metadata version 2.2 or later for PKG-INFO.
    pkg_info = metadata_bytes(name, ver, requires_python=requires_python, metadata_version="2.2")
    contents = _payload(dist_name(name), ver, modules)
    generated = {
        "PKG-INFO": pkg_info,
        "pyproject.toml": _pyproject(name, ver, requires_python, buildable=buildable),
    }
    if buildable:
        generated[_BACKEND_PATH] = _BACKEND_SOURCE.encode("utf-8")
    _reject_clashes(contents, list(generated))
    contents = {**generated, **contents}
    members = {f"{top}/{path}": data for path, data in contents.items()}
    if suffix == ".zip":
        data = _zip(members)
    elif suffix in _TAR_COMPRESSORS:
        data = _TAR_COMPRESSORS[suffix](_tar(members, top))
    else:
        raise ValueError(f"not an sdist suffix pip installs: {suffix!r}")
    return Dist(filename=f"{top}{suffix}", data=data, metadata=pkg_info)


def opaque_file(name: str, version: str, filename: str, data: bytes = b"not an archive") -> Dist:
    """A file of a release that is no wheel or sdist (an egg, a Windows installer): only
    its name, bytes and the release's metadata matter to an index."""
    return Dist(filename=filename, data=data, metadata=metadata_bytes(name, version))


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


def _pyproject(
    name: str, version: str, requires_python: str | None, *, buildable: bool = False
) -> bytes:
    # json.dumps yields a valid TOML basic string for any str value.
    if buildable:
        backend = [
            "requires = []",
            f"build-backend = {json.dumps(_BACKEND_MODULE)}",
            f"backend-path = [{json.dumps(posixpath.dirname(_BACKEND_PATH))}]",
        ]
    else:
        backend = ['requires = ["setuptools>=61"]', 'build-backend = "setuptools.build_meta"']
    lines = [
        "[build-system]",
        *backend,
        "",
        "[project]",
        f"name = {json.dumps(name)}",
        f"version = {json.dumps(version)}",
    ]
    if requires_python is not None:
        specifier = str(SpecifierSet(requires_python))
        lines.append(f"requires-python = {json.dumps(specifier)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _tar(contents: Mapping[str, bytes], top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in _directories(contents, top):
            tar.addfile(_tar_info(directory, tarfile.DIRTYPE, _DIR_MODE, 0))
        for path, data in contents.items():
            info = _tar_info(path, tarfile.REGTYPE, _FILE_MODE, len(data))
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    # mtime=0 and no filename keep the gzip header identical between builds.
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return buffer.getvalue()


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ)


def _lzma_alone(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_ALONE)


def _plain(data: bytes) -> bytes:
    return data


# How each tar sdist suffix pip installs is compressed, written out here rather than
# taken from the code under test. ``.tar.lz`` holds xz data: pip reads it with the xz
# decoder (a real lzip file installs nowhere).
_TAR_COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".tar.gz": _gzip,
    ".tgz": _gzip,
    ".tar": _plain,
    ".tar.bz2": bz2.compress,
    ".tbz": bz2.compress,
    ".tar.xz": _xz,
    ".txz": _xz,
    ".tar.lz": _xz,
    ".tlz": _lzma_alone,
    ".tar.lzma": _lzma_alone,
}
SDIST_SUFFIXES = (".zip", *_TAR_COMPRESSORS)

# A PEP 517 backend of a few lines, shipped inside buildable sdists: it packs the
# sdist's files (all but its own and the sdist's metadata) into a pure-Python wheel.
_BACKEND_MODULE = "lazaretto_test_backend"
_BACKEND_PATH = f"_backend/{_BACKEND_MODULE}.py"
_BACKEND_SOURCE = """\
import base64
import email.parser
import hashlib
import os
import re
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = {"PKG-INFO", "pyproject.toml"}


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    metadata = _read(os.path.join(ROOT, "PKG-INFO"))
    fields = email.parser.BytesParser().parsebytes(metadata)
    name = re.sub(r"[-_.]+", "_", fields["Name"]).lower()
    info = name + "-" + fields["Version"] + ".dist-info"
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not (folder == ROOT and d == "_backend"))
        for filename in sorted(names):
            path = os.path.relpath(os.path.join(folder, filename), ROOT).replace(os.sep, "/")
            if path not in SKIPPED:
                files[path] = _read(os.path.join(folder, filename))
    files[info + "/METADATA"] = metadata
    files[info + "/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: lazaretto-tests\\n"
        b"Root-Is-Purelib: true\\nTag: py3-none-any\\n"
    )
    lines = [p + "," + _record_hash(d) + "," + str(len(d)) + "\\n" for p, d in files.items()]
    files[info + "/RECORD"] = ("".join(lines) + info + "/RECORD,,\\n").encode("utf-8")
    wheel = name + "-" + fields["Version"] + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data, zipfile.ZIP_DEFLATED)
    return wheel
"""


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
