"""The facts of one module: what runs when it is imported, and what each function can do.

:class:`ImportScan` extends the payload rules' walk (one parse and one walk serve both): each
call is classified (``rules_import_kinds``) and filed under the body it runs in (the module
body, a top-level function or class, a method), and calls to functions of this module or to
names imported from elsewhere are kept so ``rules_import_reach`` can follow them. What the
walk cannot tell at a call, it does not guess: a method called on an unknown object is not
followed, and neither is a callback passed around, except the ones started at import
(``threading.Thread(target=...)``, ``atexit.register``).
"""

import ast
import sys
from collections.abc import Callable

from quarantine.inspect.archive.reader import printable
from quarantine.inspect.rules.import_facts import Body, Capability, ModuleFacts, Use
from quarantine.inspect.rules.import_kinds import classify
from quarantine.inspect.rules.python_scan import _Scan

LOAD = "<load>"  # the module body
SCRIPT = "<script>"  # what runs only when the module is run as a script, never by import
PYTEST_HOOK = "<pytest>"  # a conftest module's body: pytest runs it, an import never does
MAX_USES = 20  # per body: past that, more of the same says nothing new
MAX_CALLS = 64  # per body
_MAX_TEXT_NODES = 200  # per expression whose text a rule reads
_STARTED = frozenset(
    {
        "threading.Thread",
        "threading.Timer",
        "multiprocessing.Process",
        "atexit.register",
    }
)
_CONSTRUCTION = ("__init__", "__new__", "__post_init__")
_NOT_FOLLOWED = frozenset(sys.stdlib_module_names) | {"builtins", "__builtins__"}


class ImportScan(_Scan):
    """One module's walk, payload rules and import-time facts."""

    def __init__(self, path: str, tree: ast.Module, module: str, package: str, text: str) -> None:
        super().__init__(path, tree, install_time=False)
        self.module = module
        self.package = package
        self.text = text
        self._lines: list[str] | None = None
        self._values: dict[str, list[ast.AST]] | None = None
        self.owners = _owners(tree)
        self.defined = frozenset(self.owners.values())

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        """Relative imports as absolute names, so calls resolve to ``pkg.mod.f``."""
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = self.package.split(".") if self.package else []
            base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            module = ".".join([*base, *([node.module] if node.module else [])])
            node = ast.ImportFrom(module=module, names=node.names, level=0)
        super()._import(node)

    def _enter(
        self,
        node: ast.AST,
        scope: int,
        at_load: bool,
        top_level: bool,
        push: Callable[[tuple[ast.AST, int, bool]], None],
    ) -> None:
        super()._enter(node, scope, at_load, top_level, push)
        if scope == 0 and id(node) in self.owners:
            self.scopes[-1] = self.owners[id(node)]  # methods too: "Cls.m"

    def facts(self) -> ModuleFacts:
        """After :meth:`run`: the module's facts."""
        uses: dict[str, list[Use]] = {}
        calls: dict[str, set[str]] = {}
        script = _script_lines(self.tree, self.module)
        for call in self.calls:
            body = LOAD if call.runs_at_load else self.scopes[call.scope]
            if body is None:
                continue  # a lambda or a nested class's method: not known to run
            if body == LOAD and _within(call.node.lineno, script):
                body = SCRIPT
            names = self._names(call.node.func)
            found = uses.setdefault(body, [])
            if len(found) < MAX_USES:
                found += self._uses(call.node, names)
            targets = calls.setdefault(body, set())
            if len(targets) < MAX_CALLS:
                targets |= self._targets(call.node, names, body)
        for owner, decorators in _decorators(self.tree):
            targets = calls.setdefault(owner, set())
            for decorator in decorators:
                targets |= self._targets(None, self._names(decorator), owner)
        for name, methods in self._constructors().items():
            calls.setdefault(name, set()).update(methods)
        bodies = {
            name: Body(tuple(uses.get(name, ())), tuple(sorted(calls.get(name, ()))))
            for name in sorted(set(uses) | set(calls))
            if name != LOAD
        }
        load = Body(tuple(uses.get(LOAD, ())), tuple(sorted(calls.get(LOAD, ()))))
        return ModuleFacts(self.module, self.path, load, bodies, self._exports())

    def _exports(self) -> dict[str, str]:
        """Names this module imports from other modules (``from .impl import helper``): a
        call to ``pkg.helper`` reaches ``pkg.impl.helper`` through them."""
        exports: dict[str, str] = {}
        for name, targets in sorted(self.aliases.items()):
            target = min(targets)
            if (
                len(exports) < MAX_CALLS
                and "." in target
                and target.split(".")[0] not in _NOT_FOLLOWED
            ):
                exports[name] = target
        return exports

    def _uses(self, call: ast.Call, names: set[str]) -> list[Use]:
        found = [
            Use(
                capability, printable(what, 80), self.path, call.lineno, self._excerpt(call), target
            )
            for capability, what, target in classify(names, call, self._texts)
        ]
        decoder = self._decoder(call)
        if decoder is not None:
            what = printable(decoder, 80)
            found.append(Use(Capability.DECODE, what, self.path, call.lineno, self._excerpt(call)))
        return found

    def _targets(self, call: ast.Call | None, names: set[str], body: str) -> set[str]:
        """What a call may run that the reach can follow: this module's functions and
        classes, methods through ``self``/``cls``, names imported from other modules."""
        named = set(names)
        if call is not None and names & _STARTED:
            for argument in [*call.args, *(k.value for k in call.keywords if k.arg == "target")]:
                if isinstance(argument, ast.Name | ast.Attribute):
                    named |= self._names(argument)
        return {target for name in named if (target := self._followed(name, body)) is not None}

    def _followed(self, name: str, body: str) -> str | None:
        first, _, rest = name.partition(".")
        if first in ("self", "cls") and "." in body:
            return f"{body.split('.')[0]}.{rest}" if rest else None
        if name in self.defined:
            return name
        if "." not in name or first in _NOT_FOLLOWED:
            return None
        return name

    def _constructors(self) -> dict[str, set[str]]:
        """Calling a class runs its __init__ (and __new__, __post_init__)."""
        made: dict[str, set[str]] = {}
        for name in self.defined:
            cls, _, method = name.partition(".")
            if method in _CONSTRUCTION:
                made.setdefault(cls, set()).add(name)
        return made

    def _excerpt(self, node: ast.AST) -> str:
        if self._lines is None:
            self._lines = self.text.splitlines()
        number = getattr(node, "lineno", 0)
        line = self._lines[number - 1] if 0 < number <= len(self._lines) else ""
        return excerpt(line)

    def _texts(self, node: ast.AST) -> list[str]:
        """The strings and dotted names an expression is built from, through names bound
        in this module (one step): enough to see ``~``, ``crontab`` or ``curl``."""
        found: list[str] = []
        pending: list[tuple[ast.AST, int]] = [(node, 0)]
        seen = 0
        while pending and seen < _MAX_TEXT_NODES:
            part, depth = pending.pop()
            seen += 1
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                found.append(part.value)
                continue
            if isinstance(part, ast.Name | ast.Attribute | ast.Call):
                target = part.func if isinstance(part, ast.Call) else part
                found += sorted(self._names(target))
            if isinstance(part, ast.Name) and depth < 2:
                pending += [(value, depth + 1) for value in self._assigned(part.id)]
            pending += [(child, depth) for child in ast.iter_child_nodes(part)]
        return found

    def _assigned(self, name: str) -> list[ast.AST]:
        if self._values is None:
            self._values = {}
            for _scope, target, value, _simple in self.assigns:
                self._values.setdefault(target, []).append(value)
        return self._values.get(name, [])[:4]


