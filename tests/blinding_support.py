"""Tools for the two tests that prove the blind holds (tests/test_sealed.py, tests/test_blinding.py).

* `import_graph()`: which cellbench module's code can run which other's, read from the source
  with `ast`: imports at module level and inside functions, `importlib.import_module` with a
  literal name, and registrations (a module that decorates a function with, or appends it to,
  something of another module's lets that module call it back: `@work_queue`,
  `@signatures.content_rule`, `qc.POST_CERTIFICATION_OOS_HOOKS.append`).
* `sealed_tripwire()`: while it is on, running any function of cellbench.sealed, or any SQL
  statement that names a sealed_ table, fails the request (and the test) at once.
* `world()`: one database holding every situation test_blinding compares, built through the
  service layer with a clock the test holds, so that two kits made in the same operation carry
  the same time to the microsecond.
"""
from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import inspect
import io
import json
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode

from cellbench import clock as product_clock

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "cellbench"
SEALED = "cellbench.sealed"
SEALED_TABLE = re.compile(r"\bsealed_[a-z_]+", re.IGNORECASE)


# --- the import graph ----------------------------------------------------------------------------


def module_files() -> dict[str, Path]:
    """Every module of the cellbench package by dotted name (packages by their __init__)."""
    found = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    how: str  # "import", "import in a function", "importlib", "registers into <name>"


@dataclass
class ModuleGraph:
    edges: dict[str, list[Edge]] = field(default_factory=dict)
    unresolved: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # dynamic imports not understood
    rules: dict[str, str] = field(default_factory=dict)  # entity type -> module of its signature content rule

    def path(self, start: str, goal: str, *,
             allowed: set[tuple[str, str]] = frozenset()) -> list[tuple[str, Edge]] | None:
        """The shortest chain of edges from start to goal, skipping `allowed` (source, target) edges."""
        previous: dict[str, tuple[str, Edge] | None] = {start: None}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            if here == goal:
                chain = []
                while previous[here] is not None:
                    source, edge = previous[here]
                    chain.append((source, edge))
                    here = source
                return list(reversed(chain))
            for edge in self.edges.get(here, ()):
                if edge.target not in previous and (here, edge.target) not in allowed:
                    previous[edge.target] = (here, edge)
                    queue.append(edge.target)
        return None

    def reachable(self, start: str, *, allowed: set[tuple[str, str]] = frozenset()) -> set[str]:
        seen, queue = {start}, deque([start])
        while queue:
            here = queue.popleft()
            for edge in self.edges.get(here, ()):
                if edge.target not in seen and (here, edge.target) not in allowed:
                    seen.add(edge.target)
                    queue.append(edge.target)
        return seen


def chains_into(starts: list[str], forbidden: set[str]) -> list[str]:
    """Each chain (imports at module level or in functions, registrations, signatures) by which a
    module of `starts` reaches a forbidden module or one of its parts; empty when none does. The
    home page's work-queue registrations are not followed: every page reaches the home page, which
    calls every area's queue source, and test_sealed proves at run time that those sources keep
    blinded viewers out of the compartment."""
    graph = import_graph()
    queues = {(source, edge.target) for source, edges in graph.edges.items() for edge in edges
              if edge.how.startswith("registers into work_queue")}
    return [format_path(start, graph.path(start, reached, allowed=queues) or []) for start in starts
            for reached in sorted(graph.reachable(start, allowed=queues))
            if any(reached == f or reached.startswith(f + ".") for f in forbidden)]


