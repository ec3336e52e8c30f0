"""``mirror.settings.load_settings`` and ``quarantine.duration.parse_duration``.

Precedence, lowest first: defaults, the TOML file, LAZARETTO_* variables, flags. A bad
value is a ConfigError that says where it came from: file, line and key, or the variable,
or the flag.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName

from mirror.errors import ConfigError
from mirror.settings import DEFAULT_PORT, ENV_KEYS, Settings, load_settings
from quarantine.duration import format_duration, parse_duration
from quarantine.errors import InvalidDuration
from quarantine.evidence import Action
from quarantine.policy import Exemption, Policy


def config(tmp_path: Path, text: str, name: str = "lazaretto.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(
    path: Path | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Settings:
    return load_settings(path, env or {}, flags or {})


def config_error(
    path: Path | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path, env, flags)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72h", timedelta(hours=72)),
        ("3d", timedelta(days=3)),
        ("P3D", timedelta(days=3)),
        ("p3d", timedelta(days=3)),
        ("1d12h", timedelta(hours=36)),
        ("1d 12h", timedelta(hours=36)),
        ("PT36H", timedelta(hours=36)),
        ("P1DT12H", timedelta(hours=36)),
        ("P1W", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        ("90m", timedelta(minutes=90)),
        ("PT90M", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("PT45S", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        ("P0.5D", timedelta(hours=12)),
        ("0s", timedelta(0)),
        ("  72H  ", timedelta(hours=72)),
        ("3 d", timedelta(days=3)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "h",
        "3x",
        "-3d",
        "+3d",
        "3d garbage",
        "three days",
        "1e3h",
        "P",
        "PT",
        "P1DT",
        "P1M",  # months have no fixed length
        "P1Y",
        "PT1H2D",
        "P-1D",
        "3dd",
        "d3",
    ],
)
def test_parse_duration_rejects_with_a_helpful_message(text: str) -> None:
    with pytest.raises(InvalidDuration) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert repr(text.strip()) in message
    assert "'72h'" in message and "'P3D'" in message


@pytest.mark.parametrize(
    ("text", "fix"),
    [("72", '"72h"'), (" 1.5 ", '"1.5h"'), ("0", '"0s"'), ("259200", '"3d"'), ("3600", '"1h"')],
)
def test_parse_duration_refuses_a_bare_number_and_says_how_to_write_it(text: str, fix: str) -> None:
    with pytest.raises(InvalidDuration) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert repr(text.strip()) in message and "has no unit" in message
    assert f"write {fix}" in message


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_parse_duration_rejects_empty(text: str) -> None:
    with pytest.raises(InvalidDuration, match="empty duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999d", "P99999999999D"])
def test_parse_duration_out_of_range_is_an_invalid_duration(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=72), "3d"),
        (timedelta(hours=36), "36h"),
        (timedelta(days=14), "2w"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=45), "45s"),
    ],
)
def test_format_duration_round_trips(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


# -- precedence ---------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load()
    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT
    assert settings.upstream == ""
    assert settings.policy == Policy()
    assert settings.policy.cooling_period == timedelta(hours=72)
    assert settings.policy.cutoff is None


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        port = 1111
        host = "127.0.0.2"
        cooling_period = "1d"
        vetting_window = "10d"
        """,
    )
    env = {"LAZARETTO_PORT": "2222", "LAZARETTO_COOLING_PERIOD": "2d"}
    flags = {"port": "3333", "host": None}
    assert load(path).port == 1111
    assert load(path, env).port == 2222
    assert load(path, env, flags).port == 3333
    assert load(None, env).port == 2222
    assert load(None, None, flags).port == 3333

    both = load(path, env, flags)
    assert both.host == "127.0.0.2"  # a None flag is "not given"
    assert both.policy.cooling_period == timedelta(days=2)  # env over file
    assert both.policy.vetting_window == timedelta(days=10)  # file over default
    assert load(path, env, {"cooling_period": "P5D"}).policy.cooling_period == timedelta(days=5)


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = config(tmp_path, 'host = "0.0.0.0"\n')
    assert load(None, {"LAZARETTO_CONFIG": str(path)}).host == "0.0.0.0"
    other = config(tmp_path, 'host = "10.0.0.1"\n', name="other.toml")
    assert load(other, {"LAZARETTO_CONFIG": str(path)}).host == "10.0.0.1"


