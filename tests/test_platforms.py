"""``quarantine.platforms``: which wheels this organisation can install, from packaging.tags."""

import pytest

from quarantine.platforms import (
    EVERYTHING,
    OUTSIDE_PLATFORMS,
    OUTSIDE_PYTHONS,
    PlatformFilter,
    platform_names,
    python_names,
)

DEFAULT = PlatformFilter()


@pytest.mark.parametrize(
    "filename",
    [
        "demo-1.0-py3-none-any.whl",
        "demo-1.0-py2.py3-none-any.whl",
        "demo-1.0.tar.gz",  # sdists are always kept
        "demo-1.0.zip",
        "demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "demo-1.0-cp310-cp310-manylinux1_x86_64.whl",
        "demo-1.0-cp313-cp313-manylinux_2_28_aarch64.whl",
        "demo-1.0-cp314-cp314-linux_x86_64.whl",
        "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "demo-1.0-cp312-cp312-macosx_10_13_universal2.whl",
        "demo-1.0-cp313-cp313-win_amd64.whl",
        "demo-1.0-cp38-abi3-manylinux_2_17_x86_64.whl",  # abi3 from 3.8 on fits 3.10+
        "demo-1.0-cp315-cp315-win_amd64.whl",
        "demo-1.0-cp312-none-win_amd64.whl",
    ],
)
def test_the_default_keeps_what_the_common_platforms_install(filename: str) -> None:
    assert DEFAULT.exclusion(filename) is None


@pytest.mark.parametrize(
    ("filename", "why"),
    [
        ("demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl", OUTSIDE_PLATFORMS),
        ("demo-1.0-cp312-cp312-macosx_10_13_x86_64.whl", OUTSIDE_PLATFORMS),
        ("demo-1.0-cp312-cp312-win32.whl", OUTSIDE_PLATFORMS),
        ("demo-1.0-cp312-cp312-manylinux_2_17_ppc64le.whl", OUTSIDE_PLATFORMS),
        ("demo-1.0-py3-none-win_arm64.whl", OUTSIDE_PLATFORMS),
        ("demo-1.0-cp39-cp39-manylinux_2_17_x86_64.whl", OUTSIDE_PYTHONS),
        ("demo-1.0-cp313-cp313t-manylinux_2_17_x86_64.whl", OUTSIDE_PYTHONS),
        ("demo-1.0-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl", OUTSIDE_PYTHONS),
        ("demo-1.0-py2-none-any.whl", OUTSIDE_PYTHONS),
        ("demo-1.0-cp311-abi3-manylinux_2_17_x86_64.whl", None),
        ("demo-1.0-cp316-abi3-manylinux_2_17_x86_64.whl", OUTSIDE_PYTHONS),  # needs 3.16+
    ],
)
def test_the_default_leaves_out_other_platforms_and_pythons(filename: str, why: str) -> None:
    assert DEFAULT.exclusion(filename) == why


def test_widening_by_one_name_brings_a_platform_in() -> None:
    musl = "demo-1.0-cp312-cp312-musllinux_1_2_x86_64.whl"
    wider = PlatformFilter(platform_names(["default", "musllinux_x86_64"]), DEFAULT.pythons)
    assert wider.exclusion(musl) is None
    assert wider.exclusion(musl.replace("x86_64", "aarch64")) == OUTSIDE_PLATFORMS
    threaded = "demo-1.0-cp313-cp313t-manylinux_2_17_x86_64.whl"
    assert PlatformFilter(DEFAULT.platforms, python_names(["3.13t"])).exclusion(threaded) is None


def test_all_filters_nothing() -> None:
    assert platform_names(["default", "all"]) == () and python_names(["all"]) == ()
    assert EVERYTHING.exclusion("demo-1.0-cp27-cp27mu-manylinux1_i686.whl") is None
    only_pythons = PlatformFilter((), ("3.12",))
    assert only_pythons.exclusion("demo-1.0-cp312-cp312-musllinux_1_1_s390x.whl") is None
    assert only_pythons.exclusion("demo-1.0-cp311-cp311-win32.whl") == OUTSIDE_PYTHONS


def test_a_name_pip_would_not_take_is_left_to_the_filename_rules() -> None:
    # Rejected by name elsewhere (quarantine.filenames): the filter has no say on it.
    assert DEFAULT.exclusion("demo-1.0-py2.7.egg") is None
    assert DEFAULT.exclusion("not a wheel.whl") is None


def test_filters_compare_by_what_they_admit_not_by_their_memo() -> None:
    first, second = PlatformFilter(), PlatformFilter()
    first.exclusion("demo-1.0-cp312-cp312-win32.whl")
    assert first == second and hash(first) == hash(second)
    assert first != EVERYTHING
