"""The sealed compartment's walls, by construction (DESIGN.md, "Sealed compartment").

The compartment is the package cellbench.sealed and all its parts (walls, lists, units, doors, reads):
everywhere below, "the compartment" is any module that is cellbench.sealed or starts with "cellbench.sealed.".

1. No module outside the compartment (but cellbench/models/, which defines them, and the migrations) names
   a sealed model or a sealed_ table, in code or in SQL text.
2. No module that serves a blinded role can run the compartment's code: the import graph of every
   blinded-facing route module (imports at module level and in functions, importlib with a literal
   name, registrations into another module's hooks) does not reach it. A route module is
   blinded-facing unless it is in UNBLINDED_ONLY, and every route of those answers 403 to every
   blinded user.
3. At run time every public function of the compartment refuses a blinded actor and writes
   nothing; every read by an unblinded actor is an audit event "sealed read" that blinded roles
   never see.
"""
from __future__ import annotations

import ast
import inspect
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

from cellbench import models, pagination, sealed, study_data, users
from cellbench.app import iter_routes
from cellbench.audit import Actor
from cellbench.clock import utcnow
from cellbench.deps import Viewer
from cellbench.errors import Forbidden
from cellbench.models import (
    BLINDED_ROLES,
    AuditEvent,
    BlindedLot,
    Kit,
    Lot,
    PackagingRun,
    Role,
    SealedKitDraw,
    SealedList,
    Study,
    Vial,
    Visibility,
)

from .blinding_support import (
    BLINDED_USERS,
    PACKAGE_ROOT,
    SEALED,
    SEALED_TABLE,
    Answer,
    Pair,
    SealedTouched,
    Side,
    build_url,
    compartment_modules,
    diff,
    format_path,
    import_graph,
    in_compartment,
    module_files,
    path_variants,
    sealed_tripwire,
    side_view,
)
from .conftest import PASSWORD, SECRET, actor_of

# Route modules no blinded role may use, and which can reach the compartment: every one of their
# routes must answer 403 to every blinded user
# (test_every_route_of_an_unblinded_only_module_refuses_every_blinded_user).
UNBLINDED_ONLY = {
    "cellbench.web.supply", "cellbench.api.supply",  # lists, packaging, kit contents
    "cellbench.web.supply_quarantines", "cellbench.api.supply_quarantines",  # quarantines with their kits' arms
    "cellbench.web.supply_lots",  # the packaging runs and blinded lots lists (the runs' forms pack from lists)
    "cellbench.web.lots", "cellbench.api.lots",  # manufacturing lots: what a kit is made of
    "cellbench.web.qc", "cellbench.api.qc",
    "cellbench.web.release", "cellbench.api.release",
    "cellbench.web.lot_accountability", "cellbench.api.lot_accountability",  # accountability by manufacturing lot
    "cellbench.web.trace_unblinded", "cellbench.api.trace_unblinded",  # trace with arms and lots
    "cellbench.web.unblinding_impact", "cellbench.api.unblinding_impact",  # whose arm an unblinding reveals
    "cellbench.web.study_data", "cellbench.api.study_data",  # database lock, study unblinding, the arms' export


    "cellbench.web.shortages",  # "no kit" alerts with their arms
    "cellbench.web.simulation",  # supply planning per arm: lots, stock-outs, expiry
    "cellbench.web.preparation", "cellbench.api.preparation",  # the preparer's record: checks scans in the compartment
    "cellbench.web.resupply",  # resupply proposals and settings, per arm
    "cellbench.web.evidence",  # the lot's evidence packet: the kits it filled, the whole chain segment
}

# Edges of the import graph reviewed as safe: each one's code path runs for a blinded role
# without reaching the compartment, and a runtime test below proves it for every case it covers.
REVIEWED = {
    "registers into qc.POST_CERTIFICATION_OOS_HOOKS": (
        "qc runs these hooks (quarantine's, which holds the kits of a lot found out of specification "
        "after certification) only when a QC analyst records such a result: "
        "test_qc_calls_its_post_certification_hooks_only_for_a_qc_analysts_result."),
    "registers into work_queue": (
        "cellbench.web.home's page calls every registered work-queue source for every viewer, blinded "
        "ones included. Module by module the graph cannot tell a source from the rest of its module; "
        "test_every_work_queue_source_runs_for_a_blinded_viewer_without_reaching_the_compartment calls "
        "every registered source (new ones included) for every blinded user with the compartment "
        "wired to fail."),
}

