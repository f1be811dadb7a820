"""Whether this cellbench can open a database, and if not why, in one line with the fix.

Every command asks before it touches the database (cli._database), and so does the app factory
(uvicorn's workers run create_app): a database a newer cellbench upgraded, a file that is not a
SQLite database or is damaged, a file or folder SQLite cannot write. The file checks come first
and read through a read-only connection, so that nothing is written to a damaged file: an
ordinary connection would set WAL mode and checkpoint into it on close.

The damage check is SQLite's `PRAGMA quick_check`: every page of every table and index is read
and its b-tree structure checked, without the cross-checks of indexes against tables that
integrity_check adds. Measured on a 381 MB database (100,000 kits, 1,000,000 audit events; file
in the page cache, 2 cores under load): quick_check 0.7-0.9 s, integrity_check 3.7 s, reading
the schema 1 ms. Reading the schema alone catches a damaged header or schema page only; a page
damaged anywhere else needs every page read. So every command runs quick_check first (cron
jobs and the odd `cellbench users` command can spare a second), and the app factory, which
`cellbench serve` runs after its own check, the cheap checks only.
"""
from __future__ import annotations

import getpass
import os
import sqlite3
import stat
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .db import Database, alembic_config

SQLITE_HEADER = b"SQLite format 3\x00"


def problem(db: Database, *, require_schema: bool = True, thorough: bool = True) -> str | None:
    """Why `db` cannot be used by this cellbench (one line: the problem and its fix), or None.

    require_schema: the database must be at this cellbench's schema (every command but init, which
    brings it there). thorough: read every page for damage (quick_check) besides the header."""
    if db.is_sqlite:
        path = db.sqlite_path()
        if path and path != ":memory:" and not path.startswith("file:"):
            found = file_problem(Path(path)) or damage(Path(path), thorough=thorough)
            if found:
                return found
    return schema_problem(db, require_schema=require_schema)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): the number still says who
        return f"uid {os.getuid()}"


def _read_only(path: Path) -> str | None:
    """'mode 0444' when this process may not write `path`: no write permission for it (os.access),
    or no write bit for anyone. The second catches a file made read-only on purpose even when root
    runs cellbench: root may write anything, and SQLite would."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not os.access(path, os.W_OK) or not mode & 0o222:
        return f"mode {mode:04o}"
    return None


def file_problem(path: Path) -> str | None:
    """The file and its folder: there, a file, readable and writable, and a SQLite database."""
    folder = path.parent
    user = _user()
    if not folder.is_dir():
        return (f"the folder {folder} of the database does not exist: create it, or set CELLBENCH_DATABASE_URL "
                "(or CELLBENCH_DATA_DIR) to where the database is")
    if why := _read_only(folder):
        return (f"the folder {folder} is read-only for {user} ({why}): SQLite writes its journal "
                f"({path.name}-wal) beside the database; give {user} write permission on the folder")
    if not path.exists():
        return None  # a new database: init creates it
    if path.is_dir():
        return f"{path} is a folder, not a SQLite database: set CELLBENCH_DATABASE_URL to the database file"
    if not os.access(path, os.R_OK):
        return f"the database file {path} cannot be read by {user}: give {user} read and write permission on it"
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.exists() and (why := _read_only(file)):
            return f"the database file {file} is read-only for {user} ({why}): give {user} write permission on it"
    size = path.stat().st_size
    if size == 0:
        return None  # an empty file is a new database to SQLite
    with path.open("rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_HEADER):
        return (f"{path} is not a SQLite database (it does not start with SQLite's header): set "
                "CELLBENCH_DATABASE_URL to the cellbench database, or restore a backup")
    if len(header) < 100:
        return f"the database {path} is damaged (cut short at {size} bytes): restore a backup"
    return None


def damage(path: Path, *, thorough: bool) -> str | None:
    """SQLite's own reading of the file, through a read-only connection: the schema page always, every
    page if thorough. None when it reads as sound (or is not there yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"the database {path} cannot be opened ({exc}): restore a backup"
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if thorough:
            rows = conn.execute("PRAGMA quick_check(3)").fetchall()
            if rows != [("ok",)]:
                found = "; ".join(str(row[0]) for row in rows)
                return f"the database {path} is damaged (SQLite's quick_check: {_one_line(found)}): restore a backup"
    except sqlite3.Error as exc:
        return f"the database {path} is damaged ({_one_line(str(exc))}): restore a backup"
    finally:
        conn.close()
    return None


def _one_line(words: str, limit: int = 200) -> str:
    words = " ".join(words.split())
    return words if len(words) <= limit else words[:limit - 1] + "…"


def schema_problem(db: Database, *, require_schema: bool) -> str | None:
    """The schema's alembic revision: one this cellbench knows, and its latest when required."""
    from alembic.script import ScriptDirectory

    shown = make_url(db.url).render_as_string(hide_password=True)
    script = ScriptDirectory.from_config(alembic_config())
    try:
        with db.engine.connect() as conn:
            has_version = db.engine.dialect.has_table(conn, "alembic_version")
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_version else None
    except SQLAlchemyError as exc:
        return f"cannot open the database {shown}: {_one_line(str(getattr(exc, 'orig', exc) or exc))}"
    known = {rev.revision for rev in script.walk_revisions()}
    if revision is not None and revision not in known:
        return (f"the database {shown} was upgraded by a newer cellbench (revision {revision}); install that "
                "version or restore a backup")
    if require_schema and revision != script.get_current_head():
        return f"the database {shown} is not at the current schema: run `cellbench init` first"
    return None


def refuse_to_serve(settings: Settings) -> None:
    """For the app factory, which uvicorn's workers run: exit with the one line (SystemExit, which
    uvicorn lets through as the message, not a traceback) when the database cannot be served. The
    cheap checks only: `cellbench serve` read every page before it started uvicorn, and each worker
    reading the whole file again would only slow the start."""
    db = Database(settings.url, wal_limit_mb=settings.sqlite_wal_limit_mb)
    try:
        found = problem(db, thorough=False)
    finally:
        db.dispose()
    if found:
        raise SystemExit(f"cellbench: {found}")
