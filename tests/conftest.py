"""Fixtures: a database per test restored from worlds built once, one named user per role, and
signed-in HTTP clients.

The suite runs on SQLite by default. Set CELLBENCH_TEST_DATABASE_URL to a PostgreSQL server's
database (.ci/run creates a fresh one) to run the same tests there: each pytest-xdist worker then
makes its own databases on that server, named after that database, the worker and the world.

Worlds. Building people, approved specifications, a kit world, a trial or the demo costs from a
tenth of a second to several seconds; a test that needs one should pay for restoring it, not for
building it. So each world is built once per session (per xdist worker) as a chain of steps
("people", then "specs", then "kits"...), saved, and restored for each test that asks for it: a
file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL. The `db` fixture looks at the
fixtures a test uses (kit_world, trial_world, effective_specs, people, demo_world,
demo_trial_world) and restores the world that holds them all; those fixtures then hand out plain
values (ids, numbers, copies of the world's dataclass) or rows read again from the restored
database, never rows of the database the world was built in.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from cellbench import checkpoints, clock, users
from cellbench.app import create_app
from cellbench.audit import Actor
from cellbench.config import Settings, normalise_url
from cellbench.db import Database, migrate
from cellbench.models import Role, User, WebSession
from cellbench.specifications import versions as spec_versions

PG_URL = os.environ.get("CELLBENCH_TEST_DATABASE_URL", "")
# Cheap argon2 parameters: the tests check the rules around hashing, not argon2's cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
# "gw0", "gw1"... under pytest-xdist; one name for a plain run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

# One named person per role, as the tests speak of them.
PEOPLE = {
    "olivia": ("Olivia Operator", [Role.operator]),
    "oscar": ("Oscar Operator", [Role.operator]),
    "victor": ("Victor Verifier", [Role.verifier]),
    "quinn": ("Quinn QC", [Role.qc_analyst]),
    "anna": ("Anna QA", [Role.qa]),
    "peter": ("Peter QP", [Role.qp]),
    "sara": ("Sara Supply", [Role.supply_manager]),
    "frida": ("Frida Pharmacist", [Role.pharmacist]),
    "jonas": ("Jonas Preparer", [Role.preparer]),
    "ida": ("Ida Investigator", [Role.investigator]),
    "mette": ("Mette Monitor", [Role.monitor]),
    "adam": ("Adam Admin", [Role.admin]),
    "stella": ("Stella Statistician", [Role.statistician]),
}


# Site roles work for the sites and studies they are linked to (users.scope): the worlds' people
# work at the worlds' site, in every study loaded.
HOME_SITE = "RH-ENT"
SITE_PEOPLE = [username for username, (_, roles) in PEOPLE.items() if users.is_scoped(roles)]


def link_site_people(db: Database, site: str = HOME_SITE) -> None:
    """Link the site people to `site` and to every study loaded (those not linked yet)."""
    from cellbench import studies

    with db.write() as s:
        codes = [study.code for study in studies.all_studies(s)]
        for username in SITE_PEOPLE:
            user = users.by_username(s, username)
            have_sites, have_studies = users.links_of(s, user.id)
            if site not in have_sites:
                users.link(s, users.cli_actor(), user, site=site)
            for code in set(codes) - set(have_studies):
                users.link(s, users.cli_actor(), user, study=code)


def actor_of(db: Database, username: str) -> Actor:
    with db.read() as session:
        return users.actor(session, users.by_username(session, username))


# --- the steps a world is built from ------------------------------------------------------------------


def _make_people(db: Database) -> None:
    """Everyone in PEOPLE, created through the service layer by the command line."""
    with db.write() as session:
        for username, (name, roles) in PEOPLE.items():
            users.create_user(session, users.cli_actor(), username, name, PASSWORD, [r.value for r in roles])


def _approve_specs(db: Database) -> list[int]:
    """QA loads the shipped specification files and approves each version."""
    with db.write() as s:
        ids = [r.id for r in spec_versions.sync_from_files(s, actor_of(db, "anna"))]
    for spec_id in ids:
        with db.write() as s:
            spec_versions.approve(s, users.by_username(s, "anna"), PASSWORD, spec_id)
    return ids


def _kits(db: Database) -> Any:
    from .kitworld import build

    return build(db)


def _trial(db: Database) -> Any:
    from .trialworld import build_trial

    return build_trial(db)


def _demo(release: bool) -> Callable[[Database], None]:
    def seed(db: Database) -> None:
        from cellbench import demo

        with db.write() as s:
            demo.seed(s, users.cli_actor(), release=release)
    return seed


# step -> (what it builds, the fixture names that ask for it). Steps run in this order; a test's
# world is the steps its fixtures ask for (people before specs before kits, as they depend).
STEPS: dict[str, tuple[Callable[[Database], Any], set[str]]] = {
    "people": (_make_people, {"people", "effective_specs", "kit_world", "trial_world"}),
    "specs": (_approve_specs, {"effective_specs", "kit_world", "trial_world"}),
    "kits": (_kits, {"kit_world"}),
    "trial": (_trial, {"trial_world"}),  # holds a kit world of its own (trial_world.kits)
    "demo": (_demo(release=False), {"demo_world"}),
    "demotrial": (_demo(release=True), {"demo_trial_world"}),
}


def chain_for(fixture_names: set[str] | list[str]) -> tuple[str, ...]:
    names = set(fixture_names)
    chain = [step for step, (_, wanted_by) in STEPS.items() if names & wanted_by]
    if "trial" in chain and "kits" in chain:
        chain.remove("kits")  # the trial's own kit world is the kit_world
    return tuple(chain)


# --- where worlds are kept: files on SQLite, template databases on PostgreSQL ------------------------


@dataclass
class Worlds:
    """The worlds of one session (one xdist worker): built on first use, restored per test."""

    root: Path
    pg_url: str = ""
    saved: dict[tuple[str, ...], Any] = field(default_factory=dict)  # chain -> where it is kept
    values: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)  # chain -> step -> value
    created: list[str] = field(default_factory=list)  # PostgreSQL databases made here
    _tests: int = 0
    _dropper: threading.Thread | None = None
    _to_drop: queue.Queue = field(default_factory=queue.Queue)

    # PostgreSQL: names start with the given database's name (the CI database's), then the worker.
    def _pg_name(self, tag: str) -> str:
        prefix = f"{make_url(self.pg_url).database}_{WORKER}_"
        name = prefix + re.sub(r"[^a-z0-9_]", "_", tag.lower())
        if len(name) > 63:
            name = prefix + hashlib.sha1(tag.encode()).hexdigest()[:12]
        return name

    def _pg_url_of(self, name: str) -> str:
        return make_url(self.pg_url).set(database=name).render_as_string(hide_password=False)

    def _admin(self, *statements: str) -> None:
        engine = create_engine(self._pg_url_of("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()

    def _pg_copy(self, name: str, template: str | None) -> None:
        """A fresh database `name`, empty or a copy of `template` (which nobody is connected to).
        WAL_LOG (PostgreSQL 15's default) copies a small database in a tenth of a second; FILE_COPY
        waits for a checkpoint (seconds on a busy disk)."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        if name not in self.created:
            self.created.append(name)

    def _drop_later(self, name: str) -> None:
        """DROP DATABASE waits for a checkpoint (about two seconds on this disk): a thread drops
        finished tests' databases while the next tests run on databases of other names, all the
        ones queued at once, so that one checkpoint serves them all."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_queued, name="drop-test-databases", daemon=True)
            self._dropper.start()
        self._to_drop.put(name)

    def _drop_queued(self) -> None:
        while True:
            names = [self._to_drop.get()]
            while not self._to_drop.empty():
                names.append(self._to_drop.get_nowait())
            for start in range(0, len(names), 16):
                batch = [n for n in names[start:start + 16] if n]
                drops = [threading.Thread(target=self._drop, args=(n,)) for n in batch]
                for drop in drops:
                    drop.start()
                for drop in drops:
                    drop.join()
            if None in names:
                return

    def _drop(self, name: str) -> None:
        with contextlib.suppress(Exception):  # else left for drop_all at the end of the session
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.created.remove(name)

    def scratch(self, tag: str) -> Database:
        """A private migrated database, for a module that builds a world of its own."""
        base = self.saved[()] if () in self.saved else self._build(())
        if self.pg_url:
            name = self._pg_name(f"scratch_{tag}")
            self._pg_copy(name, base)
            return Database(self._pg_url_of(name))
        path = self.root / f"scratch-{tag}.db"
        shutil.copyfile(base, path)
        return Database(f"sqlite:///{path}")

    def _build(self, chain: tuple[str, ...]) -> Any:
        """Build (and keep) `chain` from the longest prefix already kept."""
        if chain in self.saved:
            return self.saved[chain]
        if not chain:
            if self.pg_url:
                name = self._pg_name("base")
                self._pg_copy(name, None)
                database = Database(self._pg_url_of(name))
                migrate(database)
                database.dispose()
                self.saved[()] = name
            else:
                path = self.root / "base.db"
                database = Database(f"sqlite:///{path}")
                migrate(database)
                _settle(database)
                self.saved[()] = path
            self.values[()] = {}
            return self.saved[()]
        before = chain[:-1]
        self._build(before)
        database = self._restored(before, "build-" + "+".join(chain))
        values = dict(self.values[before])
        # Worlds are built on the real clock, whatever clock the test that first asks holds.
        with clock.held(clock.wall_now):
            values[chain[-1]] = STEPS[chain[-1]][0](database)
        if self.pg_url:
            database.dispose()
            self.saved[chain] = self._pg_name("build-" + "+".join(chain))
        else:
            _settle(database)
            self.saved[chain] = Path(database.sqlite_path() or "")
        self.values[chain] = values
        return self.saved[chain]

    def _restored(self, chain: tuple[str, ...], tag: str) -> Database:
        kept = self.saved[chain]
        if self.pg_url:
            name = self._pg_name(tag)
            self._pg_copy(name, kept)
            return Database(self._pg_url_of(name))
        path = self.root / f"{tag}.db"
        shutil.copyfile(kept, path)
        return Database(f"sqlite:///{path}")

    def restore(self, chain: tuple[str, ...], into: Path) -> Database:
        """A database holding the world `chain`, for one test."""
        self._build(chain)
        if self.pg_url:
            self._tests += 1
            name = self._pg_name(f"test{self._tests}")
            self._pg_copy(name, self.saved[chain])
            database = Database(self._pg_url_of(name))
        else:
            shutil.copyfile(self.saved[chain], into)
            database = Database(f"sqlite:///{into}")
        database.world = chain  # type: ignore[attr-defined]  # which steps it holds, for the fixtures
        return database

    def value(self, chain: tuple[str, ...], step: str) -> Any:
        """What a step returned when the world was built (a deep copy: tests may change it)."""
        return copy.deepcopy(self.values[chain][step])

    def release(self, database: Database) -> None:
        """The test is over: its database goes (on PostgreSQL, dropped in the background)."""
        database.dispose()
        if self.pg_url:
            self._drop_later(make_url(database.url).database or "")

    def drop_all(self) -> None:
        if self._dropper is not None:
            self._to_drop.put(None)
            self._dropper.join()
            self._dropper = None
        if self.pg_url and self.created:  # the worlds, and any test database left behind
            for name in list(self.created):
                self._to_drop.put(name)
            self._to_drop.put(None)
            self._drop_queued()


def _settle(database: Database) -> None:
    """Write SQLite's WAL into the main file and close, so that the file alone is the database."""
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()


@pytest.fixture(scope="session", autouse=True)
def session_checkpoint_key(tmp_path_factory) -> checkpoints.Key:
    """One checkpoint key for the whole session, installed before any world is built: every head
    the suite writes is signed, as the server's are."""
    key = checkpoints.create(tmp_path_factory.mktemp("checkpoint-key") / checkpoints.KEY_FILE_NAME)
    checkpoints.install(key)
    return key


@pytest.fixture(autouse=True)
def checkpoint_key(session_checkpoint_key, tmp_path) -> checkpoints.Key:
    """The session's key, with its log (checkpoints.jsonl beside the key) in this test's folder: a
    key's log belongs to one database, and each test has its own. Installed again for each test, so
    a command that installed another key (`serve --demo`) does not outlive its test."""
    key = dataclasses.replace(session_checkpoint_key, path=tmp_path / checkpoints.KEY_FILE_NAME)
    checkpoints.install(key)
    return key


@pytest.fixture(scope="session")
def worlds(tmp_path_factory) -> Iterator[Worlds]:
    users.configure(12, 5, FAST_HASHER)
    kept = Worlds(tmp_path_factory.mktemp("worlds"), normalise_url(PG_URL) if PG_URL else "")
    yield kept
    kept.drop_all()


@pytest.fixture(scope="session")
def _template(worlds) -> str:
    """A migrated database of one's own: its file (to copy) on SQLite, its URL on PostgreSQL.
    Kept for modules that build a world of their own; prefer `worlds.scratch(tag)`."""
    database = worlds.scratch("template")
    database.dispose()
    return database.url if not database.is_sqlite else (database.sqlite_path() or "")


def _empty_postgres(db: Database) -> None:
    """Empty every table of a PostgreSQL database of one's own (see `_template`)."""
    with db.engine.connect() as conn:
        tables = [t for t in db.engine.dialect.get_table_names(conn) if t != "alembic_version"]
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
        conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})


