"""The admin commands of ``lazaretto``: see, explain, promote, block, exempt, audit.

Every decision goes through an ``AdminBackend`` (the local data directory, or a running
mirror's admin API with ``--url``), so it is recorded with who and why, like any other.
Output is a table for people, or JSON with ``--json``; exit codes mean something.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from rich.markup import escape
from rich.table import Table

from mirror.cli.explain import console, parse_spec, print_explanation
from mirror.cli.incident import INCIDENT_COMMANDS, add_incident_commands, run_incident
from mirror.cli.local_backend import SCOPES, AdminBackend, LocalBackend
from mirror.settings import Settings
from quarantine import admin, paging
from quarantine.clock import SystemClock, parse_timestamp
from quarantine.errors import LedgerMissing
from quarantine.filenames import SDIST_SUFFIXES, WHEEL_SUFFIX, archive_suffix

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_AUTH = 0, 1, 2, 4, 5, 6
Common = Callable[[argparse.ArgumentParser], None]


def _admin_common(parser: argparse.ArgumentParser, common: Common) -> None:
    common(parser)
    parser.add_argument("--url", help="act on a running mirror through its admin API")
    parser.add_argument(
        "--token-file", help="file holding the admin API token (else LAZARETTO_TOKEN)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_admin_commands(commands: Any, common: Common) -> None:
    holds = commands.add_parser("holds", help="everything held: cooling, or waiting for review")
    _admin_common(holds, common)
    holds.add_argument("--project")
    holds.add_argument("--state", choices=("held", "review"))
    explain = commands.add_parser(
        "explain",
        help="why each file is held, promoted, blocked or rejected (newest release first)",
        description="Hold-until times are the ones the mirror enforces: a local command reads "
        "the policy the mirror recorded in its data directory when it started (a --config "
        "given here does not change them), --url asks the mirror itself.",
    )
    _admin_common(explain, common)
    explain.add_argument("requirement", metavar="PROJECT[==VERSION]")
    _paging(explain, "files first seen since then", "files")
    promote = commands.add_parser("promote", help="end a release's hold early (urgent fix)")
    _admin_common(promote, common)
    promote.add_argument("requirement", metavar="PROJECT==VERSION")
    promote.add_argument("--reason", required=True)
    promote.add_argument("--force", action="store_true", help="also override a block")
    for verb, text in (
        ("block", "withdraw at once, promoted files too"),
        ("unblock", "lift a block"),
    ):
        command = commands.add_parser(verb, help=text)
        _admin_common(command, common)
        command.add_argument("requirement", metavar="PROJECT[==VERSION]")
        command.add_argument("--reason", required=True)
    retry = commands.add_parser(
        "retry",
        help="fetch again files a fetch refused (a glitch, a setting since fixed)",
        description="Files refused by a failed fetch go back to held: fetched again, "
        "checked against the listed digest and vetted as ever.",
    )
    _admin_common(retry, common)
    retry.add_argument("target", metavar="PROJECT[==VERSION]|FILENAME")
    retry.add_argument("--reason", required=True)
    exempt = commands.add_parser("exempt", help="serve a project without a hold")
    _admin_common(exempt, common)
    exempt.add_argument("project")
    exempt.add_argument("--reason", required=True)
    exempt.add_argument("--until", help="RFC 3339 time the exemption ends")
    unexempt = commands.add_parser("unexempt", help="end a run-time exemption")
    _admin_common(unexempt, common)
    unexempt.add_argument("project")
    unexempt.add_argument("--reason", required=True)
    cutoff = commands.add_parser("cutoff", help="nothing uploaded after TIME is promoted")
    _admin_common(cutoff, common)
    cutoff.add_argument("action", choices=("set", "clear"))
    cutoff.add_argument("time", nargs="?", help="RFC 3339 time (for set)")
    cutoff.add_argument("--reason", required=True)
    audit = commands.add_parser("audit", help="every recorded decision, with who and why")
    _admin_common(audit, common)
    audit.add_argument("--project")
    _paging(audit, "events since then", "latest events")
    token = commands.add_parser(
        "token", help="admin API and index tokens (shown once, kept as hashes)"
    )
    _admin_common(token, common)
    token.add_argument("action", choices=("create", "revoke"))
    token.add_argument("name")
    token.add_argument(
        "--scope",
        choices=SCOPES,
        default="read",
        help="read, decide (admin API), or index:read (installs, with index_auth on)",
    )
    deliveries = commands.add_parser("deliveries", help="notification deliveries (dead letters)")
    _admin_common(deliveries, common)
    deliveries.add_argument("--state", choices=("pending", "delivered", "dead"))
    add_incident_commands(commands, lambda parser: _admin_common(parser, common))


def _paging(parser: argparse.ArgumentParser, since: str, rows: str) -> None:
    parser.add_argument(
        "--since", type=_since, help=f"only {since}: a duration (2h, 7d) or an RFC 3339 time"
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=paging.DEFAULT_LIMIT,
        help=f"show at most this many {rows} (default {paging.DEFAULT_LIMIT})",
    )


def _since(text: str) -> datetime:
    try:
        return paging.parse_since(text, SystemClock().now())
    except paging.InvalidPaging as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _limit(text: str) -> int:
    try:
        return paging.parse_limit(text)
    except paging.InvalidPaging as error:
        raise argparse.ArgumentTypeError(str(error)) from None


ADMIN_COMMANDS = (
    "holds", "explain", "promote", "block", "unblock", "retry", "exempt", "unexempt", "cutoff",
    "audit", "token", "deliveries", *INCIDENT_COMMANDS,
)  # fmt: skip


def _backend(args: argparse.Namespace, settings: Settings) -> AdminBackend:
    if args.url:
        from mirror.cli.remote_backend import RemoteBackend, read_token

        token_file = Path(args.token_file) if args.token_file else None
        return RemoteBackend(args.url, read_token(token_file))
    config = args.config or os.environ.get("LAZARETTO_CONFIG") or None
    return LocalBackend(settings, config_file=Path(config) if config else None)


def run_admin(args: argparse.Namespace, settings: Settings) -> int:
    try:
        backend = _backend(args, settings)
    except admin.AdminError as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return EXIT_AUTH
    except LedgerMissing as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        return _dispatch(args, backend, settings)
    except admin.NotYetStored as error:
        print(f"lazaretto: {error}; the mirror fetches them in the background, retry shortly",
              file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    except admin.AdminError as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return _exit_code(error)
    finally:
        backend.close()


def _exit_code(error: admin.AdminError) -> int:
    if isinstance(error, admin.NothingToDo) or error.status == 404:
        return EXIT_NOT_FOUND
    if error.status in (401, 403, 429):  # 429: locked out after failed authentications
        return EXIT_AUTH
    if error.status in (409, 412):
        return EXIT_REFUSED
    return EXIT_USAGE if error.status in (400, 422) else EXIT_FAILED


def _time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise admin.AdminError(f"{flag}: {text!r} is not an RFC 3339 time") from error


def _dispatch(args: argparse.Namespace, backend: AdminBackend, settings: Settings) -> int:
    command = args.command
    if command in INCIDENT_COMMANDS:
        return run_incident(args, backend)
    if command == "holds":
        rows = backend.holds(args.project, args.state)
        _notes(backend)
        return _show(args, rows, _print_holds)
    if command == "explain":
        return _explain(args, backend)
    if command == "promote":
        project, version = _release(args.requirement)
        if version is None:
            raise admin.AdminError("promote needs PROJECT==VERSION")
        changes = _promote(backend, args, settings, project, version)
        return _show(args, changes, _print_changes)
    if command in ("block", "unblock"):
        project, version = _release(args.requirement)
        act = backend.block if command == "block" else backend.unblock
        return _show(args, act(project, version, args.reason), _print_changes)
    if command == "retry":
        project, version, filename = _retry_target(args.target)
        return _show(args, backend.retry(project, version, filename, args.reason), _print_changes)
    return _dispatch_settings(args, backend)


def _retry_target(text: str) -> tuple[str, str | None, str | None]:
    """A project, a release, or one file named as the upstream lists it."""
    if text.endswith(WHEEL_SUFFIX) or archive_suffix(text) in SDIST_SUFFIXES:
        try:
            if text.endswith(WHEEL_SUFFIX):
                name, version, _, _ = parse_wheel_filename(text)
            else:
                name, version = parse_sdist_filename(text)
        except (InvalidWheelFilename, InvalidSdistFilename) as error:
            raise admin.AdminError(f"{text!r} is not a wheel or sdist filename") from error
        return name, str(version), text
    project, release = _release(text)
    return project, release, None


def _release(text: str) -> tuple[str, str | None]:
    project, version = parse_spec(text)
    return project, str(version) if version is not None else None


def _explain(args: argparse.Namespace, backend: AdminBackend) -> int:
    project, version = _release(args.requirement)
    found = backend.explain(project, version, args.since, args.limit)
    _notes(backend)
    if found is None:
        print(f"lazaretto: the mirror has not seen {args.requirement}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if found["left_out"]:
        _note(
            f"{found['left_out']} more files left out after the first {args.limit} (newest "
            "releases first): raise --limit, use --since, or name one release (PROJECT==VERSION)"
        )
    if not found["files"] and not args.json:
        print("no file of this project was first seen in that time")
        return EXIT_OK
    return _show(args, found, print_explanation)


def _promote(
    backend: AdminBackend, args: argparse.Namespace, settings: Settings, project: str, version: str
) -> list[dict[str, Any]]:
    try:
        return backend.promote(project, version, args.reason, args.force)
    except admin.NotYetStored as missing:
        if args.url:
            raise
        # Local mode: fetch and verify the bytes here (never skipping the hash check).
        asyncio.run(_fetch(settings, missing))
        return backend.promote(project, version, args.reason, args.force)


async def _fetch(settings: Settings, missing: admin.NotYetStored) -> None:
    from mirror.app import build_services
    from mirror.errors import MirrorError

    services = build_services(settings)
    await services.client.open()
    try:
        for record in missing.records:
            await services.artifacts.ensure_file(record)
    except MirrorError as error:
        raise admin.AdminError(f"not promoted: {error.reason}") from error
    finally:
        await services.client.close()
        services.ledger.close()


def _dispatch_settings(args: argparse.Namespace, backend: AdminBackend) -> int:
    command = args.command
    if command == "exempt":
        backend.exempt(args.project, args.reason, _time(args.until, "--until"))
        return _done(args, f"{args.project} is exempt from the hold")
    if command == "unexempt":
        backend.unexempt(args.project, args.reason)
        return _done(args, f"{args.project} is no longer exempt")
    if command == "cutoff":
        if args.action == "set":
            moment = _time(args.time, "TIME")
            if moment is None:
                raise admin.AdminError("cutoff set needs TIME (RFC 3339)")
            backend.cutoff_set(moment, args.reason)
            return _done(args, f"nothing uploaded after {args.time} is promoted")
        backend.cutoff_clear(args.reason)
        return _done(args, "cutoff cleared")
    if command == "audit":
        page = backend.audit(args.project, args.since, args.limit)
        if page["left_out"]:
            _note(
                f"{page['left_out']} earlier events left out after the latest {args.limit}: "
                "raise --limit, or narrow with --since or --project"
            )
        return _show(args, page["events"], _print_audit)
    if command == "token":
        if args.action == "create":
            secret = backend.token_create(args.name, args.scope)
            # Shown once, on stdout only; the mirror keeps its hash.
            return _show(
                args, {"name": args.name, "scope": args.scope, "token": secret}, _print_token
            )
        backend.token_revoke(args.name)
        return _done(args, f"token {args.name!r} revoked")
    return _show(args, backend.deliveries(args.state), _print_deliveries)


def _notes(backend: AdminBackend) -> None:
    for note in backend.notes():
        _note(note)


def _note(text: str) -> None:
    """Beside the answer, never in it: --json output stays the data alone."""
    print(f"lazaretto: note: {text}", file=sys.stderr)


def _show(args: argparse.Namespace, data: Any, printer: Callable[[Any], None]) -> int:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        printer(data)
    return EXIT_OK


def _done(args: argparse.Namespace, message: str) -> int:
    return _show(args, {"ok": True, "message": message}, lambda data: print(data["message"]))


def _table(*columns: str) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in columns:
        table.add_column(column, overflow="fold")  # never cut a filename or hash
    return table


def _print_holds(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("nothing is held")
        return
    keys = ("project", "version", "filename", "state", "hold_until", "reason")
    table = _table("project", "version", "file", "state", "hold until", "reason")
    for row in rows:
        table.add_row(*(escape(str(row[key] or "")) for key in keys))
    console().print(table)


def _print_changes(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no file changed state (new files of this release will follow the decision)")
    for row in rows:
        print(f"{row['filename']}: {row['before']} -> {row['after']}")


def _print_audit(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no recorded events")
        return
    table = _table("at", "project", "file", "change", "actor", "reason")
    for row in rows:
        change = f"{row['from_state'] or '-'} -> {row['to_state']}"
        cells = (row["at"], row["project"], row["filename"], change, row["actor"], row["reason"])
        table.add_row(*(escape(str(cell or "")) for cell in cells))
    console().print(table)


def _print_token(data: dict[str, Any]) -> None:
    print(f"token {data['name']!r} (scope {data['scope']}), shown once - store it now:")
    print(data["token"])


def _print_deliveries(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no deliveries")
        return
    keys = ("event_id", "channel", "state", "attempts", "next_attempt_at", "last_error")
    table = _table("event", "channel", "state", "attempts", "next attempt", "last error")
    for row in rows:
        table.add_row(*(escape(str(row[key] or "")) for key in keys))
    console().print(table)
