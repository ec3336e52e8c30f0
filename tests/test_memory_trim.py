"""mirror.memory.MemoryTrim: freed heap goes back to the system once the process grew."""

import asyncio
import ctypes.util

import pytest

from mirror.memory import MemoryTrim, resident_bytes

GLIBC = ctypes.util.find_library("c") is not None


def test_resident_bytes_is_this_process_size() -> None:
    before = resident_bytes()
    held = bytearray(64 * 1024 * 1024)  # zeroed pages: resident once touched
    held[::4096] = b"x" * len(held[::4096])
    assert resident_bytes() - before >= 60 * 1024 * 1024
    del held


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_a_trim_follows_growth_only() -> None:
    trim = MemoryTrim(growth_bytes=32 * 1024 * 1024)
    assert trim.available
    assert asyncio.run(trim.trim_if_grown()) is False  # not grown since it was made
    # Many malloc'd blocks (above pymalloc's 512 bytes) with a survivor among them, as a
    # parse leaves: freeing the rest leaves holes glibc keeps mapped.
    blocks = [bytes(2048) + i.to_bytes(4) for i in range(40_000)]
    survivors = blocks[::500]
    del blocks
    grown = resident_bytes()
    assert asyncio.run(trim.trim_if_grown()) is True
    assert trim.trims == 1
    assert resident_bytes() < grown  # the holes were handed back
    assert asyncio.run(trim.trim_if_grown()) is False  # nothing grew since
    assert len(survivors) == 80
