"""Reserved private names never leave the building: zero upstream requests for them."""

import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from conftest import NOW
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import pip_install
from support.mirror import running_mirror, settings_for
from support.upstream import Upstream, UpstreamFile


def test_reserved_names_are_never_asked_upstream(
    upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    # Someone registered our internal name on the public index (dependency confusion).
    upstream.add(
        "acme-utils", UpstreamFile(build_wheel("acme-utils", "99.0"), NOW - timedelta(days=90))
    )
    upstream.add(
        "public-thing", UpstreamFile(build_wheel("public-thing", "1.0"), NOW - timedelta(days=90))
    )
    settings = settings_for(
        tmp_path / "data", upstream.url, reserved_names=("acme-*", "Internal_Billing")
    )
    with running_mirror(settings, clock) as mirror:
        assert not pip_install(mirror.url, tmp_path / "a", "acme-utils").ok
        assert not pip_install(mirror.url, tmp_path / "b", "ACME.Utils").ok
        for spelling in ("acme-utils/", "ACME_Utils/", "internal-billing/", "Internal.Billing/"):
            try:
                urllib.request.urlopen(mirror.url + spelling)
                raise AssertionError(f"{spelling} was served")
            except urllib.error.HTTPError as error:
                assert error.code == 404
        assert pip_install(mirror.url, tmp_path / "c", "public-thing").ok
    private = [path for path in upstream.requests_for("/") if "acme" in path or "billing" in path]
    assert private == []
    assert upstream.requests_for("/simple/public-thing/")
