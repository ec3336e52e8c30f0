"""`lazaretto check`: what each lock format pins, and each pin's state in the ledger."""

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.incident.lock_check import check_pins
from quarantine.incident.lock_files import LockFileError, Pin, read_lock
from quarantine.ledger.interface import Ledger
from quarantine.models import FileState, ProjectStatus, Snapshot, UpstreamFile
from quarantine.observe import observe
from quarantine.policy import Policy
from support.ledger_backend import open_ledger

POLICY = Policy()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


A, B, C = sha("a"), sha("b"), sha("c")


def test_requirements_pins_hashes_continuations_and_what_is_skipped() -> None:
    lock = read_lock(
        "requirements.txt",
        f"""\
--index-url http://127.0.0.1:8070/simple/
# a comment
Requests==2.32.3 \\
    --hash=sha256:{A} \\
    --hash=sha256:{B}
idna==3.10 ; python_version >= "3.8"  # via requests
urllib3>=2
-r other.txt
-e ./local
certifi===2024.8.30
""",
    )
    assert lock.kind == "requirements"
    assert [(p.project, p.version, p.sha256s, p.where) for p in lock.pins] == [
        ("requests", "2.32.3", frozenset({A, B}), "line 3"),
        ("idna", "3.10", frozenset(), "line 6"),
        ("certifi", "2024.8.30", frozenset(), "line 10"),
    ]
    assert any("urllib3 is not pinned" in note for note in lock.skipped)
    assert any("other.txt" in note or "-r" in note for note in lock.skipped)


def test_uv_lock_reads_registry_packages_only() -> None:
    lock = read_lock(
        "uv.lock",
        f"""\
version = 1
requires-python = ">=3.11"

[[package]]
name = "Six"
version = "1.16.0"
source = {{ registry = "http://127.0.0.1:8070/simple" }}
sdist = {{ url = "http://127.0.0.1/six-1.16.0.tar.gz", hash = "sha256:{A}", size = 1 }}
wheels = [{{ url = "http://127.0.0.1/six-1.16.0-py2.py3-none-any.whl", hash = "sha256:{B}" }}]

[[package]]
name = "myapp"
version = "0.1.0"
source = {{ editable = "." }}
""",
    )
    assert [(p.project, p.version, p.sha256s) for p in lock.pins] == [
        ("six", "1.16.0", frozenset({A, B}))
    ]
    assert lock.skipped == ("myapp: from editable, not an index",)


def test_poetry_lock_new_and_old_layouts() -> None:
    new = read_lock(
        "poetry.lock",
        f"""\
[[package]]
name = "attrs"
version = "24.2.0"
files = [
    {{file = "attrs-24.2.0-py3-none-any.whl", hash = "sha256:{A}"}},
    {{file = "attrs-24.2.0.tar.gz", hash = "sha256:{B}"}},
]

[[package]]
name = "mylib"
version = "1.0"
[package.source]
type = "git"
url = "https://git.example/mylib"
""",
    )
    assert [(p.project, p.sha256s) for p in new.pins] == [("attrs", frozenset({A, B}))]
    assert new.skipped == ("mylib: from git, not an index",)
    old = read_lock(
        "poetry.lock",
        f"""\
[[package]]
name = "attrs"
version = "21.4.0"

[metadata.files]
attrs = [{{file = "attrs-21.4.0.tar.gz", hash = "sha256:{C}"}}]
""",
    )
    assert [(p.project, p.version, p.sha256s) for p in old.pins] == [
        ("attrs", "21.4.0", frozenset({C}))
    ]


def test_pylock_toml_reads_wheels_and_sdists() -> None:
    lock = read_lock(
        "pylock.toml",
        f"""\
lock-version = "1.0"
created-by = "test"

[[packages]]
name = "packaging"
version = "24.1"
sdist = {{ name = "packaging-24.1.tar.gz", url = "http://x/p.gz", hashes = {{ sha256 = "{B}" }} }}

[[packages.wheels]]
name = "packaging-24.1-py3-none-any.whl"
url = "http://127.0.0.1/p.whl"
hashes = {{ sha256 = "{A}" }}

[[packages]]
name = "tool"
[packages.vcs]
type = "git"
url = "https://git.example/tool"
commit-id = "0123"
""",
    )
    assert [(p.project, p.version, p.sha256s) for p in lock.pins] == [
        ("packaging", "24.1", frozenset({A, B}))
    ]
    assert lock.skipped == ("tool: from a vcs, not an index",)
    assert read_lock("pylock.dev.toml", "").kind == "pylock.toml"


