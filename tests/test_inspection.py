"""Content inspection: hostile archives are verdicts, and nothing from an archive ever runs.

Every archive is built here (small, or streamed to tmp_path in chunks); nothing large is
committed. The LiteLLM-shaped releases use harmless stand-ins: a ``.pth`` whose import line
only sets an environment variable, and an ``exec(base64...)`` of a print.
"""

import base64
import bz2
import gzip
import io
import json
import lzma
import os
import random
import resource
import struct
import sys
import tarfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from types import CodeType

import pytest

from quarantine.evidence import Action, Finding, Severity
from quarantine.inspect.archive.reader import ArchiveReader, Limits, MemberKind, MiB
from quarantine.inspect.check import Inspection, inspect_file
from quarantine.inspect.release_diff import ArchiveSummary, compare
from support.dists import Dist, build_sdist, build_wheel

FULLWIDTH = {ord(c): ord(c) + 0xFEE0 for c in "abcdefghijklmnopqrstuvwxyz"}
PTH_LINE = b'import os; os.environ["LAZARETTO_TEST"] = "1"\n'
PAYLOAD = base64.b64encode(b"print('hi')").decode()  # cHJpbnQoJ2hpJyk=
DISTUTILS_PTH = (
    b"import os; var = 'SETUPTOOLS_USE_DISTUTILS'; "
    b"enabled = os.environ.get(var, 'local') == 'local'; "
    b"enabled and __import__('_distutils_hack').add_shim(); \n"
)

# ------------------------------------------------------------------------ helpers


def inspect_bytes(
    tmp_path: Path,
    filename: str,
    data: bytes,
    previous: ArchiveSummary | None = None,
    limits: Limits | None = None,
) -> Inspection:
    path = tmp_path / filename
    path.write_bytes(data)
    return inspect_file(path, filename, previous, limits)


def inspect_dist(tmp_path: Path, dist: Dist, previous: ArchiveSummary | None = None) -> Inspection:
    return inspect_bytes(tmp_path, dist.filename, dist.data, previous)


def action(inspection: Inspection) -> Action:
    return inspection.evidence().action


def rules(inspection: Inspection) -> set[str]:
    return {f.rule for f in inspection.findings}


def finding(inspection: Inspection, rule: str) -> Finding:
    matches = [f for f in inspection.findings if f.rule == rule]
    assert matches, f"no {rule} in {inspection.findings}"
    return matches[0]


def summary_of(tmp_path: Path, dist: Dist) -> ArchiveSummary:
    summary = inspect_dist(tmp_path, dist).summary
    assert summary is not None
    return summary


def zip_of(files: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    """A zip with exactly these names (no sanitising), deflated."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files:
                archive.writestr(name, data)
    return buffer.getvalue()


def wheel_of(files: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
    return zip_of([("demo-1.0.dist-info/METADATA", metadata), *files])


def tar_info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = link
    info.mode = 0o644
    return info


def tar_gz_of(members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def sdist_of(files: dict[str, bytes], top: str = "demo-1.0") -> bytes:
    members = [
        (tar_info(f"{top}/{name}" if top else name, size=len(d)), d) for name, d in files.items()
    ]
    return tar_gz_of(members)


PKG_INFO = b"Metadata-Version: 2.2\nName: demo\nVersion: 1.0\n"


# Hand-written zip records, for the archives zipfile refuses to write.
def local_header(name: bytes, method: int, crc: int, csize: int, usize: int) -> bytes:
    fixed = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, csize, usize, len(name), 0
    )
    return fixed + name


def central_header(
    name: bytes, method: int, crc: int, csize: int, usize: int, offset: int, mode: int = 0o644
) -> bytes:
    external = (0o100000 | mode) << 16 if mode < 0o10000 else mode << 16
    fixed = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        0x314,  # made by: unix
        20,
        0,
        method,
        0,
        0x21,
        crc,
        csize,
        usize,
        len(name),
        0,
        0,
        0,
        0,
        external,
        offset,
    )
    return fixed + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def zero_segment() -> bytes:
    """Raw deflate of 1 MiB of zeros, ended by a full flush: self-contained, so N copies
    in a row (then a final empty block) inflate to N MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)


FINAL_EMPTY_BLOCK = b"\x03\x00"


def write_zero_bomb(path: Path, mib: int, *, declared: int | None = None, padding: int = 0) -> None:
    """One member that inflates to ``mib`` MiB of zeros, streamed to disk (about 1 KiB per
    MiB). ``declared``: the uncompressed size the headers claim (a lying header);
    ``padding``: bytes after the deflate stream counted in the compressed size."""
    segment = zero_segment()
    name = b"demo/zeros.bin"
    csize = len(segment) * mib + len(FINAL_EMPTY_BLOCK) + padding
    usize = mib * MiB if declared is None else declared
    with path.open("wb") as out:
        out.write(local_header(name, 8, 0, csize, usize))
        for _ in range(mib):
            out.write(segment)
        out.write(FINAL_EMPTY_BLOCK + bytes(padding))
        cd_offset = out.tell()
        central = central_header(name, 8, 0, csize, usize, 0)
        out.write(central + end_record(1, len(central), cd_offset))


def write_tar_gz_bomb(path: Path, mib: int) -> None:
    """A tar.gz whose one member is ``mib`` MiB of zeros: gzip members in a row (a valid
    gzip stream), the zero one written ``mib`` times."""
    header = tar_info("demo-1.0/zeros.bin", size=mib * MiB).tobuf(tarfile.USTAR_FORMAT)
    zeros = gzip.compress(bytes(MiB), compresslevel=9, mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(header, mtime=0))
        for _ in range(mib):
            out.write(zeros)
        out.write(gzip.compress(bytes(1024), mtime=0))


