"""The ``lazaretto`` command. With the app factory, the only place that wires things up."""

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mirror import __version__
from mirror.cli.admin import ADMIN_COMMANDS, add_admin_commands, run_admin
from mirror.cli.migrate import add_migrate_command, run_migrate
from mirror.cli.rules import add_rules_command, run_rules
from mirror.errors import ConfigError
from mirror.settings import Settings, config_path, load_settings
from quarantine.errors import QuarantineError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_CONFIG, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lazaretto", description="A vetted pull-through mirror of a Python package index."
    )
    parser.add_argument("--version", action="version", version=f"lazaretto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the mirror")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (default 8070)")
    serve.add_argument("--workers", help="serving processes sharing the port (default 1; 1 to 64)")
    _mirroring(serve)
    work = commands.add_parser(
        "work", help="promote, vet, watch and notify without serving (vetting_worker = separate)"
    )
    _common(work)
    _mirroring(work)
    add_admin_commands(commands, _common)
    add_rules_command(commands, _common)
    fsck = commands.add_parser(
        "fsck",
        help="re-hash every stored blob and compare with the ledger",
        description="Damaged blobs and blobs no record refers to are moved to "
        "fsck-quarantine/ in the data directory (never deleted); the files they held are "
        "fetched and verified again. Exits 1 when anything was found.",
    )
    _common(fsck)
    fsck.add_argument("--json", action="store_true", help="machine-readable output")
    add_migrate_command(commands, _common)
    unfreeze = commands.add_parser(
        "unfreeze", help="lift a promotion freeze (set when the wall clock jumped)"
    )
    _common(unfreeze)
    unfreeze.add_argument("--reason", required=True, help="why it is safe to promote again")
    return parser


def _mirroring(command: argparse.ArgumentParser) -> None:
    """What to mirror and how long to hold it: the server and the worker must agree."""
    command.add_argument("--upstream", help="PEP 691 simple index to mirror (default: pip's index)")
    command.add_argument("--cooling-period", help="hold new files this long: 72h, 3d or P3D")
    command.add_argument(
        "--osv-feed",
        action="append",
        dest="osv_feeds",
        help="OSV malware records: a directory, a .zip export or a URL (repeatable)",
    )


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", type=Path, help="TOML config file (or LAZARETTO_CONFIG)")
    command.add_argument("--data-dir", help="where the ledger and blobs live")


def settings_from(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        key: getattr(args, key, None)
        for key in ("host", "port", "workers", "upstream", "cooling_period", "data_dir")
    }
    feeds = getattr(args, "osv_feeds", None)
    if feeds:
        flags["osv_feeds"] = feeds
    return load_settings(args.config, os.environ, flags)


def _start(settings: Settings, args: argparse.Namespace, *, listening: bool) -> Settings:
    """Check the data directory, settle the upstream, and log what was chosen."""
    from mirror.memory import tune_malloc
    from mirror.startup import prepare, startup_line

    tune_malloc()  # before any thread: those to come share two arenas
    _configure_logging(settings)
    start = prepare(settings)
    config_file = config_path(args.config, os.environ)
    logging.getLogger("lazaretto").info(startup_line(start, config_file, listening=listening))
    return start.settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    settings = _start(settings, args, listening=True)
    if settings.workers > 1:
        from mirror.cli.workers import supervise

        supervise(settings)
        return EXIT_OK
    from mirror.cli.serving import run_server

    run_server(settings)
    return EXIT_OK


def _work(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from mirror.background.worker import run_worker

    if settings.vetting_worker != "separate":
        # Two promoters on one ledger would each fetch and vet the same files.
        print(
            "lazaretto: configuration error: vetting_worker: `lazaretto work` needs "
            '"separate" (LAZARETTO_VETTING_WORKER=separate), as the server it runs beside',
            file=sys.stderr,
        )
        return EXIT_CONFIG
    asyncio.run(run_worker(_start(settings, args, listening=False)))
    return EXIT_OK


def _configure_logging(settings: Settings) -> None:
    from mirror.http.log_format import configure_logging

    configure_logging(settings)


def _actor() -> str:
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


def _unfreeze(settings: Settings, reason: str) -> int:
    from mirror.ledger_backend import open_ledger
    from quarantine.clock import SystemClock
    from quarantine.errors import LedgerMissing

    if len(reason.strip()) < 10:
        print("lazaretto: give a reason of at least 10 characters (--reason)", file=sys.stderr)
        return EXIT_USAGE
    try:
        ledger = open_ledger(settings, create=False)
    except LedgerMissing as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        frozen = ledger.freeze_reason()
        if not ledger.unfreeze(reason.strip(), _actor(), SystemClock().now()):
            print("no freeze in place; nothing to do")
            return EXIT_OK
    finally:
        ledger.close()
    print(f"freeze lifted (it was: {frozen})")
    return EXIT_OK


def _fsck(settings: Settings, *, as_json: bool) -> int:
    import json
    from dataclasses import asdict

    from mirror.cli.fsck import check
    from mirror.ledger_backend import open_ledger
    from quarantine.clock import SystemClock
    from quarantine.errors import LedgerMissing

    if settings.blob_store:
        # It hashes the disk store; run against an empty one, it would mark every file of
        # the shared ledger as not stored.
        print(
            "lazaretto: fsck checks the disk blob store under the data directory; this "
            f"mirror stores blobs in {settings.blob_store} (check that with the store's tools)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    data_dir = Path(settings.data_dir)
    try:
        ledger = open_ledger(settings, create=False)
    except LedgerMissing as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        report = check(data_dir, ledger, SystemClock().now())
    finally:
        ledger.close()
    if as_json:
        print(json.dumps(asdict(report), indent=2))
    else:
        for finding in report.findings:
            print(f"{finding.kind}: {finding.path}: {finding.detail}")
        print(
            f"{report.blobs_checked} blobs, {report.bytes_hashed} bytes hashed; "
            f"{len(report.findings)} findings"
        )
    return EXIT_FINDINGS if report.findings else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from(args)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "work":
            return _work(settings, args)
        if args.command in ADMIN_COMMANDS:
            return run_admin(args, settings)
        if args.command == "fsck":
            return _fsck(settings, as_json=args.json)
        if args.command == "unfreeze":
            return _unfreeze(settings, args.reason)
        if args.command == "rules":
            return run_rules(args, settings)
        if args.command == "migrate":
            return run_migrate(settings, dry_run=args.dry_run)
    except ConfigError as error:
        print(f"lazaretto: configuration error: {error.reason}", file=sys.stderr)
        return EXIT_CONFIG
    except QuarantineError as error:
        print(f"lazaretto: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (sqlite3.Error, OSError) as error:  # a read-only ledger or mount, a full disk
        print(f"lazaretto: {_storage_problem(error)}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_USAGE


def _storage_problem(error: sqlite3.Error | OSError) -> str:
    """One line for the data directory refusing a read or write."""
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        cause = error.strerror or type(error).__name__
        return f"cannot use the data directory{where}: {cause}"
    cause = " ".join(str(error).split()) or type(error).__name__
    return (
        f"cannot use the ledger: {cause}; check that the data directory is writable by "
        "this user, not on a read-only mount, and that its disk has space"
    )


if __name__ == "__main__":
    sys.exit(main())
