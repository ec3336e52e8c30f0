"""Printing ``lazaretto explain``: per file, its state and every check's word."""

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def console() -> Console:
    """Tables fit the terminal; piped into a file or another program, lines stay whole."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 250)


def split_requirement(text: str) -> tuple[str, str | None]:
    name, _, version = text.partition("==")
    return name.strip(), (version.strip() or None)


def print_explanation(found: dict[str, Any]) -> None:
    out = console()
    out.print(f"[bold]{escape(found['project'])}[/bold] (upstream status: {found['status']})")
    for file in found["files"]:
        out.print()
        out.print(f"[bold]{escape(file['filename'])}[/bold]  sha256 {file['sha256']}")
        out.print(f"  state: [bold]{file['state']}[/bold] - {escape(file['reason'])}{_hold(file)}")
        if file["anomaly"]:
            out.print(f"  anomaly: {escape(file['anomaly'])}")
        if not file["checks"]:
            # A rejected file (a format pip cannot install, a bad name) is never vetted.
            never = file["state"] == "rejected"
            out.print("  checks: none (never vetted)" if never else "  checks: none reported yet")
            continue
        out.print(_checks_table(file["checks"]))


def _hold(file: dict[str, Any]) -> str:
    if file["state"] == "rejected":
        return ""  # never served, whatever the time
    if file["established"]:
        return "; established (no hold)"
    return f"; hold until {file['hold_until']}"


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("check", "verdict", "evidence"):
        table.add_column(column, overflow="fold")  # never cut a filename or hash
    for check in checks:
        lines = [escape(check["summary"])]
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
