"""The syntax-tree walk and name resolution under the Python source rules.

:class:`_Walk` visits a parsed module once, without recursion (deep nesting cannot blow the
stack), and records imports, assignments, calls and long literals, each with its scope and
whether it runs when the module body runs. It then resolves what a name or expression may
stand for, following aliases (``import base64 as b``, ``b = __import__("base64")``,
``getattr(builtins, "exec")``). ``rules_python_scan`` builds the rules on top of it.
"""

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

LONG_LITERAL = 1000  # characters; a literal this long passed to exec is a payload

# Qualified names (after aliases and ``builtins.`` are resolved) that run code.
_EXEC_CALLS = frozenset({"exec", "eval", "compile", "types.FunctionType", "types.CodeType"})
_RESULT_CALLS = frozenset({"__import__", "import_module", "getattr"})  # calls that name things
_MAX_CANDIDATES = 8  # names one expression may resolve to; more is noise
_Assignment = ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr
_FUNCTION_KINDS = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda})
_ASSIGN_KINDS = frozenset({ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr})
# Nodes no rule needs to descend into: names, contexts and operators.
_LEAF_KINDS = frozenset(
    {ast.Name, ast.alias}
    | {
        kind
        for base in (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
        for kind in base.__subclasses__()
    }
)
# Fields that hold no node, or only leaves: names, numbers, flags, contexts, operators.
_NOT_NODE_FIELDS = frozenset(
    {"id", "name", "asname", "arg", "attr", "module", "level", "kind", "type_comment"}
    | {"conversion", "is_async", "simple", "ctx", "op"}
)
_Children = Callable[[ast.AST], tuple[Any, ...]]
_children_of: dict[type, _Children] = {}
# The last part of every name in _EXEC_CALLS: an attribute call ending otherwise is not one.
_EXEC_LAST = frozenset(name.rsplit(".", 1)[-1] for name in _EXEC_CALLS)


def _const_str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _canonical(name: str) -> str:
    for prefix in ("builtins.", "__builtins__."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _children_getter(kind: type) -> _Children:
    """The values of a node kind's fields that may hold nodes, as a tuple, in field order
    (the order the walk has always visited them in)."""
    fields: tuple[str, ...] = getattr(kind, "_fields", ())
    wanted = [field for field in fields if field not in _NOT_NODE_FIELDS]
    getter: _Children
    if not wanted:
        getter = _no_children
    elif len(wanted) == 1:
        one = operator.attrgetter(wanted[0])
        getter = lambda node: (one(node),)  # noqa: E731
    else:
        getter = operator.attrgetter(*wanted)
    _children_of[kind] = getter
    return getter


def _no_children(node: ast.AST) -> tuple[Any, ...]:
    return ()


@dataclass(slots=True)
class _Call:
    node: ast.Call
    scope: int  # index into _Walk.scopes
    runs_at_load: bool  # runs when the module body runs (not only when a function is called)


class _Walk:
    """What one walk of a module found, and how its names resolve."""

    def __init__(self, path: str, tree: ast.Module, install_time: bool) -> None:
        self.path = path
        self.tree = tree
        self.install_time = install_time
        self.aliases: dict[str, set[str]] = {}
        self.star_modules: set[str] = set()
        self.calls: list[_Call] = []
        self.assigns: list[tuple[int, str, ast.AST, bool]] = []  # scope, name, value, simple
        self.scopes: list[str | None] = [None]  # per scope: the module function it belongs to
        self.literals: list[ast.Constant] = []
        self.exec_calls: list[tuple[_Call, set[str]]] = []  # calls that may run code
        self.module_functions: set[str] = set()
        self.tainted: dict[int, dict[str, bool]] = {}  # name -> decoded from a literal
        self.constants: dict[int, set[str]] = {}  # names bound to string literals
        self.cache: dict[int, set[str]] | None = None  # _names of whole expressions, once
        # aliases are complete

    # -------------------------------------------------------------------- the walk

    def _walk(self) -> None:
        """One pass, no recursion: record imports, assignments, calls and long literals,
        each with its scope and whether it runs when the module body runs. Leaves that no
        rule looks at (names, operators, contexts) are not visited."""
        top_level = set()
        for statement in self.tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                self.module_functions.add(statement.name)
                top_level.add(id(statement))
        # (node, scope index, whether it runs when the module body runs)
        stack: list[tuple[ast.AST, int, bool]] = [(self.tree, 0, True)]
        pop, push = stack.pop, stack.append
        calls, literals = self.calls, self.literals
        leaves, functions, assignments = _LEAF_KINDS, _FUNCTION_KINDS, _ASSIGN_KINDS
        node_base, constant, text = ast.AST, ast.Constant, (str, bytes)
        children = _children_of
        while stack:
            node, scope, at_load = pop()
            kind = type(node)
            if kind is ast.Call:
                calls.append(_Call(cast(ast.Call, node), scope, at_load))
            elif kind in functions:
                self._enter(node, scope, at_load, id(node) in top_level, push)
                continue
            elif kind is ast.Import or kind is ast.ImportFrom:
                self._import(cast(ast.Import | ast.ImportFrom, node))
                continue
            elif kind in assignments:
                self._assign(cast(_Assignment, node), scope)
            # The node's fields that may hold nodes, in their order, with one call: this
            # loop is most of the scan's own cost.
            for value in (children.get(kind) or _children_getter(kind))(node):
                for child in value if type(value) is list else (value,):
                    child_kind = type(child)
                    if child_kind is constant:
                        held = child.value
                        if type(held) in text and len(held) >= LONG_LITERAL:
                            literals.append(cast(ast.Constant, child))
                    elif child_kind not in leaves and isinstance(child, node_base):
                        push((child, scope, at_load))
        calls.sort(key=lambda call: (call.node.lineno, call.node.col_offset))

    def _enter(
        self,
        node: ast.AST,
        scope: int,
        at_load: bool,
        top_level: bool,
        push: Callable[[tuple[ast.AST, int, bool]], None],
    ) -> None:
        """A function or lambda: its body is a new scope that does not run at load; its
        defaults, decorators and annotations run where it is defined."""
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        owner = node.name if top_level and not isinstance(node, ast.Lambda) else None
        self.scopes.append(owner if scope == 0 else self.scopes[scope])
        inner = len(self.scopes) - 1
        outer: list[ast.AST] = [*node.args.defaults]
        outer += [default for default in node.args.kw_defaults if default is not None]
        if isinstance(node, ast.Lambda):
            push((node.body, inner, False))
        else:
            outer += node.decorator_list
            outer += [node.returns] if node.returns else []
            arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            arguments += [a for a in (node.args.vararg, node.args.kwarg) if a]
            outer += [a.annotation for a in arguments if a.annotation]
            for statement in node.body:
                push((statement, inner, False))
        for part in outer:
            push((part, scope, at_load))

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self._alias(alias.asname, alias.name)
                else:
                    top = alias.name.split(".")[0]
                    self._alias(top, top)
            return
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                if len(self.star_modules) < _MAX_CANDIDATES:
                    self.star_modules.add(module)
            else:
                self._alias(alias.asname or alias.name, f"{module}.{alias.name}")

    def _alias(self, name: str, target: str) -> None:
        known = self.aliases.setdefault(name, set())
        if len(known) < _MAX_CANDIDATES:
            known.add(target)

    def _assign(self, node: "_Assignment", scope: int) -> None:
        value = node.value
        if value is None:
            return
        targets: list[ast.expr] = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            simple = isinstance(target, ast.Name) and not isinstance(node, ast.AugAssign)
            pending: list[ast.expr] = [target]
            while pending:  # the names a target binds: a.b = and a[0] = bind none
                part = pending.pop()
                if isinstance(part, ast.Name):
                    self.assigns.append((scope, part.id, value, simple))
                elif isinstance(part, ast.Tuple | ast.List):
                    pending.extend(part.elts)
                elif isinstance(part, ast.Starred):
                    pending.append(part.value)

    def _follow_assignments(self) -> None:
        """``name = <module or function expression>`` makes ``name`` an alias too
        (``b = __import__("base64")``, ``run = getattr(builtins, "exec")``)."""
        for _round in range(3):
            before = sum(len(targets) for targets in self.aliases.values())
            for _scope, name, value, simple in self.assigns:
                if simple:
                    for resolved in self._names(value):
                        if resolved != name:
                            self._alias(name, resolved)
            if sum(len(targets) for targets in self.aliases.values()) == before:
                return

    # ---------------------------------------------------------------- resolution

    def _names(self, node: ast.AST, depth: int = 0) -> set[str]:
        """The dotted names an expression may stand for (aliases followed)."""
        if depth == 0 and self.cache is not None:
            known = self.cache.get(id(node))
            if known is None:
                known = self.cache[id(node)] = self._resolve(node, 0)
            return known
        return self._resolve(node, depth)

    def _resolve(self, node: ast.AST, depth: int) -> set[str]:
        if depth > 20:
            return set()
        if isinstance(node, ast.Name):
            found = {node.id} | self.aliases.get(node.id, set())
            for module in self.star_modules:
                found.add(f"{module}.{node.id}")
            return {_canonical(name) for name in found}
        if isinstance(node, ast.Attribute):
            bases = self._names(node.value, depth + 1)
            return {_canonical(f"{base}.{node.attr}") for base in bases}
        if isinstance(node, ast.Call):
            return self._call_result_names(node, depth)
        if isinstance(node, ast.Subscript):
            key = _const_str(node.slice)
            if key is None:
                return set()
            value = node.value
            called = (
                value.func.id
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                else None
            )
            if isinstance(value, ast.Attribute) and value.attr == "__dict__":
                bases = self._names(value.value, depth + 1)
            elif isinstance(value, ast.Call) and called == "vars" and value.args:
                bases = self._names(value.args[0], depth + 1)
            elif called in ("globals", "locals"):
                return {_canonical(key)}
            else:
                bases = self._names(value, depth + 1)
            return {_canonical(f"{base}.{key}") for base in bases}
        return set()

    def _call_result_names(self, node: ast.Call, depth: int) -> set[str]:
        """Names for calls that return a module or attribute: __import__, getattr. Any other
        call (``a.b().c().d()`` chains, say) stands for no name, and is not descended."""
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in _RESULT_CALLS and func.id not in self.aliases:
                return set()
        elif not isinstance(func, ast.Attribute) or func.attr not in _RESULT_CALLS:
            return set()
        names = self._resolve(func, depth + 1)
        if not names.isdisjoint({"__import__", "importlib.import_module"}) and node.args:
            module = _const_str(node.args[0])
            return {_canonical(module)} if module else set()
        if "getattr" in names and len(node.args) >= 2:
            attr = _const_str(node.args[1])
            if attr is None:
                return set()
            bases = self._resolve(node.args[0], depth + 1)
            return {_canonical(f"{base}.{attr}") for base in bases}
        return set()

    def _exec_names(self, call: ast.Call) -> set[str]:
        """What exec-like builtins a call may be (cheap refusals first)."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr not in _EXEC_LAST:
            return set()
        plain = isinstance(func, ast.Name) and func.id not in _EXEC_LAST
        if plain and not self.star_modules and getattr(func, "id", "") not in self.aliases:
            return set()
        return self._names(func) & _EXEC_CALLS
