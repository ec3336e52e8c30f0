"""A per-rule action from the config file, through the real mirror and the real pip.

An operator runs a rule in report-only mode: its findings are recorded and shown, and the
file is promoted after cooling as if the rule had found nothing; every other rule still
holds. (The .pth hook here only sets a variable, and nothing from the archive is run.)
"""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from packaging.utils import NormalizedName

from conftest import NOW
from mirror.settings import load_settings
from quarantine.evidence import Action
from quarantine.models import FileState
from support.clock import FakeClock
from support.dists import build_wheel
from support.installers import installed, pip_install
from support.mirror import running_mirror
from support.upstream import Upstream, UpstreamFile

OLD = NOW - timedelta(days=400)
HOOK = {"quiet_hook_init.pth": b'import os; os.environ["LAZARETTO_STAND_IN"] = "1"\n'}
CONFIG = """\
[rules]
pth-executable-new = "report"  # a new rule, first in report-only mode
"""


def test_a_rule_in_report_only_mode_does_not_hold_the_file(
    upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    upstream.add("quiet-hook", UpstreamFile(build_wheel("quiet-hook", "1.0"), OLD))
    hooked = build_wheel("quiet-hook", "1.1", extra_files=HOOK)
    upstream.add("quiet-hook", UpstreamFile(hooked, NOW - timedelta(hours=1)))
    # the control: another rule (binary-new, medium) keeps its usual action, review
    upstream.add("loud-binary", UpstreamFile(build_wheel("loud-binary", "1.0"), OLD))
    binary = build_wheel("loud-binary", "1.1", extra_files={"loud_binary/_speed.so": b"\x7fELF"})
    upstream.add("loud-binary", UpstreamFile(binary, NOW - timedelta(hours=1)))
    config = tmp_path / "lazaretto.toml"
    config.write_text(CONFIG)
    flags = {"data_dir": str(tmp_path / "data"), "upstream": upstream.url}
    settings = replace(load_settings(config, {}, flags), access_log=False)
    assert settings.policy.rule_actions == {"pth-executable-new": Action.REPORT}

    with running_mirror(settings, clock) as mirror:
        for project in ("quiet-hook", "loud-binary"):
            assert pip_install(mirror.url, tmp_path / f"before-{project}", project).ok
        mirror.promote()
        clock.advance(timedelta(days=5))
        for _ in range(2):
            mirror.promote()
        assert mirror.services is not None
        ledger = mirror.services.ledger
        record = ledger.file(NormalizedName("quiet-hook"), hooked.filename)
        assert record is not None and record.state is FileState.PROMOTED, record
        evidence = {e.check: e for e in ledger.evidence(record.project)[hooked.filename]}
        content = evidence["content"]
        assert content.action is Action.REPORT
        hook = next(f for f in content.findings if f.rule == "pth-executable-new")
        assert hook.path == "quiet_hook_init.pth"
        control = ledger.file(NormalizedName("loud-binary"), binary.filename)
        assert control is not None and control.state is FileState.REVIEW
        assert "binary-new" in control.reason

        outcome = pip_install(mirror.url, tmp_path / "t", "quiet-hook==1.1")
        assert outcome.ok, outcome.output
        assert installed(tmp_path / "t") == {"quiet-hook": "1.1"}
