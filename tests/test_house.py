"""The rules of the house (issue 11), read from the source tree. Each failure names the file and line.

1. Modules stay small, split into the parts of a package along real seams (reviewed by people).
2. No import cycle among cellbench modules, counting imports inside functions and a package's
   __init__ importing its parts: test_no_import_cycle_among_cellbench_modules.
3. Domain code never imports cellbench.web, cellbench.api or cellbench.demo, and the API never
   imports the web pages: test_domain_code_never_imports_web_api_or_demo,
   test_the_api_never_imports_the_web_pages.
4. Every state machine is one statemachine.Machine, and only the module that owns a subject's
   machine writes its state: test_every_state_machine_is_a_statemachine_machine,
   test_only_the_owner_of_a_machine_writes_its_subjects_state.
5. Time comes from cellbench.clock, settings from the app and the command line:
   test_only_clock_reads_the_wall_clock_or_names_a_zone, test_only_the_entry_points_build_settings.

The import graph is tests/blinding_support.py's, the one the sealed compartment's test reads.
"""
from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

from cellbench.statemachine import Machine

from . import blinding_support
from .blinding_support import format_cycle, import_cycles, import_graph, imports_only, module_files, where

# --- the house's tables: change them here, and only here -------------------------------------------------

# Every state machine: (what people call its subject, the module or package that owns it, a word
# its Machine's `subject` contains). The owner is the one place the subject's state is written.
MACHINES = [
    ("lots", "cellbench.lots", "lot"),
    ("kits", "cellbench.kits", "kit"),
    ("shipments", "cellbench.custody", "shipment"),
    ("visits", "cellbench.pharmacy", "visit"),
    ("deviations", "cellbench.deviations", "deviation"),
    ("sealed lists", "cellbench.sealed", "list"),
    ("kit quarantines", "cellbench.supply", "quarantine"),
    ("destructions", "cellbench.accountability", "destruction"),
    ("step entries", "cellbench.steps", "step entry"),
    ("study databases", "cellbench.study_data", "study database"),
    ("vials", "cellbench.lots", "vial"),
    ("notifications", "cellbench.notifications", "notification"),
    ("resupply proposals", "cellbench.supply", "resupply proposal"),
]

# Receivers of `X.state = ...` that name a machine's subject, by the words in their names, and the
# model behind each (for `update(Model).values(state=...)`).
SUBJECT_WORDS = {
    "lots": (r"lot$", "Lot"), "kits": (r"kit$", "Kit"), "shipments": (r"shipment$", "Shipment"),
    "visits": (r"visit$", "Visit"), "deviations": (r"deviation$", "Deviation"),
    "sealed lists": (r"list$", "SealedList"), "kit quarantines": (r"quarantine$", "KitQuarantine"),
    "destructions": (r"destruction$", "Destruction"),
    "step entries": (r"entry$", "StepEntry"),
    "study databases": (r"study_lock$", "StudyLock"),
    "vials": (r"vial$", "Vial"),
    "notifications": (r"notification$|note$", "Notification"),
    "resupply proposals": (r"proposal$", "ResupplyProposal"),
}

# `X.state = ...` that is not one of the machines' subjects: (module, receiver as written) -> what it is.
OTHER_STATES: dict[tuple[str, str], str] = {}

# Modules that are not domain code: the web pages, the API, the demo, and the two entry points.
NOT_DOMAIN = ("cellbench.web", "cellbench.api", "cellbench.demo", "cellbench.app", "cellbench.cli")

# The only modules that build Settings(...) (from the environment), and the only one that reads
# the wall clock or names a zone.
SETTINGS_BUILDERS = ("cellbench.config", "cellbench.app", "cellbench.cli", "cellbench.migrations")
CLOCK = "cellbench.clock"


def _within(module: str, owners: tuple[str, ...] | str) -> bool:
    owners = (owners,) if isinstance(owners, str) else owners
    return any(module == owner or module.startswith(owner + ".") for owner in owners)


