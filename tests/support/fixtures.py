"""The recorded PEP 740 fixtures that live in the repository (tests/fixtures/provenance).

A missing file is a broken checkout, not a reason to skip: every accessor raises, so the
test that needs it fails and names the file.
"""

import json
from pathlib import Path
from typing import Any

PROVENANCE = Path(__file__).resolve().parents[1] / "fixtures" / "provenance"


class MissingFixtureError(FileNotFoundError):
    pass


def provenance_path(name: str) -> Path:
    path = PROVENANCE / name
    if not path.is_file():
        raise MissingFixtureError(
            f"PEP 740 fixture {name} is missing from {PROVENANCE}; restore it from git"
        )
    return path


def provenance_bytes(name: str) -> bytes:
    return provenance_path(name).read_bytes()


def provenance_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(provenance_bytes("manifest.json"))
    return manifest