# Function-level imports reviewed as reachable only by unblinded roles at run time, each with its
# static and runtime proof. None today: lots no longer reaches packaging, quarantine, release or qc
# (release.move_lot makes every lot move and carries the kits along, with top-level imports of
# supply: test_lots_reaches_no_kit_gate_or_qc_and_release_carries_the_kits_for_unblinded_moves).
REVIEWED_IMPORTS: dict[tuple[str, str], str] = {}

# Modules through which a blinded role may reach the compartment's blind-safe doors
# (sealed.BLIND_SAFE: randomise, assign_kit, unblind_participant, record_dose_donor), using only those names. A
# package here stands for each of its parts (door_users()).
# A blinded investigator randomises and a blinded pharmacist is given a kit to dispense: both need
# the sealed lists, so they go through doors that return a number or a kit and never an arm. The one
# door that returns an arm is emergency unblinding, by design: one participant, signed, logged, notified.
DOOR_USERS: dict[str, str] = {
    "cellbench.pharmacy": "randomise (returns a randomisation number), assign_kit (returns a kit of the "
                          "participant's arm, which looks like any other kit) and record_dose_donor (returns "
                          "nothing: the donor of an administered dose, or none for placebo, stays sealed)",
    "cellbench.unblinding": "unblind_participant: the arm of one participant, to the investigator who signed for it",
}

# Reads that admit an unblinded role other than the supply manager (who reads the rest).
OTHER_READERS = {"export_lists": "stella", "study_arms": "stella"}

# Public functions of sealed that take no actor, so cannot refuse a blinded one.
NO_ACTOR = {
    "kit_number_taken": "lists.generate's check that a new random kit number is free; returns only yes or no",
}

# The doors: (the blinded role each admits, whether it may return an arm to it).
DOORS = {"randomise": (Role.investigator, False), "assign_kit": (Role.pharmacist, False),
         "unblind_participant": (Role.investigator, True), "record_dose_donor": (Role.investigator, False)}


# --- 1. names ---------------------------------------------------------------------------------------------


def door_users() -> list[str]:
    """The modules DOOR_USERS covers: each one named, and every part of a package named."""
    return sorted(m for m in module_files() if any(m == door or m.startswith(door + ".") for door in DOOR_USERS))


def sealed_model_names() -> set[str]:
    return {cls.__name__ for cls in vars(models).values()
            if isinstance(cls, type) and issubclass(cls, SQLModel)
            and (getattr(cls, "__tablename__", "").startswith("sealed_") or cls.__name__.startswith("Sealed"))}


def test_the_sealed_models_are_the_ones_this_test_knows():
    assert sealed_model_names() == {"SealedList", "SealedListArm", "SealedAllocation", "SealedKitArm",
                                    "SealedKitUnit", "SealedKitDraw", "SealedKitShortage", "SealedDoseDonor"}
    assert {t.name for t in SQLModel.metadata.sorted_tables if t.name.startswith("sealed")} == {
        "sealed_list", "sealed_list_arm", "sealed_allocation", "sealed_kit_arm", "sealed_kit_unit",
        "sealed_kit_draw", "sealed_kit_shortage", "sealed_dose_donor"}


def test_no_module_but_sealed_names_a_sealed_model_or_table():
    names = sealed_model_names()
    found = []
    for module, path in module_files().items():
        if in_compartment(module) or module == "cellbench.models" or module.startswith(("cellbench.models.",
                                                                                          "cellbench.migrations.")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Name) and node.id in names:
                hit = node.id
            elif isinstance(node, ast.Attribute) and node.attr in names:
                hit = ast.unparse(node)
            elif isinstance(node, ast.alias) and node.name.rsplit(".", 1)[-1] in names:
                hit = f"import {node.name}"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SEALED_TABLE.search(node.value):
                hit = repr(SEALED_TABLE.search(node.value).group(0))
            if hit:
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{getattr(node, 'lineno', '?')}: {hit}")
    assert not found, "Only cellbench/sealed/ may name the sealed models and tables:\n" + "\n".join(found)


# --- 2. the import graph ----------------------------------------------------------------------------------