def write_big_wheel(path: Path, blob_mib: int, modules: int) -> None:
    """A wheel of about ``blob_mib`` MiB: a blob of incompressible bytes (deflate stored
    blocks, written in chunks) and ``modules`` small Python modules."""
    chunk = random.Random(0).randbytes(MiB)
    # Level 0 writes deflate stored blocks: what deflate makes of incompressible data, fast.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=0) as archive:
        metadata = "Metadata-Version: 2.1\nName: big\nVersion: 1.0\n"
        archive.writestr("big-1.0.dist-info/METADATA", metadata, compresslevel=6)
        for index in range(modules):
            # "builtins" sends every module through the full syntax-tree scan
            source = f"import builtins\nP{index} = builtins.len('x')\n\n\ndef f(a):\n    return a\n"
            archive.writestr(f"big/m{index}.py", source * 20, compresslevel=6)
        with archive.open("big/_native.so", "w") as blob:
            for index in range(blob_mib):
                blob.write(chunk[index:] + chunk[:index])


# ------------------------------------------------------------------- clean files


def test_clean_wheel_passes(tmp_path: Path) -> None:
    dist = build_wheel("demo", "1.0", requires_dist=["packaging>=24"])
    inspection = inspect_dist(tmp_path, dist)
    evidence = inspection.evidence()
    assert evidence.action is Action.PASS
    assert evidence.findings == ()
    assert evidence.check == "content"
    summary = inspection.summary
    assert summary is not None
    assert summary.requires_dist == ("packaging>=24",)
    assert summary.top_level == ("demo", "demo-1.0.dist-info")
    assert not summary.has_binary and not summary.pth_files


def test_clean_sdist_passes(tmp_path: Path) -> None:
    dist = build_sdist(
        "demo", "1.0", modules={"setup.py": "from setuptools import setup\nsetup()\n"}
    )
    inspection = inspect_dist(tmp_path, dist)
    assert action(inspection) is Action.PASS, inspection.findings


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    dist = build_wheel(
        "demo",
        "1.0",
        requires_dist=["idna", "rich; extra == 'cli'"],
        extra_files={
            "demo_init.pth": PTH_LINE,
            "demo-1.0.dist-info/entry_points.txt": b"[console_scripts]\nDemo = demo:main\n",
        },
    )
    summary = summary_of(tmp_path, dist)
    text = json.dumps(summary.to_json())
    assert ArchiveSummary.from_json(json.loads(text)) == summary
    assert ArchiveSummary.from_json(text) == summary
    assert summary.scripts == {"Demo"}
    assert summary.pth_files["demo_init.pth"].executable
    with pytest.raises(ValueError):
        ArchiveSummary.from_json({"filename": "x"})


# ------------------------------------------------------- .pth start-up hooks (L13)


def litellm(version: str, **extra: bytes) -> Dist:
    scripts = b"[console_scripts]\nlitellm = litellm:main\n"
    files = {f"litellm-{version}.dist-info/entry_points.txt": scripts}
    files.update(extra)
    return build_wheel("litellm", version, requires_dist=["httpx"], extra_files=files)


def test_litellm_1_82_8_new_pth_is_held_for_review(tmp_path: Path) -> None:
    previous = summary_of(tmp_path, litellm("1.82.6"))
    inspection = inspect_dist(
        tmp_path, litellm("1.82.8", **{"litellm_init.pth": PTH_LINE}), previous
    )
    assert action(inspection) is Action.REVIEW
    found = finding(inspection, "pth-executable-new")
    assert found.severity is Severity.HIGH
    assert (found.path, found.line) == ("litellm_init.pth", 1)
    assert "new since the previous release" in found.message
    assert "LAZARETTO_TEST" not in os.environ


def test_pth_unchanged_since_previous_release_is_only_reported(tmp_path: Path) -> None:
    previous = summary_of(tmp_path, litellm("1.82.8", **{"litellm_init.pth": PTH_LINE}))
    inspection = inspect_dist(
        tmp_path, litellm("1.82.9", **{"litellm_init.pth": PTH_LINE}), previous
    )
    assert rules(inspection) == {"pth-executable-unchanged"}
    assert finding(inspection, "pth-executable-unchanged").severity is Severity.INFO
    assert action(inspection) is Action.REPORT


def test_pth_changed_since_previous_release_is_held(tmp_path: Path) -> None:
    previous = summary_of(tmp_path, litellm("1.0", **{"hook.pth": PTH_LINE}))
    changed = PTH_LINE + b"import sys\n"
    inspection = inspect_dist(tmp_path, litellm("1.1", **{"hook.pth": changed}), previous)
    assert action(inspection) is Action.REVIEW
    assert "changed" in finding(inspection, "pth-executable-new").message


NSPKG_PTH = (
    b"import sys, types, os;p = os.path.join(sys._getframe(1).f_locals['sitedir'], "
    b"*('google',));m = not hasattr(sys, 'google') and sys.modules.setdefault('google', "
    b"types.ModuleType('google'));mp = (m or []) and m.__dict__.setdefault('__path__',[]);"
    b"(p not in mp) and mp.append(p)\n"
)


def test_the_same_pth_under_a_versioned_name_is_unchanged(tmp_path: Path) -> None:
    # setuptools names namespace hooks <dist>-<version>-py3.12-nspkg.pth (and an sdist's top
    # directory carries the version): by path alone, every release's hook looked new.
    def release(version: str, pth: bytes) -> Dist:
        return litellm(version, **{f"litellm-{version}-py3.12-nspkg.pth": pth})

    previous = summary_of(tmp_path, release("2.6.0", NSPKG_PTH))
    same = inspect_dist(tmp_path, release("2.7.0", NSPKG_PTH), previous)
    assert "pth-executable-unchanged" in rules(same)
    assert "pth-executable-new" not in rules(same)
    assert action(same) is Action.REPORT
    other = inspect_dist(tmp_path, release("2.7.1", NSPKG_PTH + PTH_LINE), previous)
    assert action(other) is Action.REVIEW


