"""PEP 740 provenance: offline verification and publisher continuity.

Two checks for the vetting worker live here:

* ``provenance``: every attestation in a file's provenance object is verified offline against
  a pinned Sigstore trust root shipped with the mirror (``quarantine/provenance/trust/``,
  replaceable by config for air-gapped updates). Nothing here touches the network, a TUF
  repository or the user cache directory. Parsing and cryptography are pypi-attestations' and
  sigstore's; this module only builds the certificate policy and checks the in-toto
  statement against the file.
* ``publisher``: the verified identity of a new file is compared with a pinned publisher from
  config or, failing that, the verified identity of the project's earlier releases.

What a valid signature proves is *who built the file*, never that it is benign: evidence from
here can hold a file for review, never shorten a hold. The ``publisher`` block inside a
provenance object is not signed; the certificate policy is what proves the identity, so an
expected identity must come from the mirror's own configuration or state.

Verification is synchronous and CPU-bound (about 3 ms per attestation): callers on an event
loop run ``ProvenanceVerifier.verify`` in a worker thread (``asyncio.to_thread``). One
``ProvenanceVerifier`` is built at start-up and shared; it holds no per-call state, so
concurrent calls from several threads are fine.
"""

import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pydantic
import sigstore.errors
import sigstore.models
from cryptography import x509
from cryptography.hazmat import asn1
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from pypi_attestations import (
    Attestation,
    AttestationError,
    AttestationType,
    CircleCIPublisher,
    GitHubPublisher,
    GitLabPublisher,
    GooglePublisher,
    Provenance,
    VerificationError,
)
from sigstore.dsse import _Statement
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier

from quarantine.evidence import (
    DEFAULT_SEVERITY_ACTIONS,
    Action,
    Evidence,
    Finding,
    Severity,
    action_for,
    strongest,
)
from quarantine.inspect.rules.catalog import rule
from quarantine.policy import PublisherPin

__all__ = [
    "KNOWN_PREDICATES",
    "PREDICATE_SHORT_NAMES",
    "PROVENANCE_ERRORS",
    "ProvenanceResult",
    "ProvenanceVerifier",
    "PublisherIdentity",
    "continuity_evidence",
    "default_trust_root",
    "provenance_evidence",
]

TRUST_ROOT_RESOURCE: Final = "trust/sigstore-production-trusted_root.json"

KNOWN_PREDICATES: Final = frozenset(item.value for item in AttestationType)
PREDICATE_SHORT_NAMES: Final[Mapping[str, str]] = {
    AttestationType.PYPI_PUBLISH_V1.value: "publish/v1",
    AttestationType.SLSA_PROVENANCE_V1.value: "slsa/v1",
}
_DSSE_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
# The Fulcio certificate claim holding the git ref the build ran from (signed, informative).
_SOURCE_REF_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.14")
_ISSUER_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_BUILD_CONFIG_OID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.18")

# Real provenance objects are about 10 KB with one or two attestations. Anything far larger is
# not parsed at all, and the number of signatures checked per file is bounded.
MAX_PROVENANCE_BYTES: Final = 1024 * 1024
MAX_ATTESTATIONS: Final = 16

# Everything the parsing and verification libraries raise for bad input. Nothing else is caught:
# an exception outside this list is a bug and must surface, not turn into a verdict.
# (sigstore.models.InvalidBundle is a sigstore.errors.Error; it is named for the reader,
# because it escapes pypi_attestations.AttestationError.)
PROVENANCE_ERRORS: Final = (
    pydantic.ValidationError,
    AttestationError,  # pypi_attestations.VerificationError, ConversionError
    sigstore.models.InvalidBundle,
    sigstore.errors.Error,
    json.JSONDecodeError,
    ValueError,
)

PROVENANCE_INVALID = rule(
    "provenance-invalid",
    Severity.HIGH,
    "provenance",
    "published provenance that does not verify for this file",
)
PROVENANCE_MISSING_PINNED = rule(
    "provenance-missing-pinned",
    Severity.HIGH,
    "publisher",
    "no verified provenance, but the project's publisher is pinned in the configuration",
)
PROVENANCE_DROPPED = rule(
    "provenance-dropped",
    Severity.HIGH,
    "publisher",
    "no verified provenance, but an earlier release was built by a verified publisher",
)
PROVENANCE_REQUIRED = rule(
    "provenance-required",
    Severity.HIGH,
    "publisher",
    "no verified provenance for a project that must carry it (require_provenance)",
)
FIRST_PUBLISHER = rule(
    "first-publisher",
    Severity.INFO,
    "publisher",
    "the project's first release with provenance: its publisher is trusted on first use",
)
PUBLISHER_CHANGED = rule(
    "publisher-changed",
    Severity.HIGH,
    "publisher",
    "built by another publisher than the pinned one or the earlier releases'",
)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_WHITESPACE = re.compile(r"\s+")
_MAX_REASON = 400

