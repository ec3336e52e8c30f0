"""What an installer says about itself in its User-Agent, read defensively.

pip sends ``pip/24.2 {"installer": {...}, "python": "3.12.4", "implementation": {...},
"distro": {...}, "system": {...}, "cpu": "x86_64", "ci": null, ...}``; uv sends the same
shape after ``uv/0.5.0``. Any client can send anything here: the header is bounded before
it is parsed, only the known fields are kept, each cleaned and cut short, and nothing in
it can make this raise.
"""

import json
from typing import Any

from quarantine.download_log.interface import FIELD_CHARS, Installer

MAX_USER_AGENT_CHARS = 4096
UNKNOWN = Installer()


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ""
    flat = " ".join(str(value).split())
    return "".join(ch if " " <= ch <= "~" else "?" for ch in flat)[:FIELD_CHARS]


def _field(data: dict[str, Any], key: str, inner: str) -> str:
    value = data.get(key)
    return _text(value.get(inner)) if isinstance(value, dict) else ""


def _named(data: dict[str, Any], key: str) -> str:
    """``{"name": "Linux", "release": "6.8.0"}`` (or ``version``) as one short text."""
    value = data.get(key)
    if not isinstance(value, dict):
        return ""
    name = _text(value.get("name"))
    release = _text(value.get("release") or value.get("version"))
    return f"{name} {release}".strip()[:FIELD_CHARS]


def installer_of(user_agent: str | None) -> Installer:
    """The installer a request came from; empty fields for what it did not say."""
    if not user_agent or len(user_agent) > MAX_USER_AGENT_CHARS:
        return UNKNOWN
    product, _, rest = user_agent.partition(" ")
    name, _, version = product.partition("/")
    data: Any = None
    if rest.startswith("{"):
        try:
            data = json.loads(rest)
        except (ValueError, RecursionError):  # nesting deep enough to exhaust the stack
            data = None
    if not isinstance(data, dict):
        return Installer(name=_text(name), version=_text(version))
    return Installer(
        name=_field(data, "installer", "name") or _text(name),
        version=_field(data, "installer", "version") or _text(version),
        python=_text(data.get("python")),
        implementation=_named(data, "implementation"),
        system=_named(data, "system"),
        distro=_named(data, "distro"),
        cpu=_text(data.get("cpu")),
        ci=data.get("ci") is True,
    )