def format_path(start: str, chain: list[tuple[str, Edge]]) -> str:
    lines = [start]
    for source, edge in chain:
        lines.append(f"  -> {edge.target}   ({source.rsplit('.', 1)[-1]}.py line {edge.line}: {edge.how})")
    return "\n".join(lines)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.edges: list[Edge] = []
        self.unresolved: list[tuple[int, str]] = []
        self.aliases: dict[str, str] = {}  # local name -> cellbench module it stands for
        self.origins: dict[str, str] = {}  # local name -> cellbench module it was imported from
        self.depth = 0  # > 0 inside a function
        self.rules: list[str | None] = []  # entity types whose signature content rule this module registers
        self.signs: list[tuple[str | None, int, str]] = []  # (entity type signed, line, as written)

    def _add(self, target: str, line: int, how: str, *, explicit: bool = True) -> None:
        if how.startswith("registers"):
            if target in self.known:
                self.edges.append(Edge(target, line, how))
            return
        # `import cellbench.a.b` runs cellbench/__init__, cellbench/a/__init__ and cellbench/a/b. The
        # packages that hold this module are already being imported when it runs: importing through
        # them adds no edge, unless the module asks for the package itself (`explicit`: its names,
        # `from .. import lots` inside lots/, which is a cycle).
        parts = target.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[:n])
            if candidate not in self.known or candidate == self.module:
                continue
            if self.module.startswith(candidate + ".") and not (explicit and n == len(parts)):
                continue
            self.edges.append(Edge(candidate, line, how))

    def _import_how(self) -> str:
        return "import in a function" if self.depth else "import"

    def visit_FunctionDef(self, node):
        self._decorators(node)
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._decorators(node)
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == "cellbench":
                self._add(alias.name, node.lineno, self._import_how())
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    self.aliases["cellbench"] = "cellbench"

    def visit_ImportFrom(self, node):
        if node.level:
            base = _resolve_relative(self.module, self.is_package, node.level, node.module)
        elif node.module and node.module.split(".")[0] == "cellbench":
            base = node.module
        else:
            return
        how = self._import_how()
        # `from . import sibling` reads no name of the package; `from . import NAME` does
        self._add(base, node.lineno, how,
                  explicit=not all(f"{base}.{alias.name}" in self.known for alias in node.names))
        for alias in node.names:
            local = alias.asname or alias.name
            submodule = f"{base}.{alias.name}"
            if submodule in self.known:  # `from . import kits`: the module itself
                self._add(submodule, node.lineno, how)
                self.aliases[local] = submodule
            else:  # `from .home import work_queue`: a name of that module
                self.origins[local] = base

    def visit_Call(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "import_module" or name == "__import__":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                target = arg.value
                if target.startswith("."):
                    package = next((k.value for k in node.keywords if k.arg == "package"
                                    and isinstance(k.value, ast.Constant)), None)
                    if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                        package = node.args[1].value
                    level = len(target) - len(target.lstrip("."))
                    target = _resolve_relative(package or self.module, True, level, target.lstrip(".") or None)
                if target.split(".")[0] == "cellbench":
                    self._add(target, node.lineno, "importlib")
            else:
                self.unresolved.append((node.lineno, ast.unparse(node)))
        # signatures.sign(..., entity_type, ...) runs the content rule registered for that type
        if self._is_signatures(func, "sign"):
            arg = (node.args[4] if len(node.args) > 4
                   else next((k.value for k in node.keywords if k.arg == "entity_type"), None))
            literal = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            self.signs.append((literal, node.lineno, ast.unparse(arg) if arg is not None else "?"))
        elif self._is_signatures(func, "verify_all"):
            self.signs.append(("*", node.lineno, "verify_all"))
        # `other.REGISTRY.append(fn)` / `.add` / `.register`: `other` will call this module back
        if isinstance(func, ast.Attribute) and func.attr in {"append", "add", "register", "extend", "insert"}:
            owner = self._owner_module(func.value)
            if owner and owner != self.module:
                self._add(owner, node.lineno, f"registers into {ast.unparse(func.value)}")
        self.generic_visit(node)

    def _owner_module(self, node: ast.AST) -> str | None:
        """The cellbench module an expression like `qc.HOOKS` or `work_queue` comes from."""
        while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
            node = node.func if isinstance(node, ast.Call) else node.value
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.origins:
                return self.origins[node.id]
        return None

    def _is_signatures(self, func: ast.AST, name: str) -> bool:
        if isinstance(func, ast.Attribute) and func.attr == name:
            return self._owner_module(func.value) == SIGNATURES
        return isinstance(func, ast.Name) and func.id == name and self.origins.get(name) == SIGNATURES

    def _decorators(self, node) -> None:
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and self._is_signatures(decorator.func, "content_rule"):
                # a keyed registry: resolved by who signs which entity type (import_graph)
                arg = decorator.args[0] if decorator.args else None
                self.rules.append(arg.value if isinstance(arg, ast.Constant) else None)
                continue
            owner = self._owner_module(decorator)
            if owner and owner != self.module:
                self._add(owner, decorator.lineno, f"registers into {ast.unparse(decorator)}")


SIGNATURES = "cellbench.signatures"


def import_graph() -> ModuleGraph:
    """Edges: "A -> B" when code of A can run code of B.

    signatures' content rules are a keyed registry: a module registers the rule for its entity
    type, and signatures.sign(..., entity_type, ...) runs the rule of the type being signed, so
    the edge goes from the module that signs that type to the module whose rule it is (not from
    signatures to every module that registers a rule). verify_all runs them all. A sign() whose
    entity type is not a literal cannot be followed and is reported as unresolved."""
    files = module_files()
    graph = ModuleGraph()
    rules: dict[str, str] = {}
    signs: list[tuple[str, str | None, int, str]] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        collector = _Collector(module, path.name == "__init__.py", set(files))
        collector.visit(tree)
        # importing a module runs its package's __init__ first
        if "." in module:
            parent = module.rsplit(".", 1)[0]
            collector.edges.append(Edge(parent, 0, "package"))
        # a registration turns the edge around: the registry's module calls the registering one
        forward = [e for e in collector.edges if not e.how.startswith("registers")]
        graph.edges.setdefault(module, []).extend(forward)
        for edge in collector.edges:
            if edge.how.startswith("registers"):
                graph.edges.setdefault(edge.target, []).append(Edge(module, edge.line, f"{edge.how} ({path.name})"))
        for entity_type in collector.rules:
            if entity_type is None:
                graph.unresolved.setdefault(module, []).append((0, "signatures.content_rule(<not a literal>)"))
            else:
                rules[entity_type] = module
        signs += [(module, *sign) for sign in collector.signs]
        if collector.unresolved:
            graph.unresolved.setdefault(module, []).extend(collector.unresolved)
    graph.rules = rules
    for module, entity_type, line, written in signs:
        if entity_type is None:
            graph.unresolved.setdefault(module, []).append((line, f"signatures.sign(..., {written}, ...)"))
        elif entity_type == "*":
            graph.edges[module] += [Edge(owner, line, "verify_all runs every content rule")
                                    for owner in set(rules.values())]
        elif entity_type in rules and rules[entity_type] != module:
            graph.edges[module].append(Edge(rules[entity_type], line,
                                            f"signs a {entity_type!r}, whose content rule is there"))
    return graph


# --- the rules of the house read from the same graph (tests/test_house.py) -------------------------

IMPORTS = ("import", "import in a function", "importlib")


def imports_only(graph: ModuleGraph) -> ModuleGraph:
    """The graph's imports (at module level, in functions, importlib), without registrations,
    signature rules and the "package" edges from a part to its package (which the part's importer
    already has: importing cellbench.a.b imports cellbench.a first)."""
    return ModuleGraph({source: [e for e in edges if e.how in IMPORTS] for source, edges in graph.edges.items()})


def import_cycles(graph: ModuleGraph) -> list[list[tuple[str, Edge]]]:
    """One shortest cycle for every group of modules that import one another (Tarjan's strongly
    connected components, then a breadth-first path back to the group's first module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.edges.get(node, ()):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph.edges):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start, members = group[0], set(group)
        if len(group) == 1 and not any(e.target == start for e in graph.edges.get(start, ())):
            continue
        inside = ModuleGraph({m: [e for e in graph.edges.get(m, ()) if e.target in members] for m in group})
        first = next(e for e in inside.edges[start])
        back = inside.path(first.target, start) if first.target != start else []
        cycles.append([(start, first), *(back or [])])
    return cycles


def where(module: str, line: int) -> str:
    """file:line of a module's line, as a reader opens it (packages by their __init__.py)."""
    path = module_files().get(module)
    shown = path.relative_to(PACKAGE_ROOT.parent) if path else module
    return f"{shown}:{line}"


def format_cycle(chain: list[tuple[str, Edge]]) -> str:
    return "\n".join(f"  {where(source, edge.line)}: {source} -> {edge.target} ({edge.how})" for source, edge in chain)


# --- the sealed compartment's tripwire ------------------------------------------------------------


class SealedTouched(AssertionError):
    pass


def in_compartment(module: str) -> bool:
    """The sealed compartment is a package: it and every part of it."""
    return module == SEALED or module.startswith(SEALED + ".")


def compartment_modules() -> list:
    """The compartment's modules as imported: the package and each part."""
    import importlib
    import sys

    importlib.import_module(SEALED)
    return [module for name, module in sorted(sys.modules.items()) if in_compartment(name)]


@contextlib.contextmanager
def sealed_tripwire(db, *, armed=lambda: True):
    """While on (and `armed()` says so), any call of a function defined in the compartment (the
    package cellbench.sealed or any of its parts) and any SQL statement naming a sealed_ table
    raises SealedTouched. Every name bound to such a function is replaced, in the package (what
    callers use: `sealed.X`) and in each part (what the parts call one another by), so no route
    in is left open. The calls made are also collected, so that a caller that catches the error
    (a route's error handler) cannot hide it."""
    import inspect

    from sqlalchemy import event

    touched: list[str] = []
    originals = [(module, name, fn) for module in compartment_modules() for name, fn in vars(module).items()
                 if inspect.isfunction(fn) and in_compartment(fn.__module__)]

    def guard(fn):
        def tripped(*args, **kwargs):
            if armed():
                touched.append(f"{fn.__module__}.{fn.__name__}()")
                raise SealedTouched(f"{fn.__module__}.{fn.__name__}() was called")
            return fn(*args, **kwargs)
        return tripped

    def on_sql(conn, cursor, statement, parameters, context, executemany):
        if armed() and SEALED_TABLE.search(statement):
            touched.append(f"SQL: {statement[:200]}")
            raise SealedTouched(f"SQL naming a sealed table: {statement[:200]}")

    for module, name, fn in originals:
        setattr(module, name, guard(fn))
    event.listen(db.engine, "before_cursor_execute", on_sql)
    try:
        yield touched
    finally:
        event.remove(db.engine, "before_cursor_execute", on_sql)
        for module, name, fn in originals:
            setattr(module, name, fn)


# --- the clock ------------------------------------------------------------------------------------


class Clock:
    """Holds cellbench's clock (every utcnow() goes through cellbench.clock) still.

    Two kits made in the same operation then carry the same time to the microsecond, so pages
    are compared exactly, times included, instead of through a regex that could hide something.
    The test moves the clock on between operations, as time passes between them in life."""

    def __init__(self, start: datetime):
        self.now = start

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)

    def install(self, monkeypatch) -> None:
        from cellbench import clock

        monkeypatch.setattr(clock, "_source", lambda: self.now)