_Publisher = GitHubPublisher | GitLabPublisher | GooglePublisher | CircleCIPublisher
_CIRCLECI_FIELDS: Final = ("project_id", "pipeline_definition_id", "vcs_origin", "vcs_ref")


@dataclass(frozen=True, slots=True)
class PublisherIdentity:
    """Who built a file, as a Trusted Publisher (the fields a certificate policy checks).

    ``workflow`` is the GitHub workflow file name (``release.yml``) or the GitLab
    ``workflow_filepath``; ``email`` is a Google service account; other kinds (CircleCI)
    keep their fields in ``extra``, sorted by key. The GitHub/GitLab ``environment`` is not
    kept: it is not in the certificate, so nothing proves it.
    """

    kind: str
    repository: str | None = None
    workflow: str | None = None
    email: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def same_publisher(self, other: "PublisherIdentity") -> bool:
        """Whether ``other`` names the same publisher: kind, repository (any case), workflow,
        email (any case) and the extra fields. Never the environment (it is not signed)."""
        return (
            self.kind == other.kind
            and _fold(self.repository) == _fold(other.repository)
            and self.workflow == other.workflow
            and _fold(self.email) == _fold(other.email)
            and dict(self.extra) == dict(other.extra)
        )

    def describe(self) -> str:
        """One line, e.g. ``GitHub trailofbits/pypi-attestations .github/workflows/release.yml``."""
        parts = [self.kind]
        if self.repository is not None:
            parts.append(self.repository)
        if self.workflow is not None:
            workflow = self.workflow
            if self.kind == "GitHub" and "/" not in workflow:
                workflow = f".github/workflows/{workflow}"
            parts.append(workflow)
        if self.email is not None:
            parts.append(self.email)
        parts.extend(f"{key}={value}" for key, value in self.extra)
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "repository": self.repository,
            "workflow": self.workflow,
            "email": self.email,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PublisherIdentity":
        """The inverse of ``to_json``; raises ``ValueError`` on a malformed mapping."""
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError("publisher identity needs a non-empty 'kind'")
        fields: dict[str, str | None] = {}
        for name in ("repository", "workflow", "email"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"publisher identity field {name!r} must be a string or null")
            fields[name] = value
        extra = data.get("extra") or {}
        if not isinstance(extra, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in extra.items()
        ):
            raise ValueError("publisher identity 'extra' must map strings to strings")
        return cls(
            kind=kind,
            repository=fields["repository"],
            workflow=fields["workflow"],
            email=fields["email"],
            extra=tuple(sorted(extra.items())),
        )

    @classmethod
    def from_pin(cls, pin: PublisherPin) -> "PublisherIdentity":
        """The identity a publisher pinned in config stands for."""
        return cls(kind=pin.kind, repository=pin.repository, workflow=pin.workflow, email=pin.email)

    @classmethod
    def from_publisher(cls, publisher: _Publisher) -> "PublisherIdentity":
        """The identity of a pypi-attestations publisher model."""
        if isinstance(publisher, GitHubPublisher):
            return cls("GitHub", publisher.repository, publisher.workflow)
        if isinstance(publisher, GitLabPublisher):
            return cls("GitLab", publisher.repository, publisher.workflow_filepath)
        if isinstance(publisher, GooglePublisher):
            return cls("Google", email=publisher.email)
        extra = {name: getattr(publisher, name) for name in _CIRCLECI_FIELDS}
        return cls(
            publisher.kind,
            extra=tuple(sorted((key, value) for key, value in extra.items() if value is not None)),
        )

    def to_publisher(self) -> _Publisher:
        """The pypi-attestations publisher model whose policy checks this identity.

        Raises ``ValueError`` (a pydantic ``ValidationError`` for missing fields) when the
        identity cannot be turned into a certificate policy, e.g. an unknown kind.
        """
        if self.kind == "GitHub":
            return GitHubPublisher.model_validate(
                {"repository": self.repository, "workflow": self.workflow}
            )
        if self.kind == "GitLab":
            return GitLabPublisher.model_validate(
                {"repository": self.repository, "workflow_filepath": self.workflow}
            )
        if self.kind == "Google":
            return GooglePublisher.model_validate({"email": self.email})
        if self.kind == "CircleCI":
            return CircleCIPublisher.model_validate(dict(self.extra))
        raise ValueError(f"no certificate policy for publisher kind {self.kind!r}")

    def policy_problem(self) -> str | None:
        """Why this identity cannot be an expected publisher, or None if it can.

        For config validation at start-up: a pin every file would fail against (an unknown
        kind, a GitHub pin without its workflow) is better refused than discovered per file.
        """
        try:
            self.to_publisher()
        except pydantic.ValidationError as exc:
            return _describe_error(exc)
        except ValueError as exc:
            return str(exc)
        return None


