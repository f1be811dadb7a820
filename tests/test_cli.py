"""The command line: init, demo, users, verify, backup, and serve's refusal of the demo key."""
from __future__ import annotations

import shutil
import sqlite3

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cellbench import cli, demo_marker, users
from cellbench.config import Settings
from cellbench.db import Database
from cellbench.demo import DEMO_PASSWORD, DEMO_USERS
from cellbench.demo.sites import SECOND_SITE_USERS

from .conftest import FAST_HASHER, PG_URL

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A brand-new SQLite database file for the command line (the CLI makes its own schema)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", url)
    monkeypatch.setenv("CELLBENCH_DATA_DIR", str(tmp_path))  # the demo's mail files go under it
    real = users.configure
    monkeypatch.setattr(users, "configure", lambda length, failures, hasher=None, **signin:
                        real(length, failures, FAST_HASHER, **signin))
    return tmp_path


def run(*args, input=None):
    return runner.invoke(cli.app, list(args), input=input)


def test_commands_refuse_an_uninitialised_database(env):
    result = run("users", "list")
    assert result.exit_code == 1 and "run `cellbench init` first" in result.output


def test_init_demo_users_verify_and_backup(env):
    assert run("init").exit_code == 0
    demo = run("demo")
    assert demo.exit_code == 0 and DEMO_PASSWORD in demo.output
    assert all(username in demo.output for username, _, _ in DEMO_USERS + SECOND_SITE_USERS)
    mail = sorted((env / "mail").glob("*.eml"))
    assert mail, "the demo's notifications are delivered as files under the data folder"
    assert any("Subject: Emergency unblinding" in m.read_text() for m in mail)
    assert run("demo").exit_code == 0  # idempotent: adds nothing twice

    created = run("users", "create", "carl", "--name", "Carl Checker", "--role", "verifier",
                  input="a long password!\na long password!\n")
    assert created.exit_code == 0, created.output
    mixed = run("users", "create", "mix", "--name", "Mix", "--role", "qa", "--role", "monitor",
                input="a long password!\na long password!\n")
    assert mixed.exit_code == 1 and "blinded role" in mixed.output and "(roles)" in mixed.output
    no_reason = run("users", "deactivate", "carl", "--reason", " ")
    assert no_reason.exit_code == 1 and "reason is required" in no_reason.output
    assert run("users", "deactivate", "carl", "--reason", "left").exit_code == 0
    listing = run("users", "list").output
    assert "carl" in listing and "deactivated" in listing

    token = run("users", "token", "qa", "LIMS").output.strip()
    assert token.startswith("cbt_")

    verified = run("verify")
    assert verified.exit_code == 0 and verified.output.startswith("OK: ")

    target = env / "backup.db"
    assert run("backup", str(target)).exit_code == 0
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT count(*) FROM app_user").fetchone()[0] == len(DEMO_USERS) + len(SECOND_SITE_USERS) + 1
    assert run("backup", str(target)).exit_code == 1  # never overwrites a backup


def test_the_command_line_links_site_people_to_sites_and_studies(env):
    assert run("init").exit_code == 0 and run("demo").exit_code == 0
    assert "[AUH-ENT NCT07290946]" in next(line for line in run("users", "list").output.splitlines()
                                            if line.startswith("pharmacist-aarhus"))
    linked = run("users", "link", "pharmacist-aarhus", "--study", "NCT06805448")
    assert linked.exit_code == 0, linked.output
    global_ = run("users", "link", "supply", "--site", "AUH-ENT")
    assert global_.exit_code == 1 and "(site)" in global_.output and "no site role" in global_.output
    assert run("users", "unlink", "pharmacist-aarhus", "--study", "NCT06805448", "--reason", " ").exit_code == 1
    assert run("users", "unlink", "pharmacist-aarhus", "--study", "NCT06805448", "--reason", "not this study"
               ).exit_code == 0
    db = Database(Settings().url)
    with db.read() as s:
        assert users.links_of(s, users.by_username(s, "pharmacist-aarhus").id) == (["AUH-ENT"], ["NCT07290946"])
    db.dispose()
    assert run("verify").exit_code == 0


