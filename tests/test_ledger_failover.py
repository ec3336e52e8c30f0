"""Several replicas on one PostgreSQL ledger: one leader, and a new one when it dies.

Real processes with the system clock: a server that only serves, two ``lazaretto work``
processes contending for the leader lease, a webhook receiver. The leader is killed
(SIGKILL: no goodbye, its connection just drops); the other must take over, promote what
cools after the kill, and deliver the notifications, none twice.
"""

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import NormalizedName
from prometheus_client.parser import text_string_to_metric_families
from test_notifications import SECRET, Receiver

from mirror.notify.webhook import parse_secrets
from quarantine.ledger.postgres import PostgresLedger
from support.dists import build_wheel
from support.process import LAZARETTO, lazaretto_serve, listed_versions, stop
from support.upstream import Upstream, UpstreamFile

COOLING = timedelta(seconds=6)
TOOK = "took the leader lease"
STANDING_BY = "standing by: another process holds the leader lease"


def eventually(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


@contextmanager
def _worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [LAZARETTO, "work"],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            stop(process)


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [LAZARETTO, *args], env={**os.environ, **env}, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_killing_the_leader_moves_the_work_to_the_other_and_loses_nothing(
    upstream: Upstream, postgres_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    upstream.add("pivot", UpstreamFile(build_wheel("pivot", "1.0"), now - timedelta(days=300)))
    receiver = Receiver(keys=parse_secrets(SECRET, "test"))
    config = tmp_path / "lazaretto.toml"
    config.write_text(
        f'[[notify]]\nkind = "webhook"\nname = "hook"\nurl = "{receiver.hook_url}"\n'
        'secret_env = "HOOK_SECRET"\nallow_private = true\ngroup_seconds = 0\n'
    )
    common = {
        "LAZARETTO_CONFIG": str(config),
        "HOOK_SECRET": SECRET,
        "LAZARETTO_LEDGER": postgres_url,
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_COOLING_PERIOD": f"{COOLING.seconds}s",
        "LAZARETTO_VETTING_WINDOW": "0s",
        "LAZARETTO_PROMOTE_INTERVAL": "1s",
        "LAZARETTO_NOTIFY_INTERVAL": "1s",
        "LAZARETTO_VETTING_WORKER": "separate",
        "LAZARETTO_INDEX_TTL": "0s",  # each page request looks upstream: 2.0 is seen at once
    }
    _cli({**common, "LAZARETTO_DATA_DIR": str(tmp_path / "cli")}, "migrate")
    replica = {name: {**common, "LAZARETTO_DATA_DIR": str(tmp_path / name)} for name in "abs"}
    logs = {name: tmp_path / f"work-{name}.log" for name in "ab"}

    def log_of(name: str) -> str:
        return logs[name].read_text()

    with ExitStack() as stack:
        receiver.start()
        stack.callback(receiver.stop)
        origin = stack.enter_context(lazaretto_serve([], replica["s"]))
        first = stack.enter_context(_worker(replica["a"], logs["a"]))
        eventually(lambda: TOOK in log_of("a"), "the first worker leads")
        stack.enter_context(_worker(replica["b"], logs["b"]))
        eventually(lambda: STANDING_BY in log_of("b"), "the second stands by")

        assert listed_versions(origin, "pivot") == ["1.0"]
        _cli(replica["s"], "block", "pivot==1.0", "--reason", "compromised maintainer account")
        eventually(lambda: len(receiver.hooks) >= 2, "the leader delivers the block")
        upstream.add("pivot", UpstreamFile(build_wheel("pivot", "2.0"), datetime.now(UTC)))
        assert listed_versions(origin, "pivot") == []  # 1.0 blocked, 2.0 held
        # The look is written after its page is answered: wait for the record.
        eventually(lambda: held_versions(postgres_url) == ["2.0"], "2.0 recorded as held")

        killed_at = time.monotonic()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        eventually(lambda: TOOK in log_of("b"), "the second takes over")
        print(f"failover: {time.monotonic() - killed_at:.2f} s from SIGKILL to a new leader")
        eventually(lambda: listed_versions(origin, "pivot") == ["2.0"], "2.0 promoted", 60)
        _cli(replica["s"], "unblock", "pivot==1.0", "--reason", "false alarm, confirmed by vendor")
        eventually(lambda: "1.0" in listed_versions(origin, "pivot"), "1.0 back on the page")

        ledger = PostgresLedger(postgres_url, where="the test database")
        try:
            written = [entry.event_id for entry in ledger.outbox()]
            eventually(lambda: set(delivered(receiver)) == set(written), "all delivered")
        finally:
            ledger.close()
    assert receiver.rejected == []
    assert sorted(delivered(receiver)) == sorted(written)  # each once
    assert len(written) >= 3  # the block (and its withdrawal), then the unblock


def _leader_gauge(origin: str) -> float | None:
    with urllib.request.urlopen(origin + "/metrics", timeout=10) as reply:
        body = reply.read().decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "lazaretto_leader":
                return float(sample.value)
    return None


def test_of_two_servers_vetting_in_process_exactly_one_says_it_leads(
    upstream: Upstream, postgres_url: str, tmp_path: Path
) -> None:
    common = {
        "LAZARETTO_LEDGER": postgres_url,
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_VETTING_WORKER": "in-process",
    }
    _cli({**common, "LAZARETTO_DATA_DIR": str(tmp_path / "cli")}, "migrate")
    with ExitStack() as stack:
        origins = [
            stack.enter_context(
                lazaretto_serve([], {**common, "LAZARETTO_DATA_DIR": str(tmp_path / name)})
            )
            for name in "ab"
        ]

        def one_leads() -> bool:
            gauges = [_leader_gauge(origin) for origin in origins]
            return gauges in ([0.0, 1.0], [1.0, 0.0])

        eventually(one_leads, "exactly one replica says it leads")


def delivered(receiver: Receiver) -> list[str]:
    """The outbox entries the receiver got, once per time it got them."""
    return [event_id for hook in receiver.hooks for event_id in hook.body["data"]["event_ids"]]


def held_versions(url: str) -> list[str]:
    ledger = PostgresLedger(url, where="the test database")
    try:
        return [record.version for record in ledger.held(NormalizedName("pivot"))]
    finally:
        ledger.close()
