"""The download log: its conformance suite (every implementation runs it), the recorder's
bounded queue, and the exposure a withdrawal notice carries on every channel."""

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from conftest import NOW
from mirror.files.download_recorder import IDENTITY_KEY, DownloadRecorder
from mirror.http.request_base import RequestBase
from mirror.notify.slack import slack_payload
from mirror.notify.webhook import payload
from quarantine.download_log.interface import Download, DownloadLog, Installer, summarize
from quarantine.download_log.postgres import PostgresDownloadLog
from quarantine.download_log.sqlite import SqliteDownloadLog
from quarantine.errors import LedgerNotMigrated
from quarantine.messages import render
from quarantine.models import FileRecord, FileState
from quarantine.outbox import OutboxEntry
from support.clock import FakeClock
from support.postgres import migrate_postgres

PIP = Installer("pip", "24.2", "3.12.3", "CPython 3.12.3", "Linux 6.8", "Ubuntu 24.04", "x86_64")
UV = Installer("uv", "0.5.4", "3.11.7", ci=True)


def _sqlite(request: pytest.FixtureRequest, directory: Path) -> DownloadLog:
    return SqliteDownloadLog(directory / "downloads.sqlite3")


def _postgresql(request: pytest.FixtureRequest, directory: Path) -> DownloadLog:
    url = str(request.getfixturevalue("postgres_url"))  # a fresh database, then migrated
    migrate_postgres(url)
    return PostgresDownloadLog(url, where="the test database")


IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], DownloadLog]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def downloads(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DownloadLog]:
    opened = IMPLEMENTATIONS[request.param](request, tmp_path)
    yield opened
    opened.close()


def _download(minutes: int, filename: str = "demo-1.0-py3-none-any.whl", **kw: object) -> Download:
    fields: dict[str, object] = {
        "at": NOW + timedelta(minutes=minutes),
        "project": NormalizedName("demo"),
        "version": filename.split("-")[1],
        "filename": filename,
        "sha256": filename.encode().hex()[:64].ljust(64, "0"),
        "client": "10.0.0.1",
        "identity": None,
        "installer": PIP,
    }
    fields.update(kw)
    return Download(**fields)  # type: ignore[arg-type]


def test_exposure_groups_per_file_and_client_latest_first(downloads: DownloadLog) -> None:
    downloads.write(
        [
            _download(0),
            _download(5),
            _download(7, client="10.0.0.2", identity="ci", installer=UV),
            _download(9, filename="demo-2.0-py3-none-any.whl"),
        ]
    )
    rows = downloads.exposure(NormalizedName("demo"), "1.0.0", None)  # PEP 440 equal
    assert [(r.client, r.identity, r.downloads, r.installer.name) for r in rows] == [
        ("10.0.0.2", "ci", 1, "uv"),
        ("10.0.0.1", None, 2, "pip"),
    ]
    assert rows[1].first == NOW and rows[1].last == NOW + timedelta(minutes=5)
    assert rows[0].installer == UV and rows[1].installer == PIP
    assert len(downloads.exposure(NormalizedName("demo"), None, None)) == 3
    since = downloads.exposure(NormalizedName("demo"), None, NOW + timedelta(minutes=6))
    assert {r.downloads for r in since} == {1}
    summary = summarize(downloads.exposure_of([_download(0).sha256]))
    assert (summary.downloads, summary.clients) == (3, 2)
    assert summary.first == NOW and summary.last == NOW + timedelta(minutes=7)
    assert summarize(downloads.exposure_of([])).downloads == 0


def test_prune_forgets_only_what_is_older(downloads: DownloadLog) -> None:
    downloads.write([_download(0), _download(60)])
    assert downloads.prune(NOW + timedelta(minutes=30)) == 1
    (row,) = downloads.exposure(NormalizedName("demo"), None, None)
    assert row.downloads == 1 and row.first == NOW + timedelta(minutes=60)


def test_postgresql_without_the_migration_says_to_run_it(postgres_url: str) -> None:
    with pytest.raises(LedgerNotMigrated, match="run `lazaretto migrate`"):
        PostgresDownloadLog(postgres_url, where="the test database")


# -- the recorder ------------------------------------------------------------------------------