@dataclass(frozen=True, slots=True)
class ProvenanceResult:
    """The outcome of verifying one file's provenance object.

    ``identity`` is the verified publisher (None unless ``ok``); ``predicates`` the predicate
    types of the verified attestations (full URIs, in order); ``reason`` one line naming the
    error class on failure; ``error`` the exception class name. ``source_refs`` are the git
    refs the certificates say the builds ran from: signed, but no policy checks them.
    """

    ok: bool
    identity: PublisherIdentity | None
    predicates: tuple[str, ...]
    reason: str
    error: str | None = None
    source_refs: tuple[str, ...] = ()


def default_trust_root() -> bytes:
    """The Sigstore production trusted root shipped with the mirror."""
    return (importlib.resources.files("quarantine.provenance") / TRUST_ROOT_RESOURCE).read_bytes()


class ProvenanceVerifier:
    """Verifies PEP 740 provenance offline against one pinned trust root.

    Build it once (it parses the trust root and the Fulcio chains) and reuse it for every file.
    A trust root that cannot be read or parsed raises here, at start-up, not per file.
    """

    def __init__(self, trust_root: str | os.PathLike[str] | None = None) -> None:
        if trust_root is None:
            with importlib.resources.as_file(
                importlib.resources.files("quarantine.provenance") / TRUST_ROOT_RESOURCE
            ) as path:
                self._init_from(path)
        else:
            self._init_from(trust_root)

    def _init_from(self, path: str | os.PathLike[str]) -> None:
        self.trust_root_path = os.fspath(path)
        self.trust_root_sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        self._verifier = Verifier(trusted_root=TrustedRoot.from_file(self.trust_root_path))

    def verify(
        self,
        provenance: bytes,
        filename: str,
        sha256: str,
        expected: PublisherIdentity | None = None,
    ) -> ProvenanceResult:
        """Verify every attestation in ``provenance`` for the file ``filename`` with ``sha256``.

        With ``expected`` (from config or the project's earlier releases) the certificates must
        prove that publisher; without it, the publisher block of each bundle is what the
        certificates are checked against (the block itself is unsigned; the policy built from
        it is what makes the returned identity a verified one). Any failure is ``ok=False``
        with the reason; nothing outside ``PROVENANCE_ERRORS`` is caught.
        """
        try:
            identity, predicates, refs = self._verify(provenance, filename, sha256, expected)
        except PROVENANCE_ERRORS as exc:
            return ProvenanceResult(
                ok=False,
                identity=None,
                predicates=(),
                reason=_one_line(f"{type(exc).__name__}: {_describe_error(exc)}"),
                error=type(exc).__name__,
            )
        names = ", ".join(PREDICATE_SHORT_NAMES.get(item, item) for item in predicates)
        return ProvenanceResult(
            ok=True,
            identity=identity,
            predicates=predicates,
            reason=_one_line(f"verified: built by {identity.describe()} ({names})"),
            source_refs=refs,
        )

    def _verify(
        self,
        provenance: bytes,
        filename: str,
        sha256: str,
        expected: PublisherIdentity | None,
    ) -> tuple[PublisherIdentity, tuple[str, ...], tuple[str, ...]]:
        digest = sha256.lower()
        if not _HEX64.fullmatch(digest):
            raise ValueError("distribution sha256 is not 64 hex digits")
        wanted_name = _parse_dist_filename(filename)
        if len(provenance) > MAX_PROVENANCE_BYTES:
            raise ValueError(f"provenance object larger than {MAX_PROVENANCE_BYTES} bytes")
        parsed = Provenance.model_validate_json(provenance)
        if not parsed.attestation_bundles:
            raise ValueError("provenance object has no attestation bundles")
        count = sum(len(bundle.attestations) for bundle in parsed.attestation_bundles)
        if count > MAX_ATTESTATIONS:
            raise ValueError(
                f"provenance object has {count} attestations (limit {MAX_ATTESTATIONS})"
            )

        verified: PublisherIdentity | None = None
        predicates: list[str] = []
        refs: list[str] = []
        for number, bundle in enumerate(parsed.attestation_bundles, start=1):
            if not bundle.attestations:
                raise ValueError(f"attestation bundle {number} has no attestations")
            claimed = PublisherIdentity.from_publisher(bundle.publisher)
            # Compare a configured identity case-insensitively, then verify with the
            # provenance's own spelling (the index writes the canonical case, which is what the
            # certificate holds). When they differ, the expected identity's own policy decides,
            # so a rewritten publisher block cannot help a foreign certificate through.
            if expected is None or expected.same_publisher(claimed):
                publisher: _Publisher = bundle.publisher
                identity = claimed
            else:
                publisher = expected.to_publisher()
                identity = expected
            if verified is not None and not verified.same_publisher(identity):
                raise ValueError(
                    "provenance names more than one publisher: "
                    f"{verified.describe()} and {identity.describe()}"
                )
            if verified is None:
                verified = identity
            policy = _PublisherPolicy(identity, publisher)
            for attestation in bundle.attestations:
                predicate, ref = self._verify_attestation(
                    attestation, policy, filename, digest, wanted_name
                )
                predicates.append(predicate)
                if ref and ref not in refs:
                    refs.append(ref)
        assert verified is not None  # at least one bundle, each with an attestation
        return verified, tuple(predicates), tuple(refs)

    def _verify_attestation(
        self,
        attestation: Attestation,
        policy: "_PublisherPolicy",
        filename: str,
        digest: str,
        wanted_name: tuple[object, ...],
    ) -> tuple[str, str | None]:
        """The predicate type of ``attestation`` once it is proven to be about this file, and
        the git ref its certificate says the build ran from (signed, checked by no policy)."""
        bundle = attestation.to_bundle()
        try:
            payload_type, payload = self._verifier.verify_dsse(bundle, policy)
        except _PolicyMismatch as err:
            raise VerificationError(
                f"certificate is not from {policy.identity.describe()}: it names "
                f"{_certificate_says(bundle.signing_certificate)}"
            ) from err
        except sigstore.errors.VerificationError as err:
            # name a subclass (CertValidationError: the chain does not lead to this root)
            kind = (
                "" if type(err) is sigstore.errors.VerificationError else f"{type(err).__name__}: "
            )
            raise VerificationError(f"{kind}{err}") from err
        if payload_type != _DSSE_PAYLOAD_TYPE:
            raise VerificationError(f"expected an in-toto JSON envelope, got {payload_type}")
        try:
            statement = _Statement.model_validate_json(payload)
        except pydantic.ValidationError as err:
            raise VerificationError(f"invalid in-toto statement: {err}") from err
        if len(statement.subjects) != 1:
            raise VerificationError(
                f"statement has {len(statement.subjects)} subjects (must be exactly one)"
            )
        subject = statement.subjects[0]
        if not subject.name:
            raise VerificationError("invalid subject: missing name")
        try:
            subject_name = _parse_dist_filename(subject.name)
        except ValueError as err:
            raise VerificationError(f"invalid subject name: {err}") from err
        if subject_name != wanted_name:
            raise VerificationError(
                f"subject does not match distribution name: {subject.name} != {filename}"
            )
        if subject.digest.root.get("sha256", "").lower() != digest:
            raise VerificationError("subject does not match distribution digest")
        if statement.predicate_type not in KNOWN_PREDICATES:
            raise VerificationError(f"unknown attestation type: {statement.predicate_type}")
        return statement.predicate_type, _claim(bundle.signing_certificate, _SOURCE_REF_OID)