def test_environment_variables_of_every_kind() -> None:
    settings = load(
        None,
        {
            "LAZARETTO_HOST": "::1",
            "LAZARETTO_UPSTREAM": "http://127.0.0.1:9/simple/",
            "LAZARETTO_FILE_HOSTS": "files.example, mirror.example,",
            "LAZARETTO_ACCESS_LOG": "off",
            "LAZARETTO_CONNECT_TIMEOUT_SECONDS": "2.5",
            "LAZARETTO_FRESHNESS_WINDOW": "PT15M",
            "LAZARETTO_CUTOFF": "2026-03-24T10:00:00Z",
            "LAZARETTO_UNRELATED": "ignored",
            "OTHER_PORT": "1",
        },
    )
    assert settings.host == "::1"
    assert settings.upstream == "http://127.0.0.1:9/simple/"
    assert settings.file_hosts == ("files.example", "mirror.example")
    assert settings.access_log is False
    assert settings.connect_timeout_seconds == 2.5
    assert settings.policy.freshness_window == timedelta(minutes=15)
    assert settings.policy.cutoff == datetime(2026, 3, 24, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["72h", "3d", "P3D", "PT72H", "2d24h", "259200s"])
def test_cooling_period_spellings_in_a_file(tmp_path: Path, text: str) -> None:
    path = config(tmp_path, f'cooling_period = "{text}"\n')
    assert load(path).policy.cooling_period == timedelta(days=3)


# -- per-project settings -----------------------------------------------------------------


def test_project_cooling_override(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        cooling_period = "3d"

        [projects.Big_Framework]
        cooling_period = "14d"

        [projects."zope.interface"]
        cooling_period = "PT36H"
        """,
    )
    policy = load(path).policy
    assert policy.cooling_overrides == {
        NormalizedName("big-framework"): timedelta(days=14),
        NormalizedName("zope-interface"): timedelta(hours=36),
    }
    assert policy.cooling_for(NormalizedName("big-framework")) == timedelta(days=14)
    assert policy.cooling_for(NormalizedName("requests")) == timedelta(days=3)


def test_exemptions_both_forms_with_normalised_names(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        [exemptions]
        Internal_Tool = "built and signed in-house"
        "acme.utils" = { reason = "vendored fork", until = "2027-01-01T00:00:00Z" }
        native = { reason = "migration", until = 2027-02-01T12:00:00+01:00 }
        forever = { reason = "  padded  " }
        """,
    )
    assert load(path).policy.exemptions == {
        NormalizedName("internal-tool"): Exemption(reason="built and signed in-house"),
        NormalizedName("acme-utils"): Exemption(
            reason="vendored fork", until=datetime(2027, 1, 1, tzinfo=UTC)
        ),
        NormalizedName("native"): Exemption(
            reason="migration", until=datetime(2027, 2, 1, 11, tzinfo=UTC)
        ),
        NormalizedName("forever"): Exemption(reason="padded"),
    }


@pytest.mark.parametrize(
    "entry",
    [
        'tool = ""',
        'tool = "   "',
        'tool = { until = "2027-01-01T00:00:00Z" }',
        'tool = { reason = "" }',
        "tool = { reason = 5 }",
        "tool = {}",
    ],
)
def test_exemption_without_a_reason_is_an_error(tmp_path: Path, entry: str) -> None:
    path = config(tmp_path, f"# exemptions\n\n[exemptions]\n{entry}\n")
    message = config_error(path)
    assert "reason" in message
    assert str(path) in message and "line 4" in message and "exemptions.tool" in message


@pytest.mark.parametrize("entry", ["tool = 5", "tool = true", 'tool = ["reason"]'])
def test_exemption_of_another_type_is_an_error(tmp_path: Path, entry: str) -> None:
    path = config(tmp_path, f"[exemptions]\n{entry}\n")
    message = config_error(path)
    assert str(path) in message and "line 2" in message and "exemptions.tool" in message


def test_unknown_key_in_an_exemption_is_an_error(tmp_path: Path) -> None:
    """A misspelt ``until`` must not turn a temporary exemption into a permanent one."""
    path = config(
        tmp_path,
        """
        [exemptions]
        tool = { reason = "migration", untill = "2027-01-01T00:00:00Z" }
        """,
    )
    message = config_error(path)
    assert "untill" in message and str(path) in message