@cache
def _trees() -> dict[str, tuple[Path, ast.Module]]:
    return {module: (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
            for module, path in module_files().items()}


@cache
def _imports():
    return imports_only(import_graph())


def _edges(graph, source_filter, target_filter) -> list[str]:
    found = {}
    for source, edges in sorted(graph.edges.items()):
        if not source_filter(source):
            continue
        for edge in edges:
            # one line per import statement, naming the deepest module it imports
            if target_filter(edge.target) and len(edge.target) > len(found.get((source, edge.line), ("",))[0]):
                found[(source, edge.line)] = (edge.target, f"{where(source, edge.line)}: {source} imports "
                                                           f"{edge.target} ({edge.how})")
    return [text for _, text in found.values()]


# --- 2. no import cycle -----------------------------------------------------------------------------------


def test_no_import_cycle_among_cellbench_modules():
    """Imports at module level and inside functions, importlib with a literal name, and a package's
    __init__ importing its parts (so a part importing its own package is a cycle)."""
    cycles = import_cycles(_imports())
    assert not cycles, "Import cycles (each listed from one of its modules round to it):\n\n" + "\n\n".join(
        format_cycle(chain) for chain in cycles)


def test_the_cycle_check_sees_a_cycle_through_a_function_level_import_and_through_a_package(tmp_path, monkeypatch):
    """The check can fail: two made-up modules that import each other (one of them inside a
    function), and a made-up package whose part imports the package."""
    fake = dict(module_files())
    (tmp_path / "ping.py").write_text("from . import pong\n", encoding="utf-8")
    (tmp_path / "pong.py").write_text("def later():\n    from . import ping\n    return ping\n", encoding="utf-8")
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "__init__.py").write_text("from .part import x\n", encoding="utf-8")
    (tmp_path / "pack" / "part.py").write_text("from .. import pack\nx = 1\n", encoding="utf-8")
    (tmp_path / "pack" / "fine.py").write_text("from . import part\nfrom .part import x\n", encoding="utf-8")
    fake.update({"cellbench.ping": tmp_path / "ping.py", "cellbench.pong": tmp_path / "pong.py",
                 "cellbench.pack": tmp_path / "pack" / "__init__.py",
                 "cellbench.pack.part": tmp_path / "pack" / "part.py",
                 "cellbench.pack.fine": tmp_path / "pack" / "fine.py"})
    monkeypatch.setattr(blinding_support, "module_files", lambda: fake)
    cycles = [{source for source, _ in chain} for chain in import_cycles(imports_only(blinding_support.import_graph()))]
    assert {"cellbench.ping", "cellbench.pong"} in cycles
    assert {"cellbench.pack", "cellbench.pack.part"} in cycles
    assert not any("cellbench.pack.fine" in cycle for cycle in cycles), "a sibling import is no cycle"


# --- 3. the layers ----------------------------------------------------------------------------------------


def test_domain_code_never_imports_web_api_or_demo():
    found = _edges(_imports(), lambda m: not _within(m, NOT_DOMAIN),
                   lambda t: _within(t, ("cellbench.web", "cellbench.api", "cellbench.demo")))
    assert not found, "Domain code importing the web pages, the API or the demo:\n" + "\n".join(found)


def test_the_api_never_imports_the_web_pages():
    found = _edges(_imports(), lambda m: _within(m, "cellbench.api"), lambda t: _within(t, "cellbench.web"))
    assert not found, ("The API importing the web pages (move what both read into the domain or deps):\n"
                       + "\n".join(found))


# --- 4. one shape of state machine --------------------------------------------------------------------------


@cache
def _machines() -> dict[int, tuple[Machine, list[str]]]:
    """Every Machine any cellbench module exposes: id -> (machine, where it is named)."""
    found: dict[int, tuple[Machine, list[str]]] = {}
    for module in module_files():
        if _within(module, ("cellbench.migrations",)):
            continue
        loaded = importlib.import_module(module)
        for name, value in vars(loaded).items():
            if isinstance(value, Machine):
                found.setdefault(id(value), (value, []))[1].append(f"{module}.{name}")
    return found


def _listing() -> str:
    return "\n".join(f"  {machine.subject!r}: {', '.join(names)}"
                     for machine, names in _machines().values()) or "  none"


