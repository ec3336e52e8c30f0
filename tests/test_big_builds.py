"""Big pages built whole are built one after the other (issue 14, memory and page latency).

A big project's page whose parts are not kept is read and rendered whole: for 15,000
files that takes most of a second and memory in proportion. In the first-use replay two
such builds at once made the serving process's RSS peak.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from mirror.simple import catalog as catalog_module
from support.dists import build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

AGE_OLD = timedelta(days=200)
PROJECTS = ("big-one", "big-two")


def test_two_big_pages_built_whole_at_once_are_built_one_after_the_other(
    mirror: MirrorServer, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "BIG_PROJECT_FILES", 1)
    for project in PROJECTS:
        dist = build_wheel(project, "1.0")
        upstream.add(project, UpstreamFile(dist, mirror.clock.now() - AGE_OLD))
        assert mirror.page_status(project) == 200
    mirror.restart()  # no page and no parts in memory: the next builds read the ledger whole
    assert mirror.services is not None
    catalog = mirror.services.catalog
    for project in PROJECTS:  # looked at again, so that only the builds are left to do
        mirror.call(catalog.look(project))  # type: ignore[arg-type]
    lock = threading.Lock()
    building, most = 0, 0
    real = catalog._build

    def held(*args: Any, **options: Any) -> Any:
        nonlocal building, most
        with lock:
            building += 1
            most = max(most, building)
        try:
            time.sleep(0.2)  # two builds let run side by side are seen side by side
            return real(*args, **options)
        finally:
            with lock:
                building -= 1

    monkeypatch.setattr(catalog, "_build", held)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(mirror.page_status, PROJECTS))
    assert answers == [200, 200]
    assert most == 1
