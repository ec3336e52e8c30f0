"""PEP 740 provenance verification and publisher continuity, on real Sigstore-signed fixtures.

The fixtures (``tests/fixtures/provenance``) are real attestations with the files they
attest; verification is offline against the pinned production trust root. Verification time
comes from the transparency-log entry, not the wall clock, so no clock is faked.
"""

import base64
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pypi_attestations import AttestationType

from quarantine.evidence import Action, Severity
from quarantine.policy import PublisherPin
from quarantine.provenance.verify import (
    KNOWN_PREDICATES,
    PREDICATE_SHORT_NAMES,
    ProvenanceResult,
    ProvenanceVerifier,
    PublisherIdentity,
    continuity_evidence,
    default_trust_root,
    provenance_evidence,
)
from support.fixtures import PROVENANCE, provenance_manifest, provenance_path

FIXTURES = PROVENANCE

PYPI_ATTESTATIONS = "pypi_attestations-0.0.19.tar.gz"
PYPI_ATTESTATIONS_SHA = "9bb1add04b1b4e182be6b0b80931593f7a291eb49d69b4fd728a5d4cbcdc4bd3"
SIGSTORE = "sigstore-3.6.1.tar.gz"
SIGSTORE_SHA = "ee60fdc9236fd6709271ad53b44027461360c3fde155d2af15482e4c451ff865"
TOB = PublisherIdentity("GitHub", "trailofbits/pypi-attestations", "release.yml")
SIGSTORE_PUBLISHER = PublisherIdentity("GitHub", "sigstore/sigstore-python", "release.yml")


def _manifest() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = provenance_manifest()["cases"]
    return cases


VERIFY_CASES = [case for case in _manifest() if case["expect"] == "verify"]


def _case_id(case: dict[str, Any]) -> str:
    return str(case.get("provenance") or case.get("attestation"))


def _identity(publisher: dict[str, Any]) -> PublisherIdentity:
    """The identity a manifest publisher block stands for, built independently of the module."""
    kind = publisher["kind"]
    if kind == "GitHub":
        return PublisherIdentity(kind, publisher["repository"], publisher["workflow"])
    if kind == "GitLab":
        return PublisherIdentity(kind, publisher["repository"], publisher["workflow_filepath"])
    assert kind == "Google"
    return PublisherIdentity(kind, email=publisher["email"])


def _wrap(attestation: dict[str, Any], publisher: dict[str, Any]) -> bytes:
    provenance = {
        "version": 1,
        "attestation_bundles": [{"publisher": publisher, "attestations": [attestation]}],
    }
    return json.dumps(provenance).encode()


def _provenance_bytes(case: dict[str, Any]) -> bytes:
    if "provenance" in case:
        return (FIXTURES / str(case["provenance"])).read_bytes()
    attestation = json.loads((FIXTURES / case["attestation"]).read_bytes())
    return _wrap(attestation, case["publisher"])


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return loaded


def _first_attestation(provenance: dict[str, Any]) -> dict[str, Any]:
    attestation: dict[str, Any] = provenance["attestation_bundles"][0]["attestations"][0]
    return attestation


@pytest.fixture(scope="module")
def verifier() -> ProvenanceVerifier:
    return ProvenanceVerifier(FIXTURES / "sigstore-production-trusted_root.json")


def _assert_rejected(result: ProvenanceResult, error: str, *needles: str) -> None:
    assert not result.ok, result
    assert result.identity is None
    assert result.predicates == ()
    assert result.error == error, result.reason
    assert result.reason.startswith(f"{error}: "), result.reason
    assert "\n" not in result.reason
    for needle in needles:
        assert needle in result.reason, result.reason


# --- the pinned trust root ------------------------------------------------------------------


def test_shipped_trust_root_is_the_fixture_root() -> None:
    shipped = default_trust_root()
    assert shipped == (FIXTURES / "sigstore-production-trusted_root.json").read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == (
        "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66"
    )
    assert ProvenanceVerifier().trust_root_sha256 == hashlib.sha256(shipped).hexdigest()


# --- every verifying pair verifies ----------------------------------------------------------


@pytest.mark.parametrize("with_expected", [False, True], ids=["from-block", "expected"])
@pytest.mark.parametrize("case", VERIFY_CASES, ids=_case_id)
def test_manifest_pairs_verify(
    verifier: ProvenanceVerifier, case: dict[str, Any], with_expected: bool
) -> None:
    filename = case["dist"] or case["dist_name"]
    if case["dist"] is not None:  # the file's bytes are the evidence, not the manifest's word
        digest = hashlib.sha256((FIXTURES / case["dist"]).read_bytes()).hexdigest()
        assert digest == case["sha256"]
    else:  # digest only, the way the mirror knows it from the index
        digest = case["sha256"]
    identity = _identity(case["publisher"])
    expected = identity if with_expected else None

    result = verifier.verify(_provenance_bytes(case), filename, digest, expected)

    assert result.ok, result.reason
    assert result.error is None
    assert result.identity == identity
    assert [PREDICATE_SHORT_NAMES[item] for item in result.predicates] == case["predicates"]
    assert set(result.predicates) <= KNOWN_PREDICATES
    assert result.reason.startswith("verified: built by ")


def test_expected_repository_is_compared_case_insensitively(verifier: ProvenanceVerifier) -> None:
    shouting = PublisherIdentity("GitHub", "TrailOfBits/PyPI-Attestations", "release.yml")
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, shouting)
    assert result.ok, result.reason
    assert result.identity == TOB  # the canonical spelling the certificate holds
    assert result.source_refs == ("refs/tags/v0.0.19",)


def test_uppercase_digest_and_unnormalised_file_name(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    result = verifier.verify(raw, "PyPI.Attestations-0.0.19.tar.gz", PYPI_ATTESTATIONS_SHA.upper())
    assert result.ok, result.reason


def test_both_attestations_in_one_bundle(verifier: ProvenanceVerifier) -> None:
    publish = _load(f"{PYPI_ATTESTATIONS}.publish.attestation")
    slsa = _load(f"{PYPI_ATTESTATIONS}.slsa.attestation")
    raw = json.dumps(
        {
            "version": 1,
            "attestation_bundles": [
                {
                    "publisher": {"kind": "GitHub", **TOB.to_json(), "environment": "pypi"},
                    "attestations": [publish, slsa],
                }
            ],
        }
    ).encode()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, TOB)
    assert result.ok, result.reason
    assert [PREDICATE_SHORT_NAMES[item] for item in result.predicates] == ["publish/v1", "slsa/v1"]


# --- negative cases: each not ok, naming the reason -----------------------------------------


def test_tampered_distribution(verifier: ProvenanceVerifier) -> None:
    data = bytearray((FIXTURES / PYPI_ATTESTATIONS).read_bytes())
    data[len(data) // 2] ^= 0x01
    digest = hashlib.sha256(data).hexdigest()
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    for expected in (None, TOB):
        result = verifier.verify(raw, PYPI_ATTESTATIONS, digest, expected)
        _assert_rejected(result, "VerificationError", "subject does not match distribution digest")


def test_expected_other_repository(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    other = PublisherIdentity("GitHub", "pypi/pypi-attestations", "release.yml")
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, other)
    _assert_rejected(
        result,
        "VerificationError",
        "certificate is not from GitHub pypi/pypi-attestations",
        "it names https://github.com/trailofbits/pypi-attestations/",
    )


def test_expected_other_workflow(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    other = PublisherIdentity("GitHub", "trailofbits/pypi-attestations", "publish.yml")
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, other)
    _assert_rejected(
        result,
        "VerificationError",
        "certificate is not from GitHub trailofbits/pypi-attestations "
        ".github/workflows/publish.yml",
        "/.github/workflows/release.yml@refs/tags/v0.0.19",
    )


def test_expected_other_kind(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / "gcb_attestation_test-0.0.0.tar.gz.provenance").read_bytes()
    digest = "461317362419124b6012e855423a9078d6de8aed3e74fa78cc74d669b23dc6cf"
    other_email = PublisherIdentity("Google", email="someone-else@example.iam.gserviceaccount.com")
    github = PublisherIdentity("GitHub", "googlecloudplatform/x", "release.yml")
    for expected in (other_email, github):
        result = verifier.verify(raw, "gcb_attestation_test-0.0.0.tar.gz", digest, expected)
        _assert_rejected(
            result,
            "VerificationError",
            f"certificate is not from {expected.describe()}",
            "it names 919436158236-compute@developer.gserviceaccount.com",
        )


def test_attestation_for_another_file(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / f"{SIGSTORE}.provenance").read_bytes()
    for expected in (None, SIGSTORE_PUBLISHER):
        result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, expected)
        _assert_rejected(
            result, "VerificationError", "subject does not match distribution name", SIGSTORE
        )
    # the right name with another file's digest is caught by the digest
    result = verifier.verify(raw, SIGSTORE, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "VerificationError", "subject does not match distribution digest")


def test_wheel_attestation_does_not_cover_an_sdist(verifier: ProvenanceVerifier) -> None:
    raw = (FIXTURES / f"{SIGSTORE}.provenance").read_bytes()
    result = verifier.verify(raw, "sigstore-3.6.1-py3-none-any.whl", SIGSTORE_SHA)
    _assert_rejected(result, "VerificationError", "subject does not match distribution name")


def test_staging_signed_is_rejected_by_the_production_root(verifier: ProvenanceVerifier) -> None:
    attestation = _load("rfc8785-0.1.2-py3-none-any.whl.publish.attestation")
    filename = "rfc8785-0.1.2-py3-none-any.whl"
    digest = hashlib.sha256((FIXTURES / filename).read_bytes()).hexdigest()
    # The signer was an email identity, not a Trusted Publisher; claim the closest kinds.
    for publisher in (
        {"kind": "Google", "email": "william@yossarian.net"},
        {"kind": "GitHub", "repository": "trailofbits/rfc8785.py", "workflow": "release.yml"},
    ):
        result = verifier.verify(_wrap(attestation, publisher), filename, digest)
        _assert_rejected(result, "VerificationError", "CertValidationError")


def _edited(edit: Any) -> bytes:
    provenance = _load(f"{PYPI_ATTESTATIONS}.provenance")
    edit(provenance)
    return json.dumps(provenance).encode()


def _flip_signature(provenance: dict[str, Any]) -> None:
    envelope = _first_attestation(provenance)["envelope"]
    signature = bytearray(base64.b64decode(envelope["signature"]))
    signature[-1] ^= 0x01
    envelope["signature"] = base64.b64encode(signature).decode()


def _change_statement(provenance: dict[str, Any]) -> None:
    envelope = _first_attestation(provenance)["envelope"]
    statement = json.loads(base64.b64decode(envelope["statement"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["statement"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _change_integrated_time(provenance: dict[str, Any]) -> None:
    entry = _first_attestation(provenance)["verification_material"]["transparency_entries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 60)


def _change_log_index(provenance: dict[str, Any]) -> None:
    entry = _first_attestation(provenance)["verification_material"]["transparency_entries"][0]
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_flip_signature, "signature"),
        (_change_statement, "signature"),
        (_change_integrated_time, "log entry"),
        (_change_log_index, "log entry"),
    ],
    ids=["signature", "statement", "integrated-time", "log-index"],
)
def test_edited_json(verifier: ProvenanceVerifier, edit: Any, needle: str) -> None:
    raw = _edited(edit)
    for expected in (None, TOB):
        result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, expected)
        _assert_rejected(result, "VerificationError", needle)


def test_rewritten_publisher_block_is_caught_by_the_certificate(
    verifier: ProvenanceVerifier,
) -> None:
    """The publisher block is unsigned: claiming another repository does not make it so."""

    def claim_tob(provenance: dict[str, Any]) -> None:
        provenance["attestation_bundles"][0]["publisher"]["repository"] = TOB.repository

    provenance = _load(f"{SIGSTORE}.provenance")
    claim_tob(provenance)
    raw = json.dumps(provenance).encode()
    for expected in (None, TOB):
        result = verifier.verify(raw, SIGSTORE, SIGSTORE_SHA, expected)
        _assert_rejected(
            result,
            "VerificationError",
            "certificate is not from GitHub trailofbits/pypi-attestations",
            "it names https://github.com/sigstore/sigstore-python/",
        )


def test_block_naming_someone_else_still_proves_the_expected_publisher(
    verifier: ProvenanceVerifier,
) -> None:
    """When the block differs from the expected identity, the expected identity's own policy
    decides: the certificate says trailofbits, so trailofbits is what is verified."""
    provenance = _load(f"{PYPI_ATTESTATIONS}.provenance")
    provenance["attestation_bundles"][0]["publisher"]["repository"] = "someone/else"
    raw = json.dumps(provenance).encode()
    assert verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, TOB).identity == TOB
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "VerificationError", "certificate is not from GitHub someone/else")


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff garbage \x89PNG", b"[1, 2, 3]", b'{"version": 2, "attestation_bundles": []}'],
    ids=["empty", "binary", "list", "version-2"],
)
def test_garbage_bytes(verifier: ProvenanceVerifier, raw: bytes) -> None:
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "ValidationError")


def test_empty_bundles(verifier: ProvenanceVerifier) -> None:
    raw = json.dumps({"version": 1, "attestation_bundles": []}).encode()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "ValueError", "no attestation bundles")

    empty_bundle = {"publisher": {"kind": "GitHub", **TOB.to_json()}, "attestations": []}
    raw = json.dumps({"version": 1, "attestation_bundles": [empty_bundle]}).encode()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, TOB)
    _assert_rejected(result, "ValueError", "no attestations")


def test_unknown_publisher_kind(verifier: ProvenanceVerifier) -> None:
    attestation = _load(f"{PYPI_ATTESTATIONS}.publish.attestation")
    raw = _wrap(attestation, {"kind": "Bitbucket", "repository": TOB.repository})
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "ValidationError", "Bitbucket")
    # an expected identity of a kind no policy exists for is a reason too, not a crash
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    odd = PublisherIdentity("Bitbucket", TOB.repository, "release.yml")
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, odd)
    _assert_rejected(result, "ValueError", "Bitbucket")


def test_malformed_certificate_and_log_entry(verifier: ProvenanceVerifier) -> None:
    def bad_certificate(provenance: dict[str, Any]) -> None:
        material = _first_attestation(provenance)["verification_material"]
        material["certificate"] = base64.b64encode(b"not a certificate").decode()

    def bad_entry(provenance: dict[str, Any]) -> None:
        material = _first_attestation(provenance)["verification_material"]
        material["transparency_entries"] = [{"logIndex": "x"}]

    for edit in (bad_certificate, bad_entry):
        result = verifier.verify(_edited(edit), PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
        _assert_rejected(result, "ConversionError")


@pytest.mark.parametrize(
    ("filename", "digest", "needle"),
    [
        ("pypi_attestations-0.0.19.egg", PYPI_ATTESTATIONS_SHA, "not a distribution file name"),
        ("pypi_attestations.tar.gz", PYPI_ATTESTATIONS_SHA, "Invalid sdist filename"),
        (PYPI_ATTESTATIONS, "abc", "64 hex digits"),
    ],
)
def test_bad_file_name_or_digest(
    verifier: ProvenanceVerifier, filename: str, digest: str, needle: str
) -> None:
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    result = verifier.verify(raw, filename, digest)
    assert not result.ok
    assert result.error is not None
    assert needle in result.reason


def test_two_bundles_naming_different_publishers(verifier: ProvenanceVerifier) -> None:
    tob = _load(f"{PYPI_ATTESTATIONS}.provenance")["attestation_bundles"][0]
    other = _load(f"{SIGSTORE}.provenance")["attestation_bundles"][0]
    raw = json.dumps({"version": 1, "attestation_bundles": [tob, other]}).encode()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "ValueError", "more than one publisher")


def test_oversized_provenance(verifier: ProvenanceVerifier) -> None:
    raw = b" " * (2 * 1024 * 1024) + (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
    _assert_rejected(result, "ValueError", "larger than")


# --- no user cache, no network --------------------------------------------------------------


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    yield home


def test_verifier_does_not_touch_the_user_cache(empty_home: Path) -> None:
    assert os.path.expanduser("~") == str(empty_home)
    fresh = ProvenanceVerifier()  # the shipped root, located inside the package
    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    assert fresh.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA).ok
    assert not fresh.verify(raw, SIGSTORE, SIGSTORE_SHA).ok
    assert list(empty_home.rglob("*")) == []


def test_verifier_makes_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network access attempted during provenance verification")

    def refuse_ex(self: socket.socket, address: object) -> int:
        attempts.append(address)
        raise OSError("network access attempted during provenance verification")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_ex)
    fresh = ProvenanceVerifier()
    for case in VERIFY_CASES:
        filename = case["dist"] or case["dist_name"]
        result = fresh.verify(_provenance_bytes(case), filename, case["sha256"])
        assert result.ok, result.reason
    assert attempts == []


# --- identities -----------------------------------------------------------------------------


def test_identity_json_round_trip_and_description() -> None:
    circle = PublisherIdentity(
        "CircleCI", extra=(("pipeline_definition_id", "p-1"), ("project_id", "c-1"))
    )
    google = PublisherIdentity("Google", email="ci@example.iam.gserviceaccount.com")
    for identity in (TOB, circle, google):
        assert PublisherIdentity.from_json(json.loads(json.dumps(identity.to_json()))) == identity
    assert TOB.describe() == "GitHub trailofbits/pypi-attestations .github/workflows/release.yml"
    assert google.describe() == "Google ci@example.iam.gserviceaccount.com"
    assert circle.describe() == "CircleCI pipeline_definition_id=p-1 project_id=c-1"
    with pytest.raises(ValueError, match="kind"):
        PublisherIdentity.from_json({"repository": "a/b"})
    with pytest.raises(ValueError, match="extra"):
        PublisherIdentity.from_json({"kind": "CircleCI", "extra": {"project_id": 1}})


def test_same_publisher_ignores_case_and_environment_only() -> None:
    assert TOB.same_publisher(
        PublisherIdentity("GitHub", "TrailOfBits/PyPI-Attestations", "release.yml")
    )
    assert not TOB.same_publisher(
        PublisherIdentity("GitHub", "pypi/pypi-attestations", "release.yml")
    )
    assert not TOB.same_publisher(PublisherIdentity("GitHub", TOB.repository, "publish.yml"))
    assert not TOB.same_publisher(PublisherIdentity("GitLab", TOB.repository, "release.yml"))
    # environment is not part of an identity: "" and null and a name are the same publisher
    blocks = [{**TOB.to_json(), "environment": value} for value in (None, "", "pypi")]
    from_blocks = {
        PublisherIdentity("GitHub", block["repository"], block["workflow"]) for block in blocks
    }
    assert from_blocks == {TOB}


def test_policy_problem_of_incomplete_pins() -> None:
    assert TOB.policy_problem() is None
    assert PublisherIdentity("Google", email="ci@example.com").policy_problem() is None
    no_workflow = PublisherIdentity("GitHub", "trailofbits/pypi-attestations")
    assert "workflow" in (no_workflow.policy_problem() or "")
    assert "Bitbucket" in (PublisherIdentity("Bitbucket", "a/b").policy_problem() or "")


def test_identity_from_pin() -> None:
    pin = PublisherPin(
        kind="GitHub", repository="TrailOfBits/pypi-attestations", workflow="release.yml"
    )
    assert PublisherIdentity.from_pin(pin).same_publisher(TOB)


# --- the provenance check's evidence --------------------------------------------------------


def test_provenance_evidence(verifier: ProvenanceVerifier) -> None:
    none = provenance_evidence(None, None)
    assert (none.check, none.action, none.summary) == (
        "provenance",
        Action.PASS,
        "no provenance published",
    )

    raw = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    raw_sha = hashlib.sha256(raw).hexdigest()
    good = provenance_evidence(
        verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA), raw_sha
    )
    assert good.action is Action.PASS
    assert good.findings == ()
    assert good.details["identity"] == TOB.to_json()
    assert good.details["predicates"] == [AttestationType.PYPI_PUBLISH_V1.value]
    assert good.details["provenance_sha256"] == raw_sha
    json.dumps(good.details)  # JSON-serialisable

    bad = provenance_evidence(verifier.verify(raw, SIGSTORE, SIGSTORE_SHA), raw_sha)
    assert bad.action is Action.REVIEW
    assert [(item.rule, item.severity) for item in bad.findings] == [
        ("provenance-invalid", Severity.HIGH)
    ]
    assert "subject does not match distribution name" in bad.summary
    assert bad.details["error"] == "VerificationError"
    json.dumps(bad.details)

    unverified = provenance_evidence(None, raw_sha)
    assert unverified.action is Action.REVIEW
    assert unverified.findings[0].rule == "provenance-invalid"

    blocked = provenance_evidence(
        verifier.verify(raw, SIGSTORE, SIGSTORE_SHA),
        raw_sha,
        rule_actions={"provenance-invalid": Action.BLOCK},
    )
    assert blocked.action is Action.BLOCK


# --- publisher continuity -------------------------------------------------------------------

OTHER_REPO = PublisherIdentity("GitHub", "attacker/pypi-attestations", "release.yml")


def test_continuity_provenance_dropped_after_attested_releases() -> None:
    """ultralytics 8.3.45: earlier releases were attested, the malicious one was not."""
    history = [("0.0.17", None), ("0.0.18", TOB), ("0.0.19", TOB)]
    evidence = continuity_evidence(None, False, history, None, require_provenance=False)
    assert evidence.check == "publisher"
    assert evidence.action is Action.REVIEW
    assert [(item.rule, item.severity) for item in evidence.findings] == [
        ("provenance-dropped", Severity.HIGH)
    ]
    assert "0.0.19" in evidence.summary
    # a release in between that also lacked provenance does not reset the expectation
    history.append(("0.0.20", None))
    evidence = continuity_evidence(None, False, history, None, require_provenance=False)
    assert evidence.action is Action.REVIEW
    assert "0.0.19" in evidence.summary
    # provenance that did not verify is no better than none
    evidence = continuity_evidence(None, True, history, None, require_provenance=False)
    assert evidence.findings[0].rule == "provenance-dropped"
    assert "did not verify" in evidence.summary


def test_continuity_other_repository_or_workflow() -> None:
    history = [("0.0.18", TOB), ("0.0.19", TOB)]
    for current in (OTHER_REPO, PublisherIdentity("GitHub", TOB.repository, "evil.yml")):
        evidence = continuity_evidence(current, True, history, None, require_provenance=False)
        assert evidence.action is Action.REVIEW
        assert [item.rule for item in evidence.findings] == ["publisher-changed"]
        assert evidence.details["expected"] == TOB.to_json()
        assert evidence.details["expected_from"] == "0.0.19"
    # the most recent attested release is the one that counts
    moved = [("0.0.18", OTHER_REPO), ("0.0.19", TOB)]
    assert continuity_evidence(TOB, True, moved, None, False).action is Action.PASS


def test_continuity_same_publisher_with_different_environment(
    verifier: ProvenanceVerifier,
) -> None:
    provenance = _load(f"{PYPI_ATTESTATIONS}.provenance")
    provenance["attestation_bundles"][0]["publisher"]["environment"] = "release"
    raw = json.dumps(provenance).encode()
    current = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA).identity
    assert current is not None
    history = [("0.0.18", TOB)]  # earlier release published with environment null
    evidence = continuity_evidence(current, True, history, None, require_provenance=False)
    assert evidence.action is Action.PASS
    assert evidence.findings == ()
    # and the case of the repository does not matter either
    shouting = PublisherIdentity("GitHub", "TRAILOFBITS/pypi-attestations", "release.yml")
    assert continuity_evidence(current, True, [("0.0.18", shouting)], None, False).action is (
        Action.PASS
    )


def test_continuity_pinned_publisher_overrides_first_use(verifier: ProvenanceVerifier) -> None:
    # History says A (sigstore-python), config pins B (trailofbits); the file is signed by B.
    history = [("3.6.0", SIGSTORE_PUBLISHER)]
    pinned = PublisherIdentity.from_pin(
        PublisherPin(kind="GitHub", repository=TOB.repository, workflow="release.yml")
    )
    raw_b = (FIXTURES / f"{PYPI_ATTESTATIONS}.provenance").read_bytes()
    signed_by_b = verifier.verify(raw_b, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA, pinned)
    assert signed_by_b.ok, signed_by_b.reason
    evidence = continuity_evidence(signed_by_b.identity, True, history, pinned, False)
    assert evidence.action is Action.PASS, evidence
    assert evidence.details["expected_from"] == "pin"

    # A file signed by A: verified against the pin it fails; verified on its own it is A.
    raw_a = (FIXTURES / f"{SIGSTORE}.provenance").read_bytes()
    assert not verifier.verify(raw_a, SIGSTORE, SIGSTORE_SHA, pinned).ok
    signed_by_a = verifier.verify(raw_a, SIGSTORE, SIGSTORE_SHA)
    assert signed_by_a.identity == SIGSTORE_PUBLISHER
    evidence = continuity_evidence(signed_by_a.identity, True, history, pinned, False)
    assert evidence.action is Action.REVIEW
    assert [item.rule for item in evidence.findings] == ["publisher-changed"]
    # and no provenance at all under a pin
    evidence = continuity_evidence(None, False, history, pinned, False)
    assert evidence.action is Action.REVIEW
    assert [item.rule for item in evidence.findings] == ["provenance-missing-pinned"]
    # a pin holds even for a project that never had provenance upstream
    evidence = continuity_evidence(None, False, [], pinned, False)
    assert [item.rule for item in evidence.findings] == ["provenance-missing-pinned"]


def test_continuity_require_provenance() -> None:
    evidence = continuity_evidence(None, False, [("1.0", None)], None, require_provenance=True)
    assert evidence.action is Action.REVIEW
    assert [item.rule for item in evidence.findings] == ["provenance-required"]
    # without the requirement, a project that never had provenance passes
    assert continuity_evidence(None, False, [("1.0", None)], None, False).action is Action.PASS
    # with it, a verified identity satisfies it
    assert continuity_evidence(TOB, True, [("1.0", TOB)], None, True).action is Action.PASS


def test_continuity_first_attested_release_is_reported() -> None:
    for history in ([], [("0.0.1", None), ("0.0.2", None)]):
        evidence = continuity_evidence(TOB, True, history, None, require_provenance=False)
        assert evidence.action is Action.REPORT
        assert [(item.rule, item.severity) for item in evidence.findings] == [
            ("first-publisher", Severity.INFO)
        ]
        assert "trusted on first use" in evidence.summary
        assert evidence.details["identity"] == TOB.to_json()
        json.dumps(evidence.details)


def test_continuity_on_first_sight_expects_the_publisher_of_a_release_still_held() -> None:
    """Nothing promoted yet: 4.0.0 (attested, held) sets the expectation for 4.0.1."""
    standing: list[tuple[str, PublisherIdentity | None]] = [("4.0.0", TOB)]
    evidence = continuity_evidence(None, False, [], None, False, standing=standing)
    assert evidence.action is Action.REVIEW
    assert [item.rule for item in evidence.findings] == ["provenance-dropped"]
    assert evidence.summary == f"no provenance, but release 4.0.0 was built by {TOB.describe()}"
    assert evidence.details["expected_from"] == "4.0.0"
    same = continuity_evidence(TOB, True, [], None, False, standing=standing)
    assert same.action is Action.PASS and same.findings == ()
    # a later unattested release held too does not reset the expectation
    standing.append(("4.0.1", None))
    assert continuity_evidence(None, False, [], None, False, standing=standing).findings


def test_continuity_a_held_release_by_another_publisher_vouches_for_nobody() -> None:
    """Promoted releases by TOB, a held one by another publisher: a file must match both,
    so counting held releases only ever adds findings."""
    history = [("0.0.19", TOB)]
    standing = [("0.0.19", TOB), ("0.0.20", OTHER_REPO)]
    for current, mismatched in ((OTHER_REPO, "0.0.19"), (TOB, "0.0.20")):
        evidence = continuity_evidence(current, True, history, None, False, standing=standing)
        assert [item.rule for item in evidence.findings] == ["publisher-changed"]
        assert evidence.details["expected_from"] == mismatched
    # the promoted releases' publisher stays expected when the standing ones have none
    evidence = continuity_evidence(None, False, history, None, False, standing=[("0.0.20", None)])
    assert [item.rule for item in evidence.findings] == ["provenance-dropped"]
    assert "0.0.19" in evidence.summary


# --- robustness: every field of a real provenance object, replaced by junk --------------------


def _paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))
    if path:
        yield path


def test_no_junk_field_escapes_as_an_exception(verifier: ProvenanceVerifier) -> None:
    """Whatever a field holds, the answer is a result (almost always a rejection), never an
    exception outside the documented list: one bad provenance object must not crash vetting."""
    original = _load(f"{PYPI_ATTESTATIONS}.provenance")
    tried = 0
    junk_values: tuple[object, ...] = (None, "", "x", 0, [], {})
    for path in _paths(original):
        for junk in junk_values:
            provenance = json.loads(json.dumps(original))
            parent = provenance
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = junk
            raw = json.dumps(provenance).encode()
            result = verifier.verify(raw, PYPI_ATTESTATIONS, PYPI_ATTESTATIONS_SHA)
            tried += 1
            if result.ok:  # only unsigned, unchecked fields may change without a rejection
                assert result.identity == TOB
                assert path[-1] == "environment", (path, junk)
            else:
                assert result.error is not None
    assert tried > 100


def test_every_fixture_the_manifest_names_is_in_the_repository() -> None:
    """The suite stands alone on a plain clone: each named file is here, with its digest."""
    manifest = provenance_manifest()
    assert (FIXTURES / "README.md").is_file()
    provenance_path(manifest["trusted_root"])
    for case in manifest["cases"]:
        for key in ("dist", "provenance", "attestation"):
            if case.get(key):
                provenance_path(case[key])
        if case.get("dist") and case.get("sha256"):
            data = provenance_path(case["dist"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == case["sha256"], case["dist"]
