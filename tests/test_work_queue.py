"""The queue of held files to fetch and vet: a file is never in two hands at once."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from packaging.utils import NormalizedName

from quarantine.inspect.priority import Lane, Priority
from quarantine.models import FileRecord, FileState
from quarantine.vetting.queue import WorkQueue, install_likelihood

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


def _of(project: str, version: str) -> FileRecord:
    record = _held(f"{project}-{version}.tar.gz", version)
    return replace(record, project=NormalizedName(project), sha256=f"{project}{version}")


def test_each_asked_projects_newest_cooled_release_goes_before_any_older_backlog() -> None:
    """A resolver asks for numpy, then for a project with a month of releases: numpy's
    newest release must not wait for that whole backlog (seen against the real index)."""
    queue = _queue()
    numpy_newest = _of("numpy", "2.5.5")
    queue.put(_of("numpy", "2.5.4"), NOW)
    queue.put(numpy_newest, NOW)
    backlog = [_of("litellm", f"1.{minor}.0") for minor in range(100, 110)]
    for record in backlog:
        queue.put(record, NOW)
    queue.ask(NormalizedName("numpy"))
    queue.ask(NormalizedName("litellm"))  # asked last, so most recently
    order = [queue.pop() for _ in range(12)]
    assert order[:2] == [backlog[-1], numpy_newest]  # both newest releases first
    assert order[2:11] == backlog[-2::-1]  # then the most recently asked project's others
    assert order[11] == _of("numpy", "2.5.4")


def test_a_newer_release_queued_later_takes_the_lead_of_its_project() -> None:
    queue = _queue()
    queue.put(_of("demo", "4.0"), NOW)
    queue.put(_of("other", "1.0"), NOW)
    queue.put(_of("demo", "5.0"), NOW)  # demo's 4.0 is an older release from now on
    order = [queue.pop() for _ in range(3)]
    assert [record.filename if record else None for record in order] == [
        "demo-5.0.tar.gz",
        "other-1.0.tar.gz",  # another project's newest goes before demo's older release
        "demo-4.0.tar.gz",
    ]


def test_within_a_release_the_files_most_installs_take_come_first() -> None:
    """Linux x86_64 and pure-Python wheels, then other platforms', the sdist last: a file
    is served once it is promoted, and a release's first promoted file serves most installs."""
    queue = _queue()
    names = [
        "demo-1.0.tar.gz",
        "demo-1.0-cp312-cp312-win_amd64.whl",
        "demo-1.0-cp312-cp312-macosx_11_0_arm64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp312-cp312-manylinux_2_17_aarch64.whl",
    ]
    for i, name in enumerate(names):
        queue.put(replace(_held(name, "1.0"), sha256=f"{i:064d}"), NOW)
    order = [record.filename for record in iter(queue.pop, None)]
    assert order[0] == "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert order[-1] == "demo-1.0.tar.gz"
    assert sorted(order[1:4]) == sorted(names[1:3] + names[4:])
    assert install_likelihood("demo-1.0-py3-none-any.whl") == 0


def test_every_asked_projects_likeliest_newest_files_go_before_any_other_platform() -> None:
    """Asked first, pydantic's one wheel must not wait behind the Windows and macOS wheels
    of the projects asked after it (seen against the real index: 2.5 minutes)."""
    queue = _queue()
    pure = replace(_held("first-2.0-py3-none-any.whl", "2.0"), project=NormalizedName("first"))
    queue.put(pure, NOW)
    queue.ask(NormalizedName("first"))
    later = [
        "later-1.0-cp312-cp312-win_amd64.whl",
        "later-1.0-cp312-cp312-macosx_11_0_arm64.whl",
        "later-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
    ]
    for i, name in enumerate(later):
        record = replace(_held(name, "1.0"), project=NormalizedName("later"), sha256=f"{i:064d}")
        queue.put(record, NOW)
    queue.ask(NormalizedName("later"))  # asked last
    order = [record.filename for record in iter(queue.pop, None)]
    assert order[:2] == [later[2], "first-2.0-py3-none-any.whl"]


def test_a_project_asked_again_keeps_its_newest_release_first_and_its_cooling_files_last() -> None:
    """pip asks for every project again on each run: the ranks must survive that."""
    cooled_at = {"3.0": NOW + timedelta(hours=1)}  # 3.0 still cools
    queue = WorkQueue(lambda record: cooled_at.get(record.version, NOW))
    for version in ("3.0", "2.0", "1.0"):
        queue.put(_of("demo", version), NOW)
    for minor in range(3):
        queue.put(_of("other", f"5.{minor}"), NOW)
    queue.ask(NormalizedName("demo"))
    queue.ask(NormalizedName("other"))
    queue.ask(NormalizedName("demo"))  # again, as the next pip run does
    order = [record.filename for record in iter(queue.pop, None)]
    assert order[:2] == ["demo-2.0.tar.gz", "other-5.2.tar.gz"]  # the newest cooled ones
    demo = [name for name in order if name.startswith("demo-")]
    assert demo == ["demo-2.0.tar.gz", "demo-1.0.tar.gz", "demo-3.0.tar.gz"]  # 3.0 cools


