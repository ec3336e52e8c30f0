"""The queue of held files to fetch and vet: a file is never in two hands at once."""

from datetime import UTC, datetime

from packaging.utils import NormalizedName

from quarantine.models import FileRecord, FileState
from quarantine.work_queue import WorkQueue

DEMO = NormalizedName("demo")
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _held(filename: str, version: str) -> FileRecord:
    return FileRecord(
        DEMO, filename, version, "a" * 64, 10, NOW, NOW, NOW, False,
        FileState.HELD, "cooling", "u", None, None, None, None, None, True, True, None, 0,
    )  # fmt: skip


def _queue() -> WorkQueue:
    return WorkQueue(lambda record: NOW)


def test_a_file_in_hand_is_not_queued_again_until_it_is_done() -> None:
    queue = _queue()
    record = _held("demo-1.0.tar.gz", "1.0")
    queue.put(record, NOW)
    assert queue.pop() == record
    # A client asks for the project mid-round: its held files are offered again.
    queue.ask(DEMO)
    queue.put(record, NOW)
    assert queue.pop() is None  # not a second, concurrent vetting of the same file
    assert queue.done(record)  # nothing of the project left
    queue.put(record, NOW)  # offered in a later round: queued again
    assert queue.pop() == record