# --- the world ------------------------------------------------------------------------------------

STUDY = "NCT07290946"
BLINDED_USERS = {"frida": "pharmacist", "ida": "investigator", "mette": "monitor", "adam": "admin"}


SITE = "RH-ENT"
BENCH = "bench"


@dataclass(frozen=True)
class Pair:
    """One active and one placebo kit in the same situation, and what surrounds them."""

    situation: str
    active: str
    placebo: str
    blinded_lot: str
    asc_lot: str  # the manufacturing lots behind them: never to be shown to a blinded role
    placebo_lot: str
    state: str  # both kits'
    study: str = STUDY
    place: str = BENCH  # where both kits are: the cell bench or a site (its code)
    shipment: str | None = None  # the shipment that took both there
    # participants given the kits, one on each arm: (screening number, randomisation number)
    active_participant: tuple[str, str] | None = None
    placebo_participant: tuple[str, str] | None = None
    destruction: str | None = None  # the destruction that took both

    @property
    def kits(self) -> tuple[str, str]:
        return self.active, self.placebo


@dataclass
class World:
    pairs: list[Pair]
    lots: dict[str, str]  # manufacturing lot number -> "asc" / "placebo"
    quarantines: list[str]
    runs: list[str]
    every_kit: dict[str, str]  # number -> arm (read once, as the supply manager)


def populate(db) -> None:
    """What conftest's `people` and `effective_specs` fixtures make, for a world built once."""
    from cellbench import users
    from cellbench.specifications import versions as spec_versions

    from .conftest import PASSWORD, PEOPLE, actor_of

    with db.write() as session:
        for username, (name, roles) in PEOPLE.items():
            users.create_user(session, users.cli_actor(), username, name, PASSWORD, [r.value for r in roles])
    with db.write() as session:
        ids = [row.id for row in spec_versions.sync_from_files(session, actor_of(db, "anna"))]
    for spec_id in ids:
        with db.write() as session:
            spec_versions.approve(session, users.by_username(session, "anna"), PASSWORD, spec_id)