def test_a_file_popped_carries_its_lane_and_likely_only_leaves_the_others_waiting() -> None:
    """Likely: an asked project's newest cooled file that most installs take. The others
    wait while the promoter keeps workers for likely files."""
    cooled_at = {"3.0": NOW + timedelta(hours=1)}  # 3.0 still cools
    queue = WorkQueue(lambda record: cooled_at.get(record.version, NOW))
    wheel = "-cp312-cp312-manylinux_2_17_x86_64.whl"
    files = {
        "likely": _held(f"demo-2.0{wheel}", "2.0"),
        "other platform": _held("demo-2.0-cp312-cp312-win_amd64.whl", "2.0"),
        "older release": _held(f"demo-1.0{wheel}", "1.0"),
        "still cooling": _held(f"demo-3.0{wheel}", "3.0"),
        "background": replace(_held(f"bg-2.0{wheel}", "2.0"), project=NormalizedName("bg")),
    }
    for index, record in enumerate(files.values()):
        queue.put(replace(record, sha256=f"{index:064d}"), NOW)
    queue.ask(DEMO)
    first = queue.pop(likely_only=True)
    assert first is not None and first.filename == files["likely"].filename
    assert queue.pop(likely_only=True) is None  # the rest wait for a worker kept for them
    assert queue.priority(first) == Priority(Lane.LIKELY, 0)
    lanes = {record.filename: queue.priority(record) for record in iter(queue.pop, None)}
    named = {
        name: lanes[record.filename].lane for name, record in files.items() if name != "likely"
    }
    assert named == {
        "other platform": Lane.ASKED,
        "older release": Lane.ASKED,
        "still cooling": Lane.ASKED,
        "background": Lane.BACKGROUND,
    }
    assert queue.unlikely_in_hand() == 4
    orders = [priority.order for priority in lanes.values()]
    assert orders == sorted(orders)  # the queue's order, for the pool


def test_a_file_in_hand_moves_to_its_new_lane_when_its_project_is_asked_for() -> None:
    """Taken as background work, then the project is asked for: ``ask`` says which files
    in hand move up, and their priority from then on."""
    queue = _queue()
    wheel = replace(_held("demo-2.0-py3-none-any.whl", "2.0"), sha256="b" * 64)
    older = _held("demo-1.0.tar.gz", "1.0")
    queue.put(wheel, NOW)
    queue.put(older, NOW)
    assert queue.pop() == wheel
    assert queue.priority(wheel).lane is Lane.BACKGROUND
    raised = queue.ask(DEMO)
    assert raised == [(wheel, Priority(Lane.LIKELY, queue.priority(wheel).order))]
    assert queue.priority(wheel).likely
    assert queue.ask(DEMO) == []  # asked again: nothing moves further
    assert queue.pop() == older and queue.priority(older).lane is Lane.ASKED


def test_among_the_files_clients_are_about_to_install_the_largest_goes_first() -> None:
    """pip asked for litellm first, then for seventy projects more: its 43 MB wheel, the
    longest inspection, must not start after all of theirs."""
    queue = _queue()
    big = replace(_of("litellm", "1.110.2"), filename="litellm-1.110.2-py3-none-any.whl")
    queue.put(replace(big, size=43_000_000), NOW)
    queue.ask(NormalizedName("litellm"))
    for index in range(3):
        small = replace(_of(f"dep{index}", "1.0"), filename=f"dep{index}-1.0-py3-none-any.whl")
        queue.put(replace(small, size=50_000), NOW)
        queue.ask(NormalizedName(f"dep{index}"))
    order = [record.project for record in iter(queue.pop, None)]
    assert order == ["litellm", "dep2", "dep1", "dep0"]  # then the most recently asked


def test_a_project_asked_ahead_never_goes_first_for_its_size() -> None:
    """A dependency asked for ahead of any client (``quarantine.vetting.ahead``) is in the
    likely lane, but a large one must not go before the files a client asked for."""
    queue = _queue()
    big = replace(_of("dep", "2.0"), filename="dep-2.0-py3-none-any.whl", size=500_000_000)
    small = replace(_of("app", "1.0"), filename="app-1.0-py3-none-any.whl", size=1_000)
    queue.put(small, NOW)
    queue.ask(NormalizedName("app"))
    queue.put(big, NOW)
    queue.ask(NormalizedName("dep"), ahead=True)
    assert queue.pop() == small
    assert queue.pop() == big and queue.priority(big).likely
    assert queue.ask(NormalizedName("dep"), ahead=True) == []
