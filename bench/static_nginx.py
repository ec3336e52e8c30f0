"""nginx serving a directory of files on 127.0.0.1: the anchor for "the same bytes, static".

Used where a Lazaretto figure is bound by the size of what it sends (a 4.6 MB index page
of a 10,000-file project): nginx sending the identical bytes shows what the transfer alone
costs on this machine, so the mirror's own share can be read off the difference.
"""

import shutil
from pathlib import Path
from types import TracebackType
from typing import Self

from bench_support import BenchError, free_port, spawn, stop_pid, wait_http

_CONFIG = """daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root}/files;
    }}
}}
"""


class StaticNginx:
    """``with StaticNginx(workdir) as nginx: nginx.put("page.json", body); nginx.url(...)``"""

    def __init__(self, workdir: Path) -> None:
        self._root = workdir
        self._port = free_port()
        self._pid: int | None = None

    def __enter__(self) -> Self:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise BenchError("nginx is not installed (apt-get install nginx-light)")
        (self._root / "files").mkdir(parents=True, exist_ok=True)
        (self._root / "tmp").mkdir(exist_ok=True)
        config = self._root / "nginx.conf"
        config.write_text(_CONFIG.format(root=self._root, port=self._port))
        self._pid = spawn(
            [nginx, "-c", str(config), "-p", str(self._root)], {}, self._root / "nginx.out"
        )
        (self._root / "files" / "ready").write_bytes(b"ok\n")
        wait_http(self.url("ready"), 10)
        return self

    def put(self, name: str, body: bytes) -> str:
        (self._root / "files" / name).write_bytes(body)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port}/{name}"

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._pid is not None:
            stop_pid(self._pid, "nginx")
            self._pid = None
