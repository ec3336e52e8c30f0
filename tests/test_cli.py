"""The ``lazaretto`` command as users run it: a separate process, real flags and files."""

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from quarantine.ledger_sqlite import SqliteLedger
from support.dists import build_wheel
from support.installers import installed, pip_install
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
    assert (tmp_path / "data" / "ledger.sqlite3").is_file()


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
    SqliteLedger(tmp_path / "ledger.sqlite3").close()  # as a mirror's first start makes it
    done = subprocess.run(
        [LAZARETTO, "holds", "--config", str(example), "--data-dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