@pytest.mark.parametrize(("subject", "owner", "word"), MACHINES, ids=[row[0].replace(" ", "_") for row in MACHINES])
def test_every_state_machine_is_a_statemachine_machine(subject, owner, word):
    """The owner (or one of its parts) exposes a statemachine.Machine of that subject."""
    mine = [names for machine, names in _machines().values()
            if word in machine.subject.lower() and any(_within(n.rsplit(".", 1)[0], owner) for n in names)]
    assert mine, (f"No Machine for {subject} in {owner} (a Machine whose subject says {word!r}). "
                  f"Machines found:\n{_listing()}")


def test_every_machine_is_in_the_houses_table():
    """A new machine is added to MACHINES above, so that its owner is the one writer of its state."""
    strays = [names for machine, names in _machines().values()
              if not any(word in machine.subject.lower() and any(_within(n.rsplit(".", 1)[0], owner) for n in names)
                         for _, owner, word in MACHINES)]
    assert not strays, f"Machines not in test_house.MACHINES: {strays}\nMachines found:\n{_listing()}"


def _state_writes() -> list[tuple[str, int, str, str | None]]:
    """(module, line, as written, the model when known) for every write of a `state`: an assignment
    to `X.state`, setattr(X, "state", ...), or update(Model)...values(state=...)."""
    found = []
    for module, (_path, tree) in _trees().items():
        if _within(module, "cellbench.migrations"):
            continue
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                found += [(module, node.lineno, ast.unparse(leaf.value), None)
                          for leaf in (target.elts if isinstance(target, ast.Tuple) else [target])
                          if isinstance(leaf, ast.Attribute) and leaf.attr == "state"]
            if isinstance(node, ast.Call):
                func = node.func
                if (isinstance(func, ast.Name) and func.id == "setattr" and len(node.args) > 1
                        and isinstance(node.args[1], ast.Constant) and node.args[1].value == "state"):
                    found.append((module, node.lineno, ast.unparse(node.args[0]), None))
                if (isinstance(func, ast.Attribute) and func.attr == "values"
                        and any(k.arg == "state" for k in node.keywords)):
                    inner = func.value
                    while isinstance(inner, (ast.Call, ast.Attribute)):
                        if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                                and inner.func.id == "update" and inner.args and isinstance(inner.args[0], ast.Name)):
                            found.append((module, node.lineno, f"update({inner.args[0].id})", inner.args[0].id))
                            break
                        inner = inner.func if isinstance(inner, ast.Call) else inner.value
    return found


def test_only_the_owner_of_a_machine_writes_its_subjects_state():
    """A receiver named like a subject (`lot.state`, `ctx.visit.state`) or an update(Model) of a
    subject's model is written only in that subject's owner; any other `X.state =` only in some
    machine's owner (or is listed in OTHER_STATES, saying what it is)."""
    owners = {subject: owner for subject, owner, _ in MACHINES}
    wrong = []
    for module, line, receiver, model in _state_writes():
        if (module, receiver) in OTHER_STATES:
            continue
        last = receiver.rsplit(".", 1)[-1].lower()
        subject = next((s for s, (pattern, name) in SUBJECT_WORDS.items()
                        if (model == name) or (model is None and re.search(pattern, last))), None)
        if subject and not _within(module, owners[subject]):
            wrong.append(f"{where(module, line)}: {receiver}.state written outside {owners[subject]}, which owns "
                         f"the {subject}' machine")
        elif subject is None and not any(_within(module, owner) for owner in owners.values()):
            wrong.append(f"{where(module, line)}: {receiver}.state written outside every machine's owner")
    assert not wrong, "State written outside its machine (move it through the owner's Machine):\n" + "\n".join(wrong)


# --- 5. one clock, settings from the entry points --------------------------------------------------------


def _calls(predicate) -> list[str]:
    return [f"{where(module, node.lineno)}: {what}" for module, (_path, tree) in _trees().items()
            for node in ast.walk(tree) if isinstance(node, ast.Call) and (what := predicate(module, node))]


def test_only_the_entry_points_build_settings():
    """Settings come from the environment once, at the app's or the command line's start."""
    def builds(module: str, call: ast.Call) -> str | None:
        func = call.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        return ast.unparse(call)[:80] if name == "Settings" and not _within(module, SETTINGS_BUILDERS) else None

    found = _calls(builds)
    assert not found, "Settings(...) built outside config, app, cli and migrations:\n" + "\n".join(found)


