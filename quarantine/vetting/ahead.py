"""A release a client is about to install brings its dependencies: they are asked for ahead.

A resolver asks for a project's dependencies only once it has picked a release of it. A
release held until now brings the dependencies of *that* release, which nobody asked for
yet: on the real index, litellm's newest release needed newer releases of other projects,
pip asked for them only on its next run, after litellm was promoted, and they then waited
for their own vetting. So when a file a client is about to install (the likely lane,
``quarantine.vetting.queue``) is fetched, the requirements in its wheel's ``METADATA``
(core metadata ``Requires-Dist``) are asked for at once, as a client would ask: looked at
upstream, their newest release vetted while the release itself is vetted.

Only the requirements some configured platform and Python needs count (their markers
evaluated for each pair; extras left out), and at most :data:`MAX_DEPTH` steps away from
what a client asked for. This is only earlier work: a dependency is held, vetted and
decided as if a client had asked for it.
"""

import itertools
import logging
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)

from quarantine.filenames import WHEEL_SUFFIX
from quarantine.platforms import DEFAULT_PYTHONS, PLATFORMS, PlatformFilter

log = logging.getLogger(__name__)

MAX_DEPTH = 5  # steps from a project a client asked for (litellm's tree is 4 deep)
MAX_METADATA_BYTES = 1024 * 1024  # a METADATA past this is not read (real ones: ~100 kB)
MAX_REQUIREMENTS = 200  # per release; more is not a dependency list but noise
# What zipfile would read into memory before any limit of ours applies: the central
# directory, one object per entry. The inspection refuses more than this many anyway.
MAX_ENTRIES = 100_000
MAX_DIRECTORY_BYTES = 32 * 1024 * 1024
_END_RECORD = struct.Struct("<4sHHHHIIH")  # the zip end of central directory record
_END_SIGNATURE = b"PK\x05\x06"

Environment = dict[str, str]

# The marker variables of each family of configured platform names, and the machine name
# each architecture has in ``platform_machine`` there.
_FAMILIES = {
    "manylinux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "musllinux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
}
_WINDOWS_MACHINES = {"amd64": "AMD64", "arm64": "ARM64", "x86": "x86"}


def environments(wheels: PlatformFilter) -> list[Environment]:
    """Marker environments for every configured platform and Python (PEP 508 names)."""
    found = []
    for platform in wheels.platforms or tuple(PLATFORMS):
        family, _, arch = platform.partition("_")
        machine = _WINDOWS_MACHINES.get(arch, arch) if family == "windows" else arch
        for python in wheels.pythons or DEFAULT_PYTHONS:
            version = python.rstrip("t")  # "3.13t": a free-threaded build of 3.13
            found.append(
                {
                    **_FAMILIES[family],
                    "platform_machine": machine,
                    "python_version": version,
                    "python_full_version": f"{version}.0",
                    "implementation_name": "cpython",
                    "implementation_version": f"{version}.0",
                    "platform_python_implementation": "CPython",
                    "extra": "",
                }
            )
    return found


def needed(
    requirements: Iterable[str], where: list[Environment], extras: Iterable[str] = ()
) -> dict[NormalizedName, frozenset[str]]:
    """The projects some environment in ``where`` installs for these ``Requires-Dist``
    lines when the release is installed with ``extras``, each with the extras asked of it
    (a line that does not parse is left out: a resolver would refuse it anyway)."""
    wanted = ["", *sorted({canonicalize_name(extra) for extra in extras})]
    with_extras = [{**env, "extra": extra} for env in where for extra in wanted]
    names: dict[NormalizedName, frozenset[str]] = {}
    for line in itertools.islice(requirements, MAX_REQUIREMENTS):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or _any_true(requirement.marker, with_extras):
            name = canonicalize_name(requirement.name)
            asked = frozenset(canonicalize_name(extra) for extra in requirement.extras)
            names[name] = names.get(name, frozenset()) | asked
    return names


def _any_true(marker: Marker, where: list[Environment]) -> bool:
    for environment in where:
        try:
            if marker.evaluate(environment):
                return True
        except (UndefinedComparison, UndefinedEnvironmentName):
            return True  # cannot tell: asking ahead costs a look, missing it costs a run
    return False


def wheel_requirements(path: Path, filename: str) -> list[str]:
    """The ``Requires-Dist`` lines of the wheel at ``path``; ``[]`` for anything else, or
    a wheel whose metadata cannot be read (its vetting reports that, not this)."""
    if not filename.endswith(WHEEL_SUFFIX):
        return []
    try:
        name, version, _, _ = parse_wheel_filename(filename)
        if not _small_directory(path):
            log.info("requirements of %s not read: too many entries to list", filename)
            return []
        with zipfile.ZipFile(path) as archive:
            data = _metadata(archive, name, str(version))
    except (InvalidWheelFilename, zipfile.BadZipFile, OSError, ValueError) as error:
        log.info("requirements of %s not read: %s", filename, error)
        return []
    if data is None:
        return []
    raw, _ = parse_email(data)
    return list(raw.get("requires_dist", []))


def _small_directory(path: Path) -> bool:
    """Whether the archive's end record declares a central directory zipfile may read
    whole: few enough entries, few enough bytes, and no zip64 (a wheel needs neither)."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        tail_length = min(size, _END_RECORD.size + 0xFFFF)  # the record, then a comment
        handle.seek(size - tail_length)
        tail = handle.read(tail_length)
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or at + _END_RECORD.size > len(tail):
        return False
    _, _, _, _, entries, directory_bytes, _, _ = _END_RECORD.unpack_from(tail, at)
    zip64 = entries == 0xFFFF or directory_bytes == 0xFFFFFFFF
    return not zip64 and entries <= MAX_ENTRIES and directory_bytes <= MAX_DIRECTORY_BYTES


def _metadata(archive: zipfile.ZipFile, name: NormalizedName, version: str) -> bytes | None:
    """The ``.dist-info/METADATA`` of this wheel's own distribution (PEP 427: at the top)."""
    for info in archive.infolist():
        folder, _, leaf = info.filename.partition("/")
        if leaf != "METADATA" or not folder.endswith(".dist-info"):
            continue
        named, _, _ = folder[: -len(".dist-info")].rpartition("-")
        if canonicalize_name(named) != name or info.file_size > MAX_METADATA_BYTES:
            continue
        with archive.open(info) as member:
            return member.read(MAX_METADATA_BYTES + 1)[:MAX_METADATA_BYTES]
    log.info("no METADATA for %s %s in its wheel", name, version)
    return None