# -- errors say where -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('# comment\n\nport = "eighty"\n', 3, "port"),
        ("host = 5\n", 1, "host"),
        ('host = "x"\n# cooling below\ncooling_period = "soon"\n', 3, "cooling_period"),
        ('#\n#\n\n#\nvetting_window = "P1M"\n', 5, "vetting_window"),
        ("access_log = 1\n", 1, "access_log"),
        ('port = 80\nfetch_concurrency = "many"\n', 2, "fetch_concurrency"),
        ("cutoff = 2026-03-24\n", 1, "cutoff"),
        ('cutoff = "tomorrow"\n', 1, "cutoff"),
        ("file_hosts = [1, 2]\n", 1, "file_hosts"),
        (
            'port = 80\n\n[projects.slow]\n# two weeks\ncooling_period = "a fortnight"\n',
            5,
            "projects.slow.cooling_period",
        ),
        (
            'port = 80\n[exemptions]\nok = "fine"\nlater = { reason = "x", until = "soon" }\n',
            4,
            "exemptions.later",
        ),
    ],
)
def test_malformed_value_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = config(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}, line {line}: {key}: "), message


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("port = 70000\n", 1, "port"),
        ('# where\n\nupstream = "ftp://index.example/simple/"\n', 3, "upstream"),
    ],
)
def test_out_of_range_value_in_a_file_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = config(tmp_path, text)
    message = config_error(path)
    assert str(path) in message and f"line {line}" in message and key in message, message


def test_line_number_survives_a_comment_after_a_table_header(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        [projects.slow]  # reviewed 2026-03
        cooling_period = "a fortnight"
        """,
    )
    message = config_error(path)
    assert message.startswith(f"{path}, line 2: projects.slow.cooling_period: "), message


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('colling_period = "3d"\n', 1, "colling_period"),
        ('port = 1\n\n[projects.slow]\ncooling = "3d"\n', 4, "projects.slow.cooling"),
        ('port = 1\n[proxy]\nurl = "x"\n', None, "proxy"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, line: int | None, key: str) -> None:
    path = config(tmp_path, text)
    message = config_error(path)
    assert "unknown key" in message
    assert key in message and str(path) in message
    if line is not None:
        assert f"line {line}" in message


def test_projects_must_be_tables(tmp_path: Path) -> None:
    message = config_error(config(tmp_path, 'projects = "slow"\n'))
    assert "projects" in message
    message = config_error(config(tmp_path, '[projects]\nslow = "14d"\n'))
    assert "projects.slow" in message and "line 2" in message


def test_rule_overrides_name_declared_rules(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
        [rules]
        pth-executable-new = "block"
        setup-subprocess = "report"
        dependency-new = "review"
        """,
    )
    assert load(path).policy.rule_actions == {
        "pth-executable-new": Action.BLOCK,
        "setup-subprocess": Action.REPORT,
        "dependency-new": Action.REVIEW,
    }


def test_an_unknown_rule_names_file_line_and_key_and_a_close_match(tmp_path: Path) -> None:
    path = config(
        tmp_path, '# overrides\n[rules]\npth-new = "report"\npth-executable-nwe = "block"\n'
    )
    message = config_error(path)
    assert message.startswith(f"{path}, line 4: rules.pth-executable-nwe: unknown rule"), message
    assert "did you mean 'pth-executable-new'?" in message
    assert "lazaretto rules" in message
    message = config_error(config(tmp_path, '[rules]\nsomething-else-entirely = "review"\n'))
    assert "unknown rule;" in message and "did you mean" not in message


@pytest.mark.parametrize("action", ["pass", "ignore", "REVIEW", 1])
def test_a_rule_action_is_report_review_or_block(tmp_path: Path, action: object) -> None:
    value = f'"{action}"' if isinstance(action, str) else str(action)
    path = config(tmp_path, f"[rules]\nsize-jump = {value}\n")
    message = config_error(path)
    assert message.startswith(f"{path}, line 2: rules.size-jump: expected one of report, review"), (
        message
    )


def test_a_rule_with_a_fixed_action_cannot_be_overridden(tmp_path: Path) -> None:
    message = config_error(config(tmp_path, '[rules]\nmalware-advisory = "report"\n'))
    assert "line 2: rules.malware-advisory: this rule's action is always 'block'" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = config(tmp_path, 'port = 80\nhost = "unterminated\n')
    message = config_error(path)
    assert str(path) in message and "not valid TOML" in message


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = config_error(path)
    assert str(path) in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAZARETTO_PORT", "eighty"),
        ("LAZARETTO_PORT", "80.5"),
        ("LAZARETTO_COOLING_PERIOD", "soon"),
        ("LAZARETTO_COOLING_PERIOD", "P1M"),
        ("LAZARETTO_ACCESS_LOG", "maybe"),
        ("LAZARETTO_CUTOFF", "yesterday"),
        ("LAZARETTO_READ_TIMEOUT_SECONDS", "fast"),
        ("LAZARETTO_MAX_FILE_BYTES", "4GiB"),
    ],
)
def test_bad_environment_value_names_the_variable(variable: str, value: str) -> None:
    message = config_error(None, {variable: value})
    assert message.startswith(variable + ": "), message
    assert value not in message.split(": ", 1)[0]


