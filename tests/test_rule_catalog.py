"""Rules are data: every rule a check can fire is declared, once, in the module firing it.

The sources of ``quarantine`` are read (never run) to find every place a rule id is handed
to something that carries it into a finding; each id found there must be declared, and
every module that declares rules must be one ``all_rules`` imports.
"""

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from quarantine.evidence import DEFAULT_SEVERITY_ACTIONS, Action, Severity
from quarantine.inspect.rules import catalog as rule_catalog
from quarantine.inspect.rules.catalog import (
    FIRING_MODULES,
    DuplicateRuleError,
    all_rules,
    configured_action,
    declared,
    rule,
)

PACKAGE = Path(rule_catalog.__file__).parents[2]  # quarantine/, whose every module may fire rules
# What takes a rule id as its first argument (or ``rule=``) and carries it into a finding.
CARRIERS = frozenset({"Finding", "_Abort", "_Corrupt", "_add"})


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield dotted.removesuffix(".__init__"), ast.parse(path.read_text(), str(path))


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _rule_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "rule":
            return keyword.value
    return call.args[0] if call.args else None


def _enclosing_functions(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    """Each node's innermost enclosing function (or the module)."""
    owner: dict[ast.AST, ast.AST] = {}
    stack: list[tuple[ast.AST, ast.AST]] = [(tree, tree)]
    while stack:
        node, function = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            owner[child] = function
            stack.append((child, inner))
    return owner


def _parameters(function: ast.AST) -> set[str]:
    if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        return set()
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    return {item.arg for item in every}


def _loop_names(function: ast.AST) -> set[str]:
    return {
        target.id
        for node in ast.walk(function)
        if isinstance(node, ast.For)
        for target in ast.walk(node.target)
        if isinstance(target, ast.Name)
    }


def _ids(expr: ast.expr, module: ModuleType, function: ast.AST, where: str) -> Iterator[str]:
    """The rule ids ``expr`` can hold; pass-throughs of a stored finding's rule hold none."""
    if isinstance(expr, ast.Constant):
        if isinstance(expr.value, str):
            yield expr.value
    elif isinstance(expr, ast.IfExp):
        yield from _ids(expr.body, module, function, where)
        yield from _ids(expr.orelse, module, function, where)
    elif isinstance(expr, ast.Name):
        if expr.id in _parameters(function) | _loop_names(function):
            return  # handed in, or taken from ids collected where they were handed in
        local = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets)
        ]
        if local and not isinstance(function, ast.Module):
            for assigned in local:
                yield from _ids(assigned, module, function, where)
            return
        constant = getattr(module, expr.id, None)
        assert isinstance(constant, str), f"{where}: {expr.id} is not a rule id constant"
        yield constant
    elif isinstance(expr, ast.Attribute | ast.Subscript):
        return  # finding.rule, problem.rule, a stored row's "rule": an id already fired
    else:
        raise AssertionError(f"{where}: a rule id this test cannot follow: {ast.dump(expr)}")


def _fired() -> dict[str, str]:
    """Every rule id handed to a carrier in quarantine's sources: id -> where."""
    found: dict[str, str] = {}
    for dotted, tree in _modules():
        owner = _enclosing_functions(tree)
        module: ModuleType | None = None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _called(node) not in CARRIERS:
                continue
            argument = _rule_argument(node)
            if argument is None:
                continue
            module = module or importlib.import_module(dotted)
            where = f"{dotted}:{node.lineno}"
            for rule_id in _ids(argument, module, owner.get(node, tree), where):
                found.setdefault(rule_id, where)
    return found


def test_every_rule_a_check_can_fire_is_declared() -> None:
    fired = _fired()
    declared_ids = {item.id for item in all_rules()}
    assert len(fired) >= 40  # the test follows the carriers: it must find the rules
    undeclared = {rule_id: where for rule_id, where in fired.items() if rule_id not in declared_ids}
    assert undeclared == {}, "declare these with quarantine.inspect.rules.catalog.rule(...)"
    # and nothing is declared that no check fires (a renamed rule leaves its old id behind)
    assert declared_ids - set(fired) == set()


def _declares_rules(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Call) and _called(node) == "rule" for node in ast.walk(tree))


def test_every_declaring_module_is_one_all_rules_imports() -> None:
    declaring = {dotted for dotted, tree in _modules() if _declares_rules(tree)}
    declaring.discard("quarantine.inspect.rules.catalog")
    assert declaring == set(FIRING_MODULES)


def test_every_rule_has_a_check_a_severity_and_a_one_line_description() -> None:
    checks = {"content", "provenance", "publisher", "feeds"}
    for item in all_rules():
        assert item.check in checks, item
        assert isinstance(item.severity, Severity)
        assert item.description and "\n" not in item.description and len(item.description) < 100
    assert [item.id for item in all_rules() if item.fixed] == ["malware-advisory"]


def test_a_rule_declared_again_differently_is_refused() -> None:
    assert rule("pth-new", declared("pth-new").severity, "content", declared("pth-new").description)
    with pytest.raises(DuplicateRuleError):
        rule("pth-new", Severity.CRITICAL, "content", "something else")


def test_configured_action_override_then_severity_then_fixed() -> None:
    all_rules()
    pth = declared("pth-executable-new")
    assert configured_action(pth, {}, DEFAULT_SEVERITY_ACTIONS) == (Action.REVIEW, "severity")
    overridden = {"pth-executable-new": Action.REPORT}
    assert configured_action(pth, overridden, DEFAULT_SEVERITY_ACTIONS) == (
        Action.REPORT,
        "override",
    )
    strict = {**DEFAULT_SEVERITY_ACTIONS, Severity.HIGH: Action.BLOCK}
    assert configured_action(pth, {}, strict) == (Action.BLOCK, "severity")
    advisory = declared("malware-advisory")
    lenient = {**DEFAULT_SEVERITY_ACTIONS, Severity.CRITICAL: Action.REVIEW}
    assert configured_action(advisory, {}, lenient) == (Action.BLOCK, "fixed")
