"""Index tokens: real pip and uv present them as installers do (the index URL, .netrc);
``index_auth`` decides whether anonymous installs still work."""

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_exposure import _status, flush_downloads, index_token, lazaretto, with_token

from conftest import NOW
from mirror.errors import ConfigError
from mirror.http.index_auth import presented_token
from mirror.http.user_agent import installer_of
from mirror.settings import load_settings
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import installed, pip_install, uv_install
from support.mirror import MirrorServer, running_mirror, settings_for
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
PROJECT = "guarded"


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
def guarded(
    upstream: Upstream, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MirrorServer]:
    upstream.add(PROJECT, UpstreamFile(build_wheel(PROJECT, "1.0"), OLD))
    mode = getattr(request, "param", "required")
    settings = settings_for(tmp_path / "data", upstream.url, index_auth=mode)
    with running_mirror(settings, clock) as mirror:
        yield mirror


def test_required_tokens_refuse_anonymous_installs_and_admit_pip_and_uv(
    guarded: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, headers = _status(guarded.url + PROJECT + "/")
    assert status == 401
    assert headers["www-authenticate"].startswith('Basic realm="lazaretto"')
    assert _status(guarded.origin + "/healthz")[0] == 200  # health checks stay open
    # ... by their exact paths: a project named like them is an index page like any other.
    assert _status(guarded.origin + "/healthz-x/json")[0] == 401
    assert _status(guarded.origin + "/readyzfoo/json")[0] == 401
    refused = pip_install(guarded.url, tmp_path / "none", PROJECT)
    assert not refused.ok, refused.output  # pip reads a 401 page as "no versions"

    token = index_token(tmp_path / "data", "laptops")
    outcome = pip_install(with_token(guarded, "laptops", token), tmp_path / "pip", PROJECT)
    assert outcome.ok, outcome.output
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login laptops password {token}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    outcome = uv_install(guarded.url, tmp_path / "uv", PROJECT)
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "pip") == installed(tmp_path / "uv") == {PROJECT: "1.0"}

    flush_downloads(guarded)
    report = lazaretto("exposure", PROJECT, "--data-dir", str(tmp_path / "data"), "--json")
    rows = json.loads(report.stdout)["downloads"]
    assert {(row["installer"], row["identity"]) for row in rows} == {
        ("pip", "laptops"),
        ("uv", "laptops"),
    }
    # An index token opens the index only, never the admin API.
    admin = guarded.origin + "/-/admin/api/v1/holds"
    assert _status(admin, {"Authorization": f"Bearer {token}"})[0] == 403


def test_a_revoked_token_is_refused_once_its_cached_check_expires(
    guarded: MirrorServer, tmp_path: Path, clock: FakeClock
) -> None:
    token = index_token(tmp_path / "data", "old-runner")
    page = guarded.url + PROJECT + "/"
    assert _status(page, _basic("old-runner", token))[0] == 200
    revoked = lazaretto("token", "revoke", "old-runner", "--data-dir", str(tmp_path / "data"))
    assert revoked.returncode == 0, revoked.stderr
    clock.advance(timedelta(seconds=11))  # past the verified-token cache
    status, headers = _status(page, _basic("old-runner", token))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize("guarded", ["optional"], indirect=True)
def test_optional_tokens_let_anonymous_in_but_refuse_a_bad_token(
    guarded: MirrorServer, tmp_path: Path
) -> None:
    page = guarded.url + PROJECT + "/"
    assert _status(page)[0] == 200
    assert _status(page, _basic("someone", "lzt_not-a-real-token-at-all"))[0] == 401
    read_token = lazaretto("token", "create", "auditor", "--scope", "read", "--data-dir",
                           str(tmp_path / "data"), "--json")  # fmt: skip
    admin_token = json.loads(read_token.stdout)["token"]
    assert _status(page, _basic("auditor", admin_token))[0] == 401  # admin tokens: not here


