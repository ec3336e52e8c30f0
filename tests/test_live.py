"""One test through the public index itself: a small, old, pure-Python package.

The mirror is started with no --upstream, so it takes the index pip is configured for
(else pip's built-in default). When that index cannot be reached from this machine the
test is skipped and says why; it never fails for want of a network.
"""

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.installers import installed, pip_install
from support.process import lazaretto_serve

PACKAGE, VERSION = "six", "1.16.0"  # released 2021: long past any cooling period


def _reachable(origin: str) -> str | None:
    """None when the mirror can reach the public index, else the reason it cannot."""
    request = urllib.request.Request(
        f"{origin}/simple/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60):
            return None
    except urllib.error.HTTPError as error:
        return f"the mirror answered {error.code}: {error.read().decode(errors='replace').strip()}"
    except (urllib.error.URLError, TimeoutError) as error:
        return f"the mirror did not answer: {error}"


@pytest.mark.live
def test_installs_an_old_package_from_the_public_index(tmp_path: Path) -> None:
    with lazaretto_serve(["--data-dir", str(tmp_path / "data")]) as origin:
        problem = _reachable(origin)
        if problem is not None:
            pytest.skip(f"the public index cannot be reached from this machine ({problem})")
        outcome = pip_install(origin + "/simple/", tmp_path / "t", f"{PACKAGE}=={VERSION}")
    assert outcome.ok, outcome.output
    assert installed(tmp_path / "t") == {PACKAGE: VERSION}