def build_world(db, clock: Clock) -> World:
    """Three blinded lots of NCT07290946, each in one situation:

    1. a released blinded lot (8 kits);
    2. a blinded lot of 16 kits from two ASC and two placebo lots, whose first ASC lot is put in a
       manual quarantine with the "proportionate" policy: its active kits and a random,
       proportionate set of placebo companions are held, the others stay released;
    3. a released blinded lot (8 kits) whose ASC lot is quarantined with the "blinded_lot" policy.

    Each kit of a blinded lot is made in the same operations as the other kits of its lot.
    """
    from sqlalchemy import select

    from cellbench.models import BlindedLot, Kit, KitState, Lot
    from cellbench.supply import quarantine

    from .conftest import actor_of
    from .kitworld import arms, load_studies, package, released_lot, sealed_kit_list

    populate(db)
    clock.advance(minutes=5)
    load_studies(db)
    lots = {}
    for number, kind in (("ASC-2026-0101", "asc"), ("PLB-2026-0101", "placebo"), ("ASC-2026-0201", "asc"),
                         ("PLB-2026-0201", "placebo"), ("ASC-2026-0202", "asc"), ("PLB-2026-0202", "placebo"),
                         ("ASC-2026-0301", "asc"), ("PLB-2026-0301", "placebo")):
        lots[number] = kind
        released_lot(db, kind, number, units=16)
    clock.advance(minutes=5)
    sealed_kit_list(db, STUDY, 40, seed="blinding-test")
    clock.advance(minutes=5)
    runs = [package(db, STUDY, 8, ["ASC-2026-0101"], ["PLB-2026-0101"])]
    clock.advance(minutes=5)
    runs.append(package(db, STUDY, 8, ["ASC-2026-0201"], ["PLB-2026-0201"]))
    clock.advance(minutes=5)
    runs.append(package(db, STUDY, 8, ["ASC-2026-0202"], ["PLB-2026-0202"],
                        blinded_lot=_blinded_lot_of_run(db, runs[-1])))
    clock.advance(minutes=5)
    runs.append(package(db, STUDY, 8, ["ASC-2026-0301"], ["PLB-2026-0301"]))
    by_arm = arms(db)
    by_lot = _kits_by_lot(db, lots)

    clock.advance(minutes=5)
    opened = []
    # The proportionate policy picks its placebo companions at random. Here they are picked from
    # the quarantined lot's own packaging run first, so that the world always holds both pairs
    # the test needs: a held placebo kit made with the held active kits, and a placebo kit left
    # free in the other run of the blinded lot, made with free active kits.
    first_run = set(by_lot["PLB-2026-0201"])
    companions = FirstRunFirst(first_run)
    for number, policy, reason in (("ASC-2026-0201", "proportionate", "customer complaint under investigation"),
                                   ("ASC-2026-0301", "blinded_lot", "particles seen in a retained vial")):
        with db.write() as s, _patched(quarantine, "_random", companions):
            lot = s.scalars(select(Lot).where(Lot.number == number)).one()
            opened += [q.number for q in quarantine.open_manual(s, actor_of(db, "sara"), lot, policy, reason)]
        clock.advance(minutes=5)
    assert companions.used, "the proportionate quarantine chose no companions"

    with db.read() as s:
        kit_rows = {k.number: k for k in s.scalars(select(Kit))}
        codes = {b.id: b.code for b in s.scalars(select(BlindedLot))}
        state = {n: KitState(k.state).value for n, k in kit_rows.items()}
        blinded = {n: codes.get(k.blinded_lot_id) for n, k in kit_rows.items()}
    lot_of = {kit: lot for lot, numbers in by_lot.items() for kit in numbers}

    def pair(situation: str, active_lot: str, placebo_lots: list[str], wanted: str) -> Pair:
        active = next(k for k in by_lot[active_lot] if state[k] == wanted)
        placebo = next(k for lot in placebo_lots for k in by_lot[lot] if state[k] == wanted)
        assert by_arm[active] == "active" and by_arm[placebo] == "placebo" and blinded[active] == blinded[placebo]
        return Pair(situation, active, placebo, blinded[active], active_lot, lot_of[placebo], wanted)

    site_pairs = _site(db, clock, lots, by_arm)
    pairs = [
        pair("released", "ASC-2026-0101", ["PLB-2026-0101"], "released"),
        pair("proportionate quarantine, both held", "ASC-2026-0201", ["PLB-2026-0201"], "quarantined"),
        pair("proportionate quarantine, neither held", "ASC-2026-0202", ["PLB-2026-0202"], "released"),
        pair("blinded-lot quarantine, both held", "ASC-2026-0301", ["PLB-2026-0301"], "quarantined"),
        *site_pairs,
    ]
    clock.advance(minutes=5)
    return World(pairs, lots, opened, runs, by_arm)