def test_first_release_with_executable_pth_is_held(tmp_path: Path) -> None:
    inspection = inspect_dist(tmp_path, litellm("0.1", **{"litellm_init.pth": PTH_LINE}), None)
    assert action(inspection) is Action.REVIEW
    assert "first release" in finding(inspection, "pth-executable-new").message


def test_setuptools_distutils_precedence_pth_unchanged_is_not_held(tmp_path: Path) -> None:
    def setuptools(version: str, pth: bytes) -> Dist:
        modules = {"setuptools/__init__.py": "", "_distutils_hack/__init__.py": ""}
        return build_wheel(
            "setuptools", version, modules=modules, extra_files={"distutils-precedence.pth": pth}
        )

    previous = summary_of(tmp_path, setuptools("80.0", DISTUTILS_PTH))
    same = inspect_dist(tmp_path, setuptools("80.1", DISTUTILS_PTH), previous)
    assert action(same) is Action.REPORT
    assert rules(same) == {"pth-executable-unchanged"}
    tampered = inspect_dist(tmp_path, setuptools("80.2", DISTUTILS_PTH + PTH_LINE), previous)
    assert action(tampered) is Action.REVIEW


def test_pth_without_import_lines_or_outside_site_packages_is_not_held(tmp_path: Path) -> None:
    previous = summary_of(tmp_path, litellm("1.0"))
    dist = litellm(
        "1.1",
        **{
            "paths.pth": b"# a comment\nsome/dir\n#import os\n",
            "litellm/data/hook.pth": PTH_LINE,  # site never reads .pth files in packages
        },
    )
    inspection = inspect_dist(tmp_path, dist, previous)
    assert action(inspection) is Action.REPORT
    assert "pth-executable-new" not in rules(inspection)
    assert inspection.summary is not None
    assert not inspection.summary.pth_files["litellm/data/hook.pth"].executable


@pytest.mark.parametrize(
    "name",
    [
        "litellm-1.1.data/purelib/evil.pth",
        "litellm-1.1.data/platlib/evil.pth",
        "litellm-1.1.data/data/lib/python3.12/site-packages/evil.pth",
    ],
)
def test_pth_installed_into_site_packages_through_data_dirs_counts(
    tmp_path: Path, name: str
) -> None:
    previous = summary_of(tmp_path, litellm("1.0"))
    inspection = inspect_dist(tmp_path, litellm("1.1", **{name: b"\n  import os\n"}), previous)
    found = finding(inspection, "pth-executable-new")
    assert (found.path, found.line) == (name, 2)


def test_oversized_pth_is_held_unread(tmp_path: Path) -> None:
    big = PTH_LINE + b"#" * (64 * 1024)
    data = wheel_of([("evil.pth", big)])
    inspection = inspect_bytes(
        tmp_path, "demo-1.0-py3-none-any.whl", data, limits=Limits(max_text_bytes=4096)
    )
    assert "pth-not-scanned" in rules(inspection)
    assert action(inspection) is Action.REVIEW


# --------------------------------------------------------- hidden payloads (L13)


def test_litellm_1_82_7_exec_of_base64_blocks(tmp_path: Path) -> None:
    module = f'import base64\nexec(base64.b64decode("{PAYLOAD}"))\n'
    dist = build_wheel(
        "litellm",
        "1.82.7",
        modules={"litellm/__init__.py": "", "litellm/proxy/proxy_server.py": module},
    )
    inspection = inspect_dist(tmp_path, dist)
    assert action(inspection) is Action.BLOCK
    found = finding(inspection, "exec-encoded-payload")
    assert found.severity is Severity.CRITICAL
    assert (found.path, found.line) == ("litellm/proxy/proxy_server.py", 2)
    assert "base64.b64decode" in found.message


_ZLIB = zlib.compress(b"print('hi')")
_HEX = b"print('hi')".hex()