def _record() -> FileRecord:
    return FileRecord(
        NormalizedName("demo"), "demo-1.0-py3-none-any.whl", "1.0", "ab" * 32, 10, NOW, NOW,
        NOW, True, FileState.PROMOTED, "established", "http://127.0.0.1/x", None, None, None,
        None, None, True, True, None, 1,
    )  # fmt: skip


def _scope(agent: bytes, identity: str | None = None) -> dict[str, object]:
    scope: dict[str, object] = {
        "type": "http",
        "client": ("192.0.2.7", 5000),
        "headers": [(b"user-agent", agent)],
    }
    if identity:
        scope[IDENTITY_KEY] = identity
    return scope


def test_a_full_queue_drops_and_counts_instead_of_waiting(
    downloads: DownloadLog, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    recorder = DownloadRecorder(
        downloads, clock, RequestBase(), retention=timedelta(days=90), max_queued=2
    )
    agent = b'pip/24.2 {"installer":{"name":"pip","version":"24.2"},"python":"3.12.3"}'
    for _ in range(5):
        recorder.note(_scope(agent, "laptop"), _record())
    assert (recorder.queued, recorder.dropped) == (2, 3)
    assert asyncio.run(recorder.flush()) == 2
    assert "3 downloads not recorded" in caplog.text
    (row,) = downloads.exposure(NormalizedName("demo"), None, None)
    assert (row.client, row.identity, row.downloads) == ("192.0.2.7", "laptop", 2)
    assert (row.installer.name, row.installer.python) == ("pip", "3.12.3")


def test_a_user_agent_too_long_to_read_is_not_queued(downloads: DownloadLog) -> None:
    recorder = DownloadRecorder(
        downloads, FakeClock(NOW), RequestBase(), retention=timedelta(days=90)
    )
    recorder.note(_scope(b"pip/24.2 " + b"x" * 100_000), _record())
    # What waits for the next flush keeps none of it (the queue holds 100,000 entries).
    assert [entry[4] for entry in recorder._queue] == [None]
    assert asyncio.run(recorder.flush()) == 1
    (row,) = downloads.exposure(NormalizedName("demo"), None, None)
    assert row.installer.name == ""  # the download counts; what it said is not kept


def test_the_recorder_prunes_past_the_retention(downloads: DownloadLog) -> None:
    clock = FakeClock(NOW)
    downloads.write([_download(0)])
    recorder = DownloadRecorder(downloads, clock, RequestBase(), retention=timedelta(days=90))
    clock.advance(timedelta(days=91))

    async def one_round() -> None:
        await recorder._prune_when_due()

    asyncio.run(one_round())
    assert downloads.exposure(NormalizedName("demo"), None, None) == []


# -- the notice --------------------------------------------------------------------------------


def _withdrawn(entries: Sequence[str]) -> list[OutboxEntry]:
    found = []
    for index, name in enumerate(entries, 1):
        data = {
            "project": "demo",
            "version": "1.0",
            "filename": name,
            "sha256": "ab" * 32,
            "from_state": "promoted",
            "to_state": "withdrawn",
            "reason": "MAL-2026-7",
            "actor": "system:feeds",
        }
        found.append(OutboxEntry(index, f"evt_{index}", "withdrawn", "critical", NOW, data))
    return found


def test_every_channel_says_how_far_a_withdrawn_file_travelled(downloads: DownloadLog) -> None:
    downloads.write([_download(0), _download(3, client="10.0.0.9")])
    exposure = summarize(downloads.exposure_of([_download(0).sha256]))
    message = render(_withdrawn(["demo-1.0-py3-none-any.whl"]), {}, exposure)
    line = "Served before: 2 downloads by 2 clients, first 2026-11-23T12:00:00.000000Z"
    assert line in message.text  # the email body is the text
    assert message.commands[0] == "lazaretto exposure demo==1.0"
    assert payload(message)["data"]["exposure"] == {
        "downloads": 2,
        "clients": 2,
        "first": "2026-11-23T12:00:00.000000Z",
        "last": "2026-11-23T12:03:00.000000Z",
    }
    slack = str(slack_payload(message))
    assert "Served before: 2 downloads" in slack and "lazaretto exposure demo==1.0" in slack
    quiet = render(_withdrawn(["demo-1.0-py3-none-any.whl"]), {}, summarize([]))
    assert "Served before: no download recorded" in quiet.text
    assert payload(render(_withdrawn(["x"]), {}))["data"]["exposure"] is None