# --- the fixtures tests use ---------------------------------------------------------------------------


@pytest.fixture
def db(worlds, request, tmp_path) -> Iterator[Database]:
    """A database for this test holding the world its fixtures ask for (a migrated, empty one if none)."""
    users.configure(12, 5, FAST_HASHER)
    database = worlds.restore(chain_for(request.fixturenames), tmp_path / "cellbench.db")
    yield database
    worlds.release(database)


def _step_value(db: Database, worlds: Worlds, step: str) -> Any:
    """A step's value for this test's world; built in place if the test asked for it too late
    (request.getfixturevalue) for `db` to have restored it."""
    chain = getattr(db, "world", ())
    if step not in chain:
        value = STEPS[step][0](db)
        db.world = (*chain, step)  # type: ignore[attr-defined]
        return value
    return worlds.value(chain, step)


@pytest.fixture
def people(db, worlds) -> dict[str, User]:
    """Everyone in PEOPLE (created through the service layer by the command line), read from this
    test's database."""
    if "people" not in getattr(db, "world", ()):
        _step_value(db, worlds, "people")
    with db.read() as s:
        found = {u.username: u for u in s.scalars(select(User).where(User.username.in_(PEOPLE)))}  # type: ignore[attr-defined]
    return {username: found[username] for username in PEOPLE}


