"""The ``lazaretto`` command as users run it: a separate process, real flags and files."""

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from quarantine.clock import format_timestamp
from quarantine.duration import parse_duration
from quarantine.ledger.sqlite import SqliteLedger
from support.dists import build_wheel
from support.installers import installed, pip_install
from support.ledger_backend import command_env, lazaretto_env, mirrors_use_postgres, open_ledger
from support.process import LAZARETTO, lazaretto_serve
from support.upstream import Upstream, UpstreamFile


def test_serve_installs_old_and_hides_new_files(upstream: Upstream, tmp_path: Path) -> None:
    # Upload times relative to the real clock: that process uses the system clock.
    now = datetime.now(UTC)
    upstream.add("served", UpstreamFile(build_wheel("served", "1.0"), now - timedelta(days=300)))
    upstream.add("served", UpstreamFile(build_wheel("served", "2.0"), now - timedelta(hours=2)))
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--upstream",
        upstream.url,
        "--cooling-period",
        "3d",
    ]
    with lazaretto_serve(args) as origin:
        outcome = pip_install(origin + "/simple/", tmp_path / "t", "served")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"served": "1.0"}


def test_environment_variables_configure_serve(upstream: Upstream, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    upstream.add("envy", UpstreamFile(build_wheel("envy", "1.0"), now - timedelta(days=300)))
    upstream.add("envy", UpstreamFile(build_wheel("envy", "2.0"), now - timedelta(hours=2)))
    env = {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_COOLING_PERIOD": "1h",  # 2.0 is two hours old: past this cooling period
        "LAZARETTO_VETTING_WINDOW": "0s",  # ...and so established, listed at once
    }
    with lazaretto_serve([], env) as origin:
        outcome = pip_install(origin + "/simple/", tmp_path / "t", "envy")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {"envy": "2.0"}
    # The default ledger is a file in the data directory (LAZARETTO_TEST_LEDGER aside).
    assert (tmp_path / "data" / "ledger.sqlite3").is_file() != mirrors_use_postgres()


def _serve_with_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "lazaretto.toml"
    config.write_text(text)
    return subprocess.run(
        [LAZARETTO, "serve", "--config", str(config), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_malformed_config_names_the_key_and_line(tmp_path: Path) -> None:
    done = _serve_with_config(
        tmp_path,
        '# lazaretto\nupstream = "http://127.0.0.1:9/simple/"\n\ncooling_period = "three days"\n',
    )
    assert done.returncode == 3
    assert "line 4" in done.stderr and "cooling_period" in done.stderr
    assert "lazaretto.toml" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_toml_and_unknown_keys_are_explained(tmp_path: Path) -> None:
    broken = _serve_with_config(tmp_path, "port = \n")
    assert broken.returncode == 3 and "not valid TOML" in broken.stderr
    unknown = _serve_with_config(tmp_path, '[exemptions]\nacme = ""\n')
    assert unknown.returncode == 3
    assert "line 2" in unknown.stderr and "exemptions.acme" in unknown.stderr
    assert "reason" in unknown.stderr


def test_per_project_settings_from_the_config_file(upstream: Upstream, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for project in ("internal-tool", "slowpoke", "ordinary"):
        upstream.add(project, UpstreamFile(build_wheel(project, "1.0"), now - timedelta(days=300)))
        upstream.add(project, UpstreamFile(build_wheel(project, "2.0"), now - timedelta(days=2)))
    config = tmp_path / "lazaretto.toml"
    config.write_text(
        f'upstream = "{upstream.url}"\n'
        'cooling_period = "1d"\n'
        'vetting_window = "0s"\n'
        "[projects.slowpoke]\n"
        'cooling_period = "7d"\n'
        "[exemptions]\n"
        '"Internal_Tool" = "built by our own CI, never on the public index"\n'
    )
    with lazaretto_serve(["--config", str(config), "--data-dir", str(tmp_path / "d")]) as origin:
        for project, version in (
            ("internal-tool", "2.0"),
            ("slowpoke", "1.0"),
            ("ordinary", "2.0"),
        ):
            target = tmp_path / project
            outcome = pip_install(origin + "/simple/", target, project)
            assert outcome.ok, outcome.output
            assert installed(target) == {project: version}, project


def test_version_and_help() -> None:
    done = subprocess.run([LAZARETTO, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("lazaretto ")
    usage = subprocess.run(
        [LAZARETTO, "serve", "--help"], capture_output=True, text=True, check=False
    )
    for flag in ("--config", "--host", "--port", "--data-dir", "--upstream", "--cooling-period"):
        assert flag in usage.stdout


def test_the_shipped_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "lazaretto.example.toml"
    open_ledger(tmp_path).close()  # as a mirror's first start makes it
    done = subprocess.run(
        [LAZARETTO, "holds", "--config", str(example), "--data-dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=False,
        env=lazaretto_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARETTO_")}
    return subprocess.run(
        [LAZARETTO, *args], capture_output=True, text=True, check=False, timeout=120,
        env=command_env(args, env),
    )  # fmt: skip


def _hold_until(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    (file,) = json.loads(done.stdout)["files"]
    return str(file["hold_until"])


def test_explain_and_the_server_agree_on_the_global_and_per_project_periods(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The issue's case: a server started with --cooling-period 1m, explain run without it."""
    uploaded = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    for project, version in (("idna", "3.21"), ("slowpoke", "2.0")):
        upstream.add(project, UpstreamFile(build_wheel(project, version), uploaded))
    config = tmp_path / "server.toml"
    config.write_text(f'upstream = "{upstream.url}"\n[projects.slowpoke]\ncooling_period = "7d"\n')
    data = str(tmp_path / "data")
    serve = ["--config", str(config), "--data-dir", data, "--cooling-period", "1m"]
    with lazaretto_serve(serve) as origin:
        for project in ("idna", "slowpoke"):
            urllib.request.urlopen(f"{origin}/simple/{project}/").close()
        token = json.loads(_cli("token", "create", "viewer", "--json", "--data-dir", data).stdout)
        (tmp_path / "token").write_text(token["token"])
        remote = ["--url", origin, "--token-file", str(tmp_path / "token")]
        for requirement, period in (("idna==3.21", "1m"), ("slowpoke==2.0", "7d")):
            expected = format_timestamp(uploaded + parse_duration(period))
            local = _cli("explain", requirement, "--json", "--data-dir", data)
            assert _hold_until(local) == expected, requirement
            assert local.stderr == ""
            assert _hold_until(_cli("explain", requirement, "--json", *remote)) == expected
        holds = json.loads(_cli("holds", "--json", "--data-dir", data).stdout)
        assert {row["filename"]: row["hold_until"] for row in holds} == {
            "idna-3.21-py3-none-any.whl": format_timestamp(uploaded + timedelta(minutes=1)),
            "slowpoke-2.0-py3-none-any.whl": format_timestamp(uploaded + timedelta(days=7)),
        }
        # An admin's own config file (edited, not yet applied) does not change the answer:
        # the mirror enforces what it started with, and the command says so.
        edited = tmp_path / "edited.toml"
        edited.write_text('cooling_period = "3d"\n')
        told = _cli("explain", "idna==3.21", "--json", "--data-dir", data, "--config", str(edited))
        assert _hold_until(told) == format_timestamp(uploaded + timedelta(minutes=1))
        assert "edited.toml" in told.stderr and "differs" in told.stderr
        assert told.stderr.count("\n") == 1


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` made unwritable for this process, as a read-only file or mount would be:
    immutable (root ignores permission bits), else without write permission."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("needs chattr to make a file read-only for root")
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip("this system cannot make a file immutable")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)


@pytest.mark.sqlite_only("a read-only SQLite ledger file")
@pytest.mark.parametrize(
    "command",
    [
        ["block", "demo", "--reason", "worm found in it"],
        ["exempt", "demo", "--reason", "our own fork, built here"],
        ["unfreeze", "--reason", "the clock is right again"],
    ],
)
def test_a_decision_on_a_read_only_ledger_is_one_line_and_exit_3(
    tmp_path: Path, command: list[str]
) -> None:
    """Before: a sqlite3 traceback (and exit 0 or 1)."""
    data = tmp_path / "data"
    data.mkdir()
    SqliteLedger(data / "ledger.sqlite3").close()
    env = {**os.environ, "LAZARETTO_UPSTREAM": "http://127.0.0.1:9/simple/"}
    with _read_only(data / "ledger.sqlite3"):
        done = subprocess.run(
            [LAZARETTO, *command, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "readonly" in done.stderr and "writable" in done.stderr
