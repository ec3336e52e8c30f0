""".pth files: the lines ``site`` runs at every interpreter start, and where that happens.

A line of a ``.pth`` file that starts with ``import`` runs whenever Python starts, if the
file lands where ``site`` reads .pth files. :func:`pth_file` records each .pth member with
its sha256 and those lines; whether one is new or changed since the previous release is
``release_diff``'s business.
"""

import hashlib
import re
from dataclasses import dataclass

from quarantine.inspect.rules.layout import _parts


@dataclass(frozen=True, slots=True)
class PthFile:
    name: str
    sha256: str
    import_lines: tuple[int, ...]  # 1-based lines that ``site`` would execute
    at_startup: bool  # where ``site`` reads .pth files (site-packages itself)

    @property
    def executable(self) -> bool:
        return self.at_startup and bool(self.import_lines)


_DATA_PTH = re.compile(
    r"[^/]+\.data/(?:(?:purelib|platlib)/|data/(?:.*/)?(?:site|dist)-packages/)[^/]+\.pth",
    re.IGNORECASE,
)


def pth_at_startup(name: str, wheel: bool) -> bool:
    """Whether an installed copy of this member lands where ``site`` processes .pth files.

    In a wheel: the root, or ``*.data/purelib|platlib/``, or a ``*.data/data/`` path ending
    in site-packages. In an sdist nobody knows what the build copies where; a .pth at the
    top of the project counts.
    """
    if not name.lower().endswith(".pth"):
        return False
    if wheel:
        return "/" not in name or _DATA_PTH.fullmatch(name) is not None
    return len(_parts(name)) <= 2


def pth_file(name: str, data: bytes, *, wheel: bool = True) -> PthFile:
    lines = []
    # str.splitlines splits wherever universal newlines do (and at more places), so every
    # line site.py would see starts a line here too.
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        stripped = line.lstrip().lstrip("\ufeff").lstrip()
        if stripped.startswith(("import ", "import\t")):
            lines.append(number)
    digest = hashlib.sha256(data).hexdigest()
    return PthFile(name, digest, tuple(lines), pth_at_startup(name, wheel))
