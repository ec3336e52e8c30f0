"""What /metrics' counting costs on the hot path: the warm page rate with metrics on and off.

Run on demand (never in the test suite), from the repository root:

    .venv/bin/python bench/metrics_cost.py [--seconds 10] [--rounds 3]

Two `lazaretto serve` processes (metrics = true, metrics = false) in front of one local
static upstream; each round runs wrk against one then the other (alternating which goes
first), on the same warm JSON page. Prints the requests/s of every run, the server's CPU
time per request (from /proc: steadier than the rate on a shared machine), and medians.
Loopback only; every server started here is stopped by PID.
"""

import argparse
import os
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import JSON_ACCEPT, Lazaretto, LazarettoSpec, fetch, log, require_tools, wrk
from static_upstream import StaticFile, StaticUpstream

PROJECT = "metered"


def _upstream() -> StaticUpstream:
    upstream = StaticUpstream()
    old = datetime.now(UTC) - timedelta(days=400)
    for minor in range(20):
        name = f"{PROJECT}-1.{minor}-py3-none-any.whl"
        upstream.add(PROJECT, StaticFile.from_bytes(name, name.encode() * 50, old))
    return upstream


def _server(state: Path, upstream: str, metrics: str) -> Lazaretto:
    spec = LazarettoSpec(
        state_dir=state / metrics,
        data_dir=state / metrics / "data",
        upstream=upstream,
        cooling_period="3d",
        env={"LAZARETTO_METRICS": metrics, "LAZARETTO_VETTING_WORKER": "in-process"},
    )
    return Lazaretto(spec)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_tools({"wrk": "apt-get install wrk"})
    rates: dict[str, list[float]] = {"true": [], "false": []}
    cpu_us: dict[str, list[float]] = {"true": [], "false": []}
    with tempfile.TemporaryDirectory() as state, _upstream() as upstream:
        servers = {key: _server(Path(state), upstream.url, key) for key in rates}
        try:
            for server in servers.values():
                server.start()
                page = f"{server.spec.index_url}{PROJECT}/"
                fetch(page, JSON_ACCEPT)  # the first look; the page is warm from here
            for round_ in range(args.rounds):
                order = ["false", "true"] if round_ % 2 == 0 else ["true", "false"]
                for key in order:
                    page = f"{servers[key].spec.index_url}{PROJECT}/"
                    pid = servers[key].pid
                    assert pid is not None
                    before = _cpu_seconds(pid)
                    result = wrk(page, args.seconds, accept=JSON_ACCEPT)
                    used = _cpu_seconds(pid) - before
                    assert result.errors == 0, result.output
                    rates[key].append(result.rps)
                    cpu_us[key].append(used / result.requests * 1e6)
                    log(
                        f"metrics={key}: {result.rps:,.0f} req/s, "
                        f"{cpu_us[key][-1]:.1f} us CPU per request"
                    )
        finally:
            for server in servers.values():
                server.stop()
    print("| metrics | runs (req/s) | median req/s | CPU per request (us), median |")
    print("|---|---|---|---|")
    for key in ("false", "true"):
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[key])
        rate, cpu = statistics.median(rates[key]), statistics.median(cpu_us[key])
        print(f"| {key} | {runs} | {rate:,.0f} | {cpu:.1f} |")
    off, on = statistics.median(cpu_us["false"]), statistics.median(cpu_us["true"])
    print(f"\nCPU per request with metrics: {on - off:+.1f} us ({100 * (on - off) / off:+.1f}%)")


if __name__ == "__main__":
    main()