@pytest.mark.parametrize(("variable", "value"), [("LAZARETTO_PORT", "70000")])
def test_out_of_range_environment_value_names_the_variable(variable: str, value: str) -> None:
    message = config_error(None, {variable: value})
    assert variable in message, message


@pytest.mark.parametrize(
    ("flag", "value", "name"),
    [("cooling_period", "soon", "--cooling-period"), ("port", "http", "--port")],
)
def test_bad_flag_value_names_the_flag(flag: str, value: str, name: str) -> None:
    assert config_error(None, None, {flag: value}).startswith(name + ": ")


@pytest.mark.parametrize("value", ['"99999999999d"', "inf", "nan"])
def test_duration_out_of_range_in_a_file_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = config(tmp_path, f"cooling_period = {value}\n")
    message = config_error(path)
    assert str(path) in message and "cooling_period" in message


def test_duration_out_of_range_in_the_environment_is_a_config_error() -> None:
    message = config_error(None, {"LAZARETTO_COOLING_PERIOD": "99999999999d"})
    assert "LAZARETTO_COOLING_PERIOD" in message


# -- the cutoff ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [
        ('"2026-03-24T10:00:00Z"', datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ('"2026-03-24T10:00:00"', datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ('"2026-03-24T12:00:00+02:00"', datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ("2026-03-24T10:00:00Z", datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ("2026-03-24T05:00:00-05:00", datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ("2026-03-24T10:00:00", datetime(2026, 3, 24, 10, tzinfo=UTC)),
        ('"none"', None),
        ('""', None),
    ],
)
def test_cutoff(tmp_path: Path, toml_value: str, expected: datetime | None) -> None:
    cutoff = load(config(tmp_path, f"cutoff = {toml_value}\n")).policy.cutoff
    assert cutoff == expected
    assert cutoff is None or cutoff.utcoffset() is not None


def test_cutoff_from_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = config(tmp_path, 'cutoff = "2026-03-24T10:00:00Z"\n')
    assert load(path, {"LAZARETTO_CUTOFF": "none"}).policy.cutoff is None
    flags = {"cutoff": "2026-04-01T00:00:00Z"}
    assert load(path, {}, flags).policy.cutoff == datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ['"0001-01-01T00:00:00+01:00"'])
def test_cutoff_out_of_range_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = config(tmp_path, f"cutoff = {value}\n")
    assert "cutoff" in config_error(path)


# -- durations need a unit ------------------------------------------------------------------

# Every key read as a duration, as (table header or None, key).
DURATION_KEYS = [
    (None, "index_ttl"),
    (None, "request_wait"),
    (None, "promote_interval"),
    (None, "watch_interval"),
    (None, "feed_refresh"),
    (None, "notify_interval"),
    (None, "download_log_retention"),
    (None, "cooling_period"),
    (None, "vetting_window"),
    (None, "freshness_window"),
    (None, "backdate_tolerance"),
    ("projects.numpy", "cooling_period"),
]


@pytest.mark.parametrize(("table", "key"), DURATION_KEYS)
@pytest.mark.parametrize(("value", "fix"), [("72", '"72h"'), ('"72"', '"72h"'), ("1.5", '"1.5h"')])
def test_a_bare_number_for_a_duration_is_refused_with_the_fix(
    tmp_path: Path, table: str | None, key: str, value: str, fix: str
) -> None:
    """Once read as seconds: ``cooling_period = 72`` meant a 72-second hold."""
    header = f"[{table}]\n" if table else ""
    path = config(tmp_path, f"# lazaretto\n{header}{key} = {value}\n")
    message = config_error(path)
    dotted = f"{table}.{key}" if table else key
    line = 3 if table else 2
    assert message.startswith(f"{path}, line {line}: {dotted}: "), message
    assert "has no unit" in message and f"write {fix}" in message


def test_a_bare_number_of_seconds_is_offered_back_in_a_short_spelling(tmp_path: Path) -> None:
    message = config_error(config(tmp_path, "cooling_period = 259200\n"))
    assert 'write "3d" for 259200 seconds' in message


@pytest.mark.parametrize("key", [key for table, key in DURATION_KEYS if table is None])
def test_a_bare_number_in_the_environment_is_refused(key: str) -> None:
    variable = f"LAZARETTO_{key.upper()}"
    message = config_error(None, {variable: "72"})
    assert message.startswith(f"{variable}: "), message
    assert 'write "72h"' in message


def test_a_bare_number_as_a_flag_is_refused() -> None:
    message = config_error(None, None, {"cooling_period": "72"})
    assert message.startswith("--cooling-period: ") and 'write "72h"' in message


def test_group_seconds_takes_a_number_its_unit_is_in_the_name(tmp_path: Path) -> None:
    table = '[[notify]]\nkind = "slack"\nname = "s"\nurl_env = "U"\n'
    assert load(config(tmp_path, table + "group_seconds = 45\n")).notify[0].group_seconds == 45
    message = config_error(config(tmp_path, table + 'group_seconds = "45s"\n'))
    assert message.startswith(f"{tmp_path / 'lazaretto.toml'}, line 5: notify[0].group_seconds: ")


# -- every number has a range ---------------------------------------------------------------

# (table, key, the lowest and highest values accepted, values refused), as TOML literals.
RANGES: list[tuple[str | None, str, tuple[str, str], tuple[str, ...]]] = [
    (None, "port", ("1", "65535"), ("0", "-1", "65536")),
    (None, "index_ttl", ('"0s"', '"1d"'), ('"25h"',)),
    (None, "request_wait", ('"0s"', '"5m"'), ('"301s"',)),
    (None, "promote_interval", ('"1s"', '"1d"'), ('"0s"', '"0.5s"', '"2d"')),
    (None, "watch_interval", ('"1m"', '"7d"'), ('"0s"', '"59s"', '"8d"')),
    (None, "feed_refresh", ('"1m"', '"7d"'), ('"0s"', '"8d"')),
    (None, "download_log_retention", ('"1d"', '"3650d"'), ('"23h"', '"3651d"')),
    (None, "blob_presigned_expiry", ('"10s"', '"12h"'), ('"9s"', '"13h"')),
    (None, "notify_interval", ('"1s"', '"1h"'), ('"0s"', '"61m"')),
    (None, "connect_timeout_seconds", ("0.1", "120"), ("0", "-5", "121", "nan", "inf")),
    (None, "read_timeout_seconds", ("0.1", "600"), ("0", "-1.5", "601", "nan")),
    (None, "page_timeout_seconds", ("1", "600"), ("0", "0.5", "601", "nan")),
    (None, "download_timeout_seconds", ("1", "86400"), ("0", "0.5", "86401", "inf")),
    (None, "request_read_timeout_seconds", ("1", "300"), ("0", "0.5", "301", "nan")),
    (None, "max_page_bytes", ("1024", str(1024**3)), ("0", "-1", "64", str(1024**3 + 1))),
    (None, "max_file_bytes", ("1024", str(1024**4)), ("0", "-1", str(1024**4 + 1))),
    (None, "fetch_concurrency", ("1", "64"), ("0", "-1", "65")),
    (None, "workers", ("1", "64"), ("0", "-1", "65")),
    (None, "ledger_pool_size", ("1", "100"), ("0", "101")),
    (None, "ledger_poll_seconds", ("0.1", "300"), ("0", "0.05", "301", "nan")),
    (None, "inspection_workers", ("0", "64"), ("-1", "65")),
    (None, "vetting_nice", ("0", "19"), ("-1", "20")),
    (None, "page_cache_mb", ("1", "65536"), ("0", "-1", "65537")),
    (None, "inspection_memory_mb", ("256", str(1024 * 1024)), ("-1", "1", "255", str(1024**2 + 1))),
    (None, "inspection_cpu_seconds", ("0", "86400"), ("-1", "86401")),
    (None, "inspection_timeout_seconds", ("1", "86400"), ("0", "0.5", "-1", "86401", "nan")),
    (None, "notify_max_attempts", ("1", "100"), ("0", "101")),
    (None, "deferred_vetting_wait_seconds", ("1", "600"), ("0", "0.5", "601", "nan")),
    (None, "cooling_period", ('"0s"', '"365d"'), ('"366d"',)),
    (None, "vetting_window", ('"0s"', '"36500d"'), ('"36501d"',)),
    (None, "freshness_window", ('"1s"', '"1d"'), ('"0s"', '"25h"')),
    (None, "backdate_tolerance", ('"0s"', '"7d"'), ('"8d"',)),
    ("projects.numpy", "cooling_period", ('"0s"', '"365d"'), ('"366d"',)),
    # A list of versions: "3.1" meant as 3.11 is refused, not taken as a Python to vet for.
    (None, "python_versions", ('"3.6"', '"3.30"'), ('"3.5"', '"3.31"', '"3.1"', '"4.0"')),
]
LIST_RANGES = {"python_versions"}  # numbers inside a list: no numeric default to find
NOTIFY_TABLE = '[[notify]]\nkind = "email"\nname = "m"\nhost = "smtp.example.org"\n'
NOTIFY_TABLE += 'from = "a@example.org"\nto = ["b@example.org"]\n'
NOTIFY_RANGES = [
    ("port", ("1", "65535"), ("0", "65536")),
    ("group_seconds", ("0", "3600"), ("-1", "3601")),
]


def _range_cases() -> list[tuple[str | None, str, str]]:
    return [(table, key, value) for table, key, _, refused in RANGES for value in refused]


def _file(table: str | None, key: str, value: str) -> str:
    return (
        f"# lazaretto\n[{table}]\n{key} = {value}\n" if table else f"# lazaretto\n{key} = {value}\n"
    )


@pytest.mark.parametrize(("table", "key", "value"), _range_cases())
def test_a_value_out_of_range_in_the_file_names_file_line_and_key(
    tmp_path: Path, table: str | None, key: str, value: str
) -> None:
    path = config(tmp_path, _file(table, key, value))
    message = config_error(path)
    dotted = f"{table}.{key}" if table else key
    assert message.startswith(f"{path}, line {3 if table else 2}: {dotted}: "), message
    assert "out of range: expected " in message


@pytest.mark.parametrize(("table", "key", "bounds"), [(t, k, b) for t, k, b, _ in RANGES])
def test_both_ends_of_each_range_are_accepted(
    tmp_path: Path, table: str | None, key: str, bounds: tuple[str, str]
) -> None:
    for value in bounds:
        load(config(tmp_path, _file(table, key, value)))


@pytest.mark.parametrize(("table", "key", "value"), [c for c in _range_cases() if c[0] is None])
def test_a_value_out_of_range_in_the_environment_names_the_variable(
    table: None, key: str, value: str
) -> None:
    variable = f"LAZARETTO_{key.upper()}"
    message = config_error(None, {variable: value.strip('"')})
    assert message.startswith(f"{variable}: "), message
    assert "out of range: expected " in message


@pytest.mark.parametrize(
    ("flag", "value", "name"),
    [("port", "0", "--port"), ("cooling_period", "400d", "--cooling-period")],
)
def test_a_flag_out_of_range_names_the_flag(flag: str, value: str, name: str) -> None:
    message = config_error(None, None, {flag: value})
    assert message.startswith(f"{name}: ") and "out of range" in message


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, _, refused in NOTIFY_RANGES for value in refused]
)
def test_a_notify_number_out_of_range_names_the_table_and_line(
    tmp_path: Path, key: str, value: str
) -> None:
    path = config(tmp_path, f"{NOTIFY_TABLE}allow_private = true\n{key} = {value}\n")
    message = config_error(path)
    assert message.startswith(f"{path}, line 8: notify[0].{key}: "), message
    assert "out of range" in message