def route_modules() -> list[str]:
    return sorted(m for m, path in module_files().items()
                  if m.startswith(("cellbench.web.", "cellbench.api."))
                  and "router" in path.read_text(encoding="utf-8"))


def reviewed_edges(graph) -> set[tuple[str, str]]:
    return {(source, edge.target) for source, edges in graph.edges.items() for edge in edges
            if any(edge.how.startswith(kind) for kind in REVIEWED)
            or ((source, edge.target) in REVIEWED_IMPORTS and edge.how == "import in a function")}


def door_discipline(module: str) -> list[str]:
    """How a door-using module uses sealed other than through sealed.BLIND_SAFE names."""
    path = module_files()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "sealed" in node.module.split("."):
            wrong += [f"line {node.lineno}: from …sealed import {a.name}"
                      for a in node.names if a.name not in sealed.BLIND_SAFE]
        elif isinstance(node, ast.Name) and node.id == "sealed":
            parent_ok = False
            for parent in ast.walk(tree):
                if isinstance(parent, ast.Attribute) and parent.value is node:
                    parent_ok = parent.attr in sealed.BLIND_SAFE
                    if not parent_ok:
                        wrong.append(f"line {parent.lineno}: sealed.{parent.attr}")
                    break
    return wrong


def test_blinded_facing_route_modules_do_not_import_sealed():
    """For every route module a blinded role can use, no chain of imports (or registrations) leads
    to the compartment (the package or any of its parts). The failure names the chain."""
    graph = import_graph()
    allowed = reviewed_edges(graph) | {(module, SEALED) for module in door_users()}
    compartment = [m for m in module_files() if in_compartment(m)]
    assert len(compartment) > 1, compartment  # the package and its parts
    problems = []
    for module in route_modules():
        if module in UNBLINDED_ONLY:
            continue
        chains = (graph.path(module, part, allowed=allowed) for part in compartment)
        problems += [format_path(module, chain) for chain in chains if chain]
        for reached in sorted(graph.reachable(module, allowed=allowed)):
            problems += [f"{module} reaches {reached}, whose line {line} imports what cannot be followed: {what}"
                         for line, what in graph.unresolved.get(reached, [])]
    for module in door_users():
        problems += [f"{module} uses sealed beyond its blind-safe doors: {w}" for w in door_discipline(module)]
    assert not problems, ("Blinded-facing route modules that can reach the sealed compartment:\n\n"
                          + "\n\n".join(dict.fromkeys(problems)))


def test_the_graph_follows_imports_in_functions_registrations_and_signatures(tmp_path, monkeypatch):
    """The graph sees what a plain module-level import list would miss."""
    graph = import_graph()
    hows = {(source, edge.target): edge.how for source, edges in graph.edges.items() for edge in edges}
    assert hows[("cellbench.web.home", "cellbench.web.supply")].startswith("registers into work_queue")
    assert hows[("cellbench.qc", "cellbench.supply.quarantine")].startswith(
        "registers into qc.POST_CERTIFICATION_OOS_HOOKS")
    assert hows[("cellbench.sealed.lists", "cellbench.signatures")] == "import"
    # the package runs its parts, and a part runs its package's __init__ first
    assert hows[(SEALED, "cellbench.sealed.doors")] == "import"
    assert hows[("cellbench.sealed.doors", SEALED)] == "package"
    # importing a part runs its package's __init__ first, and the __init__ imports its parts
    assert hows[("cellbench.release.decisions", "cellbench.supply")] == "import"
    assert hows[("cellbench.supply", "cellbench.supply.packaging")] == "import"
    assert hows[("cellbench.supply.packaging", "cellbench.supply")] == "package"
    # signatures runs a content rule only for the entity type being signed: the edge is the signer's
    assert graph.rules["sealed_list"] == "cellbench.sealed.lists"
    assert not [target for source, target in hows if source == "cellbench.signatures" and in_compartment(target)]
    assert hows[("cellbench.supply.quarantine", "cellbench.signatures")] == "import"
    # only sealed itself signs a sealed list (no other module gets an edge to the list's content rule)
    assert not [(source, edge.how) for source, edges in graph.edges.items() for edge in edges
                if in_compartment(edge.target) and edge.how.startswith(("signs", "verify_all"))
                and source != "cellbench.integrity"]
    # and no other code in signatures reads the registry (else the keyed edges above would be wrong)
    tree = ast.parse(module_files()["cellbench.signatures"].read_text(encoding="utf-8"))
    readers = {fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               and any(isinstance(n, ast.Name) and n.id == "_CONTENT_RULES" for n in ast.walk(fn))}
    # (signable_types reads only the registry's keys, for verify's own check; it runs no rule)
    assert readers == {"content_rule", "register", "sign", "signable_types", "verify_all"}, readers
    # the only dynamic imports left are the app's router loader and the CLI's verify, both outside any route
    assert set(graph.unresolved) <= {"cellbench.app", "cellbench.integrity"}, graph.unresolved
    # an import inside a function is an edge like any other (a made-up module shows it)
    from . import blinding_support

    fake = dict(module_files())
    late = tmp_path / "late.py"
    late.write_text("def later():\n    from .supply import packaging\n    return packaging\n", encoding="utf-8")
    fake["cellbench.late"] = late
    monkeypatch.setattr(blinding_support, "module_files", lambda: fake)
    hows = {(source, edge.target): edge.how for source, edges in blinding_support.import_graph().edges.items()
            for edge in edges}
    assert hows[("cellbench.late", "cellbench.supply.packaging")] == "import in a function"


