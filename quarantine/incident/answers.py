"""The two questions of an incident, as JSON-able answers the CLI and the admin API share:
who installed it (``exposure``), and does our lock pin it (``check``)."""

from datetime import datetime
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from quarantine.download_log.interface import DownloadLog, summarize
from quarantine.incident.lock_check import check_pins, failing
from quarantine.incident.lock_files import read_lock
from quarantine.ledger.interface import Ledger
from quarantine.policy import Policy


class InvalidRelease(ValueError):
    """A version that is not PEP 440."""


def exposure(
    downloads: DownloadLog | None,
    project: NormalizedName,
    version: str | None,
    since: datetime | None,
) -> dict[str, Any]:
    """Who downloaded ``project`` (or one release): per file and client, the latest first."""
    if version is not None:
        try:
            version = str(Version(version))
        except InvalidVersion as error:
            raise InvalidRelease(f"{version!r} is not a PEP 440 version") from error
    rows = downloads.exposure(project, version, since) if downloads is not None else []
    return {
        "project": project,
        "version": version,
        "summary": summarize(rows).to_json(),
        "downloads": [row.to_json() for row in rows],
        "download_log": downloads is not None,
    }


def check(ledger: Ledger, policy: Policy, name: str, text: str) -> dict[str, Any]:
    """Every pin of the lock file ``name`` (holding ``text``) and its state now."""
    lock = read_lock(name, text)
    statuses = check_pins(ledger, policy, lock.pins)
    return {
        "kind": lock.kind,
        "pins": [status.to_json() for status in statuses],
        "skipped": list(lock.skipped),
        "failing": len(failing(statuses)),
    }