def test_only_clock_reads_the_wall_clock_or_names_a_zone():
    """datetime.now(), datetime.utcnow(), date.today() and ZoneInfo("Some/Zone") only in clock.py."""
    def reads(module: str, call: ast.Call) -> str | None:
        if module == CLOCK:
            return None
        func = call.func
        if (isinstance(func, ast.Attribute) and func.attr in ("now", "utcnow", "today")
                and ast.unparse(func.value).rsplit(".", 1)[-1] in ("datetime", "date")):
            return ast.unparse(call)[:80]
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name == "ZoneInfo" and call.args and isinstance(call.args[0], ast.Constant):
            return ast.unparse(call)[:80]
        return None

    found = _calls(reads)
    assert not found, "The wall clock or a zone named outside cellbench/clock.py (use clock.utcnow, clock.today, " \
                      "clock.zone):\n" + "\n".join(found)


# --- the wheel ----------------------------------------------------------------------------------------------


@pytest.mark.wheel
def test_the_wheel_ships_templates_and_specs_and_serves_its_pages_outside_the_checkout(tmp_path):
    """Build the wheel (pip, hatchling), install it into a fresh virtual environment outside the
    checkout, `cellbench init` a new SQLite file and `cellbench serve` it: /login and the stylesheet
    answer 200. The environment borrows the running one's dependencies (offline, seconds) unless
    CELLBENCH_WHEEL_WITH_DEPENDENCIES=1 (.ci/run), which installs them from the package index."""
    import importlib.util
    import os
    import socket
    import subprocess
    import sys
    import sysconfig
    import time
    import urllib.request
    import zipfile

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "CELLBENCH_", "VIRTUAL_ENV"))}
    # hatchling installed ([test] extra): no build environment to fetch
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(tmp_path / "dist"),
                    str(root)], check=True, cwd=tmp_path, env=env, timeout=300)
    [wheel] = (tmp_path / "dist").glob("cellbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("cellbench/_templates/base.html", "cellbench/_templates/static/cellbench.css",
                    "cellbench/_specs/studies/NCT07290946.toml"):
        assert shipped in names, f"{shipped} is not in {wheel.name}"

    venv = tmp_path / "venv"
    full = os.environ.get("CELLBENCH_WHEEL_WITH_DEPENDENCIES") == "1"
    subprocess.run([sys.executable, "-m", "venv", *([] if full else ["--without-pip"]), str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    if full:
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, env=env, timeout=600)
    else:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                       check=True, env=env, timeout=300)
        purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      check=True, capture_output=True, text=True).stdout.strip())
        # a plain path line: the running environment's .pth files (an editable install) are not read
        (purelib / "borrowed.pth").write_text("\n".join(dict.fromkeys(
            [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n", encoding="utf-8")
    where_from = subprocess.run([str(python), "-c", "import cellbench; print(cellbench.__file__)"], check=True,
                                capture_output=True, text=True, cwd=tmp_path, env=env).stdout.strip()
    assert where_from.startswith(str(venv)), where_from

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.update(CELLBENCH_DATABASE_URL=f"sqlite:///{tmp_path / 'wheel.db'}", CELLBENCH_SECRET_KEY="w" * 40,
               PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    subprocess.run([str(venv / "bin" / "cellbench"), "init"], check=True, cwd=tmp_path, env=env, timeout=120)
    subprocess.run([str(venv / "bin" / "cellbench"), "keys", "init"], check=True, cwd=tmp_path, env=env, timeout=120)
    server = subprocess.Popen([str(venv / "bin" / "cellbench"), "serve", "--port", str(port), "--no-access-log"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        answers = {}
        deadline = time.monotonic() + 60
        for path in ("/login", "/static/cellbench.css"):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                        answers[path] = (response.status, response.headers.get("content-type", ""), response.read())
                    break
                except OSError:
                    assert server.poll() is None, server.stdout.read().decode(errors="replace")
                    assert time.monotonic() < deadline, f"no answer from {path}"
                    time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert answers["/login"][0] == 200 and b"csrf_token" in answers["/login"][2]
    assert answers["/static/cellbench.css"][0] == 200 and answers["/static/cellbench.css"][1].startswith("text/css")