def _site(db, clock: Clock, lots: dict[str, str], by_arm: dict[str, str]) -> list[Pair]:
    """A blinded lot shipped to RH-ENT and received there, and two participants, one on each arm,
    treated with its kits, all through the API as the people would: packed and dispatched by the
    supply manager, scanned in by the pharmacist a day later, enrolled and randomised by the
    investigator, assigned and dispensed by the pharmacist, prepared by the preparer, administered
    by the investigator. Each step is taken for both participants at the same moment."""
    from sqlalchemy import select

    from cellbench import qrpayload, sealed, studies, users
    from cellbench.app import create_app
    from cellbench.config import Settings
    from cellbench.models import BlindedLot, Kit, KitState
    from cellbench.supply import lists

    from .bedside_support import scanned_at_bedside
    from .conftest import FAST_HASHER, PASSWORD, SECRET, actor_of, sign_in
    from .eligible import eligible
    from .kitworld import arms, package, released_lot

    lots.update({"ASC-2026-0401": "asc", "PLB-2026-0401": "placebo"})
    released_lot(db, "asc", "ASC-2026-0401", units=16)
    released_lot(db, "placebo", "PLB-2026-0401", units=16)
    clock.advance(minutes=5)
    package(db, STUDY, 8, ["ASC-2026-0401"], ["PLB-2026-0401"])
    with db.write() as s:
        row = lists.generate(s, actor_of(db, "sara"), studies.by_code(s, STUDY), "randomisation", 12,
                             seed="blinding-test-participants")
        list_id = row.id
    with db.write() as s:
        sara = users.by_username(s, "sara")
        sealed.seal_list(s, sara, users.actor(s, sara), s.get(type(row), list_id), PASSWORD)
    by_arm.update(arms(db))
    with db.read() as s:
        blinded = s.scalars(select(BlindedLot).order_by(BlindedLot.id.desc())).first()
        site_kits = sorted(s.scalars(select(Kit.number).where(Kit.blinded_lot_id == blinded.id)))
        code = blinded.code

    app = create_app(Settings(database_url=db.url, secret_key=SECRET, demo=False), password_hasher=FAST_HASHER,
                     database=db)
    people = {}

    def sign_in_again() -> None:  # a day passes: the sessions have timed out
        for client in people.values():
            client.close()
        people.update({name: sign_in(app, name) for name in ("sara", "frida", "ida", "jonas")})

    sign_in_again()

    def call(who: str, url: str, body: dict | None = None, expect: int = 200) -> dict:
        response = people[who].post(url, json=body or {})
        assert response.status_code == expect, f"{url}: {response.status_code} {response.text}"
        return response.json()

    def payload(number: str) -> str:
        return qrpayload.make_payload(number, SECRET)

    clock.advance(minutes=5)
    shipment = call("sara", "/api/v1/shipments", {"study": STUDY, "site": SITE}, 201)["number"]
    for kit in site_kits:
        call("sara", f"/api/v1/shipments/{shipment}/kits", {"code": payload(kit)})
    call("sara", f"/api/v1/shipments/{shipment}/dispatch",
         {"shipper_id": "DS-07", "seal_number": "SEAL-1234", "logger_id": "LOG-88"})
    clock.advance(hours=26)
    sign_in_again()
    for kit in site_kits:
        call("frida", f"/api/v1/shipments/{shipment}/receipt-scans", {"code": payload(kit)})
    call("frida", f"/api/v1/shipments/{shipment}/receipt",
         {"seal_intact": True, "logger_source": "manual", "logger_min": -190, "logger_max": -165.5})

    clock.advance(minutes=5)
    found: dict[str, tuple[str, str]] = {}
    for n in range(1, 13):
        screening = f"SCR-{n:03d}"
        call("ida", "/api/v1/participants", {"study": STUDY, "site": SITE, "screening_number": screening}, 201)
        number = call("ida", f"/api/v1/participants/{STUDY}/{screening}/randomise",
                      eligible(STUDY))["randomisation_number"]
        with db.write() as s:
            arm = sealed.arm_of_participant(s, actor_of(db, "sara"), studies.by_code(s, STUDY), number)
        found.setdefault(arm, (screening, number))
        if len(found) == 2:
            break
    clock.advance(minutes=5)
    visits = {arm: f"/api/v1/participants/{STUDY}/{found[arm][0]}/visits/1" for arm in ("active", "placebo")}
    given = {arm: call("frida", f"{visits[arm]}/assign")["kit_number"] for arm in visits}
    for arm in visits:
        call("frida", f"{visits[arm]}/dispense", {"code": payload(given[arm])})
    for arm in visits:
        call("jonas", "/api/v1/preparation", {"code": payload(given[arm])})
    for arm in visits:
        scanned_at_bedside(people["ida"], visits[arm])
    for gland in ("left", "right"):
        for arm in visits:
            call("ida", f"{visits[arm]}/administrations", {"gland": gland, "volume_ml": 1.0}, 201)
    assert {by_arm[given["active"]], by_arm[given["placebo"]]} == {"active", "placebo"}

    # Two kits of the stock come back to the pharmacy, are counted, authorised and destroyed.
    def in_stock() -> dict[str, list[str]]:
        with db.read() as s:
            here = sorted(s.scalars(select(Kit.number).where(Kit.number.in_(site_kits), Kit.state == KitState.at_site)))
        return {arm: [k for k in here if by_arm[k] == arm] for arm in ("active", "placebo")}

    gone = {arm: kits_[-1] for arm, kits_ in in_stock().items()}
    clock.advance(minutes=5)
    sign_in_again()  # the supply manager has been away longer than the idle timeout
    for arm in ("active", "placebo"):
        call("frida", "/api/v1/returns", {"code": payload(gone[arm]), "condition": "intact, not needed"})
    clock.advance(minutes=5)
    row = next(r for r in people["frida"].get(f"/api/v1/accountability?study={STUDY}").json()["rows"]
               if r["place"] == SITE and r["blinded_lot"] == code)
    call("frida", "/api/v1/reconciliations", {"study": STUDY, "place": SITE, "blinded_lot": code,
                                              "counted_in_stock": row["counts"]["on_hand"], "password": PASSWORD}, 201)
    clock.advance(minutes=5)
    destruction = call("sara", "/api/v1/destructions", {"study": STUDY, "place": SITE, "kits": sorted(gone.values()),
                                                        "password": PASSWORD}, 201)["number"]
    clock.advance(minutes=5)
    call("frida", f"/api/v1/destructions/{destruction}/destroyed",
         # The site's day, not UTC's: late in the evening the two differ, and the rule reads the site's.
         {"method": "Incineration as clinical waste", "destroyed_on": product_clock.today(now=clock.now).isoformat(),
          "witness": "Wilma Witness", "password": PASSWORD})
    for client in people.values():
        client.close()
    with db.read() as s:
        state = {k.number: KitState(k.state).value for k in s.scalars(select(Kit).where(Kit.number.in_(site_kits)))}
    stock = {arm: kits_[0] for arm, kits_ in in_stock().items()}
    return [
        Pair("returned at the site and destroyed", gone["active"], gone["placebo"], code, "ASC-2026-0401",
             "PLB-2026-0401", state[gone["active"]], place=SITE, shipment=shipment, destruction=destruction),
        Pair("received at the site, in stock", stock["active"], stock["placebo"], code, "ASC-2026-0401",
             "PLB-2026-0401", "at_site", place=SITE, shipment=shipment),
        Pair("given to a participant on each arm", given["active"], given["placebo"], code, "ASC-2026-0401",
             "PLB-2026-0401", state[given["active"]], place=SITE, shipment=shipment,
             active_participant=found["active"], placebo_participant=found["placebo"]),
    ]


