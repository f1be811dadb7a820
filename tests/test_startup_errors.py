"""A database cellbench cannot use is refused at start, by every command, in one line that names
the problem and its fix: no traceback, exit status 1, and the file left exactly as it was.

Run through the real command line (a subprocess with CELLBENCH_DATABASE_URL), as a person would
meet it. SQLite files: these are the embedded database's failures (a PostgreSQL server refuses
what it cannot do itself)."""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cellbench import startup
from cellbench.app import create_app
from cellbench.config import Settings
from cellbench.db import Database, migrate

ROOT = Path(__file__).resolve().parents[1]
SECRET = "startup-test-secret-key-0123456789-abcdefgh"
# Commands that open the database: the thorough ones (serve, init, verify) and a cheap one.
COMMANDS = [["serve"], ["init"], ["verify"], ["users", "list"]]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A database at this cellbench's schema, copied by each test."""
    path = tmp_path_factory.mktemp("startup") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate(db)
    db.dispose()
    return path


def cellbench(database: Path, *args: str, **more_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBENCH_")}
    env.update(CELLBENCH_DATABASE_URL=f"sqlite:///{database}", CELLBENCH_DATA_DIR=str(database.parent),
               CELLBENCH_SECRET_KEY=SECRET, PYTHONPATH=str(ROOT), **more_env)
    code = "import sys; from cellbench.cli import app; sys.argv[0] = 'cellbench'; app()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def refused_in_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with exit status 1 and said one line, with these words, and nothing else."""
    said = result.stderr.strip()
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(said.splitlines()) == 1 and said.startswith("cellbench: "), said
    for word in words:
        assert word in said, (word, said)
    return said


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_of(migrated: Path, tmp_path: Path) -> Path:
    path = tmp_path / "cellbench.db"
    shutil.copyfile(migrated, path)
    return path


# --- a newer schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_database_upgraded_by_a_newer_cellbench_is_refused_by_every_command_naming_its_revision(
        migrated, tmp_path, command):
    path = copy_of(migrated, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    conn.close()
    before = digest(path)

    said = refused_in_one_line(cellbench(path, *command), "was upgraded by a newer cellbench",
                               "(revision 0999_from_the_future)", "install that version or restore a backup")

    assert "run `cellbench init`" not in said
    assert digest(path) == before


# --- not a database, damaged ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_sqlite_database_is_refused_and_left_alone(tmp_path, command):
    path = tmp_path / "cellbench.db"
    path.write_text("kit number,arm\nK-0001,placebo\n" * 200)
    before = digest(path)

    refused_in_one_line(cellbench(path, *command), str(path), "is not a SQLite database")

    assert digest(path) == before


def damage_page(path: Path, table: str) -> None:
    """Overwrite the first bytes of the table's root page (its b-tree page header) with garbage."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    with path.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xde\xad\xbe\xef" * 8)


@pytest.mark.parametrize("command", [["serve"], ["init"], ["verify"]], ids=" ".join)
def test_a_damaged_page_is_found_before_serve_init_or_verify_and_nothing_is_written_to_the_file(
        migrated, tmp_path, command):
    path = copy_of(migrated, tmp_path)
    damage_page(path, "kit")
    before = digest(path)

    refused_in_one_line(cellbench(path, *command), str(path), "is damaged", "restore a backup")

    assert digest(path) == before


def test_a_damaged_header_is_found_by_any_command_and_a_user_is_not_created(migrated, tmp_path):
    path = copy_of(migrated, tmp_path)
    with path.open("r+b") as handle:  # after the 16-byte magic: the page size and the formats
        handle.seek(16)
        handle.write(b"\x00\x07\x09\x09" * 4)
    before = digest(path)

    result = cellbench(path, "users", "create", "nadia", "--name", "Nadia New", "--role", "qa",
                       CELLBENCH_NEW_PASSWORD="a long enough password 123")

    refused_in_one_line(result, str(path), "restore a backup")
    assert digest(path) == before


def test_a_file_cut_short_is_damaged(migrated, tmp_path):
    path = tmp_path / "cellbench.db"
    path.write_bytes(migrated.read_bytes()[:60])

    refused_in_one_line(cellbench(path, "verify"), str(path), "is damaged", "restore a backup")


def test_a_folder_named_as_the_database_is_refused(tmp_path):
    path = tmp_path / "cellbench.db"
    path.mkdir()

    refused_in_one_line(cellbench(path, "init"), str(path), "is a folder, not a SQLite database")


# --- permissions --------------------------------------------------------------------------------------


@pytest.fixture
def restore_modes(tmp_path):
    yield
    for path in (tmp_path, *tmp_path.iterdir()):
        path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


@pytest.mark.parametrize("command", [["serve"], ["init"], ["users", "list"]], ids=" ".join)
def test_a_read_only_database_file_is_refused_naming_the_file_and_the_permission(
        migrated, tmp_path, restore_modes, command):
    path = copy_of(migrated, tmp_path)
    path.chmod(0o444)
    before = digest(path)

    refused_in_one_line(cellbench(path, *command), f"the database file {path} is read-only", "(mode 0444)",
                        "write permission on it")

    assert digest(path) == before


@pytest.mark.parametrize("command", [["serve"], ["init"]], ids=" ".join)
def test_a_read_only_folder_is_refused_because_sqlite_writes_its_journal_beside_the_file(
        migrated, tmp_path, restore_modes, command):
    path = copy_of(migrated, tmp_path)
    tmp_path.chmod(0o555)

    refused_in_one_line(cellbench(path, *command), f"the folder {tmp_path} is read-only", "(mode 0555)",
                        "cellbench.db-wal", "write permission on the folder")


def test_a_file_this_user_may_not_write_is_refused_though_its_mode_lets_others(migrated, tmp_path, monkeypatch):
    """Owned by another user, mode 0644: only os.access knows this user may not write it. Tests run
    as root here, and root may write any file, so the refusal is shown with os.access answering as
    it would for another user (the mode-0444 tests above run the real thing, for root too)."""
    path = copy_of(migrated, tmp_path)
    real_access = os.access
    monkeypatch.setattr(startup.os, "access", lambda p, mode: False if Path(p) == path and mode == os.W_OK
                        else real_access(p, mode))

    said = startup.file_problem(path)

    assert said is not None and said.startswith(f"the database file {path} is read-only for ")
    assert "(mode 0644)" in said and "write permission on it" in said


def test_a_missing_folder_is_named(tmp_path):
    path = tmp_path / "no such folder" / "cellbench.db"

    refused_in_one_line(cellbench(path, "users", "list"), f"the folder {path.parent} of the database does not exist")


# --- the app factory, which uvicorn's workers run -------------------------------------------------------


def test_the_app_factory_refuses_a_newer_database_with_the_same_line(migrated, tmp_path):
    path = copy_of(migrated, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    conn.close()

    with pytest.raises(SystemExit) as refused:
        create_app(Settings(database_url=f"sqlite:///{path}", secret_key=SECRET, data_dir=tmp_path))

    assert str(refused.value).startswith("cellbench: the database sqlite:///")
    assert "was upgraded by a newer cellbench (revision 0999_from_the_future)" in str(refused.value)


def test_a_sound_database_has_no_problem(migrated, tmp_path):
    db = Database(f"sqlite:///{copy_of(migrated, tmp_path)}")
    try:
        assert startup.problem(db) is None
    finally:
        db.dispose()
