"""The mirror's own supply chain: hash-pinned locks with a cooldown, and the audit verdict."""

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCKS = sorted((ROOT / "requirements").glob("*.txt"))
COOLDOWN = re.compile(
    r"^# cooldown: no release uploaded after (\S+) \((\d+) days before locking\)$"
)
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+")


def test_every_lock_is_there() -> None:
    assert {path.name for path in LOCKS} >= {
        "bootstrap.txt",
        "runtime.txt",
        "test.txt",
        "audit.txt",
    }


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_every_pin_carries_hashes(lock: Path) -> None:
    requirements = " ".join(lock.read_text().split("\\\n")).splitlines()
    pins = [line for line in requirements if PIN.match(line)]
    assert pins, f"{lock.name} pins nothing"
    unhashed = [line.split()[0] for line in pins if "--hash=sha256:" not in line]
    assert not unhashed, f"{lock.name}: no hash for {unhashed}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_every_lock_was_resolved_with_a_week_of_cooldown(lock: Path) -> None:
    found = [m for line in lock.read_text().splitlines() if (m := COOLDOWN.match(line))]
    assert len(found) == 1, f"{lock.name} does not say which cooldown it was resolved with"
    cutoff, days = datetime.fromisoformat(found[0][1]), int(found[0][2])
    assert days >= 7
    assert cutoff <= datetime.now(UTC) - timedelta(days=7)


def _verdict(tmp_path: Path, report: object, *flags: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    script = ROOT / "scripts" / "audit_verdict.py"
    command = [sys.executable, str(script), "requirements/x.txt", str(path), *flags]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_a_known_vulnerability_fails_the_audit_and_is_named(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {
                "name": "aiohttp",
                "version": "3.9.0",
                "vulns": [{"id": "GHSA-xxxx", "fix_versions": []}],
            },
            {"name": "packaging", "version": "24.2", "vulns": []},
        ]
    }
    result = _verdict(tmp_path, report)
    assert result.returncode == 1
    assert "aiohttp 3.9.0 is vulnerable: GHSA-xxxx" in result.stderr
    assert "2 of 2 releases audited, 1 vulnerable" in result.stderr


def test_a_clean_audit_passes(tmp_path: Path) -> None:
    report = {"dependencies": [{"name": "packaging", "version": "24.2", "vulns": []}]}
    assert _verdict(tmp_path, report).returncode == 0


def test_unauditable_releases_are_counted_and_fail_only_when_strict(tmp_path: Path) -> None:
    report = {"dependencies": [{"name": "pip", "skip_reason": "not found"}]}
    lenient = _verdict(tmp_path, report)
    assert lenient.returncode == 0
    assert "0 of 1 releases audited, 0 vulnerable, 1 unknown" in lenient.stderr
    assert _verdict(tmp_path, report, "--strict").returncode == 1


def test_a_missing_or_broken_report_fails(tmp_path: Path) -> None:
    assert _verdict(tmp_path, {"no": "dependencies"}).returncode == 1
    assert "did not run" in _verdict(tmp_path, {"no": "dependencies"}).stderr
