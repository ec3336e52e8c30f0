"""The admin CLI through the real ``lazaretto`` entry point, on a running mirror's data.

Decisions made this way are recorded with who and why and show in the running server's
index within seconds (it follows the shared ledger).
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName
from packaging.version import Version

from conftest import NOW
from mirror.cli.main import main
from quarantine.clock import format_timestamp, parse_timestamp
from quarantine.models import FileState
from quarantine.policy import Policy
from support.clock import FakeClock
from support.dists import Dist, build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import lazaretto_env, ledger_env, ledger_rows
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
REASON = "security team approved the fix"


def cli(mirror: MirrorServer, *args: str) -> subprocess.CompletedProcess[str]:
    command = [LAZARETTO, *args, "--data-dir", str(mirror.settings.data_dir)]
    # As an admin's config file would: the same upstream the server uses.
    env = lazaretto_env(
        mirror.settings.data_dir, {"USER": "alice", "LAZARETTO_UPSTREAM": mirror.settings.upstream}
    )
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, timeout=120
    )


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _eventually(check: object, seconds: float = 5.0) -> None:
    """Cross-process changes reach the server's caches within a second or so."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the running mirror did not pick up the change")
        time.sleep(0.1)


def _setup(upstream: Upstream, mirror: MirrorServer, clock: FakeClock) -> None:
    upstream.add("urgent", UpstreamFile(build_wheel("urgent", "1.0"), OLD))
    upstream.add("urgent", UpstreamFile(build_wheel("urgent", "1.1"), NOW - timedelta(hours=2)))
    urllib.request.urlopen(mirror.url + "urgent/").close()
    mirror.promote()  # fetches and vets 1.1; still cooling


