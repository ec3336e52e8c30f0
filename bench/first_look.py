"""First look at warm throughput: a project page (JSON, HTML) and a wheel, with wrk.

Run on demand (never in the test suite):  .venv/bin/python bench/first_look.py
It builds a local upstream (real wheels, built here), starts `lazaretto serve` in front of
it on 127.0.0.1, warms the pages and the file, then runs wrk against each URL and prints
a table of requests per second (median of --reps runs) and the server's RSS.
The full side-by-side comparison with nginx, proxpi and devpi lives in bench/compare.py.
"""

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.dists import build_wheel
from support.process import lazaretto_serve
from support.upstream import Upstream, UpstreamFile

JSON = "application/vnd.pypi.simple.v1+json"


def _wrk(url: str, seconds: int, connections: int, accept: str | None) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url]
    if accept:
        command[1:1] = ["-H", f"Accept: {accept}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{output}")
    return float(match.group(1))


def _rss_mb(port: int) -> float:
    pid = subprocess.run(
        ["fuser", f"{port}/tcp"], capture_output=True, text=True, check=False
    ).stdout.split()
    if not pid:
        return float("nan")
    status = Path(f"/proc/{pid[0]}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    now = datetime.now(UTC)
    data = Path(tempfile.mkdtemp(prefix="lazaretto-bench-"))
    with Upstream() as upstream:
        for minor in range(30):  # a project page of 30 releases, 60 files
            version = f"1.{minor}"
            upstream.add(
                "benchy",
                UpstreamFile(build_wheel("benchy", version), now - timedelta(days=400 - minor)),
            )
            upstream.add(
                "benchy",
                UpstreamFile(
                    build_wheel("benchy", version, tag="py311-none-any"),
                    now - timedelta(days=400 - minor),
                ),
            )
        big = build_wheel(
            "benchy-files",
            "1.0",
            extra_files={"benchy_files/blob.bin": random.Random(0).randbytes(100_000)},
        )
        upstream.add("benchy-files", UpstreamFile(big, now - timedelta(days=400)))
        env = {"LAZARETTO_ACCESS_LOG": "false", "LAZARETTO_LOG_LEVEL": "warning"}
        with lazaretto_serve(["--data-dir", str(data), "--upstream", upstream.url], env) as origin:
            page = f"{origin}/simple/benchy/"
            request = urllib.request.Request(
                origin + "/simple/benchy-files/", headers={"Accept": JSON}
            )
            with urllib.request.urlopen(request) as response:
                entry = json.load(response)["files"][0]
            file_url = urljoin(origin + "/simple/benchy-files/", entry["url"])
            for url in (page, file_url):
                urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": JSON})).read()
            port = int(origin.rsplit(":", 1)[1])
            rows = []
            for label, url, accept in (
                ("project page, JSON (60 files)", page, JSON),
                ("project page, HTML (60 files)", page, "text/html"),
                (f"wheel, {len(big.data) // 1024} KB", file_url, None),
            ):
                runs = [_wrk(url, args.seconds, args.connections, accept) for _ in range(args.reps)]
                rows.append((label, statistics.median(runs), min(runs), max(runs)))
            rss = _rss_mb(port)
    shutil.rmtree(data, ignore_errors=True)
    runs_note = f"{args.seconds}s x {args.reps} runs, load generator on the same 2 cores"
    print(f"\nLazaretto first look: wrk -t2 -c{args.connections}, {runs_note}\n")
    print("| what | req/s (median) | min | max |")
    print("|---|---|---|---|")
    for label, median, low, high in rows:
        print(f"| {label} | {median:,.0f} | {low:,.0f} | {high:,.0f} |")
    print(f"\nserver RSS after the runs: {rss:.0f} MB")


if __name__ == "__main__":
    main()