@pytest.mark.parametrize(
    "source",
    [
        f"import zlib\nexec(zlib.decompress({_ZLIB!r}))\n",
        'import marshal\nexec(marshal.loads(b"\\xe3\\x00\\x00"))\n',
        f'exec(bytes.fromhex("{_HEX}"))\n',
        f'import binascii\nexec(binascii.unhexlify("{_HEX}"))\n',
        f'import binascii\nexec(binascii.a2b_base64("{PAYLOAD}"))\n',
        'import codecs\nexec(codecs.decode("cevag(\'uv\')", "rot13"))\n',
        f'import base64 as b\nexec(b.b64decode("{PAYLOAD}"))\n',
        f'from base64 import b64decode as d\nexec(d("{PAYLOAD}"))\n',
        f"exec(__import__('base64').b64decode('{PAYLOAD}'))\n",
        f'import base64, builtins\nbuiltins.exec(base64.b64decode("{PAYLOAD}"))\n',
        f'import base64, builtins\ngetattr(builtins, "exec")(base64.b64decode("{PAYLOAD}"))\n',
        f'import base64\n__import__("builtins").exec(base64.b64decode("{PAYLOAD}"))\n',
        f'import base64\n__builtins__["exec"](base64.b64decode("{PAYLOAD}"))\n',
        f'import base64\nrun = exec\nrun(base64.b64decode("{PAYLOAD}"))\n',
        f'import base64\ncode = base64.b64decode("{PAYLOAD}")\nexec(code)\n',
        f'import base64\neval(compile(base64.b64decode("{PAYLOAD}"), "<x>", "exec"))\n',
        f"import bz2\nexec(bz2.decompress({bz2.compress(b'1')!r}))\n",
        f"import lzma\nexec(lzma.decompress({lzma.compress(b'1')!r}))\n",
        f'import base64\ndef run():\n    exec(base64.b64decode("{PAYLOAD}"))\n',
        'exec("' + "QUJD" * 300 + '")\n',
        f'import base64, marshal, types\nCODE = "{PAYLOAD}"\n'
        "types.FunctionType(marshal.loads(base64.b64decode(CODE)), {})()\n",
        # NFKC makes the fullwidth name the builtin exec
        f'import base64\n{"exec".translate(FULLWIDTH)}(base64.b64decode("{PAYLOAD}"))\n',
    ],
    ids=lambda source: source.splitlines()[-1][:40],
)
def test_decoded_payload_variants_block(tmp_path: Path, source: str) -> None:
    dist = build_wheel("demo", "1.0", modules={"demo/__init__.py": "", "demo/hidden.py": source})
    inspection = inspect_dist(tmp_path, dist)
    assert action(inspection) is Action.BLOCK, inspection.findings
    found = finding(inspection, "exec-encoded-payload")
    assert found.path == "demo/hidden.py"
    assert found.line == len(source.splitlines())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(x):\n    return eval(x)\n", {"dynamic-exec"}),
        ("def load(p):\n    exec(compile(open(p).read(), p, 'exec'))\n", {"dynamic-exec"}),
        ("import codecs\ndef f(b):\n    exec(codecs.decode(b, 'utf-8'))\n", {"dynamic-exec"}),
        ('exec("x = 1")\n', set()),
        ("import re\nPATTERN = re.compile('a+')\n", set()),
        ('DATA = "' + "QUJD" * 300 + '"\n', {"encoded-literal"}),
        ('print "python 2"\nexec "x = 1"\n', {"python-unparseable"}),
        # Keras rebuilds functions it is sent: decoded, but nothing written in the file
        (
            "import codecs, marshal, types\ndef load(code, globs):\n"
            "    raw = codecs.decode(code.encode('ascii'), 'base64')\n"
            "    return types.FunctionType(marshal.loads(raw), globs)\n",
            {"dynamic-exec"},
        ),
        # pyc loaders read marshal data in one function and exec code in another
        (
            "import marshal\ndef read(f):\n    co = marshal.load(f)\n    return co\n"
            "def run(m):\n    co = read(1)\n    exec(co, m.__dict__)\n",
            {"dynamic-exec"},
        ),
    ],
)
def test_other_python_findings_only_report(tmp_path: Path, source: str, expected: set[str]) -> None:
    dist = build_wheel("demo", "1.0", modules={"demo/__init__.py": "", "demo/m.py": source})
    inspection = inspect_dist(tmp_path, dist)
    assert rules(inspection) == expected
    assert action(inspection) is (Action.REPORT if expected else Action.PASS)


def test_payload_in_a_file_too_large_or_too_new_to_parse_is_still_held(tmp_path: Path) -> None:
    payload = f'import base64\nexec(base64.b64decode("{PAYLOAD}"))\n'
    big = "x = 1\n" * 4000 + payload  # over the (lowered) parse limit below
    unparseable = "type Alias = int  # syntax newer than this interpreter\n" + payload
    modules = {"demo/__init__.py": "", "demo/big.py": big, "demo/new.py": unparseable}
    dist = build_wheel("demo", "1.0", modules=modules)
    path = tmp_path / dist.filename
    path.write_bytes(dist.data)
    inspection = inspect_file(path, dist.filename, None, Limits(max_parse_bytes=16 * 1024))
    suspects = {f.path: f for f in inspection.findings if f.rule == "exec-encoded-suspect"}
    assert set(suspects) == {"demo/big.py", "demo/new.py"}
    assert suspects["demo/big.py"].line == 4002 and suspects["demo/new.py"].line == 3
    assert {"python-not-parsed", "python-unparseable"} <= rules(inspection)
    assert action(inspection) is Action.REVIEW


# ------------------------------------------------------- sdist install-time code


SETUP_HEAD = "import os, subprocess, urllib.request\nfrom setuptools import setup\n"


@pytest.mark.parametrize(
    ("body", "rule", "expected"),
    [
        (
            'urllib.request.urlopen("https://example.invalid/x")\nsetup()\n',
            "setup-network",
            Action.REVIEW,
        ),
        ('subprocess.check_call(["sh", "-c", "id"])\nsetup()\n', "setup-subprocess", Action.REVIEW),
        ('os.system("id")\nsetup()\n', "setup-subprocess", Action.REVIEW),
        (
            "def fetch():\n    return urllib.request.urlopen('https://example.invalid/x')\n"
            "setup(version=fetch())\n",
            "setup-network",
            Action.REVIEW,
        ),
        (
            "from setuptools.command.build_ext import build_ext\n"
            "class BuildExt(build_ext):\n    def run(self):\n"
            "        subprocess.check_call(['make'])\n"
            "setup(cmdclass={'build_ext': BuildExt})\n",
            "setup-subprocess",
            Action.REPORT,
        ),
        (
            f'import base64\nexec(base64.b64decode("{PAYLOAD}"))\nsetup()\n',
            "exec-encoded-payload",
            Action.BLOCK,
        ),
    ],
    ids=["urllib", "subprocess", "os.system", "via-function", "build_ext", "exec-base64"],
)
def test_setup_py_install_time_code(tmp_path: Path, body: str, rule: str, expected: Action) -> None:
    dist = build_sdist("demo", "1.0", modules={"setup.py": SETUP_HEAD + body})
    inspection = inspect_dist(tmp_path, dist)
    assert action(inspection) is expected, inspection.findings
    found = finding(inspection, rule)
    assert found.path == "demo-1.0/setup.py" and found.line is not None