def test_holds_and_early_promotion(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _setup(upstream, mirror, clock)
    holds = cli(mirror, "holds", "--json")
    assert holds.returncode == 0, holds.stderr
    (row,) = json.loads(holds.stdout)
    assert row["filename"] == "urgent-1.1-py3-none-any.whl" and row["state"] == "held"
    assert row["hold_until"].startswith((NOW + timedelta(hours=70)).strftime("%Y-%m-%d"))
    table = cli(mirror, "holds", "--project", "urgent")
    assert "urgent-1.1-py3-none-any.whl" in table.stdout
    done = cli(mirror, "promote", "urgent==1.1", "--reason", REASON)
    assert done.returncode == 0, done.stderr
    assert "held -> promoted" in done.stdout
    _eventually(lambda: pip_install(mirror.url, tmp_path / "t", "urgent").ok
                and installed(tmp_path / "t") == {"urgent": "1.1"})  # fmt: skip
    audit = json.loads(cli(mirror, "audit", "--project", "urgent", "--json").stdout)
    promoted = [e for e in audit if e["to_state"] == "promoted" and e["actor"] == "cli:alice"]
    assert promoted and REASON in promoted[0]["reason"]


def test_block_withdraws_at_once_and_unblock_restores(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _setup(upstream, mirror, clock)
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName("urgent"), "urgent-1.0-py3-none-any.whl")
    assert record is not None
    url = f"{mirror.origin}/files/{record.sha256}/{record.filename}"
    assert _status(url) == 200
    blocked = cli(mirror, "block", "urgent==1.0", "--reason", "compromised maintainer account")
    assert blocked.returncode == 0, blocked.stderr
    assert "promoted -> withdrawn" in blocked.stdout
    _eventually(lambda: _status(url) == 410)
    assert not pip_install(mirror.url, tmp_path / "a", "urgent==1.0").ok
    unblocked = cli(
        mirror, "unblock", "urgent==1.0", "--reason", "false alarm, confirmed by vendor"
    )
    assert unblocked.returncode == 0, unblocked.stderr
    mirror.promote()  # the decision runs again: an established file is promoted
    _eventually(lambda: _status(url) == 200)


def test_refusals_have_meaningful_exit_codes(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    _setup(upstream, mirror, clock)
    assert cli(mirror, "promote", "never-seen==1.0", "--reason", REASON).returncode == 4
    short = cli(mirror, "promote", "urgent==1.1", "--reason", "because")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    assert cli(mirror, "block", "urgent==1.1", "--reason", REASON).returncode == 0
    refused = cli(mirror, "promote", "urgent==1.1", "--reason", REASON)
    assert refused.returncode == 5 and "--force" in refused.stderr
    forced = cli(mirror, "promote", "urgent==1.1", "--reason", REASON, "--force")
    assert forced.returncode == 0, forced.stderr
    assert cli(mirror, "unexempt", "urgent", "--reason", REASON).returncode == 4


def test_promote_fetches_and_checks_bytes_it_does_not_have_yet(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    upstream.add("late", UpstreamFile(build_wheel("late", "1.0"), OLD))
    upstream.add("late", UpstreamFile(build_wheel("late", "2.0"), NOW - timedelta(hours=1)))
    urllib.request.urlopen(mirror.url + "late/").close()  # seen; no promotion round ran
    done = cli(mirror, "promote", "late==2.0", "--reason", REASON)
    assert done.returncode == 0, done.stderr
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName("late"), "late-2.0-py3-none-any.whl")
    assert record is not None and record.state is FileState.PROMOTED and record.stored


def test_exemption_and_cutoff(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _setup(upstream, mirror, clock)
    exempt = cli(mirror, "exempt", "urgent", "--reason", "internal tool, our own CI builds it")
    assert exempt.returncode == 0, exempt.stderr
    mirror.promote()
    _eventually(lambda: pip_install(mirror.url, tmp_path / "a", "urgent").ok
                and installed(tmp_path / "a") == {"urgent": "1.1"})  # fmt: skip
    cutoff = (NOW - timedelta(days=500)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = cli(mirror, "cutoff", "set", cutoff, "--reason", "worm outbreak, freeze everything")
    assert done.returncode == 0, done.stderr
    upstream.add("urgent", UpstreamFile(build_wheel("urgent", "1.2"), NOW - timedelta(hours=1)))
    clock.advance(timedelta(days=5))
    urllib.request.urlopen(mirror.url + "urgent/").close()  # the mirror sees 1.2
    mirror.promote()
    assert mirror.services is not None
    record = mirror.services.ledger.file(NormalizedName("urgent"), "urgent-1.2-py3-none-any.whl")
    assert record is not None and record.state is FileState.HELD and "cutoff" in record.reason
    assert cli(mirror, "cutoff", "clear", "--reason", "outbreak contained now").returncode == 0


def test_tokens_are_shown_once_and_kept_as_hashes(mirror: MirrorServer) -> None:
    created = cli(mirror, "token", "create", "ci-bot", "--scope", "decide", "--json")
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["token"]
    assert secret.startswith("lzt_") and len(secret) > 40
    dump = "\n".join(ledger_rows(mirror.settings))
    assert secret not in dump and "ci-bot" in dump
    assert cli(mirror, "token", "create", "ci-bot").returncode == 5
    assert cli(mirror, "token", "revoke", "ci-bot").returncode == 0
    assert cli(mirror, "token", "revoke", "ci-bot").returncode == 4


def test_remote_mode_through_the_admin_api(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, tmp_path: Path
) -> None:
    _setup(upstream, mirror, clock)
    secret = json.loads(
        cli(mirror, "token", "create", "ops", "--scope", "decide", "--json").stdout
    )["token"]
    viewer = json.loads(cli(mirror, "token", "create", "viewer", "--json").stdout)["token"]

    def remote(token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "LAZARETTO_TOKEN"}
        if token is not None:
            env["LAZARETTO_TOKEN"] = token
        command = [LAZARETTO, *args, "--url", mirror.origin]
        return subprocess.run(command, capture_output=True, text=True, check=False, env=env)

    holds = remote(viewer, "holds", "--json")
    assert holds.returncode == 0, holds.stderr
    assert [row["filename"] for row in json.loads(holds.stdout)] == ["urgent-1.1-py3-none-any.whl"]
    denied = remote(viewer, "promote", "urgent==1.1", "--reason", REASON)
    assert denied.returncode == 6
    assert remote(None, "holds").returncode == 6
    done = remote(secret, "promote", "urgent==1.1", "--reason", REASON)
    assert done.returncode == 0, done.stderr
    assert pip_install(mirror.url, tmp_path / "t", "urgent").ok
    assert installed(tmp_path / "t") == {"urgent": "1.1"}
    audit = json.loads(remote(viewer, "audit", "--project", "urgent", "--json").stdout)
    assert any(e["actor"] == "api:ops" and e["to_state"] == "promoted" for e in audit)
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    blocked = remote(
        None, "block", "urgent==1.1", "--reason", REASON, "--token-file", str(token_file)
    )
    assert blocked.returncode == 0, blocked.stderr
    assert secret not in holds.stdout + holds.stderr + done.stdout + done.stderr


def test_a_remote_command_locked_out_exits_6_in_one_line(mirror: MirrorServer) -> None:
    """A 429 (too many failed authentications) is an authentication refusal: exit 6, as
    the README's table says (it was 1)."""
    guess = "lzt_" + "A" * 43
    for _ in range(10):
        request = urllib.request.Request(
            f"{mirror.origin}/-/admin/api/v1/holds", headers={"Authorization": f"Bearer {guess}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 401
    env = {**os.environ, "LAZARETTO_TOKEN": guess}
    command = [LAZARETTO, "holds", "--url", mirror.origin]
    locked = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert locked.returncode == 6, (locked.returncode, locked.stderr)
    assert locked.stderr.count("\n") == 1 and "Traceback" not in locked.stderr, locked.stderr


# -- a data directory that holds no ledger ---------------------------------------------------
LOCAL_COMMANDS = [
    ["holds"],
    ["explain", "demo==1.0"],
    ["promote", "demo==1.0", "--reason", REASON],
    ["block", "demo", "--reason", REASON],
    ["unblock", "demo==1.0", "--reason", REASON],
    ["exempt", "demo", "--reason", REASON],
    ["unexempt", "demo", "--reason", REASON],
    ["cutoff", "set", "2026-01-01T00:00:00Z", "--reason", REASON],
    ["cutoff", "clear", "--reason", REASON],
    ["audit", "--json"],
    ["token", "create", "ci-bot"],
    ["token", "revoke", "ci-bot"],
    ["deliveries"],
    ["unfreeze", "--reason", REASON],
]


def _without_lazaretto_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("LAZARETTO_"):
            monkeypatch.delenv(key)


@pytest.mark.sqlite_only("a data directory without its SQLite ledger file")
@pytest.mark.parametrize("command", LOCAL_COMMANDS, ids=lambda command: "-".join(command[:2]))
def test_every_local_command_refuses_a_directory_without_a_ledger(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_lazaretto_environment(monkeypatch)
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for data_dir in (empty, missing):
        assert main([*command, "--data-dir", str(data_dir)]) == 4
        out, err = capsys.readouterr()
        assert out == ""
        assert f"no ledger at {data_dir / 'ledger.sqlite3'}" in err and "--data-dir" in err
        assert err.count("\n") == 1
    assert list(empty.iterdir()) == [] and not missing.exists()


@pytest.mark.sqlite_only("an empty file where the SQLite ledger file would be")
def test_a_file_that_is_no_ledger_is_not_turned_into_one(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite3").write_bytes(b"")  # as a crashed copy might leave it
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    done = subprocess.run(
        [LAZARETTO, "holds", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, check=False, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert "no ledger at" in done.stderr and "nothing is held" not in done.stdout
    assert (tmp_path / "ledger.sqlite3").read_bytes() == b""


# -- one policy: the one the mirror enforces --------------------------------------------------
def _explain_hold(mirror: MirrorServer, requirement: str, *more: str) -> tuple[str, str]:
    """hold_until of the one file ``explain`` shows, and what the command said on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    env.update(ledger_env(mirror.settings.data_dir))
    done = subprocess.run(
        [LAZARETTO, "explain", requirement, "--json", "--data-dir", str(mirror.settings.data_dir),
         *more],
        capture_output=True, text=True, check=False, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (file,) = json.loads(done.stdout)["files"]
    return str(file["hold_until"]), done.stderr


def test_explain_shows_the_hold_the_running_mirror_enforces(
    upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    policy = Policy(
        cooling_period=timedelta(minutes=1),
        cooling_overrides={NormalizedName("slowpoke"): timedelta(days=7)},
    )
    settings = settings_for(tmp_path / "data", upstream.url, policy=policy)
    uploaded = NOW - timedelta(seconds=10)
    releases = (("idna", "3.21"), ("slowpoke", "2.0"))
    for project, version in releases:
        upstream.add(project, UpstreamFile(build_wheel(project, "0.1"), OLD))
        upstream.add(project, UpstreamFile(build_wheel(project, version), uploaded))
    with running_mirror(settings, clock) as mirror:
        for project in ("idna", "slowpoke"):
            urllib.request.urlopen(mirror.url + project + "/").close()
        mirror.promote()  # fetched and vetted: only the hold stands in the way
        idna_until, said = _explain_hold(mirror, "idna==3.21")
        slow_until, _ = _explain_hold(mirror, "slowpoke==2.0")
        assert idna_until == format_timestamp(uploaded + timedelta(minutes=1))
        assert slow_until == format_timestamp(uploaded + timedelta(days=7))
        assert said == ""  # the mirror's recorded policy, no guessing to report
        for project, version, until in (
            ("idna", "3.21", idna_until),
            ("slowpoke", "2.0", slow_until),
        ):
            filename = f"{project}-{version}-py3-none-any.whl"
            clock.advance(parse_timestamp(until) - clock.now() - timedelta(microseconds=1))
            urllib.request.urlopen(mirror.url + project + "/").close()  # a fresh look
            assert filename not in mirror.promote().promoted, "promoted before explain's time"
            clock.advance(timedelta(microseconds=1))
            assert filename in mirror.promote().promoted, "still held at explain's time"


# -- explain and audit: pages, filters, order, rejected files, feeds --------------------------
@dataclass(frozen=True)
class _Egg(Dist):
    """A file the upstream lists but pip cannot install (packaging reads no version)."""

    release: str = "10.0"

    @property
    def version(self) -> Version:
        return Version(self.release)


def _json_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_explain_and_audit_page_filter_and_order_as_versions(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    for version in ("1.9", "10.0", "2.0rc1", "1.10", "9.0"):
        upstream.add("many", UpstreamFile(build_wheel("many", version), OLD))
    egg = _Egg("many-10.0-py2.7.egg", b"an egg pip cannot install", b"")
    upstream.add("many", UpstreamFile(egg, OLD, with_metadata=False))
    urllib.request.urlopen(mirror.url + "many/").close()
    secret = _json_of(cli(mirror, "token", "create", "viewer", "--json"))["token"]

    everything = _json_of(cli(mirror, "explain", "many", "--json"))
    assert [(f["version"], f["filename"]) for f in everything["files"]] == [
        ("10.0", "many-10.0-py2.7.egg"),
        ("10.0", "many-10.0-py3-none-any.whl"),
        ("9.0", "many-9.0-py3-none-any.whl"),
        ("2.0rc1", "many-2.0rc1-py3-none-any.whl"),
        ("1.10", "many-1.10-py3-none-any.whl"),
        ("1.9", "many-1.9-py3-none-any.whl"),
    ]
    assert everything["left_out"] == 0
    page = cli(mirror, "explain", "many", "--limit", "2", "--json")
    assert [f["filename"] for f in _json_of(page)["files"]] == [
        "many-10.0-py2.7.egg",
        "many-10.0-py3-none-any.whl",
    ]
    assert _json_of(page)["left_out"] == 4
    assert "4 more files" in page.stderr and "--limit" in page.stderr
    env = {**os.environ, "LAZARETTO_TOKEN": secret}
    remote = subprocess.run(
        [LAZARETTO, "explain", "many", "--limit", "2", "--json", "--url", mirror.origin],
        capture_output=True, text=True, check=False, env=env, timeout=120,
    )  # fmt: skip
    assert _json_of(remote) == _json_of(page)  # one truth, whichever way it is asked

    release = cli(mirror, "explain", "many==10.0")  # as a person reads it
    assert release.returncode == 0, release.stderr
    egg_part = release.stdout.split("many-10.0-py2.7.egg")[1].split("many-10.0-py3")[0]
    assert "state: rejected - " in egg_part and "hold until" not in egg_part
    assert "no malware feed is configured" in release.stdout

    clock.advance(timedelta(hours=2))
    upstream.add("many", UpstreamFile(build_wheel("many", "11.0"), clock.now()))
    urllib.request.urlopen(mirror.url + "many/").close()
    an_hour_ago = format_timestamp(clock.now() - timedelta(hours=1))
    recent = _json_of(cli(mirror, "explain", "many", "--since", an_hour_ago, "--json"))
    assert [f["filename"] for f in recent["files"]] == ["many-11.0-py3-none-any.whl"]
    audit = _json_of(cli(mirror, "audit", "--project", "many", "--since", an_hour_ago, "--json"))
    assert {e["filename"] for e in audit} == {"many-11.0-py3-none-any.whl"}
    latest = cli(mirror, "audit", "--project", "many", "--limit", "2", "--json")
    assert len(_json_of(latest)) == 2 and "earlier events left out" in latest.stderr
    assert _json_of(latest)[-1]["filename"] == "many-11.0-py3-none-any.whl"
    wrong = cli(mirror, "audit", "--since", "yesterday")
    assert wrong.returncode == 2 and "duration before now" in wrong.stderr


def test_explain_accepts_a_project_or_one_release_and_nothing_else(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    _setup(upstream, mirror, clock)
    for spec in ("boto3>=1", "urgent==1.*", "urgent[extra]==1.1"):
        refused = cli(mirror, "explain", spec)
        assert refused.returncode == 2, refused.stderr
        assert "give NAME or NAME==VERSION" in refused.stderr
        assert refused.stderr.count("\n") == 1 and refused.stdout == ""
    assert cli(mirror, "promote", "urgent>=1.1", "--reason", REASON).returncode == 2
    assert cli(mirror, "explain", "urgent==1.1").returncode == 0
    assert cli(mirror, "explain", "urgent==7.0").returncode == 4


def test_explain_reads_the_malware_feeds_the_mirror_uses(
    upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    advisory = {
        "schema_version": "1.6.0",
        "id": "MAL-2026-77",
        "modified": "2026-11-01T00:00:00Z",
        "summary": "Malicious code in fed",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "fed"}, "versions": ["6.6.6"]}],
    }
    (feed / "MAL-2026-77.json").write_text(json.dumps(advisory))
    for version in ("1.0", "6.6.6"):
        upstream.add("fed", UpstreamFile(build_wheel("fed", version), OLD))
    settings = settings_for(tmp_path / "data", upstream.url, osv_feeds=(str(feed),))
    with running_mirror(settings, clock) as mirror:
        urllib.request.urlopen(mirror.url + "fed/").close()
        clean = _json_of(cli(mirror, "explain", "fed==1.0", "--json"))["files"][0]["checks"]
        bad = _json_of(cli(mirror, "explain", "fed==6.6.6", "--json"))["files"][0]["checks"]
    assert [(c["action"], c["summary"]) for c in clean if c["check"] == "feeds"] == [
        ("pass", "no advisory names this release (1 records from 1 malware feed)")
    ]
    assert [c["action"] for c in bad if c["check"] == "feeds"] == ["block"]


def test_retry_holds_a_file_a_fetch_refused_again_and_it_is_fetched(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    dist = build_wheel("refetch", "1.0")
    wrong = dist.data[:-8] + b"X" * 8  # the listed size, another digest
    upstream.add("refetch", UpstreamFile(dist, NOW - timedelta(hours=1), serve_bytes=wrong))
    urllib.request.urlopen(mirror.url + "refetch/").close()
    mirror.promote()
    assert mirror.services is not None
    ledger = mirror.services.ledger
    record = ledger.file(NormalizedName("refetch"), dist.filename)
    assert record is not None and record.state is FileState.REJECTED
    upstream.add("refetch", UpstreamFile(dist, NOW - timedelta(hours=1)))  # fixed upstream

    assert cli(mirror, "retry", "never-seen==1.0", "--reason", REASON).returncode == 4
    done = cli(mirror, "retry", dist.filename, "--reason", REASON, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"filename": dist.filename, "before": "rejected", "after": "held"}
    ]
    again = cli(mirror, "retry", "refetch==1.0", "--reason", REASON)
    assert again.returncode == 5 and "refused by a fetch" in again.stderr
    mirror.promote()
    record = ledger.file(NormalizedName("refetch"), dist.filename)
    assert record is not None and record.state is FileState.HELD and record.stored
    audit = json.loads(cli(mirror, "audit", "--project", "refetch", "--json").stdout)
    assert any(
        e["actor"] == "cli:alice" and e["to_state"] == "held" and REASON in e["reason"]
        for e in audit
    )
    assert any(entry.payload.get("from_state") == "rejected" for entry in ledger.outbox())