def test_the_sealed_test_would_see_a_blinded_module_importing_sealed(tmp_path, monkeypatch):
    """The graph check can fail: a route module importing sealed inside a function is caught."""
    from . import blinding_support

    fake = dict(module_files())
    leaky = tmp_path / "leaky.py"
    leaky.write_text("from fastapi import APIRouter\nrouter = APIRouter()\n\n\ndef page():\n"
                     "    from ..supply import packaging\n    return packaging\n", encoding="utf-8")
    fake["cellbench.web.leaky"] = leaky
    monkeypatch.setattr(blinding_support, "module_files", lambda: fake)
    graph = blinding_support.import_graph()
    chain = graph.path("cellbench.web.leaky", SEALED, allowed=reviewed_edges(graph))
    assert chain is not None
    assert "import in a function" in format_path("cellbench.web.leaky", chain)
    # and one reaching straight into a part of the compartment, past the package's names
    fake["cellbench.web.leakier"] = tmp_path / "leakier.py"
    fake["cellbench.web.leakier"].write_text("from fastapi import APIRouter\nrouter = APIRouter()\n\n\ndef page():\n"
                                            "    from ..sealed.units import contents\n    return contents\n",
                                            encoding="utf-8")
    graph = blinding_support.import_graph()
    chain = graph.path("cellbench.web.leakier", "cellbench.sealed.units", allowed=reviewed_edges(graph))
    assert chain is not None and len(chain) == 1


# --- a small world for requests and calls ---------------------------------------------------------------


def pair_of(db, kit_world) -> Pair:
    active, placebo = kit_world.pair
    with db.read() as s:
        kit = s.scalars(select(Kit).where(Kit.number == active)).one()
        code = s.get(BlindedLot, kit.blinded_lot_id).code
    return Pair("released", active, placebo, code, kit_world.asc_lot, kit_world.placebo_lot, "released",
                kit_world.study)


def test_every_route_of_an_unblinded_only_module_refuses_every_blinded_user(db, kit_world, as_, app):
    from cellbench.qrpayload import make_payload

    from .conftest import SECRET

    pair = pair_of(db, kit_world)
    sides = (Side(pair.active, pair.asc_lot, make_payload(pair.active, SECRET)),
             Side(pair.placebo, pair.placebo_lot, make_payload(pair.placebo, SECRET)))
    routes = [(route, method) for route in iter_routes(app.routes) for method in sorted(route.methods - {"HEAD"})
              if route.endpoint.__module__ in UNBLINDED_ONLY]
    assert {route.endpoint.__module__ for route, _ in routes} == {m for m in UNBLINDED_ONLY if m in route_modules()}
    answered = []
    for user in BLINDED_USERS:
        client = as_(user)
        for route, method in routes:
            for fills in path_variants(route.path, pair)[0]:
                # asked about the active kit (its ASC lot) and the placebo kit (its saline lot):
                # a plain refusal reads the same for both
                seen, urls = [], []
                for side, other in (sides, sides[::-1]):
                    url = build_url(route.path, fills, {}, pair, side)
                    urls.append(url)
                    if method == "GET":
                        response = client.get(url, follow_redirects=False)
                    elif url.startswith("/api/"):
                        response = client.request(method, url, json={}, follow_redirects=False)
                    else:
                        response = client.request(method, url, data={"csrf_token": client.csrf()},
                                                  follow_redirects=False)
                    if response.status_code != 403:
                        answered.append(f"{method} {url} as {user}: {response.status_code} {response.text[:160]!r}")
                    media = response.headers.get("content-type", "").split(";")[0]
                    seen.append(side_view(Answer(method, url, response.status_code, media, dict(response.headers),
                                                 response.content), side, other))
                if urls[0] == urls[1]:  # nothing about either kit asked: the refusal names neither lot
                    if pair.asc_lot in seen[0] or pair.placebo_lot in seen[0] or "⟨" in seen[0]:
                        answered.append(f"{method} {route.path} as {user}: the refusal lists manufacturing lots")
                elif seen[0] != seen[1]:
                    answered.append(f"{method} {route.path} as {user}: the refusals about the active and the "
                                    f"placebo kit (and their lots) differ:\n{diff(*seen)}")
    assert not answered, ("Routes of unblinded-only modules that a blinded user is not simply refused "
                          "(403, the same for both arms) by:\n" + "\n".join(answered))