def test_verify_exits_non_zero_naming_the_first_bad_event(env):
    run("demo")
    db = Database(Settings().url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET user_name = 'Nobody' WHERE seq = 3"))
    db.dispose()
    result = run("verify")
    assert result.exit_code == 2
    assert "audit event 3: its content does not match its hash" in result.output


def test_serve_refuses_the_demo_key_outside_demo_mode(env, monkeypatch):
    monkeypatch.delenv("CELLBENCH_SECRET_KEY", raising=False)
    result = run("serve")
    assert result.exit_code == 1 and "CELLBENCH_SECRET_KEY is not set" in result.output


def test_serve_refuses_several_workers_on_sqlite(env, monkeypatch):
    monkeypatch.setenv("CELLBENCH_SECRET_KEY", "x" * 40)
    result = run("serve", "--workers", "2")
    assert result.exit_code == 1 and "SQLite serves one worker" in result.output


@pytest.mark.skipif(not PG_URL, reason="runs on PostgreSQL (CELLBENCH_TEST_DATABASE_URL)")
def test_backup_of_postgres_uses_pg_dump(db, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBENCH_DATABASE_URL", db.url)
    target = tmp_path / "pg.dump"
    result = run("backup", str(target))
    if shutil.which("pg_dump"):
        assert result.exit_code == 0 and target.stat().st_size > 0
    else:
        assert result.exit_code == 1 and "pg_dump is not installed" in result.output


# --- demo mode only on the demo's own database (issue 16) ----------------------------------------------


@pytest.fixture
def no_server(monkeypatch):
    """`serve` stops before listening: the arguments it would run uvicorn with are kept."""
    import uvicorn

    started: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    monkeypatch.setenv("CELLBENCH_DEMO", "false")  # restored after the test: `serve --demo` sets it
    return started


def _real_database() -> None:
    assert run("init").exit_code == 0
    made = run("users", "create", "carl", "--name", "Carl Checker", "--role", "verifier",
               input="a long password!\na long password!\n")
    assert made.exit_code == 0, made.output


def test_demo_mode_from_the_environment_alone_is_refused(env, no_server, monkeypatch):
    _real_database()
    monkeypatch.setenv("CELLBENCH_DEMO", "true")
    monkeypatch.delenv("CELLBENCH_SECRET_KEY", raising=False)
    result = run("serve")
    assert result.exit_code == 1 and "demo mode comes only from `cellbench serve --demo`" in result.output
    assert no_server == []


def test_the_demo_key_on_a_real_database_is_refused(env, no_server, monkeypatch):
    _real_database()
    monkeypatch.delenv("CELLBENCH_SECRET_KEY", raising=False)
    result = run("serve")
    assert result.exit_code == 1 and "CELLBENCH_SECRET_KEY is not set" in result.output
    assert no_server == []


def test_the_demo_is_not_added_to_a_database_with_real_records(env, no_server):
    _real_database()
    for args in (("demo",), ("serve", "--demo")):
        result = run(*args)
        assert result.exit_code == 1 and "holds records the demo did not create" in result.output
    assert no_server == []
    db = Database(Settings().url)
    with db.read() as s:
        assert [u.username for u, _ in users.all_users(s)] == ["carl"]  # no demo user with a published password
        assert not demo_marker.is_marked(s)
    db.dispose()


def test_serve_demo_creates_and_marks_its_database_and_then_serves_it(env, no_server, monkeypatch):
    monkeypatch.delenv("CELLBENCH_SECRET_KEY", raising=False)
    result = run("serve", "--demo")
    assert result.exit_code == 0, result.output
    assert len(no_server) == 1
    db = Database(Settings().url)
    assert demo_marker.is_demo_database(db)
    db.dispose()
    # The demo's database keeps its published key without --demo too: there is nothing real in it.
    monkeypatch.setenv("CELLBENCH_DEMO", "false")  # `serve --demo` set it for its workers
    assert run("serve").exit_code == 0 and len(no_server) == 2
    assert run("verify").exit_code == 0  # the mark is on the audit chain


def test_the_served_app_refuses_demo_mode_on_a_real_database(env, monkeypatch):
    from cellbench.app import create_app

    _real_database()
    monkeypatch.delenv("CELLBENCH_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="demo mode runs only on a database"):
        create_app(Settings(demo=True))  # as uvicorn --factory or a worker process would build it
    with pytest.raises(ValueError, match="CELLBENCH_SECRET_KEY is not set"):
        create_app(Settings(demo=False))
