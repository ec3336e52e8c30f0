"""Content inspection speed and memory: a 100 MB wheel and a few bombs.

Run on demand (never in the test suite):  .venv/bin/python bench/inspect_speed.py
It builds, in a temporary directory and in chunks, a wheel of about --size-mb MB (the
standard library's Python sources, repeated up to --py-mb MB, plus an incompressible
native-looking blob) and typical wheels (the packages named by --typical, as installed in
this environment, zipped as they are), times ``inspect_file`` on each (median of --reps
runs, wall clock and CPU), measures peak memory (tracemalloc peak in this process; the peak
RSS of a fresh child process that only inspects), then does the same for zip and tar.gz
bombs, and prints a table.

With --real DIR (a folder per project holding two releases' files, as the false-positive
bench caches them), it times instead the inspection of each newer file against the older
release's summary, as the vetting worker does, and prints CPU time per file.
"""

import argparse
import gzip
import importlib
import random
import resource
import statistics
import struct
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from quarantine.inspect.archive.reader import MiB
from quarantine.inspect.check import Inspection, inspect_file


def build_wheel(path: Path, size_mb: int, py_mb: int) -> tuple[int, int]:
    """Returns (number of .py files, uncompressed bytes of Python)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    chunk = random.Random(0).randbytes(MiB)
    py_bytes = count = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: big\n")
        while py_bytes < py_mb * MiB:
            for source in sources:
                data = source.read_bytes()
                relative = source.relative_to(stdlib).as_posix()
                archive.writestr(f"big/v{count // len(sources)}/{relative}", data)
                count += 1
                py_bytes += len(data)
                if py_bytes >= py_mb * MiB:
                    break
        blob_mb = max(size_mb - py_mb // 4, 1)  # sources compress about 4:1
        archive.compresslevel = 0  # stored blocks: incompressible data, written fast
        with archive.open("big/_native.cpython-311-x86_64-linux-gnu.so", "w") as blob:
            for index in range(blob_mb):
                blob.write(chunk[index:] + chunk[:index])
    return count, py_bytes


def typical_wheel(root: Path, package: str) -> Path:
    """A wheel of one package installed here, its sources as they are: a typical wheel."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    source = Path(module.__file__).parent
    path = root / f"{package}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            f"{package}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {package}\n"
        )
        for member in sorted(source.rglob("*")):
            if member.is_file() and "__pycache__" not in member.parts:
                archive.write(member, f"{package}/{member.relative_to(source).as_posix()}")
    return path


def zero_bomb(path: Path, mib: int, *, declared: int | None = None, padding: int = 0) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    name = b"bomb/zeros.bin"
    csize = len(segment) * mib + 2 + padding
    usize = mib * MiB if declared is None else declared
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, 0, csize, usize, len(name), 0)
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 0x314, 20, 0, 8, 0, 33, 0, csize, usize, len(name),
        0, 0, 0, 0, 0, 0,
    ) + name  # fmt: skip
    with path.open("wb") as out:
        out.write(local + name)
        for _ in range(mib):
            out.write(segment)
        out.write(b"\x03\x00" + bytes(padding))
        offset = out.tell()
        out.write(central)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), offset, 0))


def tar_gz_bomb(path: Path, mib: int) -> None:
    info = tarfile.TarInfo("bomb-1.0/zeros.bin")
    info.size = mib * MiB
    zeros = gzip.compress(bytes(MiB), compresslevel=9, mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(info.tobuf(tarfile.USTAR_FORMAT), mtime=0))
        for _ in range(mib):
            out.write(zeros)
        out.write(gzip.compress(bytes(1024), mtime=0))


def verdict(inspection: Inspection) -> str:
    evidence = inspection.evidence()
    rules = sorted({f.rule for f in evidence.findings if f.severity.value != "info"})
    return f"{evidence.action.value} {','.join(rules)}".strip()


