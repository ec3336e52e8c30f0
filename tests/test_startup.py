"""``lazaretto serve`` and ``lazaretto work`` as users start them: real processes.

A setting that cannot be used stops the command with one line on stderr and exit code 3,
never a traceback; a good start logs one line saying what was chosen.
"""

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirror import __version__
from support.dists import build_wheel
from support.ledger_backend import command_env
from support.process import LAZARETTO, free_port, stop, wait_until_up
from support.upstream import Upstream, UpstreamFile

UNUSED_UPSTREAM = "http://127.0.0.1:9/simple/"  # never reached: these runs stop before


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This machine's environment without LAZARETTO_* settings that would leak in."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAZARETTO_")}
    return {**env, **(extra or {})}


def _refused(
    command: list[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [LAZARETTO, *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_clean_env(env),
    )
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("lazaretto: configuration error: ")
    return done


def _serve_refused(
    tmp_path: Path, text: str | bytes | None, *flags: str, env: Mapping[str, str] | None = None
) -> str:
    command = ["serve", "--upstream", UNUSED_UPSTREAM, "--port", str(free_port())]
    if text is not None:
        config = tmp_path / "lazaretto.toml"
        if isinstance(text, bytes):
            config.write_bytes(text)
        else:
            config.write_text(text, encoding="utf-8")
        command += ["--config", str(config)]
    if "--data-dir" not in flags:
        command += ["--data-dir", str(tmp_path / "data")]
    return _refused([*command, *flags], env).stderr.strip()


# -- refused, one line, exit 3 ----------------------------------------------------------------


def test_a_bare_number_cooling_period_stops_serve(tmp_path: Path) -> None:
    line = _serve_refused(tmp_path, "# lazaretto\nport = 8070\ncooling_period = 72\n")
    assert "lazaretto.toml, line 3: cooling_period: " in line
    assert 'write "72h"' in line
    assert not (tmp_path / "data").exists()  # refused before anything is created


def test_a_bare_number_from_the_environment_or_a_flag_stops_serve(tmp_path: Path) -> None:
    from_env = _serve_refused(tmp_path, None, env={"LAZARETTO_COOLING_PERIOD": "72"})
    assert "LAZARETTO_COOLING_PERIOD: " in from_env and 'write "72h"' in from_env
    from_flag = _serve_refused(tmp_path, None, "--cooling-period", "72")
    assert "--cooling-period: " in from_flag and 'write "72h"' in from_flag


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('promote_interval = "0s"\n', "line 1: promote_interval: 0s is out of range"),
        ("max_page_bytes = -1\n", "line 1: max_page_bytes: -1 is out of range"),
        ("read_timeout_seconds = 0\n", "line 1: read_timeout_seconds: 0 is out of range"),
        ('log_level = "loud"\n', "line 1: log_level: 'loud' is not one of critical, error"),
        (b'host = "caf\xe9"\n', "line 1: not UTF-8 text"),
    ],
)
def test_a_bad_value_stops_serve_in_one_line(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    assert expected in _serve_refused(tmp_path, text)


def test_an_out_of_range_variable_stops_serve(tmp_path: Path) -> None:
    line = _serve_refused(tmp_path, None, env={"LAZARETTO_FETCH_CONCURRENCY": "0"})
    assert "LAZARETTO_FETCH_CONCURRENCY: 0 is out of range" in line


def test_a_data_directory_that_is_a_file_stops_serve_and_work(tmp_path: Path) -> None:
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a directory")
    line = _serve_refused(tmp_path, None, "--data-dir", str(in_the_way))
    assert line.endswith(f"data_dir: {in_the_way} is a file, not a directory")
    work = _refused(
        ["work", "--upstream", UNUSED_UPSTREAM, "--data-dir", str(in_the_way)],
        {"LAZARETTO_VETTING_WORKER": "separate"},
    )
    assert f"data_dir: {in_the_way} is a file" in work.stderr
    assert in_the_way.read_text() == "not a directory"


def test_a_data_directory_under_a_file_stops_serve(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    below = tmp_path / "file" / "data"
    line = _serve_refused(tmp_path, None, "--data-dir", str(below))
    assert line.endswith(f"data_dir: cannot create {below}: a file is in the way of its path")


def test_a_data_directory_that_cannot_be_created_says_why(tmp_path: Path) -> None:
    too_long = tmp_path / ("d" * 300)
    line = _serve_refused(tmp_path, None, "--data-dir", str(too_long))
    assert f"data_dir: cannot create {too_long}: File name too long" in line


def test_a_data_directory_without_write_permission_stops_serve(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root writes through permission bits (CI runs as root); sysfs refuses it all the same.
        line = _serve_refused(tmp_path, None, "--data-dir", "/sys")
        assert "data_dir: cannot write in /sys: Permission denied" in line
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        line = _serve_refused(tmp_path, None, "--data-dir", str(locked))
    finally:
        locked.chmod(0o700)
    assert f"data_dir: cannot write in {locked}: Permission denied" in line


# -- the start-up line ------------------------------------------------------------------------


@contextmanager
def _running(
    command: list[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [LAZARETTO, *command],
            env=command_env(command, _clean_env(env)),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        stop(process)


def _startup_line(log: Path, seconds: float = 60) -> str:
    """The one start-up line, once the process has written it."""
    marker = f"lazaretto {__version__}: "
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if marker in line]
        if lines:
            assert len(lines) == 1, lines
            return lines[0].split(marker, 1)[1]
        time.sleep(0.1)
    raise AssertionError(f"no start-up line in {seconds} s:\n{log.read_text()}")


def test_serve_logs_what_it_chose_in_one_line(upstream: Upstream, tmp_path: Path) -> None:
    config = tmp_path / "lazaretto.toml"
    config.write_text('cooling_period = "5d"\n', encoding="utf-8")
    port = free_port()
    data = tmp_path / "data"
    command = ["serve", "--config", str(config), "--data-dir", str(data), "--port", str(port)]
    log = tmp_path / "serve.log"
    with _running([*command, "--upstream", upstream.url.rstrip("/")], {}, log) as process:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        line = _startup_line(log)
    assert line == (
        f"upstream={upstream.url} data_dir={data} cooling_period=5d config={config} "
        f"vetting_worker=child listening=http://127.0.0.1:{port}"
    )


def test_serve_names_the_index_pip_gave_it(upstream: Upstream, tmp_path: Path) -> None:
    """No upstream configured: the one from pip's configuration, and it is the one used."""
    wheel = build_wheel("from-pip", "1.0")
    upstream.add("from-pip", UpstreamFile(wheel, datetime.now(UTC) - timedelta(days=300)))
    port = free_port()
    log = tmp_path / "serve.log"
    command = ["serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    env = {"PIP_INDEX_URL": upstream.url, "LAZARETTO_COOLING_PERIOD": "36h"}
    with _running(command, env, log) as process:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        line = _startup_line(log)
        page = _get(f"http://127.0.0.1:{port}/simple/from-pip/")
    assert wheel.filename in page.decode()
    assert f"upstream={upstream.url} (pip's index) " in line
    assert " cooling_period=36h config=none " in line


def test_work_logs_what_it_chose_without_an_address(upstream: Upstream, tmp_path: Path) -> None:
    log = tmp_path / "work.log"
    data = tmp_path / "data"
    command = ["work", "--upstream", upstream.url, "--data-dir", str(data)]
    env = {"LAZARETTO_VETTING_WORKER": "separate"}
    with _running(command, env, log):
        line = _startup_line(log)
    assert line == (
        f"upstream={upstream.url} data_dir={data} cooling_period=3d config=none "
        "vetting_worker=separate"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body
