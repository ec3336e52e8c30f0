"""One serving process: the app on uvicorn, on its own port or on a socket it was given."""

import gc
import socket
import sys
from typing import Any

from mirror.background.demand_pipe import DemandWriter
from mirror.settings import Settings

# How long a thread computing keeps the GIL from one that wants it (CPython: 5 ms). sqlite3
# lets the GIL go around every row it steps, so a ledger read beside a busy thread (a big
# project's parse or render) waits up to this long per row: 200 rows took over a second.
# At 1 ms that wait is five times shorter; the busy thread only switches more often.
SWITCH_INTERVAL_SECONDS = 0.001


def run_server(
    settings: Settings,
    *,
    listener: socket.socket | None = None,
    demand: DemandWriter | None = None,
    name_process: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM. ``listener``: a bound socket shared with other
    serving processes; ``name_process``: put the pid in every log line (which of them
    answered)."""
    import uvicorn

    from mirror.app import create_app

    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    app = create_app(settings, demand=demand)
    # What is loaded by now (the app, sigstore's and the other libraries' objects) lives
    # as long as the process: keep it out of the collector's full passes.
    gc.collect()
    gc.freeze()
    options = _uvicorn_options(settings, name_process=name_process)
    if listener is None:
        uvicorn.run(app, host=settings.host, port=settings.port, **options)
        return
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[listener])


def _uvicorn_options(settings: Settings, *, name_process: bool) -> dict[str, Any]:
    from mirror.http.client_deadline import protocol_with_deadline
    from mirror.http.log_format import logging_config

    return {
        "log_level": settings.log_level,
        "log_config": logging_config(settings, name_process=name_process),
        "access_log": settings.access_log,
        # X-Forwarded-Proto/Host are read by the mirror itself, from trusted_proxies only
        # (mirror/http/request_base.py): off here, the peer it checks is the real one.
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": 5,
        # Each request must arrive in time: uvicorn alone waits for ever on a slow client.
        "http": protocol_with_deadline(settings.request_read_timeout_seconds),
    }