def child_rss(path: Path) -> float:
    """Peak RSS (MiB) of a fresh interpreter that imports the inspector and inspects: its
    VmHWM (ru_maxrss would carry this process's peak over fork and exec on Linux)."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from quarantine.inspect.check import inspect_file\n"
        "inspect_file(Path(sys.argv[1]), Path(sys.argv[1]).name, None)\n"
        "try:\n"
        "    status = Path('/proc/self/status').read_text()\n"
        "    kib = [line.split()[1] for line in status.splitlines() if line.startswith('VmHWM')]\n"
        "    print(0, kib[0])\n"
        "except OSError:\n"
        "    print(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    output = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout.split()
    return int(output[1]) / 1024


def measure(path: Path, reps: int) -> tuple[float, float, float, float, str]:
    """(median wall s, median CPU s, tracemalloc peak MiB, child peak RSS MiB, verdict).
    CPU time is the steadier number on a shared machine."""
    times = []
    cpu = []
    inspection = None
    for _ in range(reps):
        started, started_cpu = time.perf_counter(), time.process_time()
        inspection = inspect_file(path, path.name, None)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert inspection is not None
    tracemalloc.start()
    try:
        inspect_file(path, path.name, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (
        statistics.median(times),
        statistics.median(cpu),
        peak / MiB,
        child_rss(path),
        verdict(inspection),
    )


def real_files(folder: Path) -> None:
    """CPU time per file: each project's newer wheel and sdist against the older ones."""
    timed: list[tuple[float, str]] = []
    for project in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(project.iterdir(), key=lambda path: path.stat().st_mtime)
        for suffix in (".whl", ".tar.gz"):
            pair = sorted((f for f in files if f.name.endswith(suffix)), key=_version_of)
            if len(pair) < 2:
                continue
            older, newer = pair[-2], pair[-1]
            previous = inspect_file(older, older.name, None).summary
            cpu = []
            for _ in range(3):
                started = time.process_time()
                inspect_file(newer, newer.name, previous)
                cpu.append(time.process_time() - started)
            timed.append((statistics.median(cpu), newer.name))
    seconds = sorted(t for t, _ in timed)
    print(f"{len(timed)} files, CPU s per file (median of 3 runs each):")
    print(
        f"  total {sum(seconds):.2f}  median {statistics.median(seconds):.4f}  "
        f"p90 {seconds[int(len(seconds) * 0.9)]:.4f}  max {seconds[-1]:.3f}"
    )
    print("  slowest: " + ", ".join(f"{name} {t:.3f}" for t, name in sorted(timed)[-5:]))


def _version_of(path: Path) -> Version:
    if path.name.endswith(".whl"):
        return parse_wheel_filename(path.name)[1]
    return parse_sdist_filename(path.name)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="wheel size on disk (about)")
    parser.add_argument("--py-mb", type=int, default=20, help="MB of Python sources in it")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--typical", nargs="*", default=["rich", "aiohttp", "hypothesis"], help="packages"
    )
    parser.add_argument("--real", type=Path, help="time real files cached in this folder")
    args = parser.parse_args()
    if args.real is not None:
        real_files(args.real)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wheel = root / "big-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
        started = time.perf_counter()
        files, py_bytes = build_wheel(wheel, args.size_mb, args.py_mb)
        print(
            f"built {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB on disk, {files} .py files "
            f"({py_bytes / 1e6:.1f} MB of Python) in {time.perf_counter() - started:.1f} s"
        )
        cases = {f"typical: {name}": typical_wheel(root, name) for name in args.typical}
        cases["wheel"] = wheel
        cases["zip bomb 1 GiB (declared)"] = root / "a-1.0-py3-none-any.whl"
        zero_bomb(cases["zip bomb 1 GiB (declared)"], 1024)
        cases["zip bomb 1 GiB (lying header)"] = root / "b-1.0-py3-none-any.whl"
        zero_bomb(cases["zip bomb 1 GiB (lying header)"], 1024, declared=1000)
        cases["zip bomb 400 MiB (padded)"] = root / "c-1.0-py3-none-any.whl"
        zero_bomb(cases["zip bomb 400 MiB (padded)"], 400, padding=10 * MiB)
        cases["tar.gz bomb 400 MiB"] = root / "d-1.0.tar.gz"
        tar_gz_bomb(cases["tar.gz bomb 400 MiB"], 400)

        header = (
            f"{'file':32} {'MB':>7} {'wall s':>8} {'CPU s':>7} {'MB/s':>7} {'tracemalloc':>12} "
            f"{'child RSS':>10}  verdict"
        )
        print(header)
        print("-" * len(header))
        for label, path in cases.items():
            size = path.stat().st_size / 1e6
            seconds, cpu, peak, rss, outcome = measure(path, args.reps)
            rate = size / cpu if cpu else float("inf")
            print(
                f"{label:32} {size:7.1f} {seconds:8.3f} {cpu:7.3f} {rate:7.1f} {peak:9.1f} MiB "
                f"{rss:6.1f} MiB  {outcome}"
            )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"this process ru_maxrss (building included): {own:.1f} MiB")
        baseline = child_rss(cases["zip bomb 1 GiB (declared)"])
        print(
            f"child RSS baseline (interpreter and imports, nothing inspected): ~{baseline:.1f} MiB"
        )


if __name__ == "__main__":
    main()
