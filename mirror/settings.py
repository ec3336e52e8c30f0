"""Settings: built once from defaults, a TOML file, LAZARETTO_* variables and flags.

Precedence, lowest first: built-in defaults, the config file, the environment, the
command line. A bad value is a ConfigError naming the key (and file and line).
"""

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from mirror import policy_config
from mirror.blobs.s3_options import SERVE_MODES, UNESCAPED, S3Location, S3Options
from mirror.config_values import (
    ConfigSource,
    as_bool,
    as_choice,
    as_list,
    as_optional_file,
    as_optional_str,
    as_path,
    as_str,
    as_time,
    convert,
    duration_between,
    float_between,
    int_between,
    zero_or_int_between,
)
from mirror.errors import ConfigError
from mirror.ledger_url import as_ledger
from mirror.notify import config as notify_config
from quarantine.evidence import DEFAULT_SEVERITY_ACTIONS
from quarantine.platforms import PlatformFilter, platform_names, python_names
from quarantine.policy import SUPERSEDED_RELEASES, Policy

DEFAULT_PORT = 8070


as_port = int_between(1, 65535, "a TCP port")


def as_upstream(value: Any) -> str:
    url = as_str(value)
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def as_public_base_url(value: Any) -> str | None:
    """Where clients reach the mirror: absolute URLs in pages start with it."""
    url = as_optional_str(value)
    if url is None:
        return None
    parts = urlsplit(url)
    parts.port  # noqa: B018 - its ValueError names a port that is not a number
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http(s) URL such as https://mirror.example/")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{url!r} has a query or fragment: give the mirror's root URL only")
    return url


def as_blob_store(value: Any) -> str:
    """ "" (the disk store under data_dir) or ``s3://bucket/prefix``."""
    url = as_str(value)
    if url and url != "disk":
        S3Location.parse(url)  # its ValueError names what is wrong
    return "" if url == "disk" else url


def as_optional_endpoint(value: Any) -> str | None:
    url = as_optional_str(value)
    if url is None:
        return None
    parts = urlsplit(url)
    parts.port  # noqa: B018 - its ValueError names a port that is not a number
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL such as https://s3.example:9000")
    return url


def as_platforms(value: Any) -> tuple[str, ...]:
    return platform_names(as_list(value))


def as_python_versions(value: Any) -> tuple[str, ...]:
    return python_names(as_list(value))


def as_proxies(value: Any) -> tuple[str, ...]:
    """Addresses or networks (``10.0.0.0/8``)."""
    networks = as_list(value)
    for network in networks:
        ipaddress.ip_network(network, strict=False)  # its ValueError names the bad entry
    return networks


def as_metrics(value: Any) -> bool | tuple[str, ...]:
    """``/metrics``: on (true), off (false), or only for peers in the listed networks."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "off", "true", "false"):
        return as_bool(value.strip())
    networks = as_proxies(value)
    if not networks:
        raise ValueError("expected true, false or a list of networks such as 10.0.0.0/8")
    return networks


def as_accel_prefix(value: Any) -> str | None:
    """nginx's internal location for blobs, such as /_lazaretto_blobs/."""
    prefix = as_optional_str(value)
    if prefix is None:
        return None
    if not (prefix.startswith("/") and prefix.endswith("/")) or "?" in prefix or ".." in prefix:
        raise ValueError(f"{prefix!r}: expected a path that starts and ends with /")
    return prefix


WORKER_MODES = ("child", "in-process", "separate")
LOG_FORMATS = ("text", "json")
as_worker_mode = as_choice(WORKER_MODES)
INDEX_AUTH_MODES = ("off", "optional", "required")
# The levels both the logging module and uvicorn know.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