def test_superseded_releases_is_one_of_two_policies(tmp_path: Path) -> None:
    assert Settings().policy.superseded_releases == "on-download"
    ahead = load(config(tmp_path, 'superseded_releases = "ahead"\n'))
    assert ahead.policy.superseded_releases == "ahead"
    assert not ahead.policy.vets_on_download
    path = config(tmp_path, 'superseded_releases = "lazily"\n')
    message = config_error(path)
    assert message.startswith(f"{path}, line 1: superseded_releases: "), message
    assert "on-download, ahead" in message


def test_every_numeric_key_has_a_range_test() -> None:
    """A new number or duration in Settings or Policy must come with its range (above)."""
    numeric = (int, float, timedelta)
    defaults = {**vars_of(Settings()), **vars_of(Policy())}
    wanted = {
        key
        for key in ENV_KEYS
        if isinstance(defaults.get(key), numeric) and not isinstance(defaults.get(key), bool)
    }
    tested = {key for table, key, _, _ in RANGES if table is None}
    assert wanted == tested - LIST_RANGES


def vars_of(instance: Settings | Policy) -> dict[str, object]:
    return {item.name: getattr(instance, item.name) for item in fields(instance)}


def test_no_memory_limit_for_inspection_is_written_0(tmp_path: Path) -> None:
    assert load(config(tmp_path, "inspection_memory_mb = 0\n")).inspection_memory_mb == 0
    message = config_error(None, {"LAZARETTO_INSPECTION_MEMORY_MB": "64"})
    assert message.startswith(
        "LAZARETTO_INSPECTION_MEMORY_MB: 64 is out of range: expected 0, or 256"
    )