class _PolicyMismatch(sigstore.errors.VerificationError):
    """The certificate is genuine but not the publisher's (kept apart to explain it well)."""


class _PublisherPolicy:
    """A publisher's certificate policy (from pypi-attestations), failing only with
    ``_PolicyMismatch``: the library's policies let cryptography's ``ExtensionNotFound``
    escape for a certificate without a claim they read, which is a mismatch, not a crash."""

    def __init__(self, identity: PublisherIdentity, publisher: _Publisher) -> None:
        self.identity = identity
        self._inner = publisher._as_policy()

    def verify(self, cert: x509.Certificate) -> None:
        try:
            self._inner.verify(cert)
        except x509.ExtensionNotFound as err:
            raise _PolicyMismatch(
                f"certificate lacks the claim {err.oid.dotted_string} the policy needs"
            ) from err
        except sigstore.errors.VerificationError as err:
            raise _PolicyMismatch(str(err)) from err


def _claim(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    """A Fulcio claim (a DER UTF8String extension) of ``cert``, or None."""
    try:
        extension = cert.extensions.get_extension_for_oid(oid).value
        if not isinstance(extension, x509.UnrecognizedExtension):
            return None
        return asn1.decode_der(str, extension.value)
    except (x509.ExtensionNotFound, ValueError):
        return None


def _certificate_says(cert: x509.Certificate) -> str:
    """Who a (chain-verified) signing certificate names, for a mismatch reason: its subject
    alternative name, build config when it differs (reusable workflows), and issuer."""
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(item.value) for item in san]
    except x509.ExtensionNotFound:
        pass
    build_config = _claim(cert, _BUILD_CONFIG_OID)
    if build_config and build_config not in names:
        names.append(f"build config {build_config}")
    issuer = _claim(cert, _ISSUER_OID)
    said = ", ".join(names) or "no identity"
    return f"{said} (issuer {issuer})" if issuer else said