@pytest.mark.parametrize("guarded", ["off"], indirect=True)
def test_with_index_auth_off_credentials_are_neither_asked_nor_checked(
    guarded: MirrorServer,
) -> None:
    page = guarded.url + PROJECT + "/"
    assert _status(page, _basic("anyone", "anything"))[0] == 200


def test_the_token_is_the_password_or_else_the_user_name() -> None:
    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert presented_token(header("name:lzt_abc")) == "lzt_abc"
    assert presented_token(header("lzt_abc:")) == "lzt_abc"
    assert presented_token("Bearer lzt_abc") == "lzt_abc"
    assert presented_token("Basic !!!not-base64") is None
    assert presented_token("Digest x") is None
    assert presented_token("Basic " + "A" * 5000) is None


# -- what installers say about themselves -----------------------------------------------------

PIP_AGENT = (
    'pip/24.2 {"ci":true,"cpu":"x86_64","distro":{"id":"noble","libc":{"lib":"glibc",'
    '"version":"2.39"},"name":"Ubuntu","version":"24.04"},"implementation":{"name":"CPython",'
    '"version":"3.12.3"},"installer":{"name":"pip","version":"24.2"},"openssl_version":'
    '"OpenSSL 3.0.13","python":"3.12.3","rustc_version":null,"setuptools_version":"70.0.0",'
    '"system":{"name":"Linux","release":"6.8.0-45-generic"}}'
)
UV_AGENT = (
    'uv/0.5.4 {"installer":{"name":"uv","version":"0.5.4"},"python":"3.11.7",'
    '"implementation":{"name":"CPython","version":"3.11.7"},"distro":{"name":"Debian GNU/Linux",'
    '"version":"12","id":"bookworm","libc":null},"system":{"name":"Linux","release":"6.1.0"},'
    '"cpu":"aarch64","openssl_version":null,"setuptools_version":null,"rustc_version":null,'
    '"ci":null}'
)


def test_pip_and_uv_user_agents_are_read() -> None:
    pip = installer_of(PIP_AGENT)
    assert (pip.name, pip.version, pip.python, pip.cpu, pip.ci) == (
        "pip", "24.2", "3.12.3", "x86_64", True,
    )  # fmt: skip
    assert pip.distro == "Ubuntu 24.04" and pip.system == "Linux 6.8.0-45-generic"
    assert pip.implementation == "CPython 3.12.3"
    uv = installer_of(UV_AGENT)
    assert (uv.name, uv.version, uv.python, uv.cpu, uv.ci) == (
        "uv",
        "0.5.4",
        "3.11.7",
        "aarch64",
        False,
    )
    assert installer_of("curl/8.5.0").name == "curl" and installer_of("curl/8.5.0").python == ""


@pytest.mark.parametrize(
    "agent",
    [
        None,
        "",
        'pip/1 {"a":' + "[" * 4000,  # nesting that exhausts the parser's stack
        "pip/1 {" + '"a":1,' * 2000 + '"b":2}',  # over the length bound
        'pip/1 {"installer": [1, 2], "python": {"x": 1}, "cpu": 7, "ci": "yes"}',
        'pip/1 {"python": "3.12\\u001b[31m\\nEVIL", "cpu": "' + "x" * 500 + '"}',
        "pip/1 not json at all {",
        "\x00\xff" * 10,
    ],
)
def test_hostile_user_agents_never_raise_and_keep_only_short_clean_text(agent: str | None) -> None:
    found = installer_of(agent)
    for value in (found.name, found.version, found.python, found.system, found.distro, found.cpu):
        assert len(value) <= 100 and value.isprintable() and "\n" not in value
    assert found.ci is False


def test_index_auth_takes_only_its_three_modes() -> None:
    assert load_settings(None, {"LAZARETTO_INDEX_AUTH": "required"}, {}).index_auth == "required"
    with pytest.raises(ConfigError, match="LAZARETTO_INDEX_AUTH"):
        load_settings(None, {"LAZARETTO_INDEX_AUTH": "yes"}, {})