# -- other values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://mirror.example/", "http://10.0.0.5:8070/pypi", "https://[::1]:8443"]
)
def test_public_base_url_is_an_absolute_http_url(tmp_path: Path, url: str) -> None:
    assert load(config(tmp_path, f'public_base_url = "{url}"\n')).public_base_url == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mirror.example", "absolute http(s) URL"),
        ("/pypi/", "absolute http(s) URL"),
        ("ftp://mirror.example/", "absolute http(s) URL"),
        ("https://", "absolute http(s) URL"),
        ("https://:8070/", "absolute http(s) URL"),
        ("https://mirror.example:port/", "Port"),
        ("https://mirror.example/?x=1", "query or fragment"),
        ("https://mirror.example/?", "query or fragment"),
        ("https://mirror.example/#top", "query or fragment"),
    ],
)
def test_public_base_url_that_is_no_root_url_is_refused(tmp_path: Path, url: str, why: str) -> None:
    path = config(tmp_path, f'port = 8070\npublic_base_url = "{url}"\n')
    message = config_error(path)
    assert message.startswith(f"{path}, line 2: public_base_url: "), message
    assert why in message
    variable = "LAZARETTO_PUBLIC_BASE_URL"
    assert config_error(None, {variable: url}).startswith(f"{variable}: ")


