"""Fixtures: a fresh database per test, one named user per role, and signed-in HTTP clients.

The suite runs on SQLite by default. Set CELLBENCH_TEST_DATABASE_URL to a PostgreSQL database
(.ci/run creates a fresh one) to run the same tests there.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import text

from cellbench import users
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
}


@pytest.fixture(scope="session")
def _template(tmp_path_factory) -> str:
    """A migrated database made once: a file copied per test on SQLite, the PG database itself."""
    users.configure(12, 5, FAST_HASHER)
    if PG_URL:
        db = Database(normalise_url(PG_URL))
        migrate(db)
        db.dispose()
        return normalise_url(PG_URL)
    path = tmp_path_factory.mktemp("template") / "cellbench.db"
    db = Database(f"sqlite:///{path}")
    migrate(db)
    db.dispose()
    return str(path)


def _empty_postgres(db: Database) -> None:
    tables = [t for t in db.engine.dialect.get_table_names(db.engine.connect()) if t != "alembic_version"]
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
        conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})


@pytest.fixture
def db(_template, tmp_path) -> Iterator[Database]:
    users.configure(12, 5, FAST_HASHER)
    if PG_URL:
        database = Database(_template)
        _empty_postgres(database)
    else:
        path = tmp_path / "cellbench.db"
        shutil.copyfile(_template, path)
        database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture
def people(db) -> dict[str, User]:
    """Everyone in PEOPLE, created through the service layer by the command line."""
    created = {}
    with db.write() as session:
        for username, (name, roles) in PEOPLE.items():
            created[username] = users.create_user(session, users.cli_actor(), username, name, PASSWORD,
                                                  [r.value for r in roles])
    return created


def actor_of(db: Database, username: str) -> Actor:
    with db.read() as session:
        return users.actor(session, users.by_username(session, username))


@pytest.fixture
def settings(db) -> Settings:
    return Settings(database_url=db.url, secret_key=SECRET, demo=False)


@pytest.fixture
def app(settings, db):
    return create_app(settings, password_hasher=FAST_HASHER, database=db)


class Client(TestClient):
    """A browser-like client: remembers its cookies and adds the CSRF token to form posts."""

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


@pytest.fixture
def effective_specs(db, people):
    """QA loads the shipped specification files and approves each version."""
    with db.write() as s:
        rows = spec_versions.sync_from_files(s, actor_of(db, "anna"))
        ids = [r.id for r in rows]
    for spec_id in ids:
        with db.write() as s:
            spec_versions.approve(s, users.by_username(s, "anna"), PASSWORD, spec_id)
    return ids



def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kit_world(db, people, effective_specs):
    """Released ASC and placebo lots packaged into 8 released kits of NCT07290946 (tests/kitworld.py)."""
    from .kitworld import build

    return build(db)
