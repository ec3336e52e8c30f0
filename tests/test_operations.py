"""Operations: /metrics (Prometheus), /healthz and /readyz, JSON logs."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NOW
from support.clock import FakeClock
from support.dists import build_wheel
from support.ledger_backend import command_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO, free_port, stop, wait_until_up
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _scrape(origin: str) -> Samples:
    status, body = _get(origin + "/metrics")
    assert status == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape_until(origin: str, name: str, expected: float, **labels: str) -> Samples:
    """The ledger's counts are refreshed every few seconds, not per scrape."""
    deadline = time.monotonic() + 30
    while True:
        samples = _scrape(origin)
        if _value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_metrics_count_requests_latency_and_cache_hits(
    upstream: Upstream, mirror: MirrorServer
) -> None:
    upstream.add("metered", UpstreamFile(build_wheel("metered", "1.0"), OLD))
    assert _get(mirror.url + "metered/")[0] == 200
    assert mirror.services is not None
    # The page goes out before the look's write (in a thread): a request meanwhile builds
    # the page again rather than answer from memory.
    mirror.call(mirror.services.catalog.writes_done())
    for _ in range(2):
        assert _get(mirror.url + "metered/")[0] == 200
    assert _get(mirror.url + "absent-project/")[0] == 404
    samples = _scrape(mirror.origin)
    assert _value(samples, "lazaretto_http_requests_total", route="page", status="200") == 3
    assert _value(samples, "lazaretto_http_requests_total", route="page", status="404") == 1
    assert _value(samples, "lazaretto_http_request_duration_seconds_count", route="page") == 4
    buckets = "lazaretto_http_request_duration_seconds_bucket"
    assert _value(samples, buckets, route="page", le="+Inf") == 4
    # The first look misses; the next two are answered from memory.
    assert _value(samples, "lazaretto_cache_lookups_total", cache="page", result="hit") == 2
    assert _value(samples, "lazaretto_leader") == 0  # tests run no background side
    assert ("process_resident_memory_bytes", frozenset()) in samples


def test_metrics_count_file_cache_hits(upstream: Upstream, mirror: MirrorServer) -> None:
    upstream.add("cached", UpstreamFile(build_wheel("cached", "1.0"), OLD))
    assert _get(mirror.url + "cached/")[0] == 200
    assert mirror.services is not None
    mirror.call(mirror.services.catalog.writes_done())  # a look is written after its page
    record = mirror.services.ledger.files("cached")[0]  # type: ignore[arg-type]
    url = f"{mirror.origin}/files/{record.sha256}/{record.filename}"
    for _ in range(3):
        assert _get(url)[0] == 200
    samples = _scrape(mirror.origin)
    assert _value(samples, "lazaretto_http_requests_total", route="file", status="200") == 3
    # The first download fetches it (a miss), the next two come from memory.
    assert _value(samples, "lazaretto_cache_lookups_total", cache="file", result="miss") == 1
    assert _value(samples, "lazaretto_cache_lookups_total", cache="file", result="hit") == 2


def test_metrics_count_upstream_errors(upstream: Upstream, mirror: MirrorServer) -> None:
    upstream.add("broken", UpstreamFile(build_wheel("broken", "1.0"), OLD))
    upstream.set_fault("broken", "500")
    assert _get(mirror.url + "broken/")[0] >= 500
    samples = _scrape(mirror.origin)
    assert _value(samples, "lazaretto_upstream_errors_total", kind="UpstreamUnavailable") == 1