_SECOND, _MINUTE, _HOUR, _DAY = (
    timedelta(seconds=1),
    timedelta(minutes=1),
    timedelta(hours=1),
    timedelta(days=1),
)
_KIB, _GIB = 1024, 1024**3
_BYTES = "a size in bytes"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lazaretto"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1  # serving processes on the one port (lazaretto serve --workers)
    data_dir: Path = field(default_factory=_default_data_dir)
    # "sqlite" (in data_dir) or a postgresql:// URL (mirror/ledger_backend.py). Not in the
    # repr: a URL may hold a password.
    ledger: str = field(default="sqlite", repr=False)
    ledger_password_file: Path | None = None
    ledger_pool_size: int = 8  # connections to PostgreSQL per process
    # How often pages read the ledger's change counter. On PostgreSQL a committed change
    # also wakes them at once (LISTEN/NOTIFY): this poll is the fallback for a missed one.
    ledger_poll_seconds: float = 1.0
    upstream: str = ""  # empty: ask pip (mirror.upstream.default_index)
    # Hosts file URLs may point at (https only); empty: the file host pip knows for the
    # upstream, if any; "*": any https host. Besides the index's own host, each must be at
    # a public address.
    file_hosts: tuple[str, ...] = ()
    # Non-public networks a file host may still be at (an internal file server).
    upstream_private_networks: tuple[str, ...] = ()
    public_base_url: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    # Peers (addresses or networks) whose X-Forwarded-Proto/Host name the mirror's URL.
    trusted_proxies: tuple[str, ...] = ()
    reserved_names: tuple[str, ...] = ()  # private names (globs allowed), never asked upstream
    index_ttl: timedelta = timedelta(seconds=60)
    request_wait: timedelta = timedelta(seconds=3)
    promote_interval: timedelta = timedelta(seconds=30)
    watch_interval: timedelta = timedelta(minutes=10)  # re-read known projects this often
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    # Whole transfers, connect to last byte (redirects included): a trickling upstream
    # must not hold a request, or a download slot, for ever.
    page_timeout_seconds: float = 60.0
    download_timeout_seconds: float = 1800.0
    # A client's request (head and body) must arrive within this, or it is cut off.
    request_read_timeout_seconds: float = 10.0
    max_page_bytes: int = 64 * 1024 * 1024
    # Rendered project pages kept in memory, least recently used out first.
    page_cache_mb: int = 32
    max_file_bytes: int = 4 * 1024 * 1024 * 1024
    fetch_concurrency: int = 4
    inspection_workers: int = 0  # worker processes inspecting archives; 0: one per core
    inspection_memory_mb: int = 1024  # address space of one inspection worker
    inspection_cpu_seconds: int = 120  # CPU time of one file's inspection
    inspection_timeout_seconds: float = 600.0  # wall-clock time of one file's inspection
    # Inspection workers run this much nicer than the serving process, so a backlog of
    # vetting never takes the CPU a page request needs. Not the vetting child itself: it
    # writes the ledger, and a starved writer would hold the serving side's writes up.
    vetting_nice: int = 10
    # How long a download of a deferred file waits for its verdict before a 503 (pip and
    # uv retry that) tells the client to ask again.
    deferred_vetting_wait_seconds: float = 60.0
    osv_feeds: tuple[str, ...] = ()  # directories, .zip exports or URLs of OSV records
    feed_refresh: timedelta = timedelta(hours=1)
    osv_id_prefixes: tuple[str, ...] = ("MAL-",)  # which advisories block; () = every record
    trusted_root: Path | None = None  # Sigstore trust root; default: the one shipped
    access_log: bool = True
    log_level: str = "info"
    log_format: str = "text"  # "json": one JSON object per line (app and access log)
    # /metrics: True, False, or only for peers in these networks.
    metrics: bool | tuple[str, ...] = True
    # Behind nginx: the file route answers with X-Accel-Redirect to this internal location
    # and no body; nginx sends the verified bytes (from its alias of the blob directory, or
    # with blobs in S3, through its proxy to the bucket: mirror/files/accel_redirect.py).
    accel_redirect: str | None = None
    policy: Policy = field(default_factory=Policy)
    notify: tuple[notify_config.NotifyTarget, ...] = ()  # [[notify]] tables
    notify_interval: timedelta = timedelta(seconds=10)
    notify_max_attempts: int = 12
    # Where promotion, vetting, watching and notifications run. "child": in a process
    # `lazaretto serve` starts and restarts, so a busy server neither slows them nor is
    # slowed by them; "in-process": in the server's own process; "separate": in
    # `lazaretto work`, run beside the server.
    vetting_worker: str = "child"
    # Every file served (time, file, client, token name, installer) is kept this long.
    download_log: bool = True
    download_log_retention: timedelta = timedelta(days=90)
    # Index read tokens (scope index:read) in the index URL: "off" (none asked, none
    # checked), "optional" (checked and named in the download log when given; anonymous
    # installs still work) or "required" (anonymous installs get 401).
    index_auth: str = "off"
    # Blobs: "" keeps them on disk under data_dir; "s3://bucket/prefix" in an S3-compatible
    # bucket (credentials from the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    blob_store: str = ""
    blob_endpoint_url: str | None = None  # an S3-compatible server's URL; None: AWS's
    blob_region: str | None = None  # None: AWS_REGION from the environment, else us-east-1
    # "stream": bytes go through the mirror; "presigned": a large file's request is
    # redirected to a URL of the store's that expires after blob_presigned_expiry.
    blob_serve: str = "stream"
    blob_presigned_expiry: timedelta = timedelta(minutes=5)
    # Where the settings were read from (not a setting): LIVE_KEYS are read again from it.
    config_file: Path | None = field(default=None, compare=False)

    @property
    def blob_s3(self) -> S3Options | None:
        """The S3 store's options; None: blobs on disk."""
        if not self.blob_store:
            return None
        return S3Options(
            S3Location.parse(self.blob_store),
            self.blob_endpoint_url,
            self.blob_region,
            "presigned" if self.blob_serve == "presigned" else "stream",
            self.blob_presigned_expiry,
        )