def test_a_broken_toml_lock_is_an_error_naming_the_file() -> None:
    with pytest.raises(LockFileError, match=r"uv\.lock: not valid TOML"):
        read_lock("uv.lock", "[[package]\nname=")


# -- states ------------------------------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path / "data")
    yield opened
    opened.close()


def _seed(ledger: Ledger, project: str, files: dict[str, tuple[str, int]]) -> None:
    """Files (filename -> (sha256, age in days at first sight)), first seen NOW."""
    name = NormalizedName(project)
    entries = tuple(
        UpstreamFile(
            filename,
            f"http://127.0.0.1/{filename}",
            digest,
            10,
            NOW - timedelta(days=age),
            None,
            None,
            None,
            None,
        )
        for filename, (digest, age) in files.items()
    )
    snapshot = Snapshot(name, entries, ProjectStatus.ACTIVE, None, 1)
    ledger.apply(observe(ledger.project(name), {}, snapshot, NOW, POLICY), None, "system:test")


def _move(ledger: Ledger, project: str, filename: str, state: FileState, why: str) -> None:
    record = ledger.file(NormalizedName(project), filename)
    assert record is not None
    ledger.transition(record, state, why, "system:test", NOW)


def test_each_pin_is_served_held_blocked_withdrawn_or_unknown(ledger: Ledger) -> None:
    _seed(ledger, "good", {"good-1.0-py3-none-any.whl": (sha("g"), 400)})
    _move(ledger, "good", "good-1.0-py3-none-any.whl", FileState.PROMOTED, "cooled")
    _seed(ledger, "fresh", {"fresh-2.0-py3-none-any.whl": (sha("f"), 0)})
    _seed(ledger, "evil", {"evil-1.0-py3-none-any.whl": (sha("e"), 400),
                           "evil-1.0.tar.gz": (sha("e2"), 400)})  # fmt: skip
    _move(ledger, "evil", "evil-1.0-py3-none-any.whl", FileState.PROMOTED, "cooled")
    _move(ledger, "evil", "evil-1.0-py3-none-any.whl", FileState.WITHDRAWN, "MAL-2026-1")
    _move(ledger, "evil", "evil-1.0.tar.gz", FileState.PROMOTED, "cooled")
    _seed(ledger, "bad", {"bad-3.0-py3-none-any.whl": (sha("b"), 0)})
    _move(ledger, "bad", "bad-3.0-py3-none-any.whl", FileState.BLOCKED, "import-time-exec")
    pins = [
        Pin(NormalizedName("good"), "1.0.0"),  # PEP 440 equal to 1.0
        Pin(NormalizedName("fresh"), "2.0"),
        Pin(NormalizedName("evil"), "1.0"),
        Pin(NormalizedName("evil"), "1.0", frozenset({sha("e2")})),  # only the sdist: served
        Pin(NormalizedName("bad"), "3.0"),
        Pin(NormalizedName("nobody"), "1.0"),
        Pin(NormalizedName("good"), "1.0", frozenset({sha("other")})),
    ]
    found = [(s.project, s.state, s.detail) for s in check_pins(ledger, POLICY, pins)]
    assert [state for _, state, _ in found] == [
        "served", "held", "withdrawn", "served", "blocked", "unknown", "unknown",
    ]  # fmt: skip
    assert found[1][2].startswith(f"held until {(NOW + timedelta(hours=72)).year}")
    assert found[2][2] == "MAL-2026-1" and found[4][2] == "import-time-exec"
    assert (
        found[6][2] == "the mirror has not seen none of its pinned files" or "pinned" in found[6][2]
    )
