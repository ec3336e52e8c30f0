"""What the operator decided: cooling periods, exemptions, the outbreak cutoff."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from packaging.utils import NormalizedName

from quarantine.evidence import DEFAULT_SEVERITY_ACTIONS, Action, Severity
from quarantine.platforms import PlatformFilter

DEFAULT_FILTER = PlatformFilter()
# ``superseded_releases``: when the files of releases older than a project's newest cooled
# one, already cooled when the project is first seen, are fetched and vetted.
ON_DOWNLOAD = "on-download"  # when a client first asks for their bytes
AHEAD = "ahead"  # at once, in the background, like every other file
SUPERSEDED_RELEASES = (ON_DOWNLOAD, AHEAD)


@dataclass(frozen=True, slots=True)
class Exemption:
    """A project served without a hold (an internal one, say); the reason is mandatory."""

    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PublisherPin:
    """The publisher a project must be built by, from config (not from any provenance)."""

    kind: str
    repository: str | None = None
    workflow: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    cooling_period: timedelta = timedelta(hours=72)
    # A file older than cooling_period + vetting_window at first sight is "established":
    # listed at once, its bytes fetched and hash-checked on first download.
    vetting_window: timedelta = timedelta(days=30)
    # A promotion needs an upstream look at least this recent (to see takedowns).
    freshness_window: timedelta = timedelta(minutes=10)
    # A new file claiming an upload time older than the previous look minus this is backdated.
    backdate_tolerance: timedelta = timedelta(0)
    # Upload times further in the future than this are an anomaly.
    future_tolerance: timedelta = timedelta(minutes=5)
    cooling_overrides: Mapping[NormalizedName, timedelta] = field(default_factory=dict)
    exemptions: Mapping[NormalizedName, Exemption] = field(default_factory=dict)
    cutoff: datetime | None = None  # nothing uploaded after this is promoted
    # Checks that must have reported on a file before it can be promoted.
    required_checks: tuple[str, ...] = ("provenance", "publisher", "content")
    severity_actions: Mapping[Severity, Action] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_ACTIONS)
    )
    rule_actions: Mapping[str, Action] = field(default_factory=dict)  # per-rule overrides
    # Projects whose every release must carry verified provenance; "*" means all.
    require_provenance: frozenset[str] = frozenset()
    pinned_publishers: Mapping[NormalizedName, PublisherPin] = field(default_factory=dict)
    # The platforms and Pythons in use: wheels for others are never fetched or listed.
    wheel_filter: PlatformFilter = DEFAULT_FILTER
    superseded_releases: str = ON_DOWNLOAD  # one of SUPERSEDED_RELEASES

    # Admin blocks: (project, canonical version or "*") -> reason.
    blocks: Mapping[tuple[NormalizedName, str], str] = field(default_factory=dict)

    def exclusion(self, filename: str) -> str | None:
        """Why a file is outside the configured platforms or Pythons; None when inside."""
        return self.wheel_filter.exclusion(filename)

    @property
    def vets_on_download(self) -> bool:
        """Whether deferred files wait for a client's download to be fetched and vetted."""
        return self.superseded_releases == ON_DOWNLOAD

    def block_reason(self, project: NormalizedName, version: str) -> str | None:
        return self.blocks.get((project, version)) or self.blocks.get((project, "*"))

    def requires_provenance(self, project: NormalizedName) -> bool:
        return "*" in self.require_provenance or project in self.require_provenance

    def cooling_for(self, project: NormalizedName) -> timedelta:
        return self.cooling_overrides.get(project, self.cooling_period)

    def exemption_for(self, project: NormalizedName, now: datetime) -> Exemption | None:
        exemption = self.exemptions.get(project)
        if exemption is None or (exemption.until is not None and now >= exemption.until):
            return None
        return exemption

    def is_after_cutoff(self, upload_time: datetime | None) -> bool:
        """Under a cutoff, a file with no upload time counts as after it: fail closed."""
        if self.cutoff is None:
            return False
        return upload_time is None or upload_time > self.cutoff


@dataclass
class RuntimeOverrides:
    """What admins set while the mirror runs, kept in the ledger."""

    exemptions: dict[NormalizedName, Exemption] = field(default_factory=dict)
    cutoff: datetime | None = None
    blocks: dict[tuple[NormalizedName, str], str] = field(default_factory=dict)
