"""Where a benchmark's markdown result is saved: bench/results/<date>-<kind>-<commit>.md."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def commit_label() -> str:
    """The commit measured, marked when the rules in the work tree differ from it."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "quarantine"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return (head or "unknown") + ("+changes" if changed else "")


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def save(kind: str, report: str) -> Path:
    target = RESULTS / f"{today()}-{kind}-{commit_label()}.md"
    target.write_text(report)
    print(f"saved to {target}", file=sys.stderr)
    return target