def test_an_unknown_log_level_lists_the_known_ones(tmp_path: Path) -> None:
    path = config(tmp_path, 'port = 8080\nlog_level = "verbose"\n')
    message = config_error(path)
    assert message.startswith(f"{path}, line 2: log_level: "), message
    assert "critical, error, warning, info, debug" in message
    assert load(config(tmp_path, 'log_level = "DEBUG"\n')).log_level == "debug"
    assert config_error(None, {"LAZARETTO_LOG_LEVEL": "loud"}).startswith("LAZARETTO_LOG_LEVEL: ")


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('port = 8080\n# café\nhost = "127.0.0.1"\n'.encode("latin-1"))
    message = config_error(path)
    assert message.startswith(f"{path}, line 2: not UTF-8"), message
    assert "save the file as UTF-8" in message


def test_empty_strings_mean_not_set_so_defaults_can_be_written_down(tmp_path: Path) -> None:
    path = config(tmp_path, 'public_base_url = ""\ntrusted_root = ""\ncutoff = ""\nupstream = ""\n')
    assert load(path) == Settings()


def test_a_trusted_root_that_is_not_a_file_is_named(tmp_path: Path) -> None:
    path = config(tmp_path, f'trusted_root = "{tmp_path / "absent.json"}"\n')
    message = config_error(path)
    assert message.startswith(f"{path}, line 1: trusted_root: ") and "absent.json" in message


# -- the example file -----------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "lazaretto.example.toml"
_COMMENTED_KEY = re.compile(r"# (?P<line>(?P<key>[\w-]+|\"[^\"]+\") = \S.*)")
_COMMENTED_TABLE = re.compile(r"# (?P<line>\[\[?[\w.\"-]+\]\]?)\s*(#.*)?")


def _uncommented(text: str) -> str:
    """The example with its commented settings and table headers made live."""
    lines = []
    for line in text.splitlines():
        found = _COMMENTED_KEY.fullmatch(line) or _COMMENTED_TABLE.fullmatch(line)
        lines.append(found.group("line") if found else line)
    return "\n".join(lines) + "\n"


def _defaults_part(text: str) -> str:
    """Everything above the first (commented) table: the top-level keys and their defaults."""
    first_table = next(
        i for i, line in enumerate(text.splitlines()) if _COMMENTED_TABLE.fullmatch(line)
    )
    return "\n".join(text.splitlines()[:first_table]) + "\n"


@pytest.fixture
def default_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data directory's default follows XDG_DATA_HOME; the example shows the other one."""
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)


def test_the_example_copied_as_is_gives_the_built_in_defaults() -> None:
    """Copied as is, it must not exempt, re-time or pin anything."""
    assert load(EXAMPLE) == Settings()