class FirstRunFirst:
    """Stands in for quarantine's random choice of companions: the kits of one run first."""

    def __init__(self, first: set[str]):
        self.first, self.used = first, 0

    def sample(self, population, k):
        self.used += k
        return sorted(population, key=lambda kit: (kit.number not in self.first, kit.number))[:k]


@contextlib.contextmanager
def _patched(owner, name: str, value):
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _blinded_lot_of_run(db, run: str) -> str:
    from sqlalchemy import select

    from cellbench.models import BlindedLot, PackagingRun

    with db.read() as s:
        row = s.scalars(select(PackagingRun).where(PackagingRun.number == run)).one()
        return s.get(BlindedLot, row.blinded_lot_id).code


def _kits_by_lot(db, lots: dict[str, str]) -> dict[str, list[str]]:
    """Manufacturing lot -> the kits filled from it (a logged sealed read, as the supply manager)."""
    from sqlalchemy import select

    from cellbench import sealed
    from cellbench.models import Lot

    from .conftest import actor_of

    with db.write() as s:
        sara = actor_of(db, "sara")
        return {number: sorted(k.number for k in sealed.kits_containing_lot(
            s, sara, s.scalars(select(Lot).where(Lot.number == number)).one(), why="test world")) for number in lots}


# --- artefacts: what a response says, with the kit's own identifiers replaced ------------------------


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# The element that holds one kit's line on a page that lists many: a table row, a list item...
ROWS = ("tr", "li", "option", "dt", "dd")
# ...or, where there is none, the nearest block around the mention.
BLOCKS = ("p", "h1", "h2", "h3", "h4", "td", "th", "div", "section", "article", "form", "pre", "table", "ul", "ol",
          "main", "body")


class Node:
    __slots__ = ("attrs", "children", "parent", "tag")

    def __init__(self, tag: str, attrs: list, parent: Node | None):
        self.tag, self.attrs, self.children, self.parent = tag, attrs, [], parent

    def text(self) -> str:
        """The element as text: tags, attributes and content, so a changed class or link shows."""
        parts = []
        for child in self.children:
            if isinstance(child, Node):
                attrs = "".join(f' {k}="{v}"' for k, v in child.attrs)
                parts.append(f"<{child.tag}{attrs}>{child.text()}</{child.tag}>")
            else:
                parts.append(child)
        return "".join(parts)

    def outer(self) -> str:
        attrs = "".join(f' {k}="{v}"' for k, v in self.attrs)
        return f"<{self.tag}{attrs}>{self.text()}</{self.tag}>"


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("document", [], None)
        self.here = self.root
        self.hits: list[tuple[Node, str]] = []  # (element, its own text or attribute value)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, [(k, v or "") for k, v in attrs], self.here)
        self.here.children.append(node)
        for _, value in node.attrs:
            self.hits.append((node, value))
        if tag not in VOID:
            self.here = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, [(k, v or "") for k, v in attrs], self.here)
        self.here.children.append(node)
        for _, value in node.attrs:
            self.hits.append((node, value))

    def handle_endtag(self, tag):
        node = self.here
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.here = node.parent

    def handle_data(self, data):
        self.here.children.append(data)
        self.hits.append((self.here, data))


class Document:
    """An answer's body as a whole and as rows: for HTML the nearest tr, li, ... around each
    mention of a needle; for JSON the smallest object holding it in one of its own values; for
    anything else the lines. `whole` is serialised the same way, so a row is a substring of it."""

    def __init__(self, media_type: str, body: str):
        self.kind = media_type
        self._rows: dict[str, list[str]] = {}
        self.tree = None
        if media_type == "text/html":
            builder = _TreeBuilder()
            builder.feed(body)
            self.tree, self.hits = builder.root, builder.hits
            self.whole = self.tree.text()
        elif media_type == "application/json":
            try:
                self.data = json.loads(body)
                self.kind = "json"
                self.whole = json.dumps(self.data, sort_keys=True, ensure_ascii=False)
            except ValueError:
                self.kind, self.whole = "text", body
        else:
            self.kind, self.whole = "text", body

    def rows(self, needle: str) -> list[str]:
        if needle not in self._rows:
            if self.kind == "text/html":
                found = self._html_rows(needle)
            elif self.kind == "json":
                found = []
                _json_rows(self.data, self.data, needle, found)
            else:
                found = [line for line in self.whole.splitlines() if needle in line]
            self._rows[needle] = found
        return self._rows[needle]

    def _html_rows(self, needle: str) -> list[str]:
        found: list[Node] = []
        for node, value in self.hits:
            if needle in value:
                row = _nearest(node, ROWS) or _nearest(node, BLOCKS) or node
                if row not in found:
                    found.append(row)
        # a row inside another row that names the needle is already in it
        return [row.outer() for row in found if not any(_inside(row, other) for other in found if other is not row)]

    def without(self, needles) -> str:
        """The whole, less every row that names one of the needles."""
        text = self.whole
        for row in sorted({row for needle in needles for row in self.rows(needle)}, key=len, reverse=True):
            text = text.replace(row, "")
        return text


def _nearest(node: Node, tags: tuple[str, ...]) -> Node | None:
    while node is not None and node.tag not in tags:
        node = node.parent
    return node


