"""``mirror.upstream.parse``: an upstream PEP 691 project page is hostile input.

Every bad page is an ``UpstreamRejected`` (a 502 with a reason code), never another
exception and never a partial read.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName

from mirror.errors import UpstreamRejected
from mirror.upstream.parse import clean_text, load_json, parse_project_page
from quarantine.models import ProjectStatus, Snapshot

DEMO = NormalizedName("demo")
SHA = "0123456789abcdef" * 4
META_SHA = "fedcba9876543210" * 4


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "https://files.example/packages/demo-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA},
        "requires-python": ">=3.9",
        "size": 1234,
        "upload-time": "2026-01-02T03:04:05.678901Z",
        "yanked": False,
    }
    for key, value in fields.items():
        key = key.replace("_", "-")
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


_DROP: Any = object()


def page(*files: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "meta": {"api-version": "1.1", "_last-serial": 42},
        "name": "demo",
        "versions": ["1.0"],
        "files": list(files) if files else [entry()],
    }
    for key, value in fields.items():
        key = key.replace("_", "-")
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def parse(value: Any) -> Snapshot:
    return parse_project_page(json.dumps(value).encode(), DEMO)


def rejected(body: bytes) -> UpstreamRejected:
    with pytest.raises(UpstreamRejected) as caught:
        parse_project_page(body, DEMO)
    assert caught.value.status == 502
    assert caught.value.reason.startswith("upstream response rejected: ")
    return caught.value


# -- a good page -------------------------------------------------------------------------


def test_valid_page_is_read_completely() -> None:
    snap = parse(page())
    assert snap.name == DEMO
    assert snap.status is ProjectStatus.ACTIVE
    assert snap.status_reason is None
    assert snap.serial == 42
    (only,) = snap.files
    assert only.filename == "demo-1.0-py3-none-any.whl"
    assert only.url == "https://files.example/packages/demo-1.0-py3-none-any.whl"
    assert only.sha256 == SHA
    assert only.size == 1234
    assert only.upload_time == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert only.requires_python == ">=3.9"
    assert only.yanked is None
    assert only.core_metadata_sha256 is None
    assert only.provenance_url is None


def test_a_non_normalised_spelling_of_the_same_name_is_accepted() -> None:
    assert parse(page(name="Demo")).name == DEMO
    assert parse_project_page(
        json.dumps(page(name="my_Project")).encode(), NormalizedName("my-project")
    ).name == NormalizedName("my-project")


def test_optional_fields_may_be_missing_or_null() -> None:
    bare = entry(size=_DROP, upload_time=_DROP, requires_python=None, yanked=_DROP)
    (only,) = parse(page(bare)).files
    assert only.size is None and only.upload_time is None
    assert only.requires_python is None and only.yanked is None
    assert parse(page(entry(hashes={}))).files[0].sha256 is None


def test_versions_are_kept_as_the_upstream_spells_them() -> None:
    assert parse(page(versions=["1.0", "2.0-RC1", "legacy\x1b[2J"])).versions == (
        "1.0",
        "2.0-RC1",
        "legacy[2J",
    )
    assert parse(page(versions=[])).versions == ()
    assert parse(page(versions=_DROP)).versions is None  # before PEP 700
    assert parse(page(versions=None)).versions is None


def test_empty_file_list_is_a_valid_page() -> None:
    snap = parse({"meta": {"api-version": "1.1"}, "name": "demo", "files": []})
    assert snap.files == ()
    assert snap.serial is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-01T23:04:05-04:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_upload_time_is_read_as_utc(text: str, expected: datetime) -> None:
    upload = parse(page(entry(upload_time=text))).files[0].upload_time
    assert upload == expected
    assert upload is not None and upload.utcoffset() == timedelta(0)


# -- yanked, metadata, status -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, None),
        (None, None),
        (True, ""),
        ("", ""),
        ("broken on 3.12", "broken on 3.12"),
    ],
)
def test_yanked_variants(value: Any, expected: str | None) -> None:
    assert parse(page(entry(yanked=value))).files[0].yanked == expected


@pytest.mark.parametrize("value", [0, 1, 1.5, [], {}, ["reason"], {"reason": "x"}])
def test_yanked_of_another_type_is_rejected(value: Any) -> None:
    rejected(json.dumps(page(entry(yanked=value))).encode())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"core_metadata": {"sha256": META_SHA}}, META_SHA),
        ({"dist_info_metadata": {"sha256": META_SHA}}, META_SHA),
        ({"core_metadata": {"sha256": META_SHA}, "dist_info_metadata": {"sha256": SHA}}, META_SHA),
        # PEP 714: the new key wins, also when it says "no metadata".
        ({"core_metadata": False, "dist_info_metadata": {"sha256": META_SHA}}, None),
        ({"core_metadata": True}, None),  # promised without a hash: not offered
        ({"dist_info_metadata": True}, None),
        ({"core_metadata": {}}, None),
        ({"core_metadata": {"md5": "0" * 32}}, None),
        ({"core_metadata": {"sha256": META_SHA.upper()}}, None),
        ({"core_metadata": {"sha256": 5}}, None),
        ({}, None),
    ],
)
def test_core_metadata_and_legacy_fallback(fields: dict[str, Any], expected: str | None) -> None:
    assert parse(page(entry(**fields))).files[0].core_metadata_sha256 == expected


@pytest.mark.parametrize("value", ["sha256=" + META_SHA, 1, [META_SHA]])
def test_core_metadata_of_another_type_is_rejected(value: Any) -> None:
    rejected(json.dumps(page(entry(core_metadata=value))).encode())


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", ProjectStatus.ACTIVE),
        ("archived", ProjectStatus.ARCHIVED),
        ("deprecated", ProjectStatus.DEPRECATED),
        ("quarantined", ProjectStatus.QUARANTINED),
        ("frozen", ProjectStatus.QUARANTINED),  # unknown: fail closed
        ("ACTIVE", ProjectStatus.QUARANTINED),  # markers are lower case; anything else is unknown
        ("", ProjectStatus.QUARANTINED),
    ],
)
def test_project_status_values(status: str, expected: ProjectStatus) -> None:
    snap = parse(page(project_status={"status": status, "reason": "see advisory"}))
    assert snap.status is expected
    assert snap.status_reason == "see advisory"


def test_missing_or_null_project_status_is_active() -> None:
    assert parse(page(project_status=None)).status is ProjectStatus.ACTIVE
    assert parse(page()).status is ProjectStatus.ACTIVE


@pytest.mark.parametrize(
    "value", ["quarantined", ["quarantined"], {}, {"status": 1}, {"status": None}, 7]
)
def test_malformed_project_status_is_rejected(value: Any) -> None:
    rejected(json.dumps(page(project_status=value)).encode())


def test_removed_is_not_a_status_the_upstream_may_send() -> None:
    rejected(json.dumps(page(project_status={"status": "removed"})).encode())


HOSTILE = "\x1b[2J\x1b[1;1H\rreal\x00 reason\x07\x85\x9b\x7f\u009d\n"


def test_control_characters_are_stripped_from_text_fields() -> None:
    snap = parse(
        page(
            entry(yanked=HOSTILE, requires_python=">=3.9\r\n\x1b[31m"),
            project_status={"status": "archived", "reason": HOSTILE},
        )
    )
    (only,) = snap.files
    assert only.yanked == "[2J[1;1Hreal reason"
    assert only.requires_python == ">=3.9[31m"
    assert snap.status_reason == "[2J[1;1Hreal reason"


def test_clean_text_keeps_tab_and_printable_unicode() -> None:
    assert clean_text("a\tb ünïcödé \u2028") == "a\tb ünïcödé \u2028"
    assert clean_text("".join(chr(code) for code in range(0x00, 0xA0))) == "\t" + "".join(
        chr(code) for code in range(0x20, 0x7F)
    )


# -- hostile JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "demo", "name": "demo", "meta": {}, "files": []}',
        b'{"name": "demo", "n\\u0061me": "evil", "meta": {}, "files": []}',
        b'{"name": "demo", "meta": {"_last-serial": 1, "_last-serial": 2}, "files": []}',
        b'{"name": "demo", "meta": {}, "files": [{"filename": "demo-1.0.tar.gz", "url": "u",'
        b' "hashes": {"sha256": "'
        + SHA.encode()
        + b'", "sha256": "'
        + META_SHA.encode()
        + b'"}}]}',
        b'{"name": "demo", "meta": {}, "files": [{"filename": "demo-1.0.tar.gz",'
        b' "filename": "demo-2.0.tar.gz", "url": "u", "hashes": {}}]}',
    ],
)
def test_duplicate_keys_are_rejected(body: bytes) -> None:
    assert "duplicate" in rejected(body).code


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_rejected(constant: bytes) -> None:
    body = json.dumps(page(entry(size=0))).encode().replace(b'"size": 0', b'"size": ' + constant)
    assert constant in body
    assert "not JSON" in rejected(body).code


@pytest.mark.parametrize(
    "body",
    [b"[" * 200_000, b'{"a":' * 200_000, b'{"name": "demo", "files": ' + b"[" * 200_000],
)
def test_deep_nesting_is_rejected(body: bytes) -> None:
    code = rejected(body).code
    assert code.startswith("listing_malformed")


def test_numbers_too_long_to_convert_are_rejected() -> None:
    body = json.dumps(page(entry(size=0))).encode()
    body = body.replace(b'"size": 0', b'"size": 1' + b"0" * 5000)
    rejected(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"{",
        b"null",
        b"true",
        b"42",
        b'"demo"',
        b"[]",
        b'[{"name": "demo"}]',
        b"\xff\xfe\x00garbage",
        b"\xc3\x28",
        b"<html><body>demo</body></html>",
    ],
)
def test_not_an_object_or_not_json_is_rejected(body: bytes) -> None:
    rejected(body)


@pytest.mark.parametrize("name", ["other", "demo2", "de-mo", "", None, 5, ["demo"], {"n": 1}])
def test_page_for_another_project_is_rejected(name: Any) -> None:
    rejected(json.dumps(page(name=name)).encode())


def test_missing_name_is_rejected() -> None:
    rejected(json.dumps(page(name=_DROP)).encode())


def test_filename_listed_twice_is_rejected() -> None:
    body = json.dumps(page(entry(), entry(url="https://files.example/other"))).encode()
    assert "twice" in rejected(body).code


def test_one_bad_entry_rejects_the_whole_listing() -> None:
    good = entry(filename="demo-1.0.tar.gz")
    bad = entry(filename="demo-2.0.tar.gz", size="big")
    rejected(json.dumps(page(good, bad)).encode())


WRONG_TYPES: list[tuple[str, Any]] = [
    ("files", None),
    ("files", {}),
    ("files", "demo-1.0.tar.gz"),
    ("files", [1]),
    ("files", [None]),
    ("files", [["demo-1.0.tar.gz"]]),
    ("meta", None),
    ("meta", []),
    ("meta", "1.1"),
    ("meta", _DROP),
    ("files", _DROP),
    ("versions", "1.0"),
    ("versions", {"1.0": True}),
    ("versions", [1.0]),
    ("versions", ["1.0", None]),
]
ENTRY_WRONG_TYPES: list[tuple[str, Any]] = [
    ("filename", None),
    ("filename", ""),
    ("filename", 5),
    ("filename", ["demo-1.0.tar.gz"]),
    ("filename", _DROP),
    ("url", None),
    ("url", ""),
    ("url", 5),
    ("url", {"href": "x"}),
    ("url", _DROP),
    ("hashes", None),
    ("hashes", []),
    ("hashes", "sha256=" + SHA),
    ("hashes", _DROP),
    ("size", "1234"),
    ("size", -1),
    ("size", 1.5),
    ("size", 1e3),
    ("size", True),
    ("size", [1]),
    ("upload_time", 1767322445),
    ("upload_time", 17.5),
    ("upload_time", ["2026-01-02T03:04:05Z"]),
    ("upload_time", True),
    ("requires_python", 3),
    ("requires_python", [">=3"]),
    ("requires_python", False),
    ("provenance", 1),
    ("provenance", {"url": "x"}),
    ("provenance", True),
]


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES)
def test_wrong_page_field_types_are_rejected(key: str, value: Any) -> None:
    rejected(json.dumps(page(**{key: value})).encode())


@pytest.mark.parametrize(("key", "value"), ENTRY_WRONG_TYPES)
def test_wrong_file_field_types_are_rejected(key: str, value: Any) -> None:
    rejected(json.dumps(page(entry(**{key: value}))).encode())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "2026-01-01T00:00:00+25:00",
        "2026-01-01T00:00:00ZZ",
        "2026-01-01 00:00:00 UTC",
        "1767322445",
        "\x00",
        # Valid-looking, but outside the range of a UTC datetime once converted.
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_bad_upload_time_is_rejected(text: str) -> None:
    rejected(json.dumps(page(entry(upload_time=text))).encode())


def test_serial_is_taken_only_from_an_integer() -> None:
    assert parse(page(meta={"_last-serial": True})).serial is None
    assert parse(page(meta={"_last-serial": "42"})).serial is None
    assert parse(page(meta={"_last-serial": 7})).serial == 7


def test_load_json_rejects_constants_and_duplicates_directly() -> None:
    assert load_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    with pytest.raises(UpstreamRejected):
        load_json(b'{"a": NaN}')
    with pytest.raises(UpstreamRejected):
        load_json(b'{"a": 1, "a": 1}')


# -- properties: only a Snapshot or UpstreamRejected ------------------------------------------


def outcome(body: bytes) -> None:
    try:
        snap = parse_project_page(body, DEMO)
    except UpstreamRejected as error:
        assert error.code.startswith(("listing_malformed", "listing_inconsistent"))
        return
    assert isinstance(snap, Snapshot)
    assert snap.name == DEMO
    assert len({f.filename for f in snap.files}) == len(snap.files)
    for f in snap.files:
        assert f.filename and f.url
        assert f.size is None or (isinstance(f.size, int) and f.size >= 0)
        assert f.upload_time is None or f.upload_time.utcoffset() == timedelta(0)
        for text in (f.yanked, f.requires_python):
            assert text is None or clean_text(text) == text


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

# Plausible values for each field, mixed with arbitrary JSON, so the fuzzing reaches the
# validation of every field rather than stopping at the first type check.
_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
# Years 2..9998: the range edges overflow on conversion to UTC, a known bug covered by
# test_bad_upload_time_is_rejected; the fuzzing here is for everything else.
_times = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.one_of(st.none(), _offsets),
).map(lambda moment: moment.isoformat())
field_values: dict[str, st.SearchStrategy[Any]] = {
    "filename": st.sampled_from(["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", ""])
    | st.text(max_size=12),
    "url": st.sampled_from(["https://files.example/x", "../../x", ""]) | st.text(max_size=8),
    "hashes": st.fixed_dictionaries({"sha256": st.sampled_from([SHA, "", "x"]) | json_scalars})
    | json_values,
    "size": st.integers(min_value=-3) | json_scalars,
    "upload-time": _times | st.text(max_size=25) | json_scalars,
    "requires-python": st.text(max_size=10) | json_scalars,
    "yanked": st.booleans() | st.text(max_size=10) | json_values,
    "core-metadata": st.fixed_dictionaries({"sha256": st.sampled_from([META_SHA, "x"])})
    | json_values,
    "dist-info-metadata": st.fixed_dictionaries({"sha256": st.just(META_SHA)}) | json_values,
    "provenance": st.text(max_size=8) | json_values,
}
entries = st.fixed_dictionaries(
    {}, optional={key: strategy for key, strategy in field_values.items()}
)
pages = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["demo", "Demo", "DEMO", "other"]) | json_scalars,
        "meta": st.fixed_dictionaries({}, optional={"_last-serial": json_scalars}) | json_values,
        "files": st.lists(entries | json_values, max_size=4) | json_values,
        "project-status": st.fixed_dictionaries(
            {"status": st.sampled_from([s.value for s in ProjectStatus]) | json_scalars},
            optional={"reason": json_scalars},
        )
        | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_property_random_bytes(body: bytes) -> None:
    outcome(body)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_property_random_json(value: Any) -> None:
    outcome(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(pages)
def test_property_page_shaped_json(value: dict[str, Any]) -> None:
    outcome(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(pages, st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=3))
def test_property_corrupted_pages(value: dict[str, Any], position: int, noise: bytes) -> None:
    body = json.dumps(value).encode()
    at = min(position, len(body))
    outcome(body[:at] + noise + body[at:])


def _big_page(count: int) -> bytes:
    files = [
        entry(
            filename=f"demo-1.0.{i}-cp312-cp312-manylinux_2_17_x86_64.whl",
            url=f"https://files.example/packages/{i:04x}/demo-1.0.{i}-cp312-cp312-manylinux_2_17_x86_64.whl",
            core_metadata={"sha256": META_SHA},
            data_dist_info_metadata={"sha256": META_SHA},
        )
        for i in range(count)
    ]
    return json.dumps(page(*files)).encode()


def test_a_big_page_never_holds_every_entry_decoded_at_once() -> None:
    """Each entry becomes its compact record as it is read: parsing a big page needs
    little more than the records it keeps (this page: 3.2 times their size at the peak
    before, 1.9 now; pydantic-core's 6 MB page: 21 MB before, 16 MB now, 10 MB kept)."""
    body = _big_page(3000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        snapshot = parse_project_page(body, DEMO)
        kept, peak = (size - before for size in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(snapshot.files) == 3000
    assert peak < 2.5 * kept, (peak, kept)


def test_a_file_entry_out_of_place_is_refused_not_ignored() -> None:
    """An object with a file entry's keys is read as one wherever it is: malformed
    there, the page is refused (fail closed)."""
    assert parse(page(meta={"api-version": "1.1", "x": entry()})).serial is None
    with pytest.raises(UpstreamRejected, match="listing_malformed"):
        parse(page(meta={"api-version": "1.1", "x": entry(size=-1)}))
    with pytest.raises(UpstreamRejected, match="meta is not an object"):
        parse(page(meta=entry()))
