"""Figures a hardening test reports to ``bench/selftest.py``, when it runs the test.

The selftest names a JSON-lines file in LAZARETTO_SELFTEST_COUNTERS; each test appends one
line of counts (vectors tried, kills survived, ...). Outside the selftest nothing is written.
"""

import json
import os
from pathlib import Path

COUNTERS_ENV = "LAZARETTO_SELFTEST_COUNTERS"


def report(suite: str, **counts: int) -> None:
    """Append ``counts`` for ``suite`` to the selftest's file, if one is named."""
    target = os.environ.get(COUNTERS_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"suite": suite, **counts}) + "\n")