def test_every_work_queue_source_runs_for_a_blinded_viewer_without_reaching_the_compartment(db, kit_world, as_, app):
    """The runtime proof behind REVIEWED["registers into work_queue"], in a world with released
    kits and an open blind-preserving quarantine for the sources to count."""
    from cellbench.supply import quarantine
    from cellbench.web import home

    with db.write() as s:
        lot = s.scalars(select(Lot).where(Lot.number == kit_world.asc_lot)).one()
        quarantine.open_manual(s, actor_of(db, "sara"), lot, "proportionate", "work-queue test")
    sources = list(home._QUEUE_SOURCES)
    assert len(sources) > 3
    clients = {user: as_(user) for user in BLINDED_USERS}  # signed in before the wires are live
    with sealed_tripwire(db) as touched:
        for user in BLINDED_USERS:
            with db.read() as s:
                person = users.by_username(s, user)
                viewer = Viewer(person, users.actor(s, person), None)
                for source in sources:
                    items = source(s, viewer)
                    assert isinstance(items, list)
            assert clients[user].get("/").status_code == 200
        assert not touched, touched


def test_lots_reaches_no_kit_gate_or_qc_and_release_carries_the_kits_for_unblinded_moves(db, kit_world):
    """Statically: nothing in the lots package (imports at module level and in functions,
    registrations, signatures) reaches supply's packaging or quarantine, the release gates, qc or
    the compartment. release.move_lot makes every lot move (the table's move with its gates, then
    the kits carried along through supply, imported at the top of release.decisions), and no lot move
    admits a blinded role. At run time: every lot move through release.move_lot, tried by every
    blinded user on a released lot with kits, is refused before anything is written, and the
    compartment is not reached."""
    from cellbench import lots, release

    graph = import_graph()
    lots_modules = [m for m in module_files() if m == "cellbench.lots" or m.startswith("cellbench.lots.")]
    assert "cellbench.lots.lifecycle" in lots_modules
    kit_side = ("cellbench.supply", "cellbench.release", "cellbench.qc", SEALED)
    for module in lots_modules:
        reached = sorted(m for m in graph.reachable(module) if m.startswith(kit_side))
        assert not reached, (module, reached, [format_path(module, graph.path(module, m)) for m in reached[:1]])
    assert not REVIEWED_IMPORTS, "no function-level import is reviewed any more: state the new one's proof here"
    hows = {(source, edge.target): edge.how for source, edges in graph.edges.items() for edge in edges}
    assert hows[("cellbench.release.decisions", "cellbench.supply.packaging")] == "import"
    assert hows[("cellbench.release.decisions", "cellbench.supply.quarantine")] == "import"
    # every lot move outside the lots package goes through release.move_lot (the demo's story aside:
    # it runs from the command line, never for a request)
    movers = [f"{module}:{node.lineno}" for module, path in module_files().items()
              if module not in lots_modules and not module.startswith("cellbench.demo")
              for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "move"
              and ast.unparse(node.func.value).split(".")[-1] in ("lots", "lifecycle")]
    assert [m.split(":")[0] for m in movers] == ["cellbench.release.decisions"], movers
    assert all(not (move.roles & BLINDED_ROLES) for move in lots.MOVES.values())

    armed = []
    with sealed_tripwire(db, armed=lambda: bool(armed)) as touched:
        for username in BLINDED_USERS:
            for name in lots.MOVES:
                with Session(db.engine) as session:
                    lot = session.scalars(select(Lot).where(Lot.number == kit_world.asc_lot)).one()
                    user = users.by_username(session, username)
                    before = _counts(session)
                    armed.append(1)
                    with pytest.raises(Forbidden):
                        release.move_lot(session, user, lot, name, "test", password=PASSWORD)
                    armed.clear()
                    assert _counts(session) == before and not session.new and not session.dirty
                    session.rollback()
        assert not touched