# Every numeric key has a range, so a typo or a missing unit cannot quietly turn a guard
# off (a zero timeout, a busy loop, a 64-byte size limit meant as 64 MiB).
_TOP_LEVEL: dict[str, Callable[[Any], Any]] = {
    "host": as_str,
    "port": as_port,
    "workers": int_between(1, 64, "serving processes"),
    "data_dir": as_path,
    "ledger": as_ledger,
    "ledger_password_file": as_optional_file,
    "ledger_pool_size": int_between(1, 100, "connections per process"),
    "ledger_poll_seconds": float_between(0.1, 300.0, "seconds"),
    "upstream": as_upstream,
    "file_hosts": as_list,
    "upstream_private_networks": as_proxies,
    "public_base_url": as_public_base_url,
    "trusted_hosts": as_list,
    "trusted_proxies": as_proxies,
    "reserved_names": as_list,
    "index_ttl": duration_between(timedelta(0), _DAY, "longer hides upstream removals"),
    "request_wait": duration_between(timedelta(0), 5 * _MINUTE),
    "promote_interval": duration_between(_SECOND, _DAY, "shorter is a busy loop"),
    "watch_interval": duration_between(_MINUTE, 7 * _DAY, "shorter hammers the upstream"),
    "connect_timeout_seconds": float_between(0.1, 120.0, "seconds"),
    "read_timeout_seconds": float_between(0.1, 600.0, "seconds"),
    "page_timeout_seconds": float_between(1.0, 600.0, "seconds"),
    "download_timeout_seconds": float_between(1.0, 24 * 3600.0, "seconds"),
    "request_read_timeout_seconds": float_between(1.0, 300.0, "seconds"),
    "max_page_bytes": int_between(_KIB, _GIB, _BYTES),
    "page_cache_mb": int_between(1, 64 * 1024, "MiB"),
    "max_file_bytes": int_between(_KIB, 1024 * _GIB, _BYTES),
    "fetch_concurrency": int_between(1, 64, "downloads at once"),
    "inspection_workers": int_between(0, 64, "processes; 0: one per core"),
    # Less than 256 MiB fails benign large archives (a retry, then a review): 0 or that.
    "inspection_memory_mb": zero_or_int_between(256, 1024 * 1024, "MiB; 0: no limit"),
    "inspection_cpu_seconds": int_between(0, 24 * 3600, "seconds; 0: no limit"),
    # Never unlimited: a hostile archive (or one stuck on I/O) would hold a worker forever.
    "inspection_timeout_seconds": float_between(1.0, 24 * 3600.0, "seconds"),
    "vetting_nice": int_between(0, 19, "steps of CPU priority below the server (nice)"),
    # Longer than a client's read timeout would cut the download off instead of a 503.
    "deferred_vetting_wait_seconds": float_between(1.0, 600.0, "seconds"),
    "osv_feeds": as_list,
    "feed_refresh": duration_between(_MINUTE, 7 * _DAY),
    "osv_id_prefixes": as_list,
    "trusted_root": as_optional_file,
    "access_log": as_bool,
    "log_level": as_choice(LOG_LEVELS),
    "log_format": as_choice(LOG_FORMATS),
    "metrics": as_metrics,
    "accel_redirect": as_accel_prefix,
    "notify_interval": duration_between(_SECOND, _HOUR, "shorter is a busy loop"),
    "notify_max_attempts": notify_config.as_attempts,
    "vetting_worker": as_worker_mode,
    "download_log": as_bool,
    "download_log_retention": duration_between(_DAY, 3650 * _DAY),
    "index_auth": as_choice(INDEX_AUTH_MODES),
    "blob_store": as_blob_store,
    "blob_endpoint_url": as_optional_endpoint,
    "blob_region": as_optional_str,
    "blob_serve": as_choice(SERVE_MODES),
    # Short-lived: a leaked URL must stop working soon; long enough for a slow start.
    "blob_presigned_expiry": duration_between(10 * _SECOND, 12 * _HOUR),
}
_POLICY_KEYS: dict[str, Callable[[Any], Any]] = {
    "cooling_period": policy_config.as_cooling_period,
    # Longer only vets more: the bound keeps date arithmetic inside the calendar.
    "vetting_window": duration_between(timedelta(0), 36500 * _DAY),
    "freshness_window": duration_between(_SECOND, _DAY, "longer misses upstream removals"),
    "backdate_tolerance": duration_between(timedelta(0), 7 * _DAY),
    "cutoff": as_time,
    "require_provenance": as_list,
    # Read again while running when the config file changes (mirror/config_reload.py).
    "platforms": as_platforms,
    "python_versions": as_python_versions,
    "superseded_releases": as_choice(SUPERSEDED_RELEASES),
}
LIVE_KEYS = ("platforms", "python_versions", "superseded_releases")
_TABLES: dict[str, Callable[[Any, ConfigSource], dict[str, Any]]] = {
    "projects": policy_config.project_tables,
    "exemptions": lambda value, source: {"exemptions": policy_config.exemptions(value, source)},
    "rules": lambda value, source: {"rule_actions": policy_config.rules(value, source)},
    "severities": lambda value, source: {
        "severity_actions": {**DEFAULT_SEVERITY_ACTIONS, **policy_config.severities(value, source)}
    },
}
# Lists of tables that become Settings fields (not policy): [[notify]].
_LISTS: dict[str, Callable[[Any, ConfigSource], Any]] = {"notify": notify_config.targets}
# The keys that take one value, in the file or as LAZARETTO_<KEY>; the rest are tables.
ENV_KEYS = (*_TOP_LEVEL, *_POLICY_KEYS)


