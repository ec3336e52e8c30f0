"""``lazaretto explain PROJECT[==VERSION]``: per file, its state and every check's word."""

import json
import sys
from pathlib import Path

from packaging.utils import canonicalize_name
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mirror.settings import Settings
from quarantine.explain import Explanation, explain
from quarantine.feeds import Feeds
from quarantine.ledger_sqlite import SqliteLedger
from quarantine.live_policy import LivePolicy

EXIT_OK, EXIT_NOT_FOUND = 0, 4


def split_requirement(text: str) -> tuple[str, str | None]:
    name, _, version = text.partition("==")
    return name.strip(), (version.strip() or None)


def run_explain(settings: Settings, requirement: str, as_json: bool) -> int:
    name, version = split_requirement(requirement)
    project = canonicalize_name(name, validate=False)
    ledger = SqliteLedger(Path(settings.data_dir) / "ledger.sqlite3")
    feeds = Feeds([Path(s) for s in settings.osv_feeds if not s.startswith(("http:", "https:"))])
    feeds.reload()
    try:
        found = explain(
            ledger, LivePolicy(settings.policy, ledger).current(), project, version, feeds
        )
    finally:
        ledger.close()
    if found is None or not found.files:
        what = f"{project}=={version}" if version else project
        print(f"lazaretto: the mirror has not seen {what}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if as_json:
        print(json.dumps(found.to_json(), indent=2, default=str))
    else:
        _print(found)
    return EXIT_OK


def _print(found: Explanation) -> None:
    console = Console(highlight=False)
    console.print(f"[bold]{escape(found.project)}[/bold] (upstream status: {found.status})")
    for file in found.files:
        console.print()
        console.print(f"[bold]{escape(file['filename'])}[/bold]  sha256 {file['sha256']}")
        hold = (
            "established (no hold)" if file["established"] else f"hold until {file['hold_until']}"
        )
        console.print(f"  state: [bold]{file['state']}[/bold] - {escape(file['reason'])}; {hold}")
        if file["anomaly"]:
            console.print(f"  anomaly: {escape(file['anomaly'])}")
        if not file["checks"]:
            console.print("  checks: none reported yet")
            continue
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        for column in ("check", "verdict", "evidence"):
            table.add_column(column)
        for check in file["checks"]:
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
        console.print(table)