def _json_rows(value, holder, needle: str, found: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _json_rows(item, value, needle, found)
    elif isinstance(value, list):
        for item in value:
            _json_rows(item, value if isinstance(item, (dict, list)) else holder, needle, found)
    elif isinstance(value, str) and needle in value:
        text = json.dumps(holder, sort_keys=True, ensure_ascii=False)
        if text not in found:
            found.append(text)


def _inside(node: Node, other: Node) -> bool:
    while node.parent is not None:
        node = node.parent
        if node is other:
            return True
    return False


@dataclass(frozen=True)
class Side:
    """What identifies one side of a comparison: its kit, its manufacturing lot, its label code,
    and the participant it was given to (screening and randomisation numbers), if any."""

    kit: str
    lot: str
    payload: str
    participant: str | None = None
    randno: str | None = None

    def needles(self) -> list[str]:
        """What names this side in a list: its kit, and its participant's numbers."""
        return [self.kit] + [n for n in (self.participant, self.randno) if n]

    def replacements(self, own: str) -> list[tuple[str, str]]:
        # longest first (replace_all sorts): the payload holds the kit number
        pairs = [(self.payload, f"⟨{own}QR⟩"), (quote(self.payload, safe=""), f"⟨{own}QR⟩"),
                 (self.kit, f"⟨{own}KIT⟩"), (self.lot, f"⟨{own}LOT⟩")]
        if self.participant:
            pairs += [(self.participant, f"⟨{own}PARTICIPANT⟩"), (self.randno, f"⟨{own}RANDOMISATION NUMBER⟩")]
        return pairs


# The sign-in form's token is new with every page (the signed-in pages' token is the session's).
LOGIN_TOKEN = re.compile(r'(<input type="hidden" name="csrf_token" value=")[^"]+(")')


def replace_all(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in sorted(replacements, key=lambda pair: -len(pair[0])):
        text = text.replace(old, new)
    return text


@dataclass
class Answer:
    """One response as it was received (kept raw, so each test can read it its own way)."""

    method: str
    url: str
    status: int
    media_type: str
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def pdf_text(body: bytes) -> str:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(body))
    pages = [f"--- page {n} {page.mediabox.width}x{page.mediabox.height} ---\n{page.extract_text()}"
             for n, page in enumerate(reader.pages, 1)]
    return "\n".join(pages)


def image_text(body: bytes, own: Side, other: Side) -> str:
    """An image: the QR code it carries, if any, named by whose it is; otherwise its digest."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(body))
    decoded = [r.text for r in zxingcpp.read_barcodes(image)]
    if decoded:
        names = {own.payload: "⟨QR⟩", other.payload: "⟨OTHER-QR⟩"}
        return f"image {image.size} {image.mode} with QR codes: {[names.get(t, t) for t in decoded]}"
    return f"image {image.size} {image.mode} sha256 {hashlib.sha256(body).hexdigest()}"


def readable(answer: Answer, own: Side | None = None, other: Side | None = None) -> str:
    """The answer as text, for comparison and for the negative checks: status, media type, the
    headers that carry content, and the body (PDF as its text per page, images as their QR)."""
    if not answer.media_type.startswith("image/") and getattr(answer, "_readable", None) is not None:
        return answer._readable
    head = [f"{answer.status} {answer.media_type}"]
    head += [f"{name}: {answer.headers[name]}" for name in ("location", "content-disposition")
             if name in answer.headers]
    if answer.media_type == "application/pdf":
        body = pdf_text(answer.body)
    elif answer.media_type.startswith("image/"):
        body = image_text(answer.body, own, other) if own else hashlib.sha256(answer.body).hexdigest()
    else:
        body = answer.text
    text = "\n".join(head) + "\n" + body
    if not answer.media_type.startswith("image/"):
        answer._readable = text
    return text


def side_view(answer: Answer, own: Side, other: Side) -> str:
    """A response to a request about one kit, with that kit's identifiers as ⟨KIT⟩ ⟨LOT⟩ ⟨QR⟩ and
    the other kit's as ⟨OTHER-…⟩: an active and a placebo kit's answers must then be equal."""
    text = readable(answer, own, other)
    if answer.url.split("?")[0] == "/login":
        text = LOGIN_TOKEN.sub(r"\1⟨LOGIN TOKEN⟩\2", text)
    return replace_all(text, own.replacements("") + other.replacements("OTHER-"))


def document(answer: Answer, own: Side | None = None, other: Side | None = None) -> Document:
    cached = getattr(answer, "_document", None)
    if cached is None:
        text = readable(answer, own, other)
        head, _, body = text.partition("\n")
        cached = Document(answer.media_type, body)
        cached.head = head
        answer._document = cached
    return cached


def projections(answer: Answer, own: Side, other: Side) -> list[str]:
    """In a response about many kits (a list, a trail), the rows that name this kit, with both
    kits of the pair as ⟨KIT⟩ (a row naming both must not differ by which one is asked about)."""
    doc = document(answer, own, other)
    rows = list(dict.fromkeys(row for needle in own.needles() for row in doc.rows(needle)))
    return [ROW_NUMBER.sub(r"\1⟨ROW NUMBER⟩\2", replace_all(row, own.replacements("") + other.replacements("")))
            for row in rows]


# A table row's first cell holding only its line number in the list ("5", "2"): where a kit
# falls in a list ordered by kit number (random) or by when it was packed.
ROW_NUMBER = re.compile(r"(<tr[^>]*>\s*<td[^>]*>)\s*\d+\s*(</td>)")


def rest(answer: Answer, own: Side, other: Side, needles) -> str:
    """The answer less every row naming one of `needles`, own identifiers as placeholders."""
    doc = document(answer, own, other)
    text = doc.head + "\n" + doc.without(needles)
    text = ROW_NUMBER.sub(r"\1⟨ROW NUMBER⟩\2", "\n".join(line for line in text.splitlines() if line.strip()))
    if answer.url.split("?")[0] == "/login":
        text = LOGIN_TOKEN.sub(r"\1⟨LOGIN TOKEN⟩\2", text)
    return replace_all(text, own.replacements("") + other.replacements("OTHER-"))


def diff(a: str, b: str, *, names=("active", "placebo"), context: int = 2, limit: int = 60) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), *names, lineterm="", n=context))
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


# --- the routes, and what to ask each of them about a pair of kits -----------------------------------


PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
# Form or body fields that carry a kit (a scanned label or a typed number).
KIT_FIELDS = ("code", "kit_number", "kit", "kit_numbers", "scan")
SIDE = {"kit", "lot", "payload"}  # a fill that differs between the two sides of a pair
# Query strings tried on every GET route a role may open; a route that does not read them answers
# as without them. {kit} {lot} {payload} are the side's own, {study} {blinded_lot} {state} the pair's.
QUERIES = (
    {},
    {"entity_type": "kit", "entity_id": "{kit}"},
    {"entity_type": "lot", "entity_id": "{lot}"},
    {"code": "{kit}"},
    {"code": "{payload}"},
    {"kit": "{kit}", "kit_number": "{kit}", "number": "{kit}", "q": "{kit}", "search": "{kit}", "lot": "{lot}"},
    {"study": "{study}", "blinded_lot": "{blinded_lot}", "state": "{state}"},
    {"participant": "{randno}", "screening_number": "{participant}", "study": "{study}"},
)


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    form: tuple | None = None  # form fields, posted with the CSRF token
    json: str | None = None  # a JSON body, as text (hashable)

    def describe(self) -> str:
        body = f" form {dict(self.form)}" if self.form is not None else f" json {self.json}" if self.json else ""
        return f"{self.method} {self.url}{body}"


@dataclass(frozen=True)
class Probe:
    route: str  # "GET /kits/{number}"
    active: Call
    placebo: Call
    # Compare the rows naming each kit. Not for a whole trail that the route also filters to each
    # kit (compared in full as such): a trail cut at its newest N events may cut one kit's oldest.
    rows: bool = True

    @property
    def shared(self) -> bool:
        """The same request for both kits: a page about many kits, compared row by row."""
        return self.active == self.placebo


def route_key(route, method: str) -> str:
    return f"{method} {route.path}"


def path_fill(path: str, param: str, pair: Pair) -> str | None:
    """What a path parameter stands for in the world: "{kit}", "{lot}", "{participant}",
    "{randno}" (each side's own), a value of the pair's situation, or None when the pair's
    situation holds no such thing."""
    before = path.split("{" + param, 1)[0].rstrip("/").rsplit("/", 1)[-1]
    area = path.removeprefix("/api/v1").split("/")[1]
    if param in ("kit_number", "kit"):
        return "{kit}"
    if area == "participants" and param == "number":
        return "{participant}" if pair.active_participant else None
    if area == "unblinding" and param == "participant":
        return "{randno}" if pair.active_participant else None
    if param == "treatment":
        return "1" if pair.active_participant else None
    if area == "accountability" and param == "place":
        return pair.place
    if area == "accountability" and param == "code":
        return pair.blinded_lot
    if param == "number":
        return {"kits": "{kit}", "lots": "{lot}", "shipments": pair.shipment,
                "destructions": pair.destruction}.get(before)
    if param == "code":
        return {"blinded-lots": pair.blinded_lot, "studies": pair.study}.get(before)
    if param in ("study", "study_code"):
        return pair.study
    if param == "username":
        return "sara"
    return None


def path_variants(path: str, pair: Pair) -> tuple[list[dict[str, str]], list[str]]:
    """The ways to fill a route's path, and the parameters nothing in the world fills."""
    names = PARAM.findall(path)
    if "entity_type" in names and "entity_id" in names:
        base = [{"entity_type": "kit", "entity_id": "{kit}"}, {"entity_type": "lot", "entity_id": "{lot}"},
                {"entity_type": "blinded_lot", "entity_id": pair.blinded_lot}]
        names = [n for n in names if n not in ("entity_type", "entity_id")]
    else:
        base = [{}]
    fills, missing = {}, []
    for name in names:
        value = path_fill(path, name, pair)
        if value is None:
            missing.append(name)
            value = "0"  # the role check must refuse before anything looks it up
        fills[name] = value
    return [{**b, **fills} for b in base], missing


def expand(template: str, pair: Pair, side: Side) -> str:
    values = {"kit": side.kit, "lot": side.lot, "payload": side.payload, "study": pair.study,
              "blinded_lot": pair.blinded_lot, "state": pair.state, "participant": side.participant or "",
              "randno": side.randno or ""}
    return re.sub(r"\{(kit|lot|payload|study|blinded_lot|state|participant|randno)\}",
                  lambda m: values[m.group(1)], template)


def build_url(path: str, fills: dict[str, str], query: dict[str, str], pair: Pair, side: Side) -> str:
    def value(match):
        return quote(expand(fills[match.group(1)], pair, side), safe="")

    url = PARAM.sub(value, path)
    if query:
        url += "?" + urlencode({k: expand(v, pair, side) for k, v in query.items()})
    return url


_FIELDS_TAKEN: dict[int, list[str]] = {}


def kit_fields_taken(route) -> list[str]:
    """The kit fields a POST route reads: from its JSON body model, or from its form handling."""
    if id(route.endpoint) not in _FIELDS_TAKEN:
        _FIELDS_TAKEN[id(route.endpoint)] = _kit_fields_taken(route)
    return _FIELDS_TAKEN[id(route.endpoint)]


def _kit_fields_taken(route) -> list[str]:
    fields = []
    body = getattr(route, "body_field", None)
    if body is not None:
        model = getattr(body.field_info, "annotation", None) or getattr(body, "type_", None)
        names = getattr(model, "model_fields", {}) or {}
        # "code" is also a donor's or a study's: a kit's code is described as a kit's or a label's
        fields = [name for name, info in names.items() if name in KIT_FIELDS
                  and (name != "code" or re.search(r"kit|label", info.description or "", re.IGNORECASE))]
    else:
        try:
            source = inspect.getsource(route.endpoint)
        except (OSError, TypeError):
            source = ""
        fields = [name for name in KIT_FIELDS if re.search(rf"""form(?:\.get\(|\[)["']{name}["']""", source)]
    return fields


def is_api(path: str) -> bool:
    return path.startswith("/api/")
