"""Which upstream files an installer can take, and the release each one is a file of.

The mirror serves exactly the files pip would install from the index, judged per file the
way pip's ``LinkEvaluator`` judges a link:

- the suffix (``os.path.splitext``, keeping a ``.tar`` before it) is one pip unpacks, in
  the same case: a wheel, or an sdist in one of pip's archive formats (its
  ``pip._internal.utils.filetypes`` lists); everything else (eggs, Windows and Linux
  installers, ``.tar.zst``) is refused with a reason saying what the file is;
- a wheel's name and version are packaging's ``parse_wheel_filename`` (as pip's are);
- an sdist's version is what follows the first ``-`` at which the text before it
  normalises to the project's name (pip's ``_extract_version_from_fragment``), which must
  be a PEP 440 version. So ``cffi-1.2.0-1.tar.gz`` is cffi 1.2.0.post1 and
  ``email_validator-0.1.0-rc1.tar.gz`` email-validator 0.1.0rc1, which packaging's
  stricter ``parse_sdist_filename`` (it splits at the last ``-``) refuses.

On top of pip the mirror refuses what is never a real index file and only helps a
spoof: anything but printable ASCII without spaces, path separators, names longer than a
file system stores, and local versions. Each refusal is an :class:`UnservableFile` whose
message is the reason the ledger records and ``lazaretto explain`` prints.
"""

import posixpath
import re
from enum import StrEnum

from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

WHEEL_SUFFIX = ".whl"
MAX_FILENAME_CHARS = 255  # the longest name common file systems store; pip saves under it


class Compression(StrEnum):
    """How an sdist's bytes are packed, chosen from its suffix as pip's unpacking does."""

    ZIP = "zip"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"  # xz or legacy .lzma data, as tarfile's "r:xz" (pip's choice) reads them
    NONE = "none"  # a plain tar


# pip's sdist archive suffixes (ZIP, TAR, BZ2 and XZ_EXTENSIONS). pip reads .tlz and
# .tar.lz with the xz decoder too, so a real lzip file is unreadable to pip and to us.
SDIST_SUFFIXES: dict[str, Compression] = {
    ".zip": Compression.ZIP,
    ".tar.gz": Compression.GZIP,
    ".tgz": Compression.GZIP,
    ".tar": Compression.NONE,
    ".tar.bz2": Compression.BZIP2,
    ".tbz": Compression.BZIP2,
    ".tar.xz": Compression.XZ,
    ".txz": Compression.XZ,
    ".tlz": Compression.XZ,
    ".tar.lz": Compression.XZ,
    ".tar.lzma": Compression.XZ,
}

# What the files pip cannot install are, for the recorded reason.
_NOT_FOR_PIP = {
    ".egg": "eggs, setuptools' old binary format",
    ".exe": "Windows installers made by bdist_wininst",
    ".msi": "Windows installers made by bdist_msi",
    ".rpm": "Linux system packages made by bdist_rpm",
    ".deb": "Linux system packages",
    ".dmg": "macOS disk images",
    ".tar.zst": "zstd-compressed sdists, which only uv reads",
}
# Platforms distutils' bdist_dumb names its archives for (``name-1.0.linux-x86_64.tar.gz``).
_DUMB_PLATFORM = re.compile(
    r"(?:linux|win32|win-|macosx|darwin|cygwin|mingw|freebsd|openbsd|netbsd|solaris|sunos"
    r"|aix|irix|hp-ux)[A-Za-z0-9_.-]*",
    re.IGNORECASE,
)
# pip strips a trailing "-py2.7" from an sdist's version and then takes the file only on
# that Python (its LinkEvaluator._py_version_re).
_PY_VERSION_TAG = re.compile(r"-py[123]\.?[0-9]?$")
_SHOWN_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space


class UnservableFile(ValueError):
    """A listed file that can never be served; the message is the recorded reason."""


def archive_suffix(filename: str) -> str:
    """The suffix pip judges a file by: the last extension, with a ``.tar`` before it."""
    base, suffix = posixpath.splitext(filename)
    if base.lower().endswith(".tar"):
        suffix = base[-4:] + suffix
    return suffix


