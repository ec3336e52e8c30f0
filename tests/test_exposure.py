"""Who installed it: the download log, `lazaretto exposure`, withdrawal notices that carry
the exposure, `lazaretto check` on a lock, and index tokens, with real pip and uv.

The mirror, the upstream, the webhook receiver and the installers all talk over real
sockets on 127.0.0.1; the admin commands are the real `lazaretto` entry point.
"""

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName
from test_ledger_failover import eventually

from conftest import NOW
from mirror.notify.config import NotifyTarget
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import clean_env, installed, pip_install, uv_install
from support.ledger_backend import command_env
from support.mirror import MirrorServer, running_mirror, settings_for
from support.process import LAZARETTO, lazaretto_serve
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
OLD_AGE = timedelta(days=400)  # for a server on the system clock: established long ago
SECRET_ENV = "EXPOSURE_TEST_HOOK_SECRET"
PROJECT = "feedme"
BAD = "feedme-1.1-py3-none-any.whl"


class _Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hooks", (_Hooks,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _advisory(directory: Path, ident: str, project: str, versions: list[str]) -> None:
    record = {
        "id": ident,
        "modified": "2026-11-01T00:00:00Z",
        "summary": f"Malicious code in {project}",
        "affected": [{"package": {"ecosystem": "PyPI", "name": project}, "versions": versions}],
    }
    (directory / f"{ident}.json").write_text(json.dumps(record))


def lazaretto(
    *args: str, token: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**clean_env(), **(env or {}), **({"LAZARETTO_TOKEN": token} if token else {})}
    return subprocess.run(
        [LAZARETTO, *args], capture_output=True, text=True, timeout=60,
        env=command_env(args, environment),
        check=False,
    )  # fmt: skip