@pytest.mark.usefixtures("default_home")
def test_the_example_states_the_true_default_of_every_key(tmp_path: Path) -> None:
    text = _defaults_part(EXAMPLE.read_text(encoding="utf-8"))
    written = [
        m.group("key") for line in text.splitlines() if (m := _COMMENTED_KEY.fullmatch(line))
    ]
    assert sorted(written) == sorted(ENV_KEYS)  # every key, once, and no stale ones
    assert load(config(tmp_path, _uncommented(text))) == Settings()


def test_the_examples_in_the_example_file_are_valid(tmp_path: Path) -> None:
    """Uncommented they load, and they do change things: which is why they stay commented."""
    settings = load(config(tmp_path, _uncommented(EXAMPLE.read_text(encoding="utf-8"))))
    assert settings.policy.cooling_overrides == {NormalizedName("numpy"): timedelta(days=7)}
    assert set(settings.policy.exemptions) == {"acme-internal-tools", "acme-sdk"}
    assert [target.kind for target in settings.notify] == ["webhook", "slack", "email"]


# -- the platforms and Pythons in use ------------------------------------------------------


def test_the_default_filter_is_the_common_platforms_and_the_supported_pythons() -> None:
    wheel_filter = load().policy.wheel_filter
    assert wheel_filter.platforms == (
        "macos_arm64",
        "manylinux_aarch64",
        "manylinux_x86_64",
        "windows_amd64",
    )
    assert wheel_filter.pythons == ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")


def test_one_line_widens_the_platforms_and_the_pythons_keep_their_default(
    tmp_path: Path,
) -> None:
    path = config(tmp_path, 'port = 8080\nplatforms = ["default", "musllinux_x86_64"]\n')
    wheel_filter = load(path).policy.wheel_filter
    assert "musllinux_x86_64" in wheel_filter.platforms
    assert "manylinux_x86_64" in wheel_filter.platforms
    assert wheel_filter.pythons == Policy().wheel_filter.pythons
    both = config(tmp_path, 'platforms = ["all"]\npython_versions = ["default", "3.14t"]\n')
    assert load(both).policy.wheel_filter.platforms == ()
    assert "3.14t" in load(both).policy.wheel_filter.pythons


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('platforms = ["default", "musl_x86_64"]', "'musl_x86_64' is not a platform name (known: "),
        ("platforms = []", 'no platform named: write ["default"] or ["all"]'),
        ("platforms = 3", "expected a list of strings"),
        ('python_versions = ["3.12.1"]', "'3.12.1' is not a Python version such as 3.12"),
        ('python_versions = ["3.11t"]', "'3.11t': free-threaded builds start at 3.13t"),
    ],
)
def test_a_bad_platform_or_python_is_one_line_naming_file_line_and_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = config(tmp_path, f"port = 8080\n{line}\n")
    message = config_error(path)
    key = line.split(" ", 1)[0]
    assert message.startswith(f"{path}, line 2: {key}: {expected}"), message
    assert "\n" not in message


def test_the_filter_is_taken_from_the_environment_too() -> None:
    settings = load(env={"LAZARETTO_PLATFORMS": "default, windows_arm64"})
    assert "windows_arm64" in settings.policy.wheel_filter.platforms
    message = config_error(None, {"LAZARETTO_PYTHON_VERSIONS": "3.12, 2.7"})
    assert message.startswith("LAZARETTO_PYTHON_VERSIONS: 2.7 is out of range"), message


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    path = config(tmp_path, 'trusted_proxies = ["10.0.0.0/8", "::1", "192.168.1.7"]\n')
    assert load(path).trusted_proxies == ("10.0.0.0/8", "::1", "192.168.1.7")
    assert load(env={"LAZARETTO_TRUSTED_PROXIES": "127.0.0.1"}).trusted_proxies == ("127.0.0.1",)
    bad = config(tmp_path, 'trusted_proxies = ["10.0.0.0/8", "proxy.internal"]\n', "bad.toml")
    message = config_error(bad)
    assert "trusted_proxies" in message and "line 1" in message and "proxy.internal" in message


def test_upstream_private_networks_are_addresses_or_networks(tmp_path: Path) -> None:
    path = config(tmp_path, 'upstream_private_networks = ["10.1.0.0/16", "::1"]\n')
    assert load(path).upstream_private_networks == ("10.1.0.0/16", "::1")
    assert Settings().upstream_private_networks == ()  # none: only public addresses
    bad = config(tmp_path, 'upstream_private_networks = ["files.internal"]\n', "bad.toml")
    message = config_error(bad)
    assert "upstream_private_networks" in message and "files.internal" in message