def test_metrics_show_the_ledger_counts(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    upstream.add("counted", UpstreamFile(build_wheel("counted", "1.0"), OLD))
    upstream.add("counted", UpstreamFile(build_wheel("counted", "2.0"), NOW - timedelta(hours=1)))
    assert _get(mirror.url + "counted/")[0] == 200
    mirror.promote()
    samples = _scrape_until(mirror.origin, "lazaretto_files", 1, state="held")
    assert _value(samples, "lazaretto_files", state="promoted") == 1
    assert _value(samples, "lazaretto_files", state="held") == 1
    assert _value(samples, "lazaretto_vetting_queue_depth") == 1
    assert _value(samples, "lazaretto_outbox_backlog") == 0
    assert _value(samples, "lazaretto_ledger_events_total") >= 2
    assert _value(samples, "lazaretto_ready") == 1
    free = _value(samples, "lazaretto_data_dir_free_bytes")
    assert 0 < free <= _value(samples, "lazaretto_data_dir_size_bytes")


@pytest.mark.parametrize("rule", [False, ("10.0.0.0/8",)], ids=["off", "other-network"])
def test_metrics_can_be_off_or_kept_to_networks(
    tmp_path: Path, upstream: Upstream, clock: FakeClock, rule: bool | tuple[str, ...]
) -> None:
    settings = settings_for(tmp_path / "data", upstream.url, metrics=rule)
    with running_mirror(settings, clock) as mirror:
        status, body = _get(mirror.origin + "/metrics")
    assert status == 404 and body == b"not found\n"


def test_metrics_for_a_listed_network(tmp_path: Path, upstream: Upstream, clock: FakeClock) -> None:
    settings = settings_for(tmp_path / "data", upstream.url, metrics=("127.0.0.0/8",))
    with running_mirror(settings, clock) as mirror:
        assert "lazaretto_leader" in str(_scrape(mirror.origin))


def test_healthz_and_readyz_answer_in_one_line(mirror: MirrorServer) -> None:
    assert _get(mirror.origin + "/healthz") == (200, b"ok\n")
    assert _get(mirror.origin + "/readyz") == (200, b"ready\n")


def _readyz_once_it_says(origin: str, status: int, headers: dict[str, str] | None = None) -> bytes:
    """/readyz's body once it answers ``status``: it answers from a check made in the
    background every second, so a change shows within a round or two."""
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(origin + "/readyz", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                found, body = reply.status, bytes(reply.read())
        except urllib.error.HTTPError as error:
            found, body = error.code, bytes(error.read())
        if found == status:
            return body
        assert time.monotonic() < deadline, (found, body)
        time.sleep(0.1)


def test_readyz_fails_when_the_blob_store_cannot_be_written(mirror: MirrorServer) -> None:
    temporary = Path(mirror.settings.data_dir) / "blobs" / "tmp"
    shutil.rmtree(temporary)
    temporary.write_bytes(b"")  # not a directory: no download could be written (even as root)
    body = _readyz_once_it_says(mirror.origin, 503)
    assert body.startswith(b"not ready: blob store not writable") and body.count(b"\n") == 1
    assert _get(mirror.origin + "/healthz")[0] == 200  # alive all the same
    temporary.unlink()
    temporary.mkdir()
    assert _readyz_once_it_says(mirror.origin, 200) == b"ready\n"


def test_readyz_fails_when_the_ledger_cannot_be_read(mirror: MirrorServer) -> None:
    assert mirror.services is not None
    ledger = mirror.services.ledger
    ledger.close()
    body = _readyz_once_it_says(mirror.origin, 503)
    assert body.startswith(b"not ready: ledger unreachable")


def test_readyz_fails_while_a_background_loop_is_stopped(mirror: MirrorServer) -> None:
    assert mirror.services is not None
    services = mirror.services

    async def stop_one() -> None:
        services.tasks[0].cancel()

    mirror.call(stop_one())
    body = _readyz_once_it_says(mirror.origin, 503)
    assert b"background loop has stopped" in body


def test_readyz_answers_from_the_last_check_not_a_check_per_request(
    mirror: MirrorServer,
) -> None:
    assert mirror.services is not None
    ledger = mirror.services.ledger
    asked: list[None] = []
    reason = ledger.freeze_reason

    def counted() -> str | None:
        asked.append(None)
        return reason()

    _readyz_once_it_says(mirror.origin, 200)
    ledger.freeze_reason = counted  # type: ignore[method-assign]
    probes = 40
    for _ in range(probes):
        assert _get(mirror.origin + "/readyz") == (200, b"ready\n")
    # The background check runs once a second; a check per request would be 40 reads.
    assert len(asked) < probes // 2, len(asked)


def test_readyz_tells_a_remote_caller_only_the_kind_of_problem(
    upstream: Upstream, tmp_path: Path, clock: FakeClock
) -> None:
    settings = settings_for(tmp_path / "data", upstream.url, trusted_proxies=("127.0.0.1",))
    with running_mirror(settings, clock) as mirror:
        assert mirror.services is not None
        secret = "db host db-7.internal, ticket OPS-1234"
        mirror.services.ledger.freeze(secret, "cli:ops", clock.now())
        local = _readyz_once_it_says(mirror.origin, 503)
        remote = _readyz_once_it_says(mirror.origin, 503, {"X-Forwarded-For": "203.0.113.9"})
    assert secret.encode() in local  # loopback: an operator on the host hears it all
    assert remote == b"not ready: promotion frozen (details in the server's log)\n"


@pytest.fixture
def json_serve(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``lazaretto serve`` with log_format = "json", its output in a file."""
    port = free_port()
    config = tmp_path / "lazaretto.toml"
    config.write_text(
        f'upstream = "{upstream.url}"\nlog_format = "json"\nvetting_worker = "in-process"\n'
    )
    output = tmp_path / "output.log"
    data_dir = ("--data-dir", str(tmp_path / "data"))
    with output.open("w") as sink:
        process = subprocess.Popen(
            [LAZARETTO, "serve", "--port", str(port), "--config", str(config), *data_dir],
            env=command_env(data_dir, os.environ),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        origin = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(origin, process)
            yield origin, output
        finally:
            stop(process)


def test_json_logs_are_one_object_per_line(
    upstream: Upstream, json_serve: tuple[str, Path]
) -> None:
    origin, output = json_serve
    uploaded = datetime.now(UTC) - timedelta(days=300)
    upstream.add("logged", UpstreamFile(build_wheel("logged", "1.0"), uploaded))
    assert _get(origin + "/simple/logged/")[0] == 200
    assert _get(origin + "/-/admin/api/v1/holds?token=lzt_secret")[0] == 401
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "/-/admin/" not in output.read_text():
        time.sleep(0.1)
    entries = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    access = [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    page = next(entry for entry in access if entry["path"] == "/simple/logged/")
    assert page["method"] == "GET" and page["status"] == 200
    assert {"time", "level", "message", "client"} <= set(page)
    admin = next(entry for entry in access if entry["path"].startswith("/-/admin/"))
    assert "lzt_secret" not in json.dumps(admin)  # redacted, as in the text log
    assert any(entry["logger"] == "lazaretto" for entry in entries)  # the app's own lines
