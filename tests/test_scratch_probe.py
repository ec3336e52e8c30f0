import os, threading
from concurrent.futures import ThreadPoolExecutor
from test_http import *  # noqa

def test_concurrent_mismatch(mirror, upstream, clock):
    dist = build_wheel("big", "1.0", extra_files={"big/blob.bin": os.urandom(30_000_000)})
    bad = dist.data[:-1] + bytes([dist.data[-1] ^ 1])
    publish(upstream, dist, clock.now() - AGE_OLD, serve_bytes=bad)
    page(mirror, "big")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: get(mirror, file_path(dist), timeout=60), range(8)))
    print([(r.status, r.body[:100]) for r in replies])
    assert all(r.status != 500 for r in replies)
