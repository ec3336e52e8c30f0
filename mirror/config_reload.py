"""The platform filter, read again from the config file while the mirror runs.

``platforms``, ``python_versions`` and ``superseded_releases`` (``settings.LIVE_KEYS``)
take effect without a restart. The file's modification time and size are looked at every
second; when they move, the file is loaded again as at start (the environment still wins
over it) and only those keys are taken: the others need a restart, as before. A file
that no longer loads leaves the filter in force, and the error (one line, naming the key
and line) is logged.

On a change: decisions use the new filter from then on (``LivePolicy.rebase``), the
policy is recorded in the ledger again (the admin commands read it there), every project
gets a new seq (so every process builds its pages anew, listing what the new filter
lets through), and ``on_change`` runs (the promoter wakes: a wider filter brings files to
fetch and vet, each with its hold as it was).
"""

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from mirror.errors import ConfigError
from mirror.settings import Settings, load_settings
from quarantine import policy_record
from quarantine.clock import Clock
from quarantine.ledger.interface import Ledger
from quarantine.live_policy import LivePolicy
from quarantine.platforms import PlatformFilter
from quarantine.policy_record import PolicyInForce

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0

_Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: no file there


class ConfigReload:
    def __init__(
        self,
        settings: Settings,
        policy: LivePolicy,
        ledger: Ledger,
        clock: Clock,
        actor: str,
        env: Mapping[str, str] | None = None,
        on_change: Callable[[], object] = lambda: None,
    ) -> None:
        self._settings = settings
        self._path = settings.config_file
        self._policy = policy
        self._ledger = ledger
        self._clock = clock
        self._actor = actor
        self._env = os.environ if env is None else env
        self._on_change = on_change
        self._stamp = _stamp(self._path)  # the file as it was loaded at start

    async def run_forever(self, interval_seconds: float = CHECK_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.check()
            except Exception:  # a busy ledger: the next tick tries again
                log.exception("could not apply the changed config file")

    async def check(self) -> bool:
        """Whether the filter changed (and was put in force) since the last check."""
        stamp = _stamp(self._path)
        if stamp == self._stamp or self._path is None:
            return False
        changed = await asyncio.to_thread(self._reload, self._path)
        self._stamp = stamp  # after: a failed write to the ledger is tried again
        if changed:
            self._on_change()
        return changed

    def _reload(self, path: Path) -> bool:
        try:
            loaded = load_settings(path, self._env, {}).policy
        except ConfigError as error:
            log.error("%s changed but does not load; the platform filter stays: %s", path, error)
            return False
        base = self._policy.base
        live = (loaded.wheel_filter, loaded.superseded_releases)
        if live == (base.wheel_filter, base.superseded_releases):
            return False
        self._apply(*live)
        return True

    def _apply(self, wheel_filter: PlatformFilter, superseded_releases: str) -> None:
        base = replace(
            self._policy.base, wheel_filter=wheel_filter, superseded_releases=superseded_releases
        )
        self._policy.rebase(base)  # first: a page built at the new seq uses this filter
        settings = self._settings
        in_force = PolicyInForce(base, settings.osv_feeds, settings.osv_id_prefixes)
        policy_record.record(self._ledger, in_force, self._actor, self._clock.now())
        self._ledger.touch_all_projects()
        log.info(
            "config file changed: %s; superseded releases vetted %s",
            wheel_filter.describe(),
            superseded_releases,
        )


def _stamp(path: Path | None) -> _Stamp:
    if path is None:
        return None
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino
