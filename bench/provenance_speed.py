"""PEP 740 verification speed: every verifying fixture pair, N times, on one thread.

Run on demand (never in the test suite):  .venv/bin/python bench/provenance_speed.py [-n 200]
It builds one ProvenanceVerifier from the shipped trust root (as the vetting worker does),
verifies each `expect: verify` pair of ../shared/fixtures/provenance N times, and prints
verifications (attestations) per second. File hashing is not included.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from quarantine.provenance.verify import ProvenanceVerifier, PublisherIdentity

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "provenance"


def _identity(publisher: dict[str, Any]) -> PublisherIdentity:
    if publisher["kind"] == "GitHub":
        return PublisherIdentity("GitHub", publisher["repository"], publisher["workflow"])
    if publisher["kind"] == "GitLab":
        return PublisherIdentity("GitLab", publisher["repository"], publisher["workflow_filepath"])
    return PublisherIdentity(publisher["kind"], email=publisher.get("email"))


def _cases() -> list[tuple[bytes, str, str, PublisherIdentity]]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    cases = []
    for case in manifest["cases"]:
        if case["expect"] != "verify":
            continue
        if "provenance" in case:
            raw = (FIXTURES / case["provenance"]).read_bytes()
        else:
            attestation = json.loads((FIXTURES / case["attestation"]).read_bytes())
            bundle = {"publisher": case["publisher"], "attestations": [attestation]}
            raw = json.dumps({"version": 1, "attestation_bundles": [bundle]}).encode()
        filename = case["dist"] or case["dist_name"]
        cases.append((raw, filename, case["sha256"], _identity(case["publisher"])))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="rounds over all fixtures")
    args = parser.parse_args()
    if not (FIXTURES / "manifest.json").is_file():
        print(f"fixtures not found at {FIXTURES}", file=sys.stderr)
        return 1

    started = time.perf_counter()
    verifier = ProvenanceVerifier()
    setup = time.perf_counter() - started
    cases = _cases()
    for raw, filename, sha256, expected in cases:  # warm-up, and a correctness check
        result = verifier.verify(raw, filename, sha256, expected)
        if not result.ok:
            print(f"{filename}: {result.reason}", file=sys.stderr)
            return 1

    per_round: list[float] = []
    for _ in range(args.n):
        begin = time.perf_counter()
        for raw, filename, sha256, expected in cases:
            verifier.verify(raw, filename, sha256, expected)
        per_round.append(time.perf_counter() - begin)

    total = sum(per_round)
    count = args.n * len(cases)
    median = statistics.median(per_round) / len(cases)
    print(f"verifier set-up (trust root parse): {setup * 1000:.1f} ms")
    print(f"{count} verifications of {len(cases)} fixtures in {total:.2f} s")
    print(f"{count / total:.0f} verifications per second on one thread")
    print(f"median {median * 1000:.2f} ms per verification")
    return 0


if __name__ == "__main__":
    sys.exit(main())