def _parse_dist_filename(filename: str) -> tuple[object, ...]:
    """(name, version[, build, tags]) of a wheel or sdist file name; ``ValueError`` otherwise.

    The name is normalized and the version parsed, so spelling differences in either do not
    matter; wheels also compare their build tag and (expanded) tag set. The kind is part of
    the result, so a wheel's attestation never matches an sdist of the same release.
    """
    if filename.endswith(".whl"):
        return ("wheel", *parse_wheel_filename(filename))
    if filename.endswith((".tar.gz", ".zip")):
        return ("sdist", *parse_sdist_filename(filename))
    raise ValueError(f"not a distribution file name: {filename!r}")


def _describe_error(exc: Exception) -> str:
    """The message of ``exc``; for pydantic, where and what without echoing the input."""
    if not isinstance(exc, pydantic.ValidationError):
        return str(exc)
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"invalid {exc.title}: {shown}{more}"


def _one_line(text: str) -> str:
    """One printable line: whitespace runs collapsed, control characters escaped, bounded."""
    text = _WHITESPACE.sub(" ", text).strip()
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _fold(value: str | None) -> str | None:
    return value.casefold() if value is not None else None


def _evidence(
    check: str,
    summary: str,
    findings: Sequence[Finding],
    details: Mapping[str, Any],
    severity_actions: Mapping[Severity, Action],
    rule_actions: Mapping[str, Action] | None,
) -> Evidence:
    action = strongest([action_for(item, severity_actions, rule_actions) for item in findings])
    return Evidence(check, action, summary, tuple(findings), dict(details))


def provenance_evidence(
    result: ProvenanceResult | None,
    provenance_sha256: str | None,
    *,
    severity_actions: Mapping[Severity, Action] = DEFAULT_SEVERITY_ACTIONS,
    rule_actions: Mapping[str, Action] | None = None,
) -> Evidence:
    """The ``provenance`` check's evidence for one file.

    ``result`` is None when the index links no provenance (whether that matters is the
    ``publisher`` check's call); ``provenance_sha256`` is the sha256 of the exact bytes that
    were verified, kept so the same bytes can be served. Failures are a ``provenance-invalid``
    finding (HIGH: review by default).
    """
    if result is None and provenance_sha256 is None:
        return Evidence("provenance", Action.PASS, "no provenance published")
    if result is not None and result.ok and result.identity is not None:
        verified: dict[str, Any] = {
            "identity": result.identity.to_json(),
            "predicates": list(result.predicates),
            "provenance_sha256": provenance_sha256,
            "source_refs": list(result.source_refs),
        }
        return Evidence("provenance", Action.PASS, result.reason, (), verified)
    if result is None:  # bytes were fetched, but nobody verified them
        reason, error = "provenance was fetched but not verified", None
    else:
        reason, error = result.reason, result.error
    finding = Finding(PROVENANCE_INVALID, Severity.HIGH, reason)
    details: dict[str, Any] = {
        "error": error,
        "reason": reason,
        "provenance_sha256": provenance_sha256,
    }
    return _evidence(
        "provenance",
        f"provenance did not verify: {reason}",
        [finding],
        details,
        severity_actions,
        rule_actions,
    )


