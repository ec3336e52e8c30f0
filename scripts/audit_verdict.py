"""Judge one pip-audit JSON report: a known vulnerability fails; unknown releases are counted.

Usage: audit_verdict.py LOCK REPORT [--strict]. Exit 1 on any vulnerability, or with
``--strict`` on any release the vulnerability service could not answer for.
"""

import json
import sys
from typing import Any


def verdict(lock: str, dependencies: list[dict[str, Any]], strict: bool) -> tuple[int, list[str]]:
    lines: list[str] = []
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dependency in vulnerable:
        ids = ", ".join(str(v.get("id")) for v in dependency["vulns"])
        lines.append(
            f"audit: {lock}: {dependency.get('name')} {dependency.get('version')} "
            f"is vulnerable: {ids}"
        )
    audited = len(dependencies) - len(skipped)
    lines.append(
        f"audit: {lock}: {audited} of {len(dependencies)} releases audited, "
        f"{len(vulnerable)} vulnerable, {len(skipped)} unknown to the vulnerability service"
    )
    failed = bool(vulnerable) or (strict and bool(skipped))
    return (1 if failed else 0), lines


def main(argv: list[str]) -> int:
    lock, report = argv[0], argv[1]
    try:
        with open(report, encoding="utf-8") as handle:
            dependencies = json.load(handle)["dependencies"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"audit: {lock}: the audit did not run ({error})", file=sys.stderr)
        return 1
    status, lines = verdict(lock, dependencies, "--strict" in argv[2:])
    for line in lines:
        print(line, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