def test_qc_calls_its_post_certification_hooks_only_for_a_qc_analysts_result(db, kit_world):
    """The proof behind REVIEWED["registers into qc.POST_CERTIFICATION_OOS_HOOKS"]: quarantine's
    hook (which reads the compartment) runs only from qc.on_post_certification_oos, which only
    qc.enter_result calls, after requiring a QC analyst; every blinded user is refused there."""
    from cellbench import qc

    qc_modules = {m: path for m, path in module_files().items() if m == "cellbench.qc" or m.startswith("cellbench.qc.")}
    runners = {fn.name for path in qc_modules.values() for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(fn, ast.FunctionDef)
               and any(isinstance(n, ast.Name) and n.id == "POST_CERTIFICATION_OOS_HOOKS" for n in ast.walk(fn))}
    assert runners == {"on_post_certification_oos"}
    callers = [f"{m}:{fn.name}" for m, path in module_files().items()
               for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(fn, ast.FunctionDef)
               and fn.name != "on_post_certification_oos"
               and any(getattr(n, "id", getattr(n, "attr", None)) == "on_post_certification_oos" for n in ast.walk(fn))]
    assert [c.split(":")[1] for c in callers] == ["enter_result"] and callers[0].split(":")[0] in qc_modules, callers
    assert not set(qc.ANALYSTS) & BLINDED_ROLES
    armed = []
    with sealed_tripwire(db, armed=lambda: bool(armed)) as touched:
        for username in BLINDED_USERS:
            with Session(db.engine) as session:
                lot = session.scalars(select(Lot).where(Lot.number == kit_world.asc_lot)).one()
                before = _counts(session)
                armed.append(1)
                with pytest.raises(Forbidden):
                    qc.enter_result(session, actor_of(db, username), lot, "sterility", "detected", sample_id="S1")
                armed.clear()
                assert _counts(session) == before and not session.new and not session.dirty
                session.rollback()
        assert not touched


# --- 3. at run time -----------------------------------------------------------------------------------------


def public_functions() -> dict[str, object]:
    """Every public function of the compartment's parts, by name, as the package hands it out
    (`sealed.X`, what callers use); a public function a part defines but the package does not
    re-export is a finding, not something to skip."""
    found = {name: fn for module in compartment_modules() for name, fn in vars(module).items()
             if inspect.isfunction(fn) and in_compartment(fn.__module__) and not name.startswith("_")}
    missing = sorted(name for name, fn in found.items() if getattr(sealed, name, None) is not fn)
    assert not missing, f"public functions of the compartment's parts that sealed does not re-export: {missing}"
    return found