def test_setup_py_below_the_top_is_not_install_time(tmp_path: Path) -> None:
    source = SETUP_HEAD + 'subprocess.check_call(["id"])\n'
    dist = build_sdist("demo", "1.0", modules={"vendor/lib/setup.py": source})
    assert action(inspect_dist(tmp_path, dist)) is Action.PASS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            tar_gz_of(
                [
                    (tar_info("demo-1.0/PKG-INFO", size=len(PKG_INFO)), PKG_INFO),
                    (tar_info("other-1.0/x.py", size=1), b"\n"),
                ]
            ),
            "not one top directory",
        ),
        (sdist_of({"setup.py": b"\n"}), "no PKG-INFO"),
        (sdist_of({"PKG-INFO": PKG_INFO}, top=""), "not one top directory"),
    ],
    ids=["two-tops", "no-pkg-info", "no-top"],
)
def test_sdist_layout(tmp_path: Path, data: bytes, message: str) -> None:
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", data)
    found = finding(inspection, "sdist-layout")
    assert found.severity is Severity.MEDIUM and message in found.message
    assert action(inspection) is Action.REVIEW


# ---------------------------------------------------- comparing with the previous


def test_signals_against_the_previous_release(tmp_path: Path) -> None:
    def release(version: str, **kw: object) -> Dist:
        return build_wheel("demo", version, **kw)  # type: ignore[arg-type]

    previous = summary_of(tmp_path, release("1.0", requires_dist=["idna"]))
    newer = release(
        "1.1",
        requires_dist=["idna", "evil-helper>=1"],
        extra_files={
            "demo-1.1.dist-info/entry_points.txt": b"[console_scripts]\ndemo-x = demo:main\n",
            "demo/blob.dat": random.Random(1).randbytes(2 * MiB),
        },
    )
    inspection = inspect_dist(tmp_path, newer, previous)
    assert rules(inspection) == {"dependency-new", "entry-point-new", "size-jump"}
    assert "evil-helper" in finding(inspection, "dependency-new").message
    assert "demo-x" in finding(inspection, "entry-point-new").message
    assert action(inspection) is Action.REPORT  # signals only, never a hold on their own

    native = release("1.2", requires_dist=["idna"], extra_files={"demo/_speedups.so": b"\x7fELF"})
    assert action(inspect_dist(tmp_path, native, previous)) is Action.REVIEW
    assert "binary-new" in rules(inspect_dist(tmp_path, native, previous))


def test_compare_with_itself_finds_nothing(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, litellm("1.0"))
    assert compare(summary, summary) == []


# --------------------------------------------------------- hostile zip archives


def test_zip_bomb_declared_ratio(tmp_path: Path) -> None:
    path = tmp_path / "bomb-1.0-py3-none-any.whl"
    write_zero_bomb(path, 1024)  # 1 GiB of zeros in about 1 MB
    assert path.stat().st_size < 2 * MiB
    inspection = inspect_file(path, path.name, None)
    assert action(inspection) is Action.BLOCK
    assert "archive-bomb-ratio" in rules(inspection)


def test_zip_bomb_with_lying_header_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "bomb-1.0-py3-none-any.whl"
    write_zero_bomb(path, 1024, declared=1000)
    inspection = inspect_file(path, path.name, None)
    found = finding(inspection, "archive-malformed")
    assert "declares" in found.message and found.path == "demo/zeros.bin"
    assert action(inspection) is Action.BLOCK


def test_zip_bomb_with_padded_compressed_size_is_stopped_by_the_ratio(tmp_path: Path) -> None:
    # Declared 400 MiB from 10 MiB passes the declared ratio; the bytes actually consumed
    # (about 400 KiB) do not.
    path = tmp_path / "bomb-1.0-py3-none-any.whl"
    write_zero_bomb(path, 400, padding=10 * MiB)
    started = time.perf_counter()
    inspection = inspect_file(path, path.name, None)
    assert time.perf_counter() - started < 5
    assert "inflates past" in finding(inspection, "archive-bomb-ratio").message


def test_many_entries(tmp_path: Path) -> None:
    data = wheel_of((f"demo/{i}.txt", b"") for i in range(150))
    inspection = inspect_bytes(
        tmp_path, "demo-1.0-py3-none-any.whl", data, limits=Limits(max_entries=100)
    )
    assert "archive-too-many-entries" in rules(inspection)
    # Past a limit the file was not inspected: a person decides (not evidence of malice).
    assert inspection.summary is None and action(inspection) is Action.REVIEW
    # An end record that under-counts does not help: entries are counted as walked.
    end = data.rindex(b"PK\x05\x06")
    lying = data[: end + 8] + struct.pack("<HH", 10, 10) + data[end + 12 :]
    inspection = inspect_bytes(
        tmp_path, "demo-1.0-py3-none-any.whl", lying, limits=Limits(max_entries=100)
    )
    assert "archive-too-many-entries" in rules(inspection)


def test_total_size_limit(tmp_path: Path) -> None:
    data = wheel_of((f"demo/{i}.bin", random.Random(i).randbytes(64 * 1024)) for i in range(8))
    limits = Limits(max_total_bytes=256 * 1024)
    inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data, limits=limits)
    assert "archive-too-large" in rules(inspection)


