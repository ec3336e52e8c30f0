"""A member's scan as plain JSON data, and back, checking every field on the way back.

What the rules found in one Python source (findings, import-time facts, obfuscation
signals) is written to the shared member store (:mod:`quarantine.inspect.member_store`)
by one worker process and read by another. JSON, never pickle: reading an entry must not
be able to run anything. Decoding checks each type and enum value, so an entry that is
not exactly what :func:`encode` writes raises :class:`ValueError` (the store treats it as a
miss): a damaged entry can cost a parse, never a wrong or half-read scan.
"""

import json
from typing import Any

from quarantine.evidence import Finding, Severity
from quarantine.inspect.rules.import_facts import Body, Capability, ModuleFacts, Use
from quarantine.inspect.rules.import_source import Scanned
from quarantine.inspect.rules.obfuscation import Signal


def encode(scanned: Scanned) -> str:
    facts = scanned.facts
    return json.dumps(
        {
            "findings": [_finding(f) for f in scanned.findings],
            "facts": None if facts is None else _facts(facts),
            "signals": [[s.what, s.line] for s in scanned.signals],
        },
        separators=(",", ":"),
    )


def decode(text: str) -> Scanned:
    """The scan :func:`encode` wrote; ValueError for anything else."""
    try:
        data = json.loads(text)
        facts = data["facts"]
        return Scanned(
            tuple(_finding_of(f) for f in _list(data["findings"])),
            None if facts is None else _facts_of(facts),
            tuple(Signal(_str(what), _int(line)) for what, line in _list(data["signals"])),
        )
    except (KeyError, TypeError, RecursionError) as exc:  # a field missing, a wrong shape
        raise ValueError(f"not a scan entry: {exc}") from exc


def encode_findings(findings: tuple[Finding, ...]) -> str:
    return json.dumps([_finding(f) for f in findings], separators=(",", ":"))


def decode_findings(text: str) -> tuple[Finding, ...]:
    try:
        return tuple(_finding_of(f) for f in _list(json.loads(text)))
    except (KeyError, TypeError, RecursionError) as exc:
        raise ValueError(f"not a findings entry: {exc}") from exc


def encode_note(note: tuple[set[str], bool]) -> str:
    names, by_path = note
    return json.dumps([sorted(names), by_path], separators=(",", ":"))


def decode_note(text: str) -> tuple[set[str], bool]:
    try:
        names, by_path = _list(json.loads(text))
    except RecursionError as exc:
        raise ValueError(f"not an import note: {exc}") from exc
    if not isinstance(by_path, bool):
        raise ValueError("not an import note: by_path is not a boolean")
    return {_str(name) for name in _list(names)}, by_path


def _finding(finding: Finding) -> list[Any]:
    return [finding.rule, finding.severity.value, finding.message, finding.path, finding.line]


def _finding_of(data: Any) -> Finding:
    return _checked_finding(*_list(data))


def _checked_finding(rule: Any, severity: Any, message: Any, path: Any, line: Any) -> Finding:
    _str(rule)  # a rule id as it was stored: the finding passes through
    return Finding(rule, Severity(severity), _str(message), _opt_str(path), _opt_int(line))


def _facts(facts: ModuleFacts) -> dict[str, Any]:
    return {
        "module": facts.module,
        "path": facts.path,
        "load": _body(facts.load),
        "bodies": [[name, _body(body)] for name, body in facts.bodies.items()],
        "exports": [[name, target] for name, target in facts.exports.items()],
        "startup": facts.startup,
    }


def _facts_of(data: Any) -> ModuleFacts:
    startup = data["startup"]
    if not isinstance(startup, bool):
        raise ValueError("startup is not a boolean")
    return ModuleFacts(
        _str(data["module"]),
        _str(data["path"]),
        _body_of(data["load"]),
        {_str(name): _body_of(body) for name, body in _list(data["bodies"])},
        {_str(name): _str(target) for name, target in _list(data["exports"])},
        startup,
    )


def _body(body: Body) -> list[Any]:
    uses = [[u.capability.value, u.what, u.path, u.line, u.excerpt, u.target] for u in body.uses]
    return [uses, list(body.calls)]


def _body_of(data: Any) -> Body:
    uses, calls = _list(data)
    return Body(tuple(_use_of(u) for u in _list(uses)), tuple(_str(c) for c in _list(calls)))


def _use_of(data: Any) -> Use:
    capability, what, path, line, excerpt, target = _list(data)
    return Use(
        Capability(capability), _str(what), _str(path), _int(line), _str(excerpt), _opt_str(target)
    )


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("expected an integer")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)
