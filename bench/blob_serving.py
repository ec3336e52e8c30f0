"""Warm wheel downloads from each blob store: disk, S3 streamed through the mirror, and S3
by presigned redirect (issue 16).

One ``lazaretto serve`` per mode, on a local upstream (the tests' real index) and, for the
S3 modes, a SeaweedFS on loopback (the tests' ``weed server -s3``). Each wheel is fetched
once to make it warm (stored, promoted), then ``--count`` times over a new connection each,
timed to its last byte; the presigned mode follows its redirect to the store, as pip does.
Prints a markdown table of medians. Run on demand (never in the test suite):

    .venv/bin/python bench/blob_serving.py [--count 30]
"""

import argparse
import hashlib
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.dists import Dist, build_wheel
from support.process import lazaretto_serve
from support.s3 import SeaweedS3, seaweed_s3
from support.upstream import Upstream, UpstreamFile

MODES = ("disk", "s3-stream", "s3-presigned")


def _wheels() -> dict[str, Dist]:
    return {
        "17 MB": build_wheel("big", "1.0", extra_files={"big/d.bin": os.urandom(17 * 2**20)}),
        "2 MB": build_wheel("mid", "1.0", extra_files={"mid/d.bin": os.urandom(2 * 2**20)}),
        "100 KB": build_wheel("small", "1.0", extra_files={"small/d.bin": os.urandom(100_000)}),
    }


def _get(url: str, depth: int = 0) -> bytes:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        body = response.read()
        if response.status in (301, 302, 307) and depth < 2:
            return _get(response.headers["Location"], depth + 1)
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {body[:200]!r}")
        return body
    finally:
        connection.close()


def _timed(url: str, digest: str, count: int) -> float:
    if hashlib.sha256(_get(url)).hexdigest() != digest:  # warm, and the right bytes
        raise RuntimeError(f"{url}: not the wheel's bytes")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        _get(url)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def _mirror(mode: str, upstream: Upstream, s3: SeaweedS3, data: Path) -> Iterator[str]:
    env = {"LAZARETTO_UPSTREAM": upstream.url, "LAZARETTO_DATA_DIR": str(data)}
    env["LAZARETTO_ACCESS_LOG"] = "false"
    if mode != "disk":
        options = s3.options("presigned" if mode == "s3-presigned" else "stream")
        env.update(s3.environment())
        env.update(
            LAZARETTO_BLOB_STORE=str(options.location),
            LAZARETTO_BLOB_ENDPOINT_URL=s3.endpoint,
            LAZARETTO_BLOB_SERVE=options.serve,
        )
    with lazaretto_serve([], env) as origin:
        yield origin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="timed downloads per figure")
    count = parser.parse_args().count
    wheels = _wheels()
    medians: dict[tuple[str, str], float] = {}
    with ExitStack() as stack:
        upstream = stack.enter_context(Upstream())
        for dist in wheels.values():
            upstream.add(dist.project, UpstreamFile(dist, datetime.now(UTC) - timedelta(days=300)))
        s3 = stack.enter_context(seaweed_s3())
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blob-bench-")))
        for mode in MODES:
            with _mirror(mode, upstream, s3, root / mode) as origin:
                for label, dist in wheels.items():
                    _get(f"{origin}/simple/{dist.project}/")  # first sight: its file known
                    url = f"{origin}/files/{dist.sha256}/{dist.filename}"
                    medians[mode, label] = _timed(url, dist.sha256, count)
    print(f"Warm wheel downloads, median of {count}, new connection each, to the last byte\n")
    print("| wheel | " + " | ".join(MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for label, dist in wheels.items():
        cells = []
        for mode in MODES:
            seconds = medians[mode, label]
            cells.append(f"{seconds * 1000:.1f} ms ({len(dist.data) / seconds / 2**20:.0f} MB/s)")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
