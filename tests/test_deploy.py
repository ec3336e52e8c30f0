"""The deployment files: what the reverse proxy tells the mirror about the request."""

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
_SET_HEADER = re.compile(r"^\s*proxy_set_header\s+(\S+)\s+(\S+);", re.MULTILINE)


def test_nginx_sets_every_forwarded_header_the_mirror_believes() -> None:
    """With trusted_proxies naming nginx, X-Forwarded-Proto/Host are believed over the
    request's own: nginx must set them, or a client's own claim passes through."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    headers = {name.lower(): value for name, value in _SET_HEADER.findall(text)}
    assert headers.get("x-forwarded-proto") == "$scheme"
    assert headers.get("x-forwarded-host") == "$host"
    assert headers.get("host") == "$host"
    # Set, never appended to: the admin API counts failed logins per forwarded address.
    assert headers.get("x-forwarded-for") == "$remote_addr"


def test_nginx_logs_admin_requests_without_their_query() -> None:
    """A token put in a URL by mistake must not be kept in the proxy's log either."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    log_format = re.search(r"log_format\s+lazaretto_no_query\s+([^;]+);", text)
    assert log_format is not None
    assert "$uri" in log_format.group(1)
    for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
        assert leaky not in log_format.group(1)
    admin = re.search(r"location /-/admin/ \{([^}]+)\}", text)
    assert admin is not None and "lazaretto_no_query;" in admin.group(1)


def test_nginx_puts_deadlines_on_clients() -> None:
    """Slowloris: the head and body must arrive in time, and a client must keep reading."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        found = re.search(rf"^\s*{directive}\s+(\d+)s;", text, re.MULTILINE)
        assert found is not None, directive
        assert 1 <= int(found.group(1)) <= 60, directive
    assert re.search(r"^\s*keepalive_timeout\s+\d+s;", text, re.MULTILINE)
