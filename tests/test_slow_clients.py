"""Slow clients are cut off while everyone else is served (``request_read_timeout_seconds``).

The real ``lazaretto serve`` runs as its own process. Slowloris clients open connections
and trickle a request head a byte at a time, or send nothing at all; with a one-second
deadline the server closes them, and a normal client is answered all along. A slow
connection still open after HANG_SECONDS is the bug this guards against (uvicorn alone
keeps it for ever); it is no timing assertion.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

from support.process import lazaretto_serve
from support.upstream import Upstream

HANG_SECONDS = 30
HEAD = b"GET /simple/ HTTP/1.1\r\nHost: mirror\r\nX-Slow: "


def _connect(origin: str) -> socket.socket:
    host, port = origin.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_by_server(conn: socket.socket, trickle: bool) -> bool:
    """Trickle (or not) until the server closes the connection or HANG_SECONDS pass."""
    deadline = time.monotonic() + HANG_SECONDS
    conn.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if trickle:
                conn.sendall(b"a")
            if conn.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def test_slow_clients_are_cut_while_others_are_served(upstream: Upstream, tmp_path: Path) -> None:
    env = {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_REQUEST_READ_TIMEOUT_SECONDS": "1",
    }
    with lazaretto_serve([], env) as origin:
        trickling = [_connect(origin) for _ in range(5)]
        silent = [_connect(origin) for _ in range(5)]
        for conn in trickling:
            conn.sendall(HEAD)
        with urllib.request.urlopen(origin + "/healthz", timeout=10) as reply:
            assert reply.status == 200  # served while the slow ones hang on
        try:
            for conn in trickling:
                assert _closed_by_server(conn, trickle=True)
            for conn in silent:
                assert _closed_by_server(conn, trickle=False)
        finally:
            for conn in trickling + silent:
                conn.close()
        with urllib.request.urlopen(origin + "/healthz", timeout=10) as reply:
            assert reply.status == 200


def test_a_request_in_time_is_served_over_a_kept_alive_connection(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The deadline is per request: a keep-alive connection serves request after request."""
    env = {
        "LAZARETTO_UPSTREAM": upstream.url,
        "LAZARETTO_DATA_DIR": str(tmp_path / "data"),
        "LAZARETTO_REQUEST_READ_TIMEOUT_SECONDS": "1",
    }
    with lazaretto_serve([], env) as origin, _connect(origin) as conn:
        for _ in range(3):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: mirror\r\n\r\n")
            reply = b""
            while not reply.endswith(b"ok\n"):
                chunk = conn.recv(1024)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)  # idle between requests longer than the request deadline