def continuity_evidence(
    current: PublisherIdentity | None,
    has_provenance: bool,
    history: Sequence[tuple[str, PublisherIdentity | None]],
    pinned: PublisherIdentity | None,
    require_provenance: bool,
    *,
    standing: Sequence[tuple[str, PublisherIdentity | None]] = (),
    severity_actions: Mapping[Severity, Action] = DEFAULT_SEVERITY_ACTIONS,
    rule_actions: Mapping[str, Action] | None = None,
) -> Evidence:
    """The ``publisher`` check: is this file built by the publisher the project is known by?

    ``current`` is the file's *verified* identity (None when it has no provenance or its
    provenance did not verify; ``has_provenance`` tells the two apart). ``history`` holds
    (version, verified identity or None) of the project's earlier promoted releases, oldest
    first, as judged from the upstream history; ``standing`` the same for its earlier
    releases in any state but rejected or blocked (held ones too: on first sight of a
    project nothing is promoted yet). ``pinned`` comes from config and overrides both.
    The expected identity never comes from the provenance being checked.
    """
    findings: list[Finding] = []
    expectations = _expectations(history, standing, pinned)
    expected, expected_from = expectations[0] if expectations else (None, None)
    if current is not None:
        for identity, version in expectations:
            if not identity.same_publisher(current):
                expected, expected_from = identity, version
                break
    source = "the pinned publisher" if pinned is not None else f"release {expected_from}"

    if current is None:
        missing = "provenance that did not verify" if has_provenance else "no provenance"
        if pinned is not None:
            findings.append(
                Finding(
                    PROVENANCE_MISSING_PINNED,
                    Severity.HIGH,
                    f"{missing}, but the publisher is pinned to {pinned.describe()}",
                )
            )
        elif expected is not None:
            findings.append(
                Finding(
                    PROVENANCE_DROPPED,
                    Severity.HIGH,
                    f"{missing}, but {source} was built by {expected.describe()}",
                )
            )
        if require_provenance:
            findings.append(
                Finding(
                    PROVENANCE_REQUIRED,
                    Severity.HIGH,
                    f"{missing}; this project must carry verified provenance",
                )
            )
    elif expected is None:
        findings.append(
            Finding(
                FIRST_PUBLISHER,
                Severity.INFO,
                f"first release with provenance: built by {current.describe()} "
                "(trusted on first use)",
            )
        )
    elif not expected.same_publisher(current):
        findings.append(
            Finding(
                PUBLISHER_CHANGED,
                Severity.HIGH,
                f"built by {current.describe()}, but {source} was built by {expected.describe()}",
            )
        )

    if findings:
        summary = findings[0].message
    elif current is not None:
        summary = f"same publisher as {source}: {current.describe()}"
    else:
        summary = "no provenance, and none expected"
    details = {
        "identity": current.to_json() if current is not None else None,
        "has_provenance": has_provenance,
        "expected": expected.to_json() if expected is not None else None,
        "expected_from": expected_from,
    }
    return _evidence("publisher", summary, findings, details, severity_actions, rule_actions)


def _expectations(
    history: Sequence[tuple[str, PublisherIdentity | None]],
    standing: Sequence[tuple[str, PublisherIdentity | None]],
    pinned: PublisherIdentity | None,
) -> list[tuple[PublisherIdentity, str]]:
    """Whom a file must be built by, with where each comes from ("pin" or a version).

    Unpinned: the newest verified publisher of the standing releases and that of the
    promoted ones, both when they differ. A file must match every one, so counting held
    releases can only add findings: a held release by a new publisher can neither vouch
    for its successor nor hide the publisher the promoted releases were built by.
    """
    if pinned is not None:
        return [(pinned, "pin")]
    found: list[tuple[PublisherIdentity, str]] = []
    for releases in (standing, history):
        verified = [(identity, version) for version, identity in releases if identity is not None]
        newest = verified[-1] if verified else None
        if newest is not None and not any(newest[0].same_publisher(i) for i, _ in found):
            found.append(newest)
    return found
