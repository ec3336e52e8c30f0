"""``lazaretto exposure`` and ``lazaretto check``: who installed it, and does a lock pin it.

Both go through an ``AdminBackend`` like the other admin commands (the data directory, or
``--url`` and a read token), and print a table, JSON (``--json``) or, for exposure, CSV.
``check`` exits ``EXIT_CONDEMNED`` when anything pinned is withdrawn or blocked, so CI can
gate on it.
"""

import argparse
import csv
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from mirror.cli.explain import console, parse_spec
from mirror.cli.local_backend import AdminBackend
from quarantine import admin, paging
from quarantine.clock import SystemClock
from quarantine.incident.lock_files import MAX_LOCK_BYTES

EXIT_OK, EXIT_CONDEMNED = 0, 7
INCIDENT_COMMANDS = ("exposure", "check")
_CSV_COLUMNS = (
    "project", "version", "filename", "client", "identity", "installer", "installer_version",
    "python", "implementation", "system", "distro", "cpu", "ci", "downloads", "first", "last",
)  # fmt: skip


def add_incident_commands(
    commands: Any, admin_common: Callable[[argparse.ArgumentParser], None]
) -> None:
    exposure = commands.add_parser(
        "exposure", help="who downloaded a project or release: per client, first and last"
    )
    admin_common(exposure)
    exposure.add_argument("requirement", metavar="PROJECT[==VERSION]")
    exposure.add_argument("--since", help="only downloads since: a duration (7d) or RFC 3339 time")
    exposure.add_argument("--csv", action="store_true", help="CSV, one row per file and client")
    check = commands.add_parser(
        "check",
        help="is each pin of a lock served, held, blocked or withdrawn "
        f"(exit {EXIT_CONDEMNED} when one is withdrawn or blocked)",
    )
    admin_common(check)
    check.add_argument(
        "lock", metavar="FILE", help="requirements.txt, uv.lock, poetry.lock or pylock.toml"
    )


def run_incident(args: argparse.Namespace, backend: AdminBackend) -> int:
    if args.command == "exposure":
        return _exposure(args, backend)
    return _check(args, backend)


def _exposure(args: argparse.Namespace, backend: AdminBackend) -> int:
    project, version = parse_spec(args.requirement)
    since = _since(args.since)
    found = backend.exposure(project, str(version) if version else None, since)
    if args.json:
        print(json.dumps(found, indent=2))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, _CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(found["downloads"])
    else:
        _print_exposure(args.requirement, found)
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return paging.parse_since(text, SystemClock().now())
    except paging.InvalidPaging as error:
        raise admin.AdminError(f"--since: {error}") from None


def _print_exposure(what: str, found: dict[str, Any]) -> None:
    summary = found["summary"]
    if not summary["downloads"]:
        print(f"no download of {what} recorded")
        return
    print(
        f"{what}: {summary['downloads']} downloads by {summary['clients']} clients, "
        f"first {summary['first']}, last {summary['last']}"
    )
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("file", "client", "identity", "installer", "python", "os", "n", "first", "last"):
        table.add_column(column, overflow="fold")
    for row in found["downloads"]:
        installer = f"{row['installer']} {row['installer_version']}".strip()
        system = " ".join(part for part in (row["distro"] or row["system"], row["cpu"]) if part)
        cells = (
            row["filename"],
            row["client"],
            row["identity"] or "-",
            installer + (" (CI)" if row["ci"] else "") or "?",
            row["python"] or "?",
            system or "?",
            str(row["downloads"]),
            row["first"],
            row["last"],
        )
        table.add_row(*(escape(str(cell)) for cell in cells))
    console().print(table)


def _check(args: argparse.Namespace, backend: AdminBackend) -> int:
    path = Path(args.lock)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise admin.AdminError(f"cannot read {path}: {error.strerror}") from None
    if len(raw) > MAX_LOCK_BYTES:
        raise admin.AdminError(f"{path} is over {MAX_LOCK_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise admin.AdminError(f"{path} is not UTF-8 text") from None
    found = backend.check(path.name, text)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        _print_check(path, found)
    return EXIT_CONDEMNED if found["failing"] else EXIT_OK


def _print_check(path: Path, found: dict[str, Any]) -> None:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("project", "version", "state", "detail", "files"):
        table.add_column(column, overflow="fold")
    for pin in found["pins"]:
        files = ", ".join(pin["files"]) if pin["state"] != "served" else ""
        cells = (pin["project"], pin["version"], pin["state"], pin["detail"], files)
        table.add_row(*(escape(str(cell)) for cell in cells))
    console().print(table)
    for note in found["skipped"]:
        print(f"lazaretto: note: not checked: {note}", file=sys.stderr)
    failing = [pin for pin in found["pins"] if pin["state"] in ("withdrawn", "blocked")]
    for pin in failing:
        print(
            f"lazaretto: {path.name} pins {pin['project']}=={pin['version']}, which is "
            f"{pin['state']}: {pin['detail']}",
            file=sys.stderr,
        )
    if not failing:
        print(f"{len(found['pins'])} pins checked: nothing withdrawn or blocked")
