"""Big upstream pages are parsed one after the other (issue 14, memory and page latency).

Parsing holds the GIL and makes most of a big look's memory; side by side, big parses
added up and took the GIL from the event loop in turn. The gate admits pages while their
bytes fit in its budget together, a page larger than the budget alone, first come first.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from packaging.utils import NormalizedName

from mirror.upstream import client as upstream_module
from mirror.upstream.parse import parse_project_page
from mirror.upstream.parse_gate import ParseGate
from support.dists import build_wheel
from support.mirror import MirrorServer
from support.upstream import Upstream, UpstreamFile

AGE_OLD = timedelta(days=200)


class _Overlap:
    """Parses in progress at once, the most seen (each held a moment, so that two
    parses let run side by side are seen side by side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def parse(self, body: bytes, name: NormalizedName) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.2)
            return parse_project_page(body, name)
        finally:
            with self._lock:
                self.now -= 1


def test_two_big_pages_asked_at_once_are_parsed_one_after_the_other(
    mirror: MirrorServer, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    for project in ("big-one", "big-two"):
        dist = build_wheel(project, "1.0")
        upstream.add(project, UpstreamFile(dist, mirror.clock.now() - AGE_OLD))
    assert mirror.services is not None
    gate = mirror.services.client.parses
    monkeypatch.setattr(gate, "budget_bytes", 1)  # every page is bigger than the budget
    monkeypatch.setattr(upstream_module, "PARSE_IN_THREAD_BYTES", 0)
    overlap = _Overlap()
    monkeypatch.setattr(upstream_module, "parse_project_page", overlap.parse)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(mirror.page_status, ["big-one", "big-two"]))
    assert answers == [200, 200]
    assert overlap.most == 1
    assert gate.in_use == 0


def _run_gate(budget: int, sizes: list[int]) -> tuple[list[str], int]:
    """Each size parsed through one gate, all asked at once: the order of starts and
    ends, and the most bytes in parse at once."""

    async def run() -> tuple[list[str], int]:
        gate = ParseGate(budget)
        events: list[str] = []
        most = 0
        release = threading.Event()

        def parse(index: int) -> int:
            nonlocal most
            events.append(f"start {index}")
            most = max(most, gate.in_use)
            release.wait(10)
            events.append(f"end {index}")
            return index

        asked = [
            asyncio.ensure_future(gate.parsed(size, functools.partial(parse, i)))
            for i, size in enumerate(sizes)
        ]
        await asyncio.sleep(0.2)
        release.set()
        assert await asyncio.gather(*asked) == list(range(len(sizes)))
        assert gate.in_use == 0
        return events, most

    return asyncio.run(run())


def test_pages_that_fit_the_budget_together_are_parsed_side_by_side() -> None:
    events, most = _run_gate(100, [40, 50])
    assert events[:2] == ["start 0", "start 1"]
    assert most == 90


def test_a_page_larger_than_the_budget_is_parsed_alone_in_its_turn() -> None:
    events, most = _run_gate(100, [40, 500, 30])
    # First come, first admitted: the small page after the big one waits its turn.
    assert events == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    assert most == 500


def test_a_caller_that_stops_waiting_gives_its_place_and_its_bytes_back() -> None:
    async def run() -> None:
        gate = ParseGate(100)
        release = threading.Event()
        first = asyncio.ensure_future(gate.parsed(80, lambda: release.wait(10)))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(gate.parsed(80, lambda: True))
        behind = asyncio.ensure_future(gate.parsed(10, lambda: True))
        await asyncio.sleep(0.05)
        waiting.cancel()  # its place goes to the next in line, which fits beside the first
        assert await asyncio.wait_for(behind, 10) is True
        first.cancel()  # the caller goes; the thread's bytes stay taken until it ends
        await asyncio.sleep(0.05)
        assert gate.in_use == 80
        release.set()
        for _ in range(100):
            if gate.in_use == 0:
                break
            await asyncio.sleep(0.01)
        assert gate.in_use == 0

    asyncio.run(run())