def index_token(data_dir: Path, name: str) -> str:
    made = lazaretto("token", "create", name, "--scope", "index:read", "--data-dir",
                     str(data_dir), "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def with_token(mirror: MirrorServer, name: str, token: str) -> str:
    return f"http://{name}:{token}@127.0.0.1:{mirror.port}/simple/"


def flush_downloads(mirror: MirrorServer) -> None:
    assert mirror.services is not None and mirror.services.downloads is not None
    mirror.call(mirror.services.downloads.flush())


def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return int(response.status), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


# -- done means ------------------------------------------------------------------------------


def test_a_withdrawn_file_names_who_installed_it(
    upstream: Upstream,
    clock: FakeClock,
    tmp_path: Path,
    hooks: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for version in ("1.0", "1.1"):
        upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, version), OLD))
    feed_dir = tmp_path / "osv"
    feed_dir.mkdir()
    hook_url, received = hooks
    monkeypatch.setenv(SECRET_ENV, "exposure-test-secret-of-at-least-32-bytes")
    target = NotifyTarget("webhook", "security", url=hook_url, secret_env=SECRET_ENV,
                          allow_private=True, group_seconds=0)  # fmt: skip
    data_dir = tmp_path / "data"
    settings = settings_for(data_dir, upstream.url, osv_feeds=(str(feed_dir),),
                            notify=(target,), index_auth="optional")  # fmt: skip
    with running_mirror(settings, clock) as mirror:
        token = index_token(data_dir, "build-farm")
        # pip with a token in the index URL, uv without one: both install 1.1.
        outcome = pip_install(with_token(mirror, "build-farm", token), tmp_path / "a", PROJECT)
        assert outcome.ok, outcome.output
        outcome = uv_install(mirror.url, tmp_path / "b", PROJECT)
        assert outcome.ok, outcome.output
        assert installed(tmp_path / "a") == installed(tmp_path / "b") == {PROJECT: "1.1"}
        flush_downloads(mirror)

        # A malware feed names 1.1: withdrawn at the next refresh.
        _advisory(feed_dir, "MAL-2026-0042", PROJECT, ["1.1"])
        assert mirror.services is not None and mirror.services.notifier is not None
        mirror.call(mirror.services.refresher.refresh_once())
        record = mirror.services.ledger.file(NormalizedName(PROJECT), BAD)
        assert record is not None and record.state is FileState.WITHDRAWN
        assert mirror.call(mirror.services.notifier.run_once()) == 1

        report = lazaretto("exposure", f"{PROJECT}==1.1", "--data-dir", str(data_dir), "--json")
        assert report.returncode == 0, report.stderr
        found = json.loads(report.stdout)
        assert found["summary"]["downloads"] == 2
        by_installer = {row["installer"]: row for row in found["downloads"]}
        assert set(by_installer) == {"pip", "uv"}
        assert by_installer["pip"]["identity"] == "build-farm"
        assert by_installer["uv"]["identity"] is None
        for row in by_installer.values():
            assert row["filename"] == BAD and row["client"] == "127.0.0.1"
            assert row["python"].count(".") == 2 and row["installer_version"]
        table = lazaretto("exposure", f"{PROJECT}==1.1", "--data-dir", str(data_dir))
        assert "2 downloads by 2 clients" in table.stdout and "build-farm" in table.stdout

        (notice,) = [hook["data"] for hook in received if hook["data"]["kind"] == "withdrawn"]
        assert notice["exposure"]["downloads"] == 2 and notice["exposure"]["clients"] == 2
        assert notice["exposure"]["first"] and notice["exposure"]["last"]
        assert f"lazaretto exposure {PROJECT}==1.1" in notice["commands"]
        assert "Served before: 2 downloads by 2 clients" in notice["text"]

        lock = tmp_path / "requirements.txt"
        lock.write_text(f"{PROJECT}==1.1 \\\n    --hash=sha256:{record.sha256}\n")
        checked = lazaretto("check", str(lock), "--data-dir", str(data_dir))
        assert checked.returncode == 7, checked.stdout + checked.stderr
        assert f"{PROJECT}==1.1, which is withdrawn" in checked.stderr
        assert "MAL-2026-0042" in checked.stdout
        # The same answers from the admin API, with a read token.
        made = lazaretto("token", "create", "responder", "--data-dir", str(data_dir), "--json")
        reader = json.loads(made.stdout)["token"]
        remote = lazaretto("check", str(lock), "--url", mirror.origin, "--json", token=reader)
        assert remote.returncode == 7, remote.stderr
        assert json.loads(remote.stdout)["pins"][0]["state"] == "withdrawn"
        remote = lazaretto("exposure", PROJECT, "--url", mirror.origin, "--csv", token=reader)
        assert remote.returncode == 0, remote.stderr
        lines = remote.stdout.splitlines()
        assert lines[0].startswith("project,version,filename,client,identity,installer")
        assert len(lines) == 3 and any(",build-farm,pip," in line for line in lines)

        lock.write_text(f"{PROJECT}==1.0\n")
        checked = lazaretto("check", str(lock), "--data-dir", str(data_dir))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_on_postgresql_the_served_download_is_in_the_ledgers_database(
    upstream: Upstream, postgres_url: str, tmp_path: Path
) -> None:
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "1.0"), datetime.now(UTC) - OLD_AGE))
    env = {
        "LAZARETTO_LEDGER": postgres_url,
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "serving"),
    }
    migrated = lazaretto("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    with lazaretto_serve([], env) as origin:
        outcome = pip_install(f"{origin}/simple/", tmp_path / "site", PROJECT)
        assert outcome.ok, outcome.output

        # Another data directory: the answer comes from the database, not a local file.
        elsewhere = {**env, "LAZARETTO_DATA_DIR": str(tmp_path / "cli")}

        def pip_listed() -> list[dict[str, Any]]:
            report = lazaretto("exposure", f"{PROJECT}==1.0", "--json", env=elsewhere)
            assert report.returncode == 0, report.stderr
            return list(json.loads(report.stdout)["downloads"])

        eventually(lambda: pip_listed() != [], "the download is recorded (flushed each second)")
    (row,) = pip_listed()
    assert row["filename"] == f"{PROJECT}-1.0-py3-none-any.whl" and row["downloads"] == 1
    assert (row["installer"], row["client"], row["identity"]) == ("pip", "127.0.0.1", None)
    assert row["python"].count(".") == 2 and row["installer_version"]
    assert not (tmp_path / "serving" / "downloads.sqlite3").exists()
