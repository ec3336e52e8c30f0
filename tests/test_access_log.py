"""``mirror.http.access_log``: the access log never keeps a secret a client put in a URL."""

import logging

import pytest

from mirror.http.access_log import RedactQueries, redacted_target


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/-/admin/api/v1/holds?state=held", "/-/admin/api/v1/holds?[redacted]"),
        ("/-/admin/api/v1/holds?token=lzt_x", "/-/admin/api/v1/holds?[redacted]"),
        ("/simple/demo/?format=json", "/simple/demo/?format=json"),
        ("/simple/?access_token=secret", "/simple/?[redacted]"),
        ("/simple/?a=1&API_KEY=secret", "/simple/?[redacted]"),
        ("/simple/demo/", "/simple/demo/"),
    ],
)
def test_queries_that_may_hold_secrets_are_redacted(target: str, logged: str) -> None:
    assert redacted_target(target) == logged


def test_the_filter_rewrites_uvicorns_access_line() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/-/admin/api/v1/audit?token=lzt_secret", "1.1", 401),
        None,
    )
    assert RedactQueries().filter(record)
    message = record.getMessage()
    assert "lzt_secret" not in message and "/-/admin/api/v1/audit?[redacted]" in message
