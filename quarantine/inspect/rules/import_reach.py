"""What runs at import, across the modules of one distribution, and the dangerous combinations.

Each module body (and each start-up ``.pth`` file) is an entry: importing it runs its body,
and the body runs the functions, classes (their ``__init__``) and decorators it calls, in
this module or in others of the same distribution (``from .boot import start; start()``),
to :data:`MAX_DEPTH` calls deep. A capability reached that way runs at import; one only in
functions nobody reaches runs when someone calls it, which is ordinary (a ``git`` helper).

Bounds: :data:`MAX_DEPTH` calls from a module body, :data:`MAX_BODIES` bodies per entry and
:data:`MAX_STEPS` per distribution (past it, what is left is not followed, and the result
says so). Combinations are judged within one entry: fetch then run, decode then run, write
outside the package then start something, and persistence on its own.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quarantine.inspect.rules.import_facts import Body, Capability, ModuleFacts, Use

MAX_DEPTH = 4
MAX_BODIES = 200
MAX_STEPS = 50_000

_RUNS = frozenset(
    {Capability.PROCESS, Capability.DYNAMIC_CODE, Capability.PAYLOAD, Capability.JS_RUNTIME}
)
_STARTS = _RUNS | {Capability.DETACHED}
_WRITES = frozenset({Capability.WRITE_OUTSIDE, Capability.WRITE_TEMP})


@dataclass(frozen=True, slots=True)
class Reached:
    use: Use
    entry: str  # the module (or .pth file) whose import runs it, as an archive path
    via: str | None  # the function it is in, when not the entry's own body


@dataclass(frozen=True, slots=True)
class Combination:
    name: str  # "fetch then run", ...
    entry: str
    uses: tuple[Reached, ...]  # the parts, first of each


@dataclass(frozen=True, slots=True)
class Reach:
    at_import: tuple[Reached, ...]
    in_functions: tuple[Reached, ...]  # in bodies no entry reaches
    combinations: tuple[Combination, ...]
    complete: bool  # False: MAX_STEPS ran out


def reach(modules: Iterable[ModuleFacts]) -> Reach:
    by_name = {facts.module: facts for facts in modules}
    walker = _Walker(by_name)
    at_import: list[Reached] = []
    combinations: list[Combination] = []
    for facts in sorted(by_name.values(), key=lambda f: (not f.startup, f.path)):
        found = walker.entry(facts)
        at_import += found
        combinations += combine(facts.path, found)
    in_functions = [
        Reached(use, facts.path, name)
        for facts in by_name.values()
        for name, body in sorted(facts.bodies.items())
        if (facts.module, name) not in walker.visited
        for use in body.uses
    ]
    return Reach(tuple(at_import), tuple(in_functions), tuple(combinations), walker.steps > 0)


class _Walker:
    def __init__(self, modules: Mapping[str, ModuleFacts]) -> None:
        self.modules = modules
        self.visited: set[tuple[str, str]] = set()  # (module, body) reached from any entry
        self.steps = MAX_STEPS

    def entry(self, facts: ModuleFacts) -> list[Reached]:
        found = [Reached(use, facts.path, None) for use in facts.load.uses]
        seen: set[tuple[str, str]] = set()
        pending = [(facts, target, 1) for target in facts.load.calls]
        while pending and len(seen) < MAX_BODIES and self.steps > 0:
            self.steps -= 1
            module, target, depth = pending.pop()
            resolved = self._resolve(module, target)
            if resolved is None or (resolved[0].module, resolved[1]) in seen:
                continue
            owner, name, body = resolved
            seen.add((owner.module, name))
            self.visited.add((owner.module, name))
            found += [Reached(use, facts.path, f"{owner.module}.{name}") for use in body.uses]
            if depth < MAX_DEPTH:
                pending += [(owner, call, depth + 1) for call in body.calls]
        return found

    def _resolve(self, module: ModuleFacts, target: str) -> tuple[ModuleFacts, str, Body] | None:
        """The body a call target names: here, or in another module of the distribution
        (through the names modules import from each other, a few steps)."""
        for _step in range(4):
            body = module.bodies.get(target)
            if body is not None:
                return module, target, body
            if "." not in target:
                exported = module.exports.get(target)
                if exported is None:
                    return None
                target = exported
            found = self._split(target)
            if found is None:
                return None
            module, target = found
        return None

    def _split(self, dotted: str) -> tuple[ModuleFacts, str] | None:
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = self.modules.get(".".join(parts[:cut]))
            if module is not None:
                return module, ".".join(parts[cut:])
        return None


def combine(entry: str, found: list[Reached]) -> list[Combination]:
    """The combinations among what one entry runs at import."""
    combinations: list[Combination] = []
    network = [r for r in found if r.use.capability is Capability.NETWORK]
    runs = [r for r in found if r.use.capability in _RUNS]
    decodes = [r for r in found if r.use.capability is Capability.DECODE]
    writes = [r for r in found if r.use.capability in _WRITES]
    starts = [r for r in found if r.use.capability in _STARTS]
    fetch_run = _pair(network, runs, distinct=True)
    if fetch_run:
        combinations.append(Combination("fetch then run", entry, fetch_run))
    decode_run = _pair(decodes, runs, distinct=False)
    if decode_run:
        combinations.append(Combination("decode then run", entry, decode_run))
    write_start = _pair(writes, starts, distinct=False)
    if write_start:
        combinations.append(
            Combination("write outside the package, then start", entry, write_start)
        )
    persistence = [r for r in found if r.use.capability is Capability.PERSISTENCE]
    if persistence:
        combinations.append(Combination("persistence", entry, (persistence[0],)))
    return combinations


def _pair(first: list[Reached], then: list[Reached], *, distinct: bool) -> tuple[Reached, ...]:
    """The first of ``first`` with the first of ``then`` that is another act. ``distinct``:
    a process start that is itself the fetch (``curl -o x``) does not run what it fetched."""
    for one in first:
        for other in then:
            same_call = one.use.path == other.use.path and one.use.line == other.use.line
            if distinct and same_call and other.use.capability is Capability.PROCESS:
                continue
            return (one, other)
    return ()