def _reads() -> set[str]:
    """The functions that go through walls._read (a logged read), in every part."""
    return {fn.name for module in compartment_modules() for fn in ast.parse(inspect.getsource(module)).body
            if isinstance(fn, ast.FunctionDef)
            and any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_read" for n in ast.walk(fn))}


class Arguments:
    """Plausible arguments for every parameter name of sealed's public functions, from the kit
    world: a call that forgot to refuse would find real rows to act on."""

    def __init__(self, session: Session, kit_world):
        from cellbench.supply.randomisation import Line

        self.session = session
        study = session.scalars(select(Study).where(Study.code == kit_world.study)).one()
        kit = session.scalars(select(Kit).where(Kit.number == kit_world.active[0])).one()
        lot = session.scalars(select(Lot).where(Lot.number == kit_world.asc_lot)).one()
        run = session.scalars(select(PackagingRun)).first()
        row = session.scalars(select(SealedList)).first()
        vial = session.scalars(select(Vial).where(Vial.lot_id == lot.id)).first()
        # a recorded kit draw to replay (the caller rolls the session back)
        draw = SealedKitDraw(study_id=study.id, randomisation_number="X-001", site_id=1, candidates=kit.number,
                             index_drawn=0, kit_id=kit.id, drawn_at=utcnow())
        session.add(draw)
        session.flush()
        self.values = {
            "study": study, "kind": "kit", "lines": [Line(1, 1, "ZZZZ-ZZZZ-Z", "active")], "method": "generated",
            "seed": "s", "block_sizes": (2,), "source_sha256": None, "number": kit.number, "list_id": row.id,
            "row": row, "ask": pagination.Ask(None, SECRET, 10), "limit": 10, "password": PASSWORD, "reason": "test",
            "kit_ids": [kit.id],
            "why": "test", "count": 1, "kit": kit, "kits": [kit], "vials": [vial], "run_id": run.id, "lot": lot,
            "run_ids": [run.id], "blinded_lot_id": kit.blinded_lot_id, "participant_id": 1,
            "randomisation_number": "X-001", "site_id": 1, "in_date_on": date.today(), "exclude": (),
            "fills": [(kit, [vial])], "draw_id": draw.id, "shortage_id": 1, "treatment": 1, "dose": 1,
            "usable_through": date.today(), "ship_through": date.today(),
        }

    def of(self, fn, actor: Actor, username: str) -> dict:
        found = {}
        for name, param in inspect.signature(fn).parameters.items():
            if name == "session":
                found[name] = self.session
            elif name == "actor":
                found[name] = actor
            elif name == "user":
                found[name] = users.by_username(self.session, username)
            elif name in self.values:
                found[name] = self.values[name]
            elif param.default is inspect.Parameter.empty:
                raise AssertionError(f"sealed.{fn.__name__}: teach Arguments a value for {name!r}")
        return found


def _counts(session: Session) -> dict[str, int]:
    return {table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables}


def test_the_tripwire_catches_every_function_of_the_compartment_however_it_is_called(db, kit_world):
    """A deliberate leak, made every way code can reach the compartment: each public function
    called as callers call it (`sealed.X`) and as a part holds it (`sealed.units.X`), a private
    helper of a part, and SQL naming a sealed table. Each one trips the wire and is collected;
    afterwards every name is the function it was."""
    from sqlalchemy import text

    from cellbench.sealed import walls

    before = {name: getattr(sealed, name) for name in public_functions()}
    with sealed_tripwire(db) as touched:
        for name in sorted(before):
            with pytest.raises(SealedTouched):
                getattr(sealed, name)()
        parts = [m for m in compartment_modules() if m.__name__ != SEALED]
        assert {m.__name__.rsplit(".", 1)[1] for m in parts} >= {"walls", "lists", "units", "doors", "reads"}
        held = [(m, name) for m in parts for name in vars(m) if name in before]
        for module, name in held:
            with pytest.raises(SealedTouched):
                getattr(module, name)()
        with pytest.raises(SealedTouched):
            walls._admit(actor_of(db, "sara"), frozenset())
        with Session(db.engine) as session, pytest.raises(Exception, match="sealed table"):
            session.execute(text("select count(*) from sealed_kit_arm"))
    assert len(touched) == len(before) + len(held) + 2
    assert {name: getattr(sealed, name) for name in before} == before


def test_the_doors_are_the_ones_this_test_knows():
    assert set(sealed.BLIND_SAFE) == set(DOORS)
    no_actor = {name for name, fn in public_functions().items() if "actor" not in inspect.signature(fn).parameters}
    assert no_actor == set(NO_ACTOR)


@pytest.mark.parametrize("username", list(BLINDED_USERS))
def test_every_function_of_sealed_refuses_a_blinded_actor_and_writes_nothing(db, kit_world, username):
    """Every public function, called by a blinded user with arguments it could act on, raises
    Forbidden and leaves the transaction as it found it: no audit event, no row, nothing pending.
    The doors admit their one blinded role and are checked in the next test."""
    actor = actor_of(db, username)
    assert actor.is_blinded
    checked, wrong = [], []
    for name, fn in public_functions().items():
        if name in NO_ACTOR:
            continue
        door = DOORS.get(name)
        if door and door[0] in actor.roles:
            continue
        with Session(db.engine) as session:
            arguments = Arguments(session, kit_world).of(fn, actor, username)
            before = _counts(session)
            try:
                result = fn(**arguments)
            except Forbidden:
                outcome = "Forbidden"
            except Exception as error:
                outcome = f"{type(error).__name__}: {error}"
            else:
                outcome = f"returned {result!r:.120}"
            pending = list(session.new) + list(session.dirty) + list(session.deleted)
            after = _counts(session)
            session.rollback()
        checked.append(name)
        if outcome != "Forbidden":
            wrong.append(f"sealed.{name} as {username}: {outcome}")
        if pending or after != before:
            changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
            wrong.append(f"sealed.{name} as {username} wrote {changed} {pending}")
    assert len(checked) >= 20
    assert not wrong, "\n".join(wrong)


def test_the_blind_safe_doors_admit_one_blinded_role_and_log_it(db, kit_world):
    """randomise and assign_kit return a number or a kit, never an arm; unblind_participant returns
    the one participant's arm (the emergency unblinding). Each call is an unblinded audit event."""
    from cellbench.models import Site

    from .trialworld import enrol, randomisation_list

    arms = randomisation_list(db, size=4)
    number = sorted(arms)[0]
    participant_id = enrol(db, number, "SCR-1")
    for name, (role, returns_arm) in DOORS.items():
        username = next(u for u, r in BLINDED_USERS.items() if r == role.value)
        actor = actor_of(db, username)
        with Session(db.engine) as session:
            arguments = Arguments(session, kit_world)
            arguments.values.update(randomisation_number=number, participant_id=participant_id,
                                    site_id=session.scalars(select(Site.id)).first())
            seq = session.scalar(select(func.max(AuditEvent.seq))) or 0
            result = public_functions()[name](**arguments.of(public_functions()[name], actor, username))
            events = [(e.action, e.visibility, e.user_id)
                      for e in session.scalars(select(AuditEvent).where(AuditEvent.seq > seq))]
            is_kit = hasattr(result, "number")
            result = getattr(result, "number", result)  # a kit: its number (random letters, which may spell ARM)
            session.rollback()
        # a kit assignment that finds none also tells supply, with the arm: unblinded events only
        assert events[:1] == [("sealed assignment", Visibility.unblinded.value, actor.user_id)], name
        assert all(action.startswith("notification") and visibility == Visibility.unblinded.value
                   for action, visibility, _ in events[1:]), (name, events)
        if returns_arm:
            assert result == arms[number]
        else:
            assert result not in ("active", "placebo") and (is_kit or "arm" not in repr(result).lower()), (name, result)


def test_every_read_by_an_unblinded_actor_is_an_unblinded_audit_event(db, kit_world):
    """Each reading function, called by the supply manager, writes exactly one event "sealed read",
    hidden from blinded roles, naming her."""
    actor = actor_of(db, "sara")
    reads = _reads()
    assert {"arms_of_kits", "contents_of_kits", "composition", "list_lines", "export_lists"} <= reads
    wrong = []
    for name in sorted(reads & set(public_functions())):
        fn = public_functions()[name]
        reader = OTHER_READERS.get(name, "sara")
        with Session(db.engine) as session:
            if reader != "sara":  # the statistician's export: after the sponsor's lock and unblinding only
                sara, study = users.by_username(session, "sara"), Arguments(session, kit_world).values["study"]
                study_data.lock(session, sara, study, PASSWORD)
                study_data.unblind(session, sara, study, PASSWORD, "analysis")
            seq = session.scalar(select(func.max(AuditEvent.seq))) or 0
            fn(**Arguments(session, kit_world).of(fn, actor_of(db, reader), reader))
            events = [(e.action, e.visibility, e.user_id)
                      for e in session.scalars(select(AuditEvent).where(AuditEvent.seq > seq))]
            session.rollback()
        if events != [("sealed read", Visibility.unblinded.value, actor_of(db, reader).user_id)]:
            wrong.append(f"sealed.{name}: {events}")
    assert not wrong, "\n".join(wrong)
    # and blinded readers of the trail never see one
    from cellbench import audit

    with db.write() as session:
        sealed.arms_of_kits(session, actor, [1], why="test")
    with db.read() as session:
        for username in BLINDED_USERS:
            seen = audit.trail(session, actor_of(db, username), audit.TrailFilter(action="sealed read"), limit=None)
            assert seen == []