def excerpt(line: str, limit: int = 100) -> str:
    """A source line for a person: runs of blanks shown as a count, escaped, cut short."""
    out: list[str] = []
    run = 0
    for char in line.strip():
        if char in " \t":
            run += 1
            continue
        if run:
            out.append(" " if run < 8 else f" [{run} blanks] ")
        run = 0
        out.append(char)
    return printable("".join(out), limit)


def _script_lines(tree: ast.Module, module: str) -> list[tuple[int, int]]:
    """The lines that run only as a script: ``if __name__ == "__main__":`` blocks, and all
    of a ``__main__`` module (``python -m pkg`` runs it; importing ``pkg`` does not)."""
    if module == "__main__" or module.endswith(".__main__"):
        return [(1, sys.maxsize)]
    return [  # the guarded block only: an ``else:`` runs on import
        (statement.body[0].lineno, statement.body[-1].end_lineno or statement.lineno)
        for statement in tree.body
        if isinstance(statement, ast.If) and _is_main_guard(statement.test)
    ]


def _is_main_guard(test: ast.expr) -> bool:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):  # a platform check too
        return any(_is_main_guard(value) for value in test.values)
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    texts = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]


def _within(line: int, ranges: list[tuple[int, int]]) -> bool:
    return any(first <= line <= last for first, last in ranges)


def _owners(tree: ast.Module) -> dict[int, str]:
    """Top-level functions and classes, and the methods of top-level classes, by node."""
    owners: dict[int, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            owners[id(statement)] = statement.name
        elif isinstance(statement, ast.ClassDef):
            owners[id(statement)] = statement.name
            for member in statement.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    owners[id(member)] = f"{statement.name}.{member.name}"
    return owners


def _decorators(tree: ast.Module) -> list[tuple[str, list[ast.expr]]]:
    """Bare decorators (``@register``, not calls) of top-level definitions and methods:
    each is called with what it decorates when the module body runs."""
    found: list[tuple[str, list[ast.expr]]] = []
    definitions = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for statement in tree.body:
        members = statement.body if isinstance(statement, ast.ClassDef) else []
        for node in [statement, *members]:
            if isinstance(node, definitions):
                bare: list[ast.expr] = [
                    d for d in node.decorator_list if isinstance(d, ast.Name | ast.Attribute)
                ]
                if bare:
                    found.append((LOAD, bare))
    return found