def sdist_compression(filename: str) -> Compression | None:
    """How an sdist named ``filename`` is packed, or None when pip would not take it."""
    return SDIST_SUFFIXES.get(archive_suffix(filename))


def file_version(project: NormalizedName, filename: str) -> str:
    """The version of ``project`` that a wheel or sdist named ``filename`` is a file of,
    normalised (``1.2.0.post1``); :class:`UnservableFile` when pip would not take it."""
    _check_characters(filename)
    suffix = archive_suffix(filename)
    if suffix == WHEEL_SUFFIX:
        version = _wheel_version(project, filename)
    elif suffix in SDIST_SUFFIXES:
        version = _sdist_version(project, filename, suffix)
    else:
        raise UnservableFile(_unsupported(suffix))
    if version.local is not None:
        raise UnservableFile("local_version: the upstream index never accepts local versions")
    return str(version)


def _check_characters(filename: str) -> None:
    if "/" in filename or "\\" in filename:
        raise UnservableFile("invalid_filename: path separators")
    if not filename.isprintable():
        raise UnservableFile("invalid_filename: control characters")
    if not _SHOWN_CHARS.fullmatch(filename):
        raise UnservableFile("invalid_filename: spaces or non-ASCII characters")
    if len(filename) > MAX_FILENAME_CHARS:
        raise UnservableFile(f"invalid_filename: longer than {MAX_FILENAME_CHARS} characters")


def _unsupported(suffix: str) -> str:
    if not suffix:
        return "unsupported_file_type: no archive suffix, so pip cannot install it"
    if suffix.lower() in SDIST_SUFFIXES or suffix.lower() == WHEEL_SUFFIX:
        return (
            f"unsupported_file_type: pip only takes the lower-case suffix "
            f"{suffix.lower()}, not {suffix}"
        )
    what = _NOT_FOR_PIP.get(suffix.lower())
    described = f" ({what})" if what else ""
    return f"unsupported_file_type: pip cannot install {suffix} files{described}"


def _wheel_version(project: NormalizedName, filename: str) -> Version:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as error:
        raise UnservableFile(f"invalid_filename: {error}") from error
    if name != project:
        raise UnservableFile(f"invalid_filename: names project {name!r}, not {project!r}")
    return version


def _sdist_version(project: NormalizedName, filename: str, suffix: str) -> Version:
    if suffix == ".zip" and "macosx10" in filename:
        # pip skips these ("macosx10 one"): old macOS binary builds uploaded as .zip
        raise UnservableFile("unsupported_file_type: pip skips .zip files named for macosx10")
    text = version_text(project, filename[: -len(suffix)])
    if text is None:
        raise UnservableFile(
            f"invalid_filename: not a file of {project!r} (its name and a '-' do not start it)"
        )
    text = _PY_VERSION_TAG.sub("", text)
    try:
        return Version(text)
    except InvalidVersion:
        raise UnservableFile(_not_a_version(text, suffix)) from None


def version_text(project: NormalizedName, stem: str) -> str | None:
    """What follows the first ``-`` whose prefix normalises to ``project`` (pip's rule for
    an sdist's name without its suffix); None when no such ``-`` starts ``stem``."""
    for index, char in enumerate(stem):
        if char == "-" and canonicalize_name(stem[:index]) == project:
            return stem[index + 1 :] or None
    return None


def _not_a_version(text: str, suffix: str) -> str:
    """Why a file whose version part does not parse cannot be served."""
    for index, char in enumerate(text):
        if char != ".":
            continue
        platform = text[index + 1 :]
        if _DUMB_PLATFORM.fullmatch(platform) and _is_version(text[:index]):
            return (
                f"unsupported_file_type: pip cannot install {suffix} files built by "
                f"bdist_dumb (a binary tree for {platform}, not an sdist)"
            )
    return f"invalid_filename: {text!r} after the project name is not a PEP 440 version"


def _is_version(text: str) -> bool:
    return version_or_none(text) is not None


def version_or_none(text: str) -> Version | None:
    """``text`` as a PEP 440 version, or None when it is not one."""
    try:
        return Version(text)
    except InvalidVersion:
        return None