def config_path(given: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file in use: ``--config``, else LAZARETTO_CONFIG, else none."""
    if given is None and env.get("LAZARETTO_CONFIG"):
        return Path(env["LAZARETTO_CONFIG"])
    return given


def read_config_file(path: Path) -> tuple[dict[str, Any], ConfigSource]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}, line {line}: not UTF-8 text (byte {raw[error.start]:#04x}): "
            "save the file as UTF-8"
        ) from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return data, ConfigSource(path, text)


def load_settings(
    config_file: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> Settings:
    values: dict[str, Any] = {}
    policy_values: dict[str, Any] = {}
    path = config_path(config_file, env)
    if path is not None:
        data, source = read_config_file(path)
        _take_file(data, source, values, policy_values)
    from_env = {
        key: env[f"LAZARETTO_{key.upper()}"]
        for key in ENV_KEYS
        if f"LAZARETTO_{key.upper()}" in env
    }
    _take(from_env, lambda key: f"LAZARETTO_{key.upper()}", values, policy_values)
    from_flags = {key: value for key, value in flags.items() if value is not None}
    _take(from_flags, lambda key: "--" + key.replace("_", "-"), values, policy_values)
    _merge_required_provenance(policy_values)
    _merge_wheel_filter(policy_values)
    settings = Settings(**values, policy=Policy(**policy_values), config_file=path)
    _check(settings)
    return settings


def _merge_required_provenance(policy_values: dict[str, Any]) -> None:
    """``require_provenance`` comes as a top-level list and from [projects.NAME] flags."""
    listed = policy_values.pop("require_provenance", ())
    from_tables = policy_values.pop("_required_by_project", set())
    names = {name if name == "*" else canonicalize_name(name, validate=False) for name in listed}
    if names or from_tables:
        policy_values["require_provenance"] = frozenset(names | set(from_tables))


def _merge_wheel_filter(policy_values: dict[str, Any]) -> None:
    """``platforms`` and ``python_versions`` make one filter; each defaults on its own."""
    given = {
        key: policy_values.pop(key)
        for key in ("platforms", "python_versions")
        if key in policy_values
    }
    if given:
        default = PlatformFilter()
        policy_values["wheel_filter"] = PlatformFilter(
            given.get("platforms", default.platforms),
            given.get("python_versions", default.pythons),
        )


def _take_file(
    data: dict[str, Any],
    source: ConfigSource,
    values: dict[str, Any],
    policy_values: dict[str, Any],
) -> None:
    for key, value in data.items():
        if key in _TOP_LEVEL:
            values[key] = convert(_TOP_LEVEL[key], value, source.where(key))
        elif key in _POLICY_KEYS:
            policy_values[key] = convert(_POLICY_KEYS[key], value, source.where(key))
        elif key in _TABLES:
            parsed = _TABLES[key](value, source)
            if "require_provenance" in parsed:
                policy_values["_required_by_project"] = parsed.pop("require_provenance")
            policy_values.update(parsed)
        elif key in _LISTS:
            values[key] = _LISTS[key](value, source)
        elif _is_credential(key):
            raise ConfigError(
                f"{source.where(key)}: credentials are never read from the config file: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead"
            )
        else:
            known = ", ".join(sorted((*_TOP_LEVEL, *_POLICY_KEYS, *_TABLES, *_LISTS)))
            raise ConfigError(f"{source.where(key)}: unknown key (known keys: {known})")


def _is_credential(key: str) -> bool:
    return any(word in key.lower() for word in ("secret", "access_key", "password", "token"))


def _take(
    raw: Mapping[str, Any],
    name: Callable[[str], str],
    values: dict[str, Any],
    policy_values: dict[str, Any],
) -> None:
    for key, value in raw.items():
        if key in _TOP_LEVEL:
            values[key] = convert(_TOP_LEVEL[key], value, name(key))
        elif key in _POLICY_KEYS:
            policy_values[key] = convert(_POLICY_KEYS[key], value, name(key))


def _check_accel_to_s3(settings: Settings) -> None:
    if settings.blob_serve == "presigned":
        raise ConfigError(
            'accel_redirect and blob_serve = "presigned" both say how files leave: with '
            'nginx in front, keep blob_serve = "stream" (nginx fetches from the bucket)'
        )
    prefix = S3Location.parse(settings.blob_store).prefix
    if not UNESCAPED.fullmatch(prefix):
        raise ConfigError(
            f"blob_store: with accel_redirect, the prefix {prefix!r} may hold only letters, "
            "digits and . _ ~ - / (nginx would escape others again and break the signature "
            "of the URL it fetches a blob with)"
        )


def _check(settings: Settings) -> None:
    """What no single value shows: a pinned publisher is checked as a whole; the blob
    keys that only mean something with an S3 store."""
    if not settings.blob_store:
        for key in ("blob_endpoint_url", "blob_region"):
            if getattr(settings, key) is not None:
                raise ConfigError(f"{key}: set, but blob_store is not an s3://bucket URL")
        if settings.blob_serve == "presigned":
            raise ConfigError(
                'blob_serve: "presigned" needs an s3://bucket blob_store (the disk store\'s '
                "files are sent by the mirror or the server in front of it)"
            )
    if settings.blob_store and settings.accel_redirect is not None:
        _check_accel_to_s3(settings)
    if not settings.policy.pinned_publishers:
        return
    # Imported here: only a pinned publisher needs the Sigstore stack (about 50 MB), and a
    # serving process whose vetting runs in a child never loads it.
    from quarantine.provenance.verify import PublisherIdentity

    for project, pin in settings.policy.pinned_publishers.items():
        problem = PublisherIdentity.from_pin(pin).policy_problem()
        if problem:
            raise ConfigError(f"projects.{project}.publisher: {problem}")