@pytest.fixture
def effective_specs(db, people, worlds) -> list[int]:
    """QA loads the shipped specification files and approves each version: their ids."""
    return _step_value(db, worlds, "specs")


@pytest.fixture
def kit_world(db, people, effective_specs, worlds):
    """Released ASC and placebo lots packaged into 8 released kits of NCT07290946 (tests/kitworld.py)."""
    if "trial" in getattr(db, "world", ()):
        return worlds.value(db.world, "trial").kits
    return _step_value(db, worlds, "kits")


@pytest.fixture
def trial_world(db, people, effective_specs, worlds):
    """Two blinded lots of 8 released kits each (4 per arm) and a sealed randomisation list of 20
    (tests/trialworld.py); its kit world is `kit_world`."""
    return _step_value(db, worlds, "trial")


@pytest.fixture
def demo_world(db, worlds) -> Database:
    """The demo's users and batch records (`demo.seed(..., release=False)`): complete lots
    ASC-<year>-0001 and PLB-<year>-0001 in QC pending, ASC-<year>-0002 in process. With `people`
    too, the people come first, as when a test seeded the demo after asking for them."""
    _step_value(db, worlds, "demo")
    return db


@pytest.fixture
def demo_trial_world(db, worlds) -> Database:
    """The whole demo (`cellbench demo`): batch records, release, kits and the trial story."""
    _step_value(db, worlds, "demotrial")
    return db


