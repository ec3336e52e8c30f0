"""Hostile pages cannot add up to hundreds of megabytes (issue 17, item 5).

A gzip bomb from the real local upstream is refused without inflating it (its gzip
trailer says how big it would be) and a trailer that lies is caught after inflating no
more than it claimed; all page bytes in flight share one budget, and a look that would
go over it waits, then is refused with 503.
"""

from __future__ import annotations

import asyncio
import http.client
import tracemalloc

import pytest

from mirror.upstream.page_budget import PageBudget, PagesOverBudget
from support.mirror import MirrorServer
from support.upstream import BOMB_INFLATED_BYTES, Upstream

MIB = 1024 * 1024


def _get(mirror: MirrorServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("fault", ["bomb", "bomb_lying"])
def test_a_gzip_bomb_page_is_refused_without_inflating_it(
    mirror: MirrorServer, upstream: Upstream, fault: str
) -> None:
    upstream.set_fault("boom", fault)
    assert mirror.settings.max_page_bytes < BOMB_INFLATED_BYTES
    upstream.set_fault("warm", "bomb")
    _get(mirror, "/simple/warm/")  # the upstream makes (and caches) its bomb outside the count
    tracemalloc.start()
    try:
        status, body = _get(mirror, "/simple/boom/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 502, body
    assert b"too_large" in body or b"listing_malformed" in body, body
    # Before, up to max_page_bytes (64 MiB) was inflated into one bytes object.
    assert peak < 16 * MIB, peak


def test_looks_over_the_budget_wait_for_bytes_to_come_back() -> None:
    async def run() -> list[int]:
        budget = PageBudget(100, wait_seconds=30)
        order: list[int] = []
        async with budget.lease() as first:
            await first.grow(60)

            async def second() -> None:
                async with budget.lease() as lease:
                    await lease.grow(60)  # waits until the first look is done
                    order.append(2)

            waiting = asyncio.ensure_future(second())
            await asyncio.sleep(0)
            order.append(1)
        await waiting
        assert budget.in_use == 0
        return order

    assert asyncio.run(run()) == [1, 2]


def test_a_look_that_cannot_get_its_bytes_in_time_is_refused_with_503() -> None:
    async def run() -> None:
        budget = PageBudget(100, wait_seconds=0.01)
        async with budget.lease() as first:
            await first.grow(90)
            with pytest.raises(PagesOverBudget) as refused:
                async with budget.lease() as second:
                    await second.grow(20)
            assert refused.value.status == 503
            with pytest.raises(PagesOverBudget):
                await budget.take(101)  # never fits: refused at once
        assert budget.in_use == 0

    asyncio.run(run())
