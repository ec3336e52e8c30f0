"""The extra measurements of issue 5, each bounded in time and each returning table rows.

bigproject  a 10,000-file project: warm page, and the time until one newly promoted file shows
ledger      1,000,000 file records over 100,000 projects against an almost empty ledger
bigfile     a 1 GiB established file through the mirror: RSS before and after
vetting     files per second through download, hash, provenance, inspection; a 100 MB wheel
load        64 concurrent clients on a page and a file for 60 s: p99 and errors
"""

import asyncio
import base64
import hashlib
import http.client
import io
import logging
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from bench_support import (
    HTML_ACCEPT,
    JSON_ACCEPT,
    REPO,
    VENV_PYTHON,
    BenchError,
    Lazaretto,
    LazarettoSpec,
    Row,
    WrkResult,
    curl_time,
    fetch,
    log,
    ms,
    parse_wrk,
    require_loopback,
    rss_mb,
    wrk,
    wrk_command,
)
from static_nginx import StaticNginx
from static_upstream import StaticFile, StaticUpstream

sys.path.insert(0, str(REPO / "tests"))

from packaging.utils import (
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from mirror.app import build_services
from mirror.services import Services
from mirror.settings import Settings
from quarantine.clock import SystemClock, format_timestamp
from quarantine.inspect.archive.reader import Limits
from quarantine.inspect.check import inspect_file
from quarantine.models import FileState
from quarantine.policy import Policy
from support.dists import build_wheel

FIXTURES = REPO.parent / "shared" / "fixtures" / "provenance"
MiB = 1024 * 1024


@dataclass
class Context:
    quick: bool
    work: Path  # scratch directory of this run
    cooling: str  # what the harness run used (for `load`)
    upstream_index: str  # the shared nginx upstream
    upstream_dl: Path  # real wheels the shared upstream was built from
    attachments: list[tuple[str, str]] = field(default_factory=list)  # (title, verbatim text)

    def seconds(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio_row(
    area: str, what: str, empty: float, big: float, unit: str = "ms", limit: float = 2.0
) -> Row:
    ratio = big / empty if empty > 0 else float("inf")
    if unit == "ms":
        value = f"{big * 1e3:.3g} ms vs {empty * 1e3:.3g} ms empty ({ratio:.2f}x)"
    else:
        value = f"{big:,.0f} {unit} vs {empty:,.0f} {unit} empty ({ratio:.2f}x)"
        ratio = empty / big if big > 0 else float("inf")  # throughput: lower is worse
    verdict = "PASS" if ratio <= limit else "MISS"
    return Row(area, what, value, f"within {limit:g}x of empty", verdict)


def _wrk_value(result: WrkResult) -> str:
    return (
        f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{result.errors} errors"
    )


def _time_requests(url: str, accept: str | None, count: int) -> list[float]:
    times = []
    for _ in range(count):
        got = fetch(url, accept)
        if got.status != 200:
            raise BenchError(f"{url}: HTTP {got.status}: {got.body[:200]!r}")
        times.append(got.seconds)
    return times


def _scratch(ctx: Context, name: str) -> Path:
    path = ctx.work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# -- bigproject --------------------------------------------------------------------------------


BIG_PROJECT = "bigproject"
PIP_HEADERS = (
    "Accept: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01",
    "Accept-Encoding: gzip, deflate",
)
BIG_TAGS = (
    "cp310-cp310-manylinux_2_17_x86_64",
    "cp311-cp311-manylinux_2_17_x86_64",
    "cp312-cp312-manylinux_2_17_x86_64",
    "cp313-cp313-manylinux_2_17_x86_64",
)


BYSTANDER = "bystander"  # a one-file project whose warm page is timed during big work


class _Bystander:
    """Times another project's warm page, one request after another on one connection,
    while the mirror does something big: how long does everyone else wait?"""

    def __init__(self, page: str) -> None:
        require_loopback(page)
        parts = urlsplit(page)
        self._host, self._port, self._path = parts.hostname or "", parts.port or 80, parts.path
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Bystander":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        headers = {"Accept": JSON_ACCEPT}
        while not self._stop.is_set():
            started = time.perf_counter()
            connection.request("GET", self._path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise BenchError(f"bystander page: HTTP {response.status}")
            self.latencies.append(time.perf_counter() - started)
            time.sleep(0.002)
        connection.close()

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        if not ordered:
            return "no request completed"
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{len(ordered)} requests: p50 {ms(_median(ordered))}, p99 {ms(p99)}, "
            f"slowest {ms(ordered[-1])}"
        )


def bigproject(ctx: Context) -> list[Row]:
    area = "bigproject"
    files_total = 10_000
    now = datetime.now(UTC)
    built = time.perf_counter()
    files = []
    for index in range(files_total // len(BIG_TAGS)):
        version = f"1.{index // 100}.{index % 100}"
        upload = now - timedelta(days=1000) + timedelta(minutes=index)
        for tag in BIG_TAGS:
            dist = build_wheel(BIG_PROJECT, version, tag=tag)
            files.append(StaticFile.from_bytes(dist.filename, dist.data, upload))
    log(f"bigproject: {len(files)} wheels built in {time.perf_counter() - built:.1f} s")
    scratch = _scratch(ctx, "bigproject")
    rows: list[Row] = []
    with StaticUpstream() as upstream:
        upstream.add_many(BIG_PROJECT, files)
        small = build_wheel(BYSTANDER, "1.0")
        upstream.add(
            BYSTANDER,
            StaticFile.from_bytes(small.filename, small.data, now - timedelta(days=1000)),
        )
        # cooling 2 s and no vetting window: every old file is established at first sight,
        # and a file uploaded now is promoted (after its bytes and vetting) within seconds.
        spec = LazarettoSpec(
            state_dir=scratch / "ctl",
            data_dir=scratch / "data",
            upstream=upstream.url,
            cooling_period="2s",
            env={"LAZARETTO_VETTING_WINDOW": "0s"},
        )
        mirror = Lazaretto(spec)
        page = spec.index_url + BIG_PROJECT + "/"
        try:
            mirror.start()
            bystander = spec.index_url + BYSTANDER + "/"
            fetch(bystander, JSON_ACCEPT)  # looked at and rendered: warm from here on
            with _Bystander(bystander) as others:
                first = fetch(page, JSON_ACCEPT, timeout=120)
            if first.status != 200 or first.body.count(b'"filename"') != files_total:
                raise BenchError(f"bigproject page: HTTP {first.status}, wrong file count")
            rows.append(
                Row(
                    area,
                    "first request: look + 10,000 records written + render (JSON)",
                    ms(first.seconds),
                )
            )
            rows.append(
                Row(area, "meanwhile: another project's warm page (JSON)", others.summary())
            )
            html = fetch(page, HTML_ACCEPT, timeout=120)
            sizes = f"JSON {len(first.body) / 1e6:.2f} MB, HTML {len(html.body) / 1e6:.2f} MB"
            rows.append(Row(area, "first HTML render (same ledger state)", ms(html.seconds)))
            for label, headers in (
                ("JSON, as pip asks (Accept-Encoding: gzip, deflate)", PIP_HEADERS),
                ("JSON, no Accept-Encoding", (f"Accept: {JSON_ACCEPT}",)),
                ("HTML, no Accept-Encoding", (f"Accept: {HTML_ACCEPT}",)),
            ):
                timings = [curl_time(page, headers) for _ in range(20)]
                total = _median([t.total for t in timings])
                ttfb = _median([t.ttfb for t in timings])
                wire = timings[-1].size / 1e6
                encoding = timings[-1].encoding or "identity"
                rows.append(
                    Row(
                        area,
                        f"warm page, one request at a time (curl), {label}",
                        f"{ms(total)} total, first byte {ms(ttfb)}; {wire:.2f} MB on the wire "
                        f"({encoding})",
                        "a few ms (<= 5 ms total)",
                        "PASS" if total <= 0.005 else "MISS",
                    )
                )
            rows.append(Row(area, "page sizes (uncompressed)", sizes))
            seconds = ctx.seconds(10, 3)
            for label, accept, extra in (
                ("JSON, gzip accepted", JSON_ACCEPT, ("Accept-Encoding: gzip, deflate",)),
                ("JSON", JSON_ACCEPT, ()),
                ("HTML", HTML_ACCEPT, ()),
            ):
                result = wrk(page, seconds, connections=8, accept=accept, headers=extra)
                rows.append(
                    Row(
                        area,
                        f"warm page, wrk -c8 {seconds}s, {label}",
                        _wrk_value(result) + f", {result.mb_s:,.0f} MB/s",
                        "p50 a few ms (<= 5 ms)",
                        "PASS" if result.p50_ms <= 5 and not result.errors else "MISS",
                    )
                )
            rows += _same_bytes_from_nginx(scratch, first.body, html.body, seconds)
            mirror.stop()
            rows += _bigproject_change(mirror, upstream, page, bystander)
        finally:
            mirror.stop()
            rows += _log_rows(area, mirror)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _same_bytes_from_nginx(
    scratch: Path, json_body: bytes, html_body: bytes, seconds: int
) -> list[Row]:
    """The anchor for the uncompressed rows: nginx sending the identical page bytes."""
    rows = []
    with StaticNginx(scratch / "nginx") as nginx:
        for label, body in (("JSON", json_body), ("HTML", html_body)):
            url = nginx.put(f"page.{label.lower()}", body)
            result = wrk(url, seconds, connections=8)
            rows.append(
                Row(
                    "bigproject",
                    f"anchor: nginx sending the same {label} page bytes "
                    f"({len(body) / 1e6:.2f} MB, static), wrk -c8 {seconds}s",
                    _wrk_value(result) + f", {result.mb_s:,.0f} MB/s",
                )
            )
    return rows


def _bigproject_change(
    mirror: Lazaretto, upstream: StaticUpstream, page: str, bystander: str
) -> list[Row]:
    """Restart with a 1 s index TTL, add one new file, time until the page lists it."""
    area = "bigproject"
    mirror.spec.env.update({"LAZARETTO_INDEX_TTL": "1s", "LAZARETTO_PROMOTE_INTERVAL": "1s"})
    mirror.spec.save()
    mirror.start()
    rows = []
    after_restart = fetch(page, JSON_ACCEPT, timeout=120)
    rows.append(
        Row(
            area,
            "first request after a restart: look (304) + render from the ledger (JSON)",
            ms(after_restart.seconds),
        )
    )
    _time_requests(page, JSON_ACCEPT, 3)
    fetch(bystander, JSON_ACCEPT)
    dist = build_wheel(BIG_PROJECT, "99.0.0")
    upstream.add(BIG_PROJECT, StaticFile.from_bytes(dist.filename, dist.data, datetime.now(UTC)))
    added = time.perf_counter()
    needle = dist.filename.encode()
    polls: list[tuple[float, float, bool, bool]] = []  # (at, latency, held seen, listed)
    deadline = added + 60
    with _Bystander(bystander) as others:
        while time.perf_counter() < deadline:
            got = fetch(page, JSON_ACCEPT, timeout=60)
            at = time.perf_counter() - added
            polls.append((at, got.seconds, b'"held-files"' in got.body, needle in got.body))
            if polls[-1][3]:
                break
            time.sleep(0.05)
    listed = [p for p in polls if p[3]]
    held = [p for p in polls if p[2]]
    if not listed:
        rows.append(
            Row(area, "new file listed after promotion", "not within 60 s", "listed", "MISS")
        )
        return rows
    index = polls.index(listed[0])
    seen = f"held seen after {held[0][0]:.2f} s, " if held else ""
    rows.append(
        Row(
            area,
            "new upload (cooling 2 s, index TTL 1 s, promote interval 1 s): added -> listed",
            f"{listed[0][0]:.2f} s ({seen}{len(polls)} polls)",
        )
    )
    rows.append(
        Row(
            area, "first request that lists it: page rebuilt (10,001 files, JSON)", ms(listed[0][1])
        )
    )
    slowest = max(p[1] for p in polls[:index]) if index else float("nan")
    rows.append(Row(area, "slowest request while it was held (look or rebuild)", ms(slowest)))
    rows.append(
        Row(
            area,
            "meanwhile (upload to listed): another project's warm page (JSON)",
            others.summary(),
        )
    )
    warm = _median(_time_requests(page, JSON_ACCEPT, 10))
    rows.append(Row(area, "warm page again after the change (JSON)", ms(warm)))
    fetch(page, HTML_ACCEPT, timeout=60)
    rows.append(Row(area, "server RSS, both pages and their parts kept", _rss_text(mirror)))
    return rows


def _rss_text(mirror: Lazaretto) -> str:
    pid = mirror.pid
    if pid is None:
        return "n/a"
    rss, peak = rss_mb(pid)
    return f"{rss:.0f} MB (peak {peak:.0f} MB)"


def _log_rows(area: str, mirror: Lazaretto) -> list[Row]:
    problems = mirror.problems()
    if not problems:
        return []
    return [
        Row(area, "server log: errors/tracebacks", f"{len(problems)}: {problems[0]}", "0", "MISS")
    ]


# -- ledger -------------------------------------------------------------------------------------


PROBE = "ledger-probe"
_FILE_INSERT = (
    "INSERT INTO files (project, filename, version, sha256, size, upload_time, first_seen, "
    "clock_start, established, state, reason, url, requires_python, yanked, "
    "core_metadata_sha256, provenance_url, provenance_sha256, stored, listed, anomaly, "
    "state_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVENT_INSERT = (
    "INSERT INTO events (at, project, filename, sha256, from_state, to_state, reason, actor) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _bulk_files(name: str, per_project: int) -> list[tuple[str, str, str, int]]:
    """(filename, version, sha256, size) of a generated project, for the ledger and the
    upstream alike, so the watcher's looks find nothing new."""
    module = name.replace("-", "_")
    files = []
    for j in range(per_project):
        filename = f"{module}-1.{j}.0-py3-none-any.whl"
        files.append(
            (filename, f"1.{j}.0", hashlib.sha256(filename.encode()).hexdigest(), 10_000 + j)
        )
    return files


def _bulk_page(per_project: int, uploaded: datetime) -> Callable[[str], list[StaticFile] | None]:
    def page(name: str) -> list[StaticFile] | None:
        if re.fullmatch(r"bulk-\d{6}", name) is None:
            return None
        return [
            StaticFile(filename, uploaded, digest, size)
            for filename, _, digest, size in _bulk_files(name, per_project)
        ]

    return page


def _bulk_fill(path: Path, projects: int, per_project: int, uploaded: datetime) -> None:
    """Promoted (established) records and their first-seen events, as a mirror that has
    served these projects for a while would have them; every project looked at just now."""
    now = datetime.now(UTC)
    old, seen = format_timestamp(uploaded), format_timestamp(now - timedelta(days=1))
    looked = format_timestamp(now)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO projects (name, first_seen, last_look_ok, status, status_reason, "
            "etag, serial, seq) VALUES (?, ?, ?, 'active', NULL, NULL, NULL, 0)",
            ((f"bulk-{i:06d}", seen, looked) for i in range(projects)),
        )

        def records() -> Iterator[tuple[object, ...]]:
            for i in range(projects):
                name = f"bulk-{i:06d}"
                for filename, version, digest, size in _bulk_files(name, per_project):
                    url = f"http://127.0.0.1:9/files/{name}/{filename}"
                    yield (
                        name, filename, version, digest, size, old, seen, old, 1,
                        "promoted", "established", url, None, None, None, None, None, 0, 1,
                        None, 0,
                    )  # fmt: skip

        db.executemany(_FILE_INSERT, records())
        db.executemany(
            _EVENT_INSERT,
            (
                (seen, r[0], r[1], r[3], None, "promoted", "established", "system:upstream-look")
                for r in records()
            ),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def _promotion_rounds(services: Services, count: int) -> list[float]:
    """Promoter.run_once as the server runs it; nothing is due, so nothing is fetched."""
    await services.client.open()
    try:
        rounds = []
        for _ in range(count):
            started = time.perf_counter()
            result = await services.promoter.run_once()
            rounds.append(time.perf_counter() - started)
            if result.promoted:
                raise BenchError(f"ledger bench: the round promoted {result.promoted}")
            if result.fetched or result.looks:
                log(f"ledger bench: a timed round fetched or looked: {result}")
        return rounds
    finally:
        await services.client.close()


@dataclass
class _LedgerTimes:
    held_all: float
    held_count: int
    held_probe: float
    file_by_digest: float
    promotion_round: float
    transition_round: float
    startup: float = 0.0
    first_page: float = 0.0
    warm_page: float = 0.0
    wrk_rps: float = 0.0


def _time_ledger(directory: Path, upstream: str, policy: Policy, reps: int) -> _LedgerTimes:
    """In-process timings on the ledger in ``directory``, wired the way the server wires it."""
    settings = Settings(
        data_dir=directory, upstream=upstream, access_log=False, log_level="warning", policy=policy
    )
    services = build_services(settings)
    ledger = services.ledger
    try:
        probe = NormalizedName(PROBE)

        def timed(call: Callable[[], object], count: int) -> float:
            values = []
            for _ in range(count):
                started = time.perf_counter()
                call()
                values.append(time.perf_counter() - started)
            return _median(values)

        held = ledger.held()
        held_all = timed(ledger.held, reps * 5)
        held_probe = timed(lambda: ledger.held(probe), reps * 5)
        sample = ledger.files(probe)[0]
        by_digest = timed(lambda: ledger.file_by_digest(sample.sha256, sample.filename), reps * 10)
        clock = SystemClock()
        rounds = asyncio.run(_promotion_rounds(services, max(3, reps // 4)))
        reasons = {r.filename: r.reason for r in held if r.project == probe}
        transitions = []
        for _ in range(max(3, reps // 4)):
            started = time.perf_counter()
            moved = [
                ledger.transition(r, FileState.PROMOTED, "bench", "bench", clock.now())
                for r in ledger.held()
                if r.project == probe
            ]
            transitions.append(time.perf_counter() - started)
            for record in moved:  # back as they were, for the next repetition
                reason = reasons[record.filename]
                ledger.transition(record, FileState.HELD, reason, "bench", clock.now())
        return _LedgerTimes(
            held_all,
            len(held),
            held_probe,
            by_digest,
            _median(rounds),
            _median(transitions),
        )
    finally:
        ledger.close()


def ledger(ctx: Context) -> list[Row]:
    area = "ledger"
    projects, per_project = (100_000, 10)
    scratch = _scratch(ctx, "ledger")
    now = datetime.now(UTC)
    uploaded = now - timedelta(days=400)
    upstream_files = []
    for minor in range(15):
        dist = build_wheel(PROBE, f"1.{minor}.0")
        fresh = minor >= 10  # 10 established, 5 cooling
        upload = now - (timedelta(hours=1) if fresh else timedelta(days=400 - minor))
        upstream_files.append(StaticFile.from_bytes(dist.filename, dist.data, upload))
    rows: list[Row] = []
    env = {"LAZARETTO_VETTING_WINDOW": "0s"}
    with StaticUpstream(fallback=_bulk_page(per_project, uploaded)) as upstream:
        upstream.add_many(PROBE, upstream_files)
        base = scratch / "base"
        mirror = Lazaretto(LazarettoSpec(scratch / "ctl-base", base, upstream.url, "1d", env=env))
        try:
            mirror.start()
            page = mirror.spec.index_url + PROBE + "/"
            if fetch(page, JSON_ACCEPT).status != 200:
                raise BenchError("ledger probe page did not answer 200")
            _wait_vetted(base / "ledger.sqlite3", 5, 60)
        finally:
            mirror.stop()
            rows += _log_rows(area, mirror)
        db = sqlite3.connect(base / "ledger.sqlite3")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        variants = {"empty": scratch / "empty", "1M": scratch / "big"}
        for target in variants.values():
            shutil.copytree(base, target)
        started = time.perf_counter()
        _bulk_fill(variants["1M"] / "ledger.sqlite3", projects - 1, per_project, uploaded)
        size = (variants["1M"] / "ledger.sqlite3").stat().st_size / 1e6
        rows.append(
            Row(
                area,
                f"generated {(projects - 1) * per_project:,} records + events over "
                f"{projects - 1:,} projects (+ the probe's 15: 10 promoted, 5 held)",
                f"{time.perf_counter() - started:.1f} s, {size:,.0f} MB",
            )
        )
        policy = Policy(cooling_period=timedelta(days=1), vetting_window=timedelta(0))
        reps = 10 if ctx.quick else 40
        times: dict[str, _LedgerTimes] = {}
        for _ in range(2):  # two passes, alternating; the best median of each figure is kept
            for label, directory in variants.items():
                measured = _time_ledger(directory, upstream.url, policy, reps)
                times[label] = _best(times.get(label), measured)
        for label, directory in variants.items():
            measured = times[label]
            spec = LazarettoSpec(scratch / f"ctl-{label}", directory, upstream.url, "1d", env=env)
            mirror = Lazaretto(spec)
            try:
                measured.startup = mirror.start()
                page = spec.index_url + PROBE + "/"
                first = fetch(page, JSON_ACCEPT)
                if first.status != 200:
                    raise BenchError(f"ledger {label}: probe page HTTP {first.status}")
                measured.first_page = first.seconds
                measured.warm_page = _median(_time_requests(page, JSON_ACCEPT, reps))
                measured.wrk_rps = wrk(page, ctx.seconds(5, 2), 32, accept=JSON_ACCEPT).rps
            finally:
                mirror.stop()
                rows += _log_rows(area, mirror)
            log(f"ledger {label}: {measured}")
        empty, big = times["empty"], times["1M"]
        rows += [
            _ratio_row(area, "server start to /healthz", empty.startup, big.startup),
            _ratio_row(
                area,
                "probe page, first request (look 304 + render)",
                empty.first_page,
                big.first_page,
            ),
            _ratio_row(
                area, "probe page, warm, one request at a time", empty.warm_page, big.warm_page
            ),
            _ratio_row(area, "probe page, warm, wrk -c32", empty.wrk_rps, big.wrk_rps, "req/s"),
            _ratio_row(
                area, f"held() ({big.held_count} held files in both)", empty.held_all, big.held_all
            ),
            _ratio_row(area, "held(project)", empty.held_probe, big.held_probe),
            _ratio_row(
                area,
                "file_by_digest() (file route, cache miss)",
                empty.file_by_digest,
                big.file_by_digest,
            ),
            _ratio_row(
                area,
                "promotion round, in-process (Promoter.run_once, nothing due)",
                empty.promotion_round,
                big.promotion_round,
            ),
            _ratio_row(
                area,
                "held() + 5 transitions to promoted (synchronous=FULL commits)",
                empty.transition_round,
                big.transition_round,
            ),
        ]
        rows += _watcher_busy(ctx, scratch, variants["1M"], upstream.url, big.warm_page)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _best(old: "_LedgerTimes | None", new: "_LedgerTimes") -> "_LedgerTimes":
    if old is None:
        return new
    return _LedgerTimes(
        min(old.held_all, new.held_all),
        new.held_count,
        min(old.held_probe, new.held_probe),
        min(old.file_by_digest, new.file_by_digest),
        min(old.promotion_round, new.promotion_round),
        min(old.transition_round, new.transition_round),
    )


def _watcher_busy(
    ctx: Context, scratch: Path, directory: Path, upstream: str, quiet: float
) -> list[Row]:
    """The same 1M ledger with every project due for the watcher's re-read (info): the
    watcher in the server, then in a separate ``lazaretto work`` process."""
    rows = []
    for mode, extra in (
        ("watcher in the server", {}),
        ("separate worker", {"LAZARETTO_VETTING_WORKER": "separate"}),
    ):
        env = {"LAZARETTO_VETTING_WINDOW": "0s", **extra}
        rows += _watcher_busy_once(ctx, scratch, directory, upstream, quiet, mode, env)
    return rows


def _watcher_busy_once(
    ctx: Context,
    scratch: Path,
    directory: Path,
    upstream: str,
    quiet: float,
    mode: str,
    env: dict[str, str],
) -> list[Row]:
    area = "ledger"
    path = directory / "ledger.sqlite3"
    due = format_timestamp(datetime.now(UTC) - timedelta(days=1))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE projects SET last_look_ok=? WHERE name LIKE 'bulk-%'", (due,))
    db.close()
    spec = LazarettoSpec(scratch / f"ctl-watch-{len(env)}", directory, upstream, "1d", env=env)
    mirror = Lazaretto(spec)
    rows = []
    try:
        mirror.start()
        began = time.perf_counter()
        page = spec.index_url + PROBE + "/"
        fetch(page, JSON_ACCEPT)
        warm = _median(_time_requests(page, JSON_ACCEPT, 10 if ctx.quick else 40))
        result = wrk(page, ctx.seconds(10, 3), 32, accept=JSON_ACCEPT)
        window = time.perf_counter() - began
    finally:
        mirror.stop()
        rows += _log_rows(area, mirror)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    looked = db.execute(
        "SELECT COUNT(*) FROM projects WHERE name LIKE 'bulk-%' AND last_look_ok > ?", (due,)
    ).fetchone()[0]
    db.close()
    rows.append(
        Row(
            area,
            f"1M ledger, all 99,999 projects due for the watcher ({mode}; the upstream "
            "answers them): probe page warm, one request at a time",
            f"{warm * 1e3:.3g} ms (quiet watcher: {quiet * 1e3:.3g} ms); wrk -c32: "
            + _wrk_value(result),
        )
    )
    rows.append(
        Row(
            area,
            f"watcher re-reads meanwhile ({mode}; default watch_interval 10 min)",
            f"{looked:,} of 99,999 due projects re-read in the first {window:.0f} s after start",
        )
    )
    return rows


def _wait_vetted(path: Path, count: int, seconds: float) -> None:
    """Until the base run's promoter has fetched and vetted the probe's held files."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            stored = db.execute(
                "SELECT COUNT(*) FROM files WHERE project=? AND state='held' AND stored=1",
                (PROBE,),
            ).fetchone()[0]
            vetted = db.execute(
                "SELECT COUNT(DISTINCT filename) FROM evidence WHERE project=?", (PROBE,)
            ).fetchone()[0]
        except sqlite3.OperationalError:
            stored = vetted = 0
        finally:
            db.close()
        if stored >= count and vetted >= count:
            return
        time.sleep(0.5)
    log(f"ledger: the probe's held files were not all vetted within {seconds:.0f} s")


# -- bigfile ----------------------------------------------------------------------------------


def bigfile(ctx: Context) -> list[Row]:
    area = "bigfile"
    size = 1024 * MiB
    scratch = _scratch(ctx, "bigfile")
    path = scratch / "bigfile-1.0-py3-none-any.whl"
    started = time.perf_counter()
    digest = hashlib.sha256()
    rng = random.Random(1)
    block = rng.randbytes(8 * MiB)
    with path.open("wb") as out:
        for index in range(size // len(block)):
            chunk = index.to_bytes(8, "big") + block[8:]  # every block differs
            digest.update(chunk)
            out.write(chunk)
    log(f"bigfile: {size // MiB} MiB written and hashed in {time.perf_counter() - started:.1f} s")
    rows: list[Row] = []
    old = datetime.now(UTC) - timedelta(days=400)
    with StaticUpstream() as upstream:
        upstream.add("bigfile", StaticFile.from_path(path, old, sha256=digest.hexdigest()))
        spec = LazarettoSpec(
            scratch / "ctl",
            scratch / "data",
            upstream.url,
            "1d",
            env={"LAZARETTO_VETTING_WINDOW": "0s"},
        )
        mirror = Lazaretto(spec)
        try:
            mirror.start()
            got = fetch(spec.index_url + "bigfile/", JSON_ACCEPT)
            match = re.search(rb'"url":"([^"]+)"', got.body)
            if got.status != 200 or match is None:
                raise BenchError(f"bigfile page: HTTP {got.status} {got.body[:200]!r}")
            url = urljoin(spec.index_url + "bigfile/", match.group(1).decode())
            pid = mirror.pid
            assert pid is not None
            before, hwm_before = rss_mb(pid)
            samples = [f"before {before:.0f} MB (peak so far {hwm_before:.0f} MB)"]
            rss_after = before
            for attempt in (1, 2):
                timing = curl_time(url, timeout=600)
                took, code, length = timing.total, timing.status, timing.size
                rss_after, hwm = rss_mb(pid)
                what = "first (fetch + verify + serve)" if attempt == 1 else "second (from store)"
                rows.append(
                    Row(
                        area,
                        f"download {attempt}: {what}",
                        f"HTTP {code}, {length / MiB:,.0f} MiB in {took:.1f} s "
                        f"({length / took / 1e6:,.0f} MB/s), first byte after {ms(timing.ttfb)}",
                    )
                )
                samples.append(f"after {attempt}: {rss_after:.0f} MB (peak {hwm:.0f} MB)")
                if code != 200 or length != size:
                    rows.append(Row(area, "download", "incomplete", "1 GiB, HTTP 200", "MISS"))
            _, hwm_end = rss_mb(pid)
            growth = max(rss_after, hwm_end) - before
            rows.append(
                Row(
                    area,
                    "RSS of the lazaretto process around two 1 GiB downloads",
                    "; ".join(samples) + f"; growth {growth:+.0f} MB",
                    "no growth with file size (< 100 MB)",
                    "PASS" if growth < 100 else "MISS",
                )
            )
        finally:
            mirror.stop()
            rows += _log_rows(area, mirror)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


# -- vetting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    project: str
    path: Path
    provenance: bytes | None


def _vetting_candidates(dl: Path, count: int) -> list[_Candidate]:
    chosen: list[_Candidate] = []
    names: set[str] = set()
    fixtures = [
        "sampleproject-4.0.0.tar.gz",
        "sigstore-3.6.1.tar.gz",
        "pypi_attestations-0.0.19.tar.gz",
        "gcb_attestation_test-0.0.0.tar.gz",
    ]
    for filename in fixtures:
        path, provenance = FIXTURES / filename, FIXTURES / (filename + ".provenance")
        if path.exists() and provenance.exists():
            project = canonicalize_name(parse_sdist_filename(filename)[0])
            chosen.append(_Candidate(project, path, provenance.read_bytes()))
            names.add(project)
    for path in sorted(dl.glob("*")):
        if len(chosen) >= count:
            break
        if path.name.endswith(".whl"):
            project = canonicalize_name(parse_wheel_filename(path.name)[0])
        elif path.name.endswith(".tar.gz"):
            project = canonicalize_name(parse_sdist_filename(path.name)[0])
        else:
            continue
        if project not in names:
            chosen.append(_Candidate(project, path, None))
            names.add(project)
    return chosen


def vetting(ctx: Context) -> list[Row]:
    area = "vetting"
    count = 50
    if not ctx.upstream_dl.is_dir():
        raise BenchError(f"{ctx.upstream_dl} missing: the shared upstream must be built first")
    candidates = _vetting_candidates(ctx.upstream_dl, count)
    scratch = _scratch(ctx, "vetting")
    upload = datetime.now(UTC) - timedelta(days=2)  # cooled (1 d) but not established (31 d)
    total_bytes = sum(c.path.stat().st_size for c in candidates)
    rows: list[Row] = []
    with StaticUpstream() as upstream:
        for c in candidates:
            upstream.add(c.project, StaticFile.from_path(c.path, upload, c.provenance))
        settings = Settings(
            data_dir=scratch / "data",
            upstream=upstream.url,
            access_log=False,
            log_level="warning",
            policy=Policy(cooling_period=timedelta(days=1)),
        )
        budget = ctx.seconds(300, 180)
        outcome = asyncio.run(
            asyncio.wait_for(_vet_round(settings, [c.project for c in candidates]), budget)
        )
    looks, rounds, seconds, states, verified = outcome
    attested = sum(1 for c in candidates if c.provenance)
    rows.append(
        Row(
            area,
            f"first look at {len(candidates)} projects (one held file each)",
            ms(looks),
        )
    )
    rows.append(
        Row(
            area,
            f"{len(candidates)} held files ({total_bytes / 1e6:.1f} MB; {attested} with PEP 740 "
            "provenance) through download + sha256 + provenance + publisher + inspection",
            f"{len(candidates) / seconds:.1f} files/s, {total_bytes / seconds / 1e6:.1f} MB/s "
            f"({seconds:.1f} s, {rounds} promotion round(s), fetch_concurrency 4)",
        )
    )
    rows.append(
        Row(
            area,
            "states after vetting",
            ", ".join(f"{state}: {n}" for state, n in sorted(states.items()))
            + f"; provenance verified: {verified}/{attested}",
        )
    )
    rows += _hundred_mb_inspection(ctx, scratch)
    rows += _speed_scripts(ctx)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


async def _vet_round(
    settings: Settings, projects: list[str]
) -> tuple[float, int, float, Counter[str], int]:
    logging.basicConfig(level=logging.WARNING, format="    [in-process] %(levelname)s %(message)s")
    services = build_services(settings)
    await services.client.open()
    try:
        started = time.perf_counter()
        for project in projects:
            await services.catalog.look(NormalizedName(project))
        looks = time.perf_counter() - started
        held = len(services.ledger.held())
        if held != len(projects):
            log(f"vetting: {held} held files after the looks, expected {len(projects)}")
        started = time.perf_counter()
        rounds = 0
        while services.ledger.held() and rounds < 5:
            await services.promoter.run_once()
            rounds += 1
        seconds = time.perf_counter() - started
        states: Counter[str] = Counter()
        verified = 0
        for project in projects:
            name = NormalizedName(project)
            for record in services.ledger.files(name):
                states[record.state.value] += 1
            for items in services.ledger.evidence(name).values():
                verified += sum(
                    1 for e in items if e.check == "provenance" and "identity" in e.details
                )
        return looks, rounds, seconds, states, verified
    finally:
        await services.client.close()
        services.ledger.close()


def _python_module(index: int) -> str:
    body = [f'"""Module {index} of a large synthetic package."""', "", "import math", ""]
    for number in range(12):
        body += [
            f"def function_{number}(value: float, scale: float = {number}.5) -> float:",
            f'    """Scale ``value`` ({number})."""',
            "    total = 0.0",
            f"    for step in range({number + 3}):",
            "        total += math.sqrt(abs(value) + step) * scale",
            "    return total",
            "",
        ]
    body += [f"class Thing{index}:", "    def __init__(self) -> None:", "        self.x = 1", ""]
    return "\n".join(body)


def _hundred_mb_wheel(path: Path) -> None:
    name, version = "hundredmb", "1.0"
    dist_info = f"{name}-{version}.dist-info"
    rng = random.Random(7)
    members: list[tuple[str, bytes]] = []
    for index in range(2000):  # ~4 MB of Python sources
        members.append((f"{name}/pkg{index // 100}/mod{index}.py", _python_module(index).encode()))
    for index in range(24):  # ~96 MB of binaries (incompressible)
        members.append((f"{name}/_native{index}.so", rng.randbytes(4 * MiB)))
    members.append(
        (f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode())
    )
    members.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\n"
            b"Tag: cp311-cp311-manylinux_2_17_x86_64\n",
        )
    )
    record = io.StringIO()
    for member, data in members:
        digest = hashlib.sha256(data).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.write(f"{member},sha256={encoded},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    members.append((f"{dist_info}/RECORD", record.getvalue().encode()))
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members:
            method = zipfile.ZIP_STORED if member.endswith(".so") else zipfile.ZIP_DEFLATED
            archive.writestr(zipfile.ZipInfo(member, (2020, 1, 1, 0, 0, 0)), data, method)


def _hundred_mb_inspection(ctx: Context, scratch: Path) -> list[Row]:
    path = scratch / "hundredmb-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    _hundred_mb_wheel(path)
    size = path.stat().st_size
    started = time.perf_counter()
    inspection = inspect_file(path, path.name, None, Limits())
    took = time.perf_counter() - started
    rules = Counter(f.rule for f in inspection.findings)
    return [
        Row(
            "vetting",
            f"inspect a {size / 1e6:.0f} MB wheel (2,000 modules + 24 binaries), one thread",
            f"{took:.2f} s ({size / took / 1e6:.0f} MB/s); findings: "
            + (", ".join(f"{rule} x{n}" for rule, n in rules.items()) or "none"),
        )
    ]


def _speed_scripts(ctx: Context) -> list[Row]:
    rows = []
    scripts = [
        ("provenance_speed.py", ["-n", "10" if ctx.quick else "50"]),
        ("inspect_speed.py", []),
    ]
    for script, args in scripts:
        path = REPO / "bench" / script
        if not path.exists():
            rows.append(Row("vetting", f"bench/{script}", "not present in this checkout"))
            continue
        try:
            done = subprocess.run(
                [str(VENV_PYTHON), str(path), *args],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=REPO,
            )
            text = done.stdout.strip() + ("\n" + done.stderr.strip() if done.returncode else "")
            summary = f"output below (exit {done.returncode})"
            title = f"`bench/{script} {' '.join(args)}`".replace(" `", "`")
            ctx.attachments.append((title, text))
        except subprocess.TimeoutExpired:
            summary = "timed out after 300 s"
        rows.append(Row("vetting", f"bench/{script} {' '.join(args)}".strip(), summary))
    return rows


# -- load -------------------------------------------------------------------------------------


def load(ctx: Context) -> list[Row]:
    area = "load"
    seconds = ctx.seconds(60, 10)
    scratch = _scratch(ctx, "load")
    spec = LazarettoSpec(
        scratch / "ctl",
        scratch / "data",
        ctx.upstream_index,
        ctx.cooling,
        env={"LAZARETTO_VETTING_WINDOW": "0s"},
    )
    mirror = Lazaretto(spec)
    rows: list[Row] = []
    try:
        mirror.start()
        page = spec.index_url + "requests/"
        got = fetch(spec.index_url + "flask/", JSON_ACCEPT)
        match = re.search(rb'"url":"([^"]+\.whl)"', got.body)
        if got.status != 200 or match is None:
            raise BenchError(f"load: flask page HTTP {got.status}")
        file_url = urljoin(spec.index_url + "flask/", match.group(1).decode())
        for url, accept in ((page, JSON_ACCEPT), (file_url, None)):
            for _ in range(2):
                if fetch(url, accept).status != 200:
                    raise BenchError(f"load: {url} did not answer 200")
        jobs = [
            ("project page (requests), JSON", page, JSON_ACCEPT),
            ("~100 KB wheel (flask)", file_url, None),
        ]
        processes = [
            subprocess.Popen(
                wrk_command(url, seconds, 32, 1, accept),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _, url, accept in jobs
        ]
        outputs = []
        for process in processes:
            try:
                out, err = process.communicate(timeout=seconds + 90)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            outputs.append(out + err)
        alive = mirror.alive()
        for (label, url, _), output in zip(jobs, outputs, strict=True):
            result = parse_wrk(url, output)
            rows.append(
                Row(
                    area,
                    f"{label}: wrk -t1 -c32 -d{seconds}s, in parallel with the other (64 clients)",
                    _wrk_value(result)
                    + f" ({result.non2xx} non-2xx, {result.socket_errors} socket errors)",
                    "0 errors; p99 reported",
                    "PASS" if result.errors == 0 and result.requests and alive else "MISS",
                )
            )
        if not alive:
            rows.append(Row(area, "lazaretto process after the load", "DIED", "alive", "MISS"))
    finally:
        mirror.stop()
        rows += _log_rows(area, mirror)
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


EXTRAS: dict[str, Callable[[Context], list[Row]]] = {
    "bigproject": bigproject,
    "ledger": ledger,
    "bigfile": bigfile,
    "vetting": vetting,
    "load": load,
}