@pytest.fixture
def settings(db) -> Settings:
    return Settings(database_url=db.url, secret_key=SECRET, demo=False)


@pytest.fixture
def app(settings, db):
    return create_app(settings, password_hasher=FAST_HASHER, database=db)


class Client(TestClient):
    """A browser-like client: remembers its cookies and adds the CSRF token to form posts, and to
    its API changes the X-CSRF-Token header, as a cellbench page's script does (api_csrf False:
    a client that does not, like another site's page)."""

    api_csrf = True

    def request(self, method, url, *args, headers=None, **kwargs):
        headers = dict(headers or {})
        if (self.api_csrf and method.upper() not in ("GET", "HEAD", "OPTIONS") and str(url).startswith("/api/")
                and self.cookies.get("cellbench_session") and not any(k.lower() in ("authorization", "x-csrf-token")
                                                                      for k in headers)):
            with contextlib.suppress(AttributeError):  # an ended session has no token: the gate answers 401
                headers["X-CSRF-Token"] = self.csrf()
        return super().request(method, url, *args, headers=headers, **kwargs)

    def csrf(self) -> str:
        with self.app.state.db.read() as session:
            ws = session.get(WebSession, users._digest(self.cookies.get("cellbench_session")))
            return ws.csrf_token

    def submit(self, url: str, data: dict | None = None, **kwargs):
        return self.post(url, data={**(data or {}), "csrf_token": self.csrf()}, follow_redirects=False, **kwargs)


def sign_in(app, username: str, password: str = PASSWORD) -> Client:
    client = Client(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def as_(app, people):
    """as_("anna") -> an HTTP client signed in as Anna (QA)."""
    clients: dict[str, Client] = {}

    def get(username: str) -> Client:
        if username not in clients:
            clients[username] = sign_in(app, username)
        return clients[username]

    return get


@pytest.fixture
def anonymous(app) -> Client:
    return Client(app)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    """Debian's Chromium, never a downloaded browser."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """The app served by uvicorn in a thread of this process, so that a patched clock reaches it."""
    import socket
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


ROOT = Path(__file__).resolve().parent.parent