def test_nested_archive_is_noted_not_opened(tmp_path: Path) -> None:
    inner = zip_of([("evil.py", f'exec(__import__("base64").b64decode("{PAYLOAD}"))'.encode())])
    data = wheel_of([("demo/vendored.zip", inner), ("demo/disguised.dat", inner)])
    limits = Limits(nested_note_bytes=64)
    inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data, limits=limits)
    nested = [f for f in inspection.findings if f.rule == "archive-nested"]
    assert {f.path for f in nested} == {"demo/vendored.zip", "demo/disguised.dat"}
    assert "exec-encoded-payload" not in rules(inspection)  # never recursed into
    assert action(inspection) is Action.REPORT


def _patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def test_malformed_zips(tmp_path: Path) -> None:
    good = wheel_of([("demo/__init__.py", b"x = 1\n" * 50)])
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("demo/__init__.py", b"x = 1\n")
    flipped = stored.getvalue().replace(b"x = 1\n", b"x = 2\n", 1)  # data changed, CRC not
    cases = {
        "truncated": (good[: len(good) // 2], "archive-malformed"),
        "not-a-zip": (b"\x00" * 4096, "archive-malformed"),
        "empty": (b"", "archive-malformed"),
        "bad-crc": (flipped, "archive-malformed"),
        "bad-deflate": (_patched(good, good.index(b"__init__.py") + 11, b"\xff\xff\xff\xff"), None),
    }
    for label, (data, rule) in cases.items():
        inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data)
        assert action(inspection) is Action.BLOCK, (label, inspection.findings)
        if rule is not None:
            assert rule in rules(inspection), (label, inspection.findings)
    assert (
        "bad CRC"
        in finding(
            inspect_bytes(tmp_path, "d-1.0-py3-none-any.whl", flipped), "archive-malformed"
        ).message
    )


def test_zip_framing(tmp_path: Path) -> None:
    base = wheel_of([("demo/__init__.py", b"x = 1\n")])
    cd_offset = struct.unpack_from("<L", base, len(base) - 6)[0]

    # An entry present only in the local headers (uv's streaming unzip would install it).
    hidden = local_header(b"demo/hidden.py", 0, zlib.crc32(b"1"), 1, 1) + b"1"
    local_only = (
        base[:cd_offset]
        + hidden
        + base[cd_offset:-6]
        + struct.pack("<LH", cd_offset + len(hidden), 0)
    )
    # The local header says another name than the central directory.
    renamed = base.replace(b"demo/__init__.py", b"demo/__evil__.py", 1)
    # Two central entries pointing at the same local header.
    entry = central_header(b"a.py", 0, zlib.crc32(b"1"), 1, 1, 0)
    twice = local_header(b"a.py", 0, zlib.crc32(b"1"), 1, 1) + b"1"
    overlap = twice + entry + entry + end_record(2, 2 * len(entry), len(twice))
    cases = {
        "trailing-data": base + b"trailing",
        "local-only-entry": local_only,
        "local-central-names": renamed,
        "overlap": overlap,
        "prepended": b"#!/bin/sh\n" + base,
    }
    for label, data in cases.items():
        inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data)
        assert "zip-framing" in rules(inspection), (label, inspection.findings)
        assert action(inspection) is Action.BLOCK
    found = finding(inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", local_only), "zip-framing")
    assert "only in local headers" in found.message


def test_duplicate_zip_entries(tmp_path: Path) -> None:
    data = wheel_of([("demo/__init__.py", b"x = 1\n"), ("demo/__init__.py", b"import os\n")])
    inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data)
    assert finding(inspection, "zip-duplicate-entry").path == "demo/__init__.py"
    assert action(inspection) is Action.BLOCK


@pytest.mark.parametrize(
    "name",
    ["../evil.py", "/abs/path.py", "C:\\x.py", "demo/../../x.py", "C:x.py", "demo\\..\\x.py"],
)
def test_unsafe_names_in_zip(tmp_path: Path, name: str) -> None:
    inspection = inspect_bytes(
        tmp_path, "demo-1.0-py3-none-any.whl", wheel_of([(name, b"x = 1\n")])
    )
    assert finding(inspection, "archive-unsafe-path").path == name
    assert action(inspection) is Action.BLOCK


def test_zip_symlink_entry(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("demo/link.py")
    info.create_system = 3
    info.external_attr = (0o120777) << 16
    inspection = inspect_bytes(
        tmp_path, "demo-1.0-py3-none-any.whl", wheel_of([(info, b"/etc/passwd")])
    )
    assert "archive-link" in rules(inspection)


def test_zipfile_variants_are_not_framing_errors(tmp_path: Path) -> None:
    """zip64 records and data descriptors, as zipfile writes them, are legitimate."""

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, data: "bytes | bytearray | memoryview") -> int:  # type: ignore[override]
            self.buffer += data
            return len(data)

    streamed = Unseekable()
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "demo-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
        )
        with archive.open("demo/__init__.py", "w", force_zip64=True) as member:
            member.write(b"x = 1\n" * 100)
    data = bytes(streamed.buffer)
    assert struct.unpack_from("<H", data, 6)[0] & 0x8  # really uses data descriptors
    inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", data)
    assert inspection.findings == () and action(inspection) is Action.PASS


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    name = "demo/\x1b[2J\u202eevil\n.py/../../x"
    inspection = inspect_bytes(tmp_path, "demo-1.0-py3-none-any.whl", wheel_of([(name, b"1")]))
    for found in inspection.evidence().findings:
        for text in (found.message, found.path or ""):
            assert text.isprintable(), text
    assert "\\x1b" in finding(inspection, "archive-unsafe-path").path  # type: ignore[operator]


# --------------------------------------------------------- hostile tar archives


