"""``lazaretto rules`` as users run it: a separate process, a real config file."""

import json
import os
import subprocess
from pathlib import Path

from quarantine.inspect.rules.catalog import all_rules
from support.process import LAZARETTO

CONFIG = """\
# try the new startup-hook rule in report-only mode first
[rules]
pth-executable-new = "report"
dependency-new = "block"

[severities]
medium = "block"
"""


def _rules(tmp_path: Path, *args: str, config: str = CONFIG) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "lazaretto.toml"
    path.write_text(config)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAZARETTO_")}
    return subprocess.run(
        [LAZARETTO, "rules", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_rules_lists_every_rule_with_its_action_under_the_configuration(tmp_path: Path) -> None:
    done = _rules(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {item.id for item in all_rules()}
    assert rows["pth-executable-new"] == {
        "id": "pth-executable-new",
        "check": "content",
        "severity": "high",
        "action": "report",
        "action_from": "override",
        "description": rows["pth-executable-new"]["description"],
    }
    assert rows["pth-executable-new"]["description"].startswith(".pth file with import lines")
    assert (rows["dependency-new"]["action"], rows["dependency-new"]["action_from"]) == (
        "block",
        "override",
    )
    # [severities] medium = "block": a medium rule without an override follows it
    assert (rows["binary-new"]["severity"], rows["binary-new"]["action"]) == ("medium", "block")
    assert rows["binary-new"]["action_from"] == "severity"
    assert (rows["publisher-changed"]["check"], rows["publisher-changed"]["action"]) == (
        "publisher",
        "review",
    )
    assert (rows["malware-advisory"]["action"], rows["malware-advisory"]["action_from"]) == (
        "block",
        "fixed",
    )


def test_rules_table_for_people(tmp_path: Path) -> None:
    done = _rules(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert lines["rule"][:5] == ["rule", "check", "severity", "action", "description"]
    assert lines["pth-executable-new"][:5] == [
        "pth-executable-new",
        "content",
        "high",
        "report",
        "(override)",
    ]
    assert lines["binary-new"][:4] == ["binary-new", "content", "medium", "block"]
    assert lines["setup-subprocess"][:4] == ["setup-subprocess", "content", "high", "review"]


def test_rules_refuses_a_config_naming_an_unknown_rule(tmp_path: Path) -> None:
    done = _rules(tmp_path, config='[rules]\npth-executable = "report"\n')
    assert done.returncode == 3
    assert "line 2: rules.pth-executable: unknown rule" in done.stderr
    assert "did you mean 'pth-executable-new'?" in done.stderr
    assert "Traceback" not in done.stderr
