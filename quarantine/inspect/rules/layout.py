"""The sdist layout (threat model L12): one top directory holding ``PKG-INFO``.

Also where, inside an sdist, an installer runs ``setup.py`` (:func:`is_install_script`),
and the path splitting that ``rules_pth`` shares to place .pth files.
"""

from dataclasses import dataclass, field

from quarantine.evidence import Finding, Severity
from quarantine.inspect.archive.reader import MemberKind
from quarantine.inspect.rules.catalog import rule

SDIST_LAYOUT = rule(
    "sdist-layout",
    Severity.MEDIUM,
    "content",
    "an sdist that is not one top directory holding PKG-INFO",
)


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def is_install_script(name: str) -> bool:
    """``setup.py`` where an installer runs it: at the top of the sdist's directory."""
    parts = _parts(name)
    return bool(parts) and parts[-1] == "setup.py" and len(parts) <= 2


@dataclass
class SdistLayout:
    """Collects, member by member, whether an sdist has one top directory with PKG-INFO."""

    tops: set[str] = field(default_factory=set)
    root_files: int = 0
    pkg_info_in: set[str] = field(default_factory=set)

    def observe(self, name: str, kind: MemberKind) -> None:
        parts = _parts(name)
        if not parts:
            return
        if len(self.tops) <= 100:
            self.tops.add(parts[0])
        if len(parts) == 1 and kind is not MemberKind.DIR:
            self.root_files += 1
        if len(parts) == 2 and parts[1] == "PKG-INFO" and kind is MemberKind.FILE:
            self.pkg_info_in.add(parts[0])

    def findings(self) -> list[Finding]:
        if len(self.tops) != 1 or self.root_files:
            count = f"{len(self.tops)}+" if len(self.tops) > 100 else str(len(self.tops))
            message = f"{count} top-level entries, {self.root_files} of them files"
            return [Finding(SDIST_LAYOUT, Severity.MEDIUM, f"not one top directory: {message}")]
        (top,) = self.tops
        if top not in self.pkg_info_in:
            return [Finding(SDIST_LAYOUT, Severity.MEDIUM, "no PKG-INFO in the top directory", top)]
        return []