@pytest.mark.parametrize(
    "member",
    [
        tar_info("demo-1.0/docs/CONTRIBUTING.md", tarfile.SYMTYPE, link="../PKG-INFO"),
        tar_info("demo-1.0/hard", tarfile.LNKTYPE, link="demo-1.0/PKG-INFO"),
    ],
    ids=["symlink", "hardlink"],
)
def test_links_inside_the_tree_are_only_reported(tmp_path: Path, member: tarfile.TarInfo) -> None:
    # pyparsing, referencing and docutils sdists link docs files this way.
    data = tar_gz_of([(tar_info("demo-1.0/PKG-INFO", size=len(PKG_INFO)), PKG_INFO), (member, b"")])
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", data)
    assert "archive-link-inside" in rules(inspection)
    assert "archive-link" not in rules(inspection)
    assert action(inspection) is Action.REPORT


@pytest.mark.parametrize(
    ("member", "rule"),
    [
        (tar_info("demo-1.0/link", tarfile.SYMTYPE, link="/etc/passwd"), "archive-link"),
        (tar_info("demo-1.0/hard", tarfile.LNKTYPE, link="etc/passwd"), "archive-link"),
        (tar_info("demo-1.0/dev", tarfile.CHRTYPE), "archive-special-member"),
        (tar_info("demo-1.0/fifo", tarfile.FIFOTYPE), "archive-special-member"),
        (tar_info("../evil.py"), "archive-unsafe-path"),
        (tar_info("/abs/path.py"), "archive-unsafe-path"),
        (tar_info("demo-1.0/../../x.py"), "archive-unsafe-path"),
    ],
    ids=["symlink", "hardlink", "device", "fifo", "dotdot", "absolute", "nested-dotdot"],
)
def test_hostile_tar_members(tmp_path: Path, member: tarfile.TarInfo, rule: str) -> None:
    data = tar_gz_of([(tar_info("demo-1.0/PKG-INFO", size=len(PKG_INFO)), PKG_INFO), (member, b"")])
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", data)
    assert rule in rules(inspection), inspection.findings
    assert action(inspection) is Action.BLOCK


