"""What the download log costs warm file requests: the same mirror with it on and off.

Run on demand (never in the test suite):  .venv/bin/python bench/download_log_cost.py
It builds a local upstream (a real wheel, built here), starts two `lazaretto serve`
processes in front of it on 127.0.0.1, one with `download_log = true` and one with
`false`, warms the same file on both, then runs wrk against each in turn (off, on, off,
on, ...: drift and noise of the shared CPUs hit both alike) with a pip-shaped User-Agent,
and prints a table of medians and the ratio. It also counts the rows the log holds after
the runs, against the 200s wrk saw: a log that fell behind would show here (dropped
downloads are counted and logged by the server instead of slowing requests).
--save writes the table to bench/results/.
"""

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import wrk
from result_file import commit_label, save

from support.dists import build_wheel
from support.process import lazaretto_serve
from support.upstream import Upstream, UpstreamFile

JSON = "application/vnd.pypi.simple.v1+json"
USER_AGENT = (
    'User-Agent: pip/24.2 {"ci":null,"cpu":"x86_64","distro":{"name":"Debian GNU/Linux",'
    '"version":"12"},"implementation":{"name":"CPython","version":"3.11.7"},"installer":'
    '{"name":"pip","version":"24.2"},"python":"3.11.7","system":{"name":"Linux",'
    '"release":"6.1.0"}}'
)
PROJECT = "benchy-log"


def _file_url(origin: str) -> str:
    request = urllib.request.Request(f"{origin}/simple/{PROJECT}/", headers={"Accept": JSON})
    with urllib.request.urlopen(request) as response:
        entry = json.load(response)["files"][0]
    url = str(urljoin(f"{origin}/simple/{PROJECT}/", entry["url"]))
    urllib.request.urlopen(url).read()  # fetched, verified and cached: warm from here on
    return url


def _logged(data: Path) -> tuple[int, int]:
    """Downloads recorded, and the rows holding them (one per client and second)."""
    with sqlite3.connect(data / "downloads.sqlite3") as db:
        found = db.execute("SELECT SUM(downloads), COUNT(*) FROM downloads").fetchone()
        return int(found[0]), int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--save", action="store_true", help="write bench/results/...md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    now = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="lazaretto-bench-log-"))
    runs: dict[str, list[float]] = {"off": [], "on": []}
    served_on = 0
    wheel = build_wheel(PROJECT, "1.0")
    base_env = {"LAZARETTO_ACCESS_LOG": "false", "LAZARETTO_LOG_LEVEL": "warning"}
    try:
        with Upstream() as upstream:
            upstream.add(PROJECT, UpstreamFile(wheel, now - timedelta(days=400)))
            common = ["--upstream", upstream.url]
            with (
                lazaretto_serve(["--data-dir", str(root / "off"), *common],
                                {**base_env, "LAZARETTO_DOWNLOAD_LOG": "false"}) as off,
                lazaretto_serve(["--data-dir", str(root / "on"), *common],
                                {**base_env, "LAZARETTO_DOWNLOAD_LOG": "true"}) as on,
            ):  # fmt: skip
                urls = {"off": _file_url(off), "on": _file_url(on)}
                for _ in range(args.reps):
                    for label in ("off", "on"):
                        result = wrk(urls[label], args.seconds, args.connections,
                                     headers=[USER_AGENT])  # fmt: skip
                        if result.errors:
                            sys.exit(f"wrk saw errors against {label}:\n{result.output}")
                        runs[label].append(result.rps)
                        if label == "on":
                            served_on += result.requests
        logged = _logged(root / "on")  # the server flushed its queue when it stopped
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = _report(args, runs, len(wheel.data), served_on, logged)
    print(report)
    if args.save:
        save("download-log-cost", report)


def _report(
    args: argparse.Namespace,
    runs: dict[str, list[float]],
    size: int,
    served: int,
    logged: tuple[int, int],
) -> str:
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    lines = [
        f"# Download log cost, warm file requests ({commit_label()})",
        "",
        f"wrk -t2 -c{args.connections}, {args.seconds} s x {args.reps} runs per side, "
        f"alternating; a {size:,} byte wheel served from memory; load generator and both "
        "servers on the same 2 cores, loopback only.",
        "",
        "| download_log | req/s (median) | min | max |",
        "|---|---|---|---|",
    ]
    for label, median in (("off", off), ("on", on)):
        values = runs[label]
        lines.append(f"| {label} | {median:,.0f} | {min(values):,.0f} | {max(values):,.0f} |")
    ratio = on / off if off else float("nan")
    lines += [
        "",
        f"on / off: {ratio:.3f} ({(1 - ratio) * 100:+.1f}% loss; goal: under 5%)",
        f"downloads recorded after the runs: {logged[0]:,} (in {logged[1]:,} rows) for "
        f"{served:,} requests wrk counted as answered 200 by the 'on' server (plus the "
        "warm-up request, and those still in flight when wrk stopped counting)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
