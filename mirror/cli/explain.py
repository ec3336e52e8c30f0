"""Reading what ``lazaretto explain`` and the release commands are asked about, and printing
``explain``: per file, its state, its hold, and every check's word."""

import sys
from datetime import UTC, datetime
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quarantine import admin
from quarantine.clock import parse_timestamp

ACCEPTED = "NAME or NAME==VERSION (for example: requests, or requests==2.32.3)"
_HELD = ("held", "review")


def console() -> Console:
    """Tables fit the terminal; piped into a file or another program, lines stay whole."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def parse_spec(text: str) -> tuple[NormalizedName, Version | None]:
    """A project, or one release of it; anything else (a range, extras, a marker, a URL)
    is refused: these commands act on exact releases, never on what a range resolves to."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        raise _not_a_spec(text) from None
    specifiers = list(requirement.specifier)
    if requirement.extras or requirement.marker or requirement.url or len(specifiers) > 1:
        raise _not_a_spec(text)
    name = canonicalize_name(requirement.name)
    if not specifiers:
        return name, None
    (only,) = specifiers
    if only.operator != "==":
        raise _not_a_spec(text)
    try:
        return name, Version(only.version)
    except InvalidVersion:  # a wildcard (1.0.*) names no single release
        raise _not_a_spec(text) from None


def _not_a_spec(text: str) -> admin.AdminError:
    return admin.AdminError(f"{text!r} is not a project or a release: give {ACCEPTED}")


def print_explanation(found: dict[str, Any]) -> None:
    out = console()
    out.print(f"[bold]{escape(found['project'])}[/bold] (upstream status: {found['status']})")
    for file in found["files"]:
        out.print()
        version = f" ({escape(file['version'])})" if file["version"] else ""
        out.print(f"[bold]{escape(file['filename'])}[/bold]{version}  sha256 {file['sha256']}")
        out.print(f"  state: [bold]{file['state']}[/bold] - {escape(file['reason'])}{_hold(file)}")
        if file.get("deferral") == "downloaded":
            out.print("  deferred until a client downloaded it; vetted since (see its history)")
        if file["anomaly"]:
            out.print(f"  anomaly: {escape(file['anomaly'])}")
        if file["state"] == "rejected":
            # A rejected file (a format pip cannot install, a bad name) is never vetted.
            out.print("  checks: none (never vetted)")
            continue
        if file["state"] in _HELD and all(check["check"] == "feeds" for check in file["checks"]):
            out.print("  vetting: no check has reported on this file yet")
        out.print(_checks_table(file["checks"]))


def _hold(file: dict[str, Any]) -> str:
    """The hold matters while a file is held; for others it would only mislead."""
    if file["state"] not in _HELD:
        return ""
    if file["established"]:
        return "; established (no hold)"
    if file["hold_until"] is None:
        return ""  # outside the configured platforms: the reason says so, no hold applies
    cooling = f"(cooling period {file['cooling_period']})"
    if parse_timestamp(file["hold_until"]) <= datetime.now(UTC):
        return f"; its cooling ended {file['hold_until']} {cooling}"
    return f"; hold until {file['hold_until']} {cooling}"


def _compared_with(filename: str | None) -> str:
    """What "new since" means for this file's content findings."""
    if filename is None:
        return "compared with: nothing (the project's first release of this kind)"
    return f"compared with: {escape(filename)}"


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("check", "verdict", "evidence"):
        table.add_column(column, overflow="fold")  # never cut a filename or hash
    for check in checks:
        lines = [escape(check["summary"])]
        if check["check"] == "content" and "compared_with" in check["details"]:
            lines.append(_compared_with(check["details"].get("compared_with")))
        for finding in check["findings"]:
            where = finding["path"] or ""
            if finding["line"]:
                where += f":{finding['line']}"
            lines.append(
                f"- {finding['rule']} ({finding['severity']}) {escape(where)}: "
                f"{escape(finding['message'])}"
            )
        table.add_row(check["check"], check["action"], "\n".join(lines))
    return table