def test_tar_gz_bomb(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0.tar.gz"
    write_tar_gz_bomb(path, 400)
    assert path.stat().st_size < MiB
    inspection = inspect_file(path, path.name, None)
    assert "archive-bomb-ratio" in rules(inspection)
    assert inspection.summary is None and action(inspection) is Action.BLOCK


def test_tar_member_over_the_entry_limit(tmp_path: Path) -> None:
    header = tar_info("demo-1.0/huge.bin", size=2 * 1024 * MiB).tobuf(tarfile.USTAR_FORMAT)
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", gzip.compress(header + bytes(4096)))
    assert "declares" in finding(inspection, "archive-too-large").message
    assert action(inspection) is Action.REVIEW  # too big to inspect is not malice


def test_tar_many_entries_and_huge_pax_header(tmp_path: Path) -> None:
    many = tar_gz_of((tar_info(f"demo-1.0/{i}.txt"), b"") for i in range(150))
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", many, limits=Limits(max_entries=100))
    assert "archive-too-many-entries" in rules(inspection)

    pax = tar_info("././@PaxHeader", tarfile.XHDTYPE, size=4 * MiB).tobuf(tarfile.USTAR_FORMAT)
    huge = gzip.compress(pax + b"9999999 path=" + bytes(4 * MiB))
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", huge)
    assert "extended header" in finding(inspection, "archive-malformed").message
    assert action(inspection) is Action.BLOCK


def test_malformed_tars(tmp_path: Path) -> None:
    good = sdist_of({"PKG-INFO": PKG_INFO, "setup.py": b"from setuptools import setup\n" * 100})
    raw = gzip.decompress(good)
    bad_checksum = gzip.compress(_patched(raw, 148, b"0000001\x00"))
    cases = {
        "truncated-gzip": good[: len(good) // 2],
        "not-gzip": b"PK\x03\x04 not really" * 10,
        "bad-checksum": bad_checksum,
        "truncated-tar": gzip.compress(raw[:700]),
    }
    for label, data in cases.items():
        inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", data)
        assert "archive-malformed" in rules(inspection), (label, inspection.findings)
        assert action(inspection) is Action.BLOCK


def test_tar_sdist_that_is_also_a_zip(tmp_path: Path) -> None:
    sdist = sdist_of({"PKG-INFO": PKG_INFO})
    polyglot = sdist + zip_of([("demo-1.0/setup.py", b"import os\n")])
    inspection = inspect_bytes(tmp_path, "demo-1.0.tar.gz", polyglot)
    assert "archive-polyglot" in rules(inspection)


def test_zip_sdist_and_unknown_files(tmp_path: Path) -> None:
    zipped = zip_of(
        [("demo-1.0/PKG-INFO", PKG_INFO), ("demo-1.0/setup.py", b"from setuptools import setup\n")]
    )
    assert action(inspect_bytes(tmp_path, "demo-1.0.zip", zipped)) is Action.PASS
    unknown = inspect_bytes(tmp_path, "demo-1.0.exe", b"MZ")
    assert "archive-unsupported" in rules(unknown) and unknown.summary is None


def test_reader_yields_members_with_text_of_interest_only(tmp_path: Path) -> None:
    dist = build_wheel("demo", "1.0", extra_files={"demo/data.bin": b"\x00" * 10})
    path = tmp_path / dist.filename
    path.write_bytes(dist.data)
    reader = ArchiveReader(path, dist.filename)
    members = {m.name: m for m in reader}
    assert reader.finished and reader.findings == []
    assert members["demo/__init__.py"].data == b'__version__ = "1.0"\n'
    assert members["demo/data.bin"].data is None and members["demo/data.bin"].size == 10
    assert members["demo/data.bin"].kind is MemberKind.FILE


def test_evidence_keeps_at_most_fifty_findings(tmp_path: Path) -> None:
    modules = {f"demo/m{i}.py": "def f(x):\n    return eval(x)\n" for i in range(70)}
    # In a function nobody calls at import: only the payload rule speaks, not the import ones.
    source = f'import base64\ndef run():\n    exec(base64.b64decode("{PAYLOAD}"))\n'
    modules["demo/evil.py"] = source
    inspection = inspect_dist(tmp_path, build_wheel("demo", "1.0", modules=modules))
    evidence = inspection.evidence()
    assert len(evidence.findings) == 50 and evidence.details["omitted"] == 21
    assert evidence.findings[0].rule == "exec-encoded-payload"  # the worst is kept first
    assert evidence.action is Action.BLOCK
    assert evidence.details["rules"] == {"dynamic-exec": 70, "exec-encoded-payload": 1}
    json.dumps(evidence.details)  # JSON-serialisable, summary included
    overridden = inspection.evidence(rule_actions={"exec-encoded-payload": Action.REVIEW})
    assert overridden.action is Action.REVIEW


# ------------------------------------------------------------ nothing ever runs

_EXECUTED: list[CodeType] = []
_WATCHING: list[bool] = [False]


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _WATCHING[0] and event == "exec" and args and isinstance(args[0], CodeType):
        _EXECUTED.append(args[0])


def test_nothing_from_an_archive_is_executed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.addaudithook(_audit)  # stays for the session; it only records while watching
    setup = (
        SETUP_HEAD + f'import base64\nexec(base64.b64decode("{PAYLOAD}"))\nprint("hi")\nsetup()\n'
    )
    dists = [
        litellm("1.82.8", **{"litellm_init.pth": PTH_LINE}),
        build_wheel(
            "litellm",
            "1.82.7",
            modules={"litellm/__init__.py": f'exec(__import__("base64").b64decode("{PAYLOAD}"))\n'},
        ),
        build_sdist(
            "litellm", "1.82.7", modules={"setup.py": setup, "litellm/__init__.py": 'print("hi")\n'}
        ),
    ]
    capsys.readouterr()
    _WATCHING[0] = True
    try:
        verdicts = [action(inspect_dist(tmp_path, dist)) for dist in dists]
    finally:
        _WATCHING[0] = False
    assert verdicts == [Action.REVIEW, Action.BLOCK, Action.BLOCK]
    assert "LAZARETTO_TEST" not in os.environ
    assert capsys.readouterr() == ("", "")
    # Any code executed meanwhile came from a real module file, never from an archive.
    assert all(Path(code.co_filename).is_file() for code in _EXECUTED), _EXECUTED


# ---------------------------------------------------------------- bounded memory


def test_memory_stays_bounded_for_bombs_and_a_100_mb_wheel(tmp_path: Path) -> None:
    files = {
        "zip-bomb": tmp_path / "bomb-1.0-py3-none-any.whl",
        "zip-bomb-lying": tmp_path / "lying-1.0-py3-none-any.whl",
        "zip-bomb-padded": tmp_path / "padded-1.0-py3-none-any.whl",
        "tar-gz-bomb": tmp_path / "demo-1.0.tar.gz",
        "wheel-100MB": tmp_path / "big-1.0-py3-none-any.whl",
    }
    write_zero_bomb(files["zip-bomb"], 1024)
    write_zero_bomb(files["zip-bomb-lying"], 1024, declared=1000)
    write_zero_bomb(files["zip-bomb-padded"], 400, padding=10 * MiB)
    write_tar_gz_bomb(files["tar-gz-bomb"], 400)
    write_big_wheel(files["wheel-100MB"], 100, modules=200)
    assert files["wheel-100MB"].stat().st_size > 100 * MiB

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    try:
        verdicts = {label: inspect_file(path, path.name, None) for label, path in files.items()}
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    report = (
        f"peak traced {peak / MiB:.1f} MiB, ru_maxrss +{rss_growth / 1024:.1f} MiB, {elapsed:.2f} s"
    )
    print(report)
    assert peak < 64 * MiB, report
    assert elapsed < 10, report
    big = verdicts.pop("wheel-100MB")
    assert action(big) is Action.PASS, big.findings
    assert big.summary is not None and big.summary.total_size > 100 * MiB and big.summary.has_binary
    for label, inspection in verdicts.items():
        assert action(inspection) is Action.BLOCK, (label, inspection.findings)


SETUP_PROBE = (
    "import subprocess\n"
    "subprocess.Popen(['cc', '--version'])\n"
    "from setuptools import setup\n"
    "setup()\n"
)


def test_setup_time_process_calls_hold_only_when_new(tmp_path: Path) -> None:
    # cffi and psutil probe compilers from setup.py in every release: that is reported;
    # a release whose setup.py starts spawning processes (or a first release) is held.
    old = build_sdist("probe", "1.0", modules={"setup.py": SETUP_PROBE})
    new = build_sdist("probe", "1.1", modules={"setup.py": SETUP_PROBE})
    plain = build_sdist(
        "probe", "0.9", modules={"setup.py": "from setuptools import setup\nsetup()\n"}
    )
    first = inspect_bytes(tmp_path, old.filename, old.data)
    assert action(first) is Action.REVIEW
    assert first.summary is not None and "setup-subprocess" in first.summary.install_time_rules
    again = inspect_file(_write(tmp_path, new), new.filename, first.summary)
    assert action(again) is Action.REPORT
    assert "as in the previous release" in finding(again, "setup-subprocess").message
    baseline = inspect_bytes(tmp_path, plain.filename, plain.data)
    added = inspect_file(_write(tmp_path, new), new.filename, baseline.summary)
    assert action(added) is Action.REVIEW


def _write(tmp_path: Path, dist: Dist) -> Path:
    path = tmp_path / dist.filename
    path.write_bytes(dist.data)
    return path
