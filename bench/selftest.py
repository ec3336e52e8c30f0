"""Run the hardening suites and print their figures as one table.

    .venv/bin/python bench/selftest.py [--extended] [--no-save]

The suites are the tests themselves (nothing is duplicated here): path traversal vectors
against a live mirror, a lying upstream, SIGKILLs of ``lazaretto serve``, the hypothesis
fuzz targets, and the log-bearing tests whose output is then scanned for secrets. Each
test appends its counts to the file named by LAZARETTO_SELFTEST_COUNTERS; pytest's junit
report gives each suite's outcome. ``--extended`` runs the long profiles (200 kills, 25x
the fuzz examples). The table is saved under bench/results/ unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from result_file import REPO, commit_label, save

COUNTERS_ENV = "LAZARETTO_SELFTEST_COUNTERS"  # as tests/support/counters.py reads it
SUITES = {
    "traversal": [
        "tests/test_traversal.py",
        "tests/test_http.py::test_path_tricks_on_file_routes_are_404_without_upstream_requests",
    ],
    "hostile-upstream": ["tests/test_hostile_upstream.py"],
    "chaos": ["tests/test_chaos.py"],
    "fuzz": ["tests/test_fuzz.py"],
    "logs": [
        "tests/test_access_log.py",
        "tests/test_notifications.py::test_secrets_never_reach_logs_messages_or_the_ledger",
    ],
}  # fmt: skip
# What a secret looks like in a log: an admin token, a webhook secret, a bearer credential,
# a password or token given in a URL, and the canaries the tests plant.
SECRET_PATTERNS = {
    "admin token": re.compile(r"lzt_[A-Za-z0-9_-]{16,}"),
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
    "bearer credential": re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]{12,}", re.IGNORECASE),
    "credential in a URL": re.compile(r"[?&](?:token|access_token|password)=[^\s&\]\"']{6,}"),
    "planted canary": re.compile(r"canary-[a-z]+-(?:key|password)-[A-Za-z0-9-]+"),
}


@dataclass
class SuiteRun:
    name: str
    seconds: float = 0.0
    tests: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def run_suite(name: str, work: Path, counters: Path, extended: bool) -> SuiteRun:
    junit = work / f"{name}.xml"
    env = {**os.environ, COUNTERS_ENV: str(counters)}
    env.pop("LAZARETTO_TEST_PROFILE", None)
    if extended:
        env["LAZARETTO_TEST_PROFILE"] = "extended"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *SUITES[name],
        f"--junitxml={junit}", "-o", "junit_logging=log", f"--basetemp={work / name}",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, cwd=REPO, env=env, check=False)
    run = SuiteRun(name, seconds=time.monotonic() - started)
    if not junit.exists():
        run.failed, run.failures = 1, ["pytest wrote no report"]
        return run
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        run.tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            run.failed += 1
            run.failures.append(f"{case.get('classname')}::{case.get('name')}")
    return run


def read_counters(path: Path) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            suite = str(record.pop("suite")).split(":")[0]
            for key, value in record.items():
                totals[suite][key] += int(value)
    return totals


@dataclass
class SecretScan:
    files: int = 0
    bytes: int = 0
    found: list[str] = field(default_factory=list)


def scan_logs(work: Path) -> SecretScan:
    """Every server log the suites wrote and every log record pytest captured."""
    scan = SecretScan()
    texts: list[tuple[str, str]] = []
    for log in sorted(work.rglob("*.log")):
        texts.append((str(log.relative_to(work)), log.read_text(errors="replace")))
    for junit in sorted(work.glob("*.xml")):
        for element in ElementTree.parse(junit).getroot().iter("system-out"):
            texts.append((f"{junit.name} (captured logs)", element.text or ""))
    for where, text in texts:
        scan.files += 1
        scan.bytes += len(text)
        for kind, pattern in SECRET_PATTERNS.items():
            scan.found += [f"{where}: {kind}" for _ in pattern.finditer(text)]
    return scan


def table(runs: dict[str, SuiteRun], counts: dict[str, dict[str, int]], scan: SecretScan) -> str:
    def status(name: str) -> str:
        run = runs[name]
        return f"{run.tests - run.failed}/{run.tests} passed, {run.seconds:.0f} s"

    traversal, hostile = counts["traversal"], counts["hostile-upstream"]
    chaos, fuzz = counts["chaos"], counts["fuzz"]
    kills = chaos.get("kills", 0) if not runs["chaos"].failed else 0
    rows = [
        ("path traversal", f"{traversal['vectors']:,} vectors, {traversal['non_404']} non-404"),
        (
            "hostile upstream",
            f"{hostile['cases']} cases, {hostile['unverified_bytes']} unverified bytes served",
        ),
        (
            "chaos (SIGKILL)",
            f"{kills} kills survived, {chaos['corrupt_served']} corrupt files served, "
            f"{chaos['lost_events']} lost events ({chaos['outbox_events']} outbox entries "
            f"delivered, {chaos['files_served']:,} files served whole; killed mid-download "
            f"{chaos['kills_mid_download']}, while deciding {chaos['lives_promoting']}, "
            f"while notifying {chaos['lives_delivering']})",
        ),
        ("fuzz", f"{fuzz['inputs']:,} inputs, {runs['fuzz'].failed} crashes"),
        (
            "secrets in logs",
            f"{len(scan.found)} found in {scan.files} logs ({scan.bytes:,} characters)",
        ),
    ]
    suite_of = {
        "path traversal": "traversal",
        "hostile upstream": "hostile-upstream",
        "chaos (SIGKILL)": "chaos",
        "fuzz": "fuzz",
        "secrets in logs": "logs",
    }
    lines = ["| suite | figures | tests |", "|---|---|---|"]
    lines += [f"| {name} | {figures} | {status(suite_of[name])} |" for name, figures in rows]
    failures = [failure for run in runs.values() for failure in run.failures] + scan.found
    if failures:
        lines += ["", "Failures:", *(f"- {failure}" for failure in failures)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extended", action="store_true", help="200 kills, long fuzzing")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lazaretto-selftest-") as temporary:
        work = Path(temporary)
        counters = work / "counters.jsonl"
        runs = {name: run_suite(name, work, counters, args.extended) for name in SUITES}
        report = table(runs, read_counters(counters), scan_logs(work))
    profile = "extended" if args.extended else "default"
    text = f"# lazaretto selftest ({profile} profile, {commit_label()})\n\n{report}\n"
    print(text)
    if not args.no_save:
        save("selftest", text)
    clean = not any(run.failed for run in runs.values()) and "Failures:" not in report
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
