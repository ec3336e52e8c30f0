"""Which upstream files the mirror takes, and for which version: the files pip takes.

The real filenames below are as the public index lists them (Twisted, cffi,
email-validator, lxml, numpy, setuptools). pip itself is the oracle for the leniency:
the property test compares :func:`file_version` with pip's own link rules.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pip._internal.index.package_finder import (
    LinkEvaluator,
    _extract_version_from_fragment,
)
from pip._internal.utils.misc import splitext
from pip._internal.utils.unpacking import SUPPORTED_EXTENSIONS

from quarantine.filenames import (
    SDIST_SUFFIXES,
    WHEEL_SUFFIX,
    UnservableFile,
    file_version,
    sdist_compression,
)
from quarantine.inspect.archive.reader import ArchiveKind, archive_kind


def reason(project: str, filename: str) -> str:
    with pytest.raises(UnservableFile) as refused:
        file_version(canonicalize_name(project), filename)
    return str(refused.value)


@pytest.mark.parametrize(
    ("project", "filename", "version"),
    [
        ("twisted", "Twisted-20.3.0.tar.bz2", "20.3.0"),
        ("cffi", "cffi-1.2.0-1.tar.gz", "1.2.0.post1"),
        ("cffi", "cffi-1.0.2-2.tar.gz", "1.0.2.post2"),
        ("cffi", "cffi-1.2.0-1-cp35-none-win32.whl", "1.2.0"),  # build tag 1
        ("email-validator", "email_validator-0.1.0-rc1.tar.gz", "0.1.0rc1"),
        ("email-validator", "email-validator-1.1.2.tar.gz", "1.1.2"),
        ("foo-bar", "Foo__Bar-1.0.tar.gz", "1.0"),  # pip's own example of a long separator
        ("foo-bar", "foo.bar-1.0.tgz", "1.0"),
        ("demo", "demo-v1.0.zip", "1.0"),
        ("demo", "demo-1.0-py2.7.tar.gz", "1.0"),  # pip takes it on Python 2.7 only
        ("demo", "demo-1!2.0.tar", "1!2.0"),
        ("demo", "demo-1.0.tbz", "1.0"),
        ("demo", "demo-1.0.tar.xz", "1.0"),
        ("demo", "demo-1.0.txz", "1.0"),
        ("demo", "demo-1.0.tlz", "1.0"),
        ("demo", "demo-1.0.tar.lz", "1.0"),
        ("demo", "demo-1.0.tar.lzma", "1.0"),
    ],
)
def test_files_pip_installs_are_taken(project: str, filename: str, version: str) -> None:
    assert file_version(canonicalize_name(project), filename) == version


@pytest.mark.parametrize(
    ("project", "filename", "words"),
    [
        ("twisted", "Twisted-11.0.0-py2.6-win32.egg", "pip cannot install .egg files (eggs"),
        ("lxml", "lxml-1.3.3-py2.4-win32.egg", "pip cannot install .egg files"),
        ("twisted", "Twisted-12.0.0.win32-py2.7.exe", "pip cannot install .exe files (Windows"),
        ("numpy", "numpy-1.0.1.dev3460.win32-py2.4.exe", "bdist_wininst"),
        ("twisted", "Twisted-10.1.0.winxp32-py2.5.msi", "pip cannot install .msi files"),
        ("setuptools", "setuptools-0.6c10-1.src.rpm", "pip cannot install .rpm files"),
        ("demo", "demo-1.0.dmg", "macOS disk images"),
        ("demo", "demo-1.0.tar.zst", "which only uv reads"),
        ("demo", "demo-1.0.7z", "pip cannot install .7z files"),
        ("demo", "demo-1.0.linux-x86_64.tar.gz", "bdist_dumb (a binary tree for linux-x86_64"),
        ("demo", "demo-1.0.win32.zip", "bdist_dumb (a binary tree for win32"),
        ("demo", "demo-1.0.macosx-10.9-x86_64.tar.bz2", "bdist_dumb"),
        ("demo", "demo-1.0-macosx10.6.zip", "pip skips .zip files named for macosx10"),
        ("demo", "demo-1.0.ZIP", "only takes the lower-case suffix .zip, not .ZIP"),
        ("demo", "demo-1.0.TAR.GZ", "not .TAR.GZ"),
        ("demo", "demo-1.0.Tar.gz", "not .Tar.gz"),
        ("demo", "demo-1.0", "pip cannot install .0 files"),
        ("demo", "demo", "no archive suffix"),
    ],
)
def test_formats_pip_cannot_install_say_why(project: str, filename: str, words: str) -> None:
    said = reason(project, filename)
    assert said.startswith("unsupported_file_type: "), said
    assert words in said


@pytest.mark.parametrize(
    ("project", "filename", "words"),
    [
        ("demo", "other-1.0.tar.gz", "not a file of 'demo'"),
        ("demo-bar", "demo-1.0.tar.gz", "not a file of 'demo-bar'"),
        ("demo", "demobar-1.0.tar.gz", "not a file of 'demo'"),
        ("demo", "demo-.tar.gz", "not a file of 'demo'"),
        ("demo", "demo-bar-1.0.tar.gz", "'bar-1.0' after the project name is not"),  # demo-bar's
        ("demo", "demo-1.0-2.0.tar.gz", "'1.0-2.0'"),
        ("demo", "demo-1.0-py3-none-any.tar.gz", "is not a PEP 440 version"),
        ("demo", "other-1.0-py3-none-any.whl", "names project 'other'"),
        ("demo", "demo-1.0-py3-none.whl", "Invalid wheel filename"),
        ("demo", "demo-1.0.tar.gz/../x.tar.gz", "path separators"),
        ("demo", "..\\demo-1.0.tar.gz", "path separators"),
        ("demo", "demo-1.0\x1b[2J.tar.gz", "control characters"),
        ("demo", "demo-1.0\u202e.tar.gz", "control characters"),
        ("demo", "demo- 1.0.tar.gz", "spaces or non-ASCII"),
        ("demo", "\uff44emo-1.0.tar.gz", "spaces or non-ASCII"),
        # pip would take this one (the Kelvin sign lower-cases to "k"); the index never
        # lists a name that is not ASCII, and it would only help a look-alike.
        ("keras", "\u212aeras-1.0.tar.gz", "spaces or non-ASCII"),
        ("demo", "demo-1." + "0" * 300 + ".tar.gz", "longer than 255 characters"),
    ],
)
def test_names_pip_refuses_or_that_are_unsafe_are_invalid(
    project: str, filename: str, words: str
) -> None:
    said = reason(project, filename)
    assert said.startswith("invalid_filename: "), said
    assert words in said


def test_local_versions_stay_out_whatever_the_spelling() -> None:
    assert reason("demo", "demo-1.0-1+ubuntu1.tar.bz2").startswith("local_version: ")


def test_the_suffixes_are_pips() -> None:
    """pip's list is the list: a format pip learns to install shows up here."""
    assert {*SDIST_SUFFIXES, WHEEL_SUFFIX} == set(SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize("suffix", sorted(SDIST_SUFFIXES))
def test_every_sdist_suffix_is_read_as_an_sdist(suffix: str) -> None:
    assert archive_kind(f"demo-1.0{suffix}") is ArchiveKind.SDIST
    assert sdist_compression(f"demo-1.0{suffix}") is SDIST_SUFFIXES[suffix]


# ------------------------------------------------------------ pip as the oracle


def pip_takes(project: NormalizedName, filename: str) -> str | None:
    """The version pip's link rules give a file of ``project`` on an index page, or None
    (wheel tags aside: a mirror serves every platform's wheels)."""
    base, ext = splitext(filename)
    if ext not in SUPPORTED_EXTENSIONS or ext == WHEEL_SUFFIX:
        return None
    if "macosx10" in filename and ext == ".zip":
        return None
    text = _extract_version_from_fragment(base, project)
    if not text:
        return None
    tagged = LinkEvaluator._py_version_re.search(text)
    if tagged:
        text = text[: tagged.start()]
    try:
        return str(Version(text))
    except InvalidVersion:
        return None


_NAME_SPELLINGS = st.builds(
    lambda parts, seps: "".join(p + s for p, s in zip(parts, [*seps, ""], strict=True)),
    st.just(["Foo", "bar"]),
    st.lists(st.sampled_from(["-", "_", ".", "__", "-_"]), min_size=1, max_size=1),
) | st.sampled_from(["foo-bar", "FOO_BAR", "foobar", "foo", "foo-bar-baz", "bar"])
_VERSION_PIECES = st.lists(
    st.sampled_from(
        ["1", "0", "2", ".", "-", "_", "rc", "a", "b", "post", "dev", "v", "!", "py2.7", "x"]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    name=_NAME_SPELLINGS,
    version=_VERSION_PIECES,
    suffix=st.sampled_from([*SDIST_SUFFIXES, ".egg", ".exe", ".tar.zst", ".ZIP"]),
)
def test_the_mirror_takes_what_pip_takes(name: str, version: str, suffix: str) -> None:
    project = NormalizedName("foo-bar")
    filename = f"{name}-{version}{suffix}"
    try:
        ours: str | None = file_version(project, filename)
    except UnservableFile:
        ours = None
    assert ours == pip_takes(project, filename)
