"""``lazaretto rules``: every rule a check can fire, and what it does under the configuration.

The action shown is the one a finding of the rule, at its usual severity, has under the
configuration given (``--config`` or LAZARETTO_CONFIG): a ``[rules]`` override, else the
``[severities]`` mapping; a rule with a fixed action (a malware advisory) says so.
"""

import argparse
import json
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from mirror.cli.explain import console
from mirror.settings import Settings
from quarantine.inspect.rules.catalog import all_rules, configured_action
from quarantine.policy import Policy

EXIT_OK = 0


def add_rules_command(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    listing = commands.add_parser(
        "rules",
        help="every rule: its check, severity, description and action under this configuration",
    )
    common(listing)
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def rule_rows(policy: Policy) -> list[dict[str, str]]:
    """One row per declared rule, by check then id."""
    rows = []
    for item in all_rules():
        action, source = configured_action(item, policy.rule_actions, policy.severity_actions)
        rows.append(
            {
                "id": item.id,
                "check": item.check,
                "severity": item.severity.value,
                "action": action.value,
                "action_from": source,  # "override", "severity" or "fixed"
                "description": item.description,
            }
        )
    return rows


def run_rules(args: argparse.Namespace, settings: Settings) -> int:
    rows = rule_rows(settings.policy)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table("rule", "check", "severity", "action", "description", box=None)
    for row in rows:
        action = row["action"]
        if row["action_from"] != "severity":
            action = f"[bold]{action}[/bold] ({row['action_from']})"
        table.add_row(
            escape(row["id"]), row["check"], row["severity"], action, escape(row["description"])
        )
    console().print(table)
    return EXIT_OK
