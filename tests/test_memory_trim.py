"""mirror.memory.MemoryTrim: freed heap goes back to the system once the process grew."""

import asyncio
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirror.memory import MMAP_THRESHOLD_BYTES, MemoryTrim, resident_bytes, tune_malloc

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


_BIG_BLOCKS = """
import sys
from mirror.memory import resident_bytes, tune_malloc

if sys.argv[1] == "tuned":
    assert tune_malloc()
MIB = 1024 * 1024
first = b"x" * MIB
del first  # a mapped block freed: glibc's own threshold rises to its size
big, kept = [], []
for i in range(64):
    big.append(b"x" * MIB)  # a page's bytes, say
    kept.append(b"y" * 600 + i.to_bytes(4))  # and something small that stays, between
grown = resident_bytes()
del big
print((grown - resident_bytes()) // MIB, len(kept))
"""


def _given_back_mib(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _BIG_BLOCKS, mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    )
    return int(done.stdout.split()[0])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_big_blocks_freed_go_back_to_the_system_at_once() -> None:
    """With glibc's moving threshold, 1 MB blocks come from the heap once one was freed,
    and the heap keeps them resident behind the small blocks between them; mapped on
    their own, each goes back as it is freed."""
    assert _given_back_mib("default") < 16
    assert _given_back_mib("tuned") >= 56


def test_an_operators_own_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    tune_malloc()
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD_BYTES)
