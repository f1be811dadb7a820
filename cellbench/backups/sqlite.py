"""SQLite backups: the backup file is itself a database, so what it holds is read by opening it."""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .files import PRIVATE
from .manifest import BackupProblem, Contents


def _open_read_only(path: Path) -> sqlite3.Connection:
    # Quoted: a path with ?, # or % must not be read as URI syntax. Read-only: reading a backup
    # never changes it (its SHA-256 is in the checkpoint).
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def contents(path: Path) -> Contents:
    """The chain head, the newest event, the rows of every table and the schema revision, read
    from the file in one read transaction."""
    conn = _open_read_only(path)
    try:
        conn.execute("BEGIN")
        names = _tables(conn)
        if "audit_head" not in names:
            raise BackupProblem(f"{path} holds no cellbench database (no audit chain head)", 2)
        seq, head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone() or (0, "")
        last = conn.execute("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
        tables = {name: conn.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()[0]  # noqa: S608 - catalog names
                  for name in names}
        schema = conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in names \
            else None
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise BackupProblem(f"{path} cannot be read as a SQLite database ({exc}): the file is damaged or truncated",
                            2) from None
    finally:
        conn.close()
    return Contents("sqlite", int(seq), str(head), (int(last[0]), str(last[1])) if last else None, tables,
                    schema[0] if schema else None)


def tables_in(path: Path) -> list[str]:
    """The tables of the target file ([] when there is no file or it is empty)."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(path)
    try:
        return _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupProblem(f"the target {path} is not an empty SQLite database ({exc}): "
                            "restore into a new file") from None
    finally:
        conn.close()


def copy_in(backup: Path, target: Path) -> None:
    """Copy the backup into the (empty or new) target file with the backup API, the target made
    mode 0600 before anything is written to it: it holds what the backup holds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, PRIVATE)
    os.fchmod(fd, PRIVATE)
    os.close(fd)
    source = _open_read_only(backup)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest, pages=-1)
        # A damaged file may copy without a complaint: its pages are checked before anything is trusted.
        problems = [row[0] for row in dest.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise BackupProblem(f"the restored copy of {backup} is damaged ({'; '.join(problems)}): "
                                "the backup file is truncated or corrupt", 2)
    except sqlite3.DatabaseError as exc:
        failure = BackupProblem(f"{backup} cannot be restored ({exc}): the backup file is truncated or corrupt", 2)
    except BackupProblem as exc:
        failure = exc
    else:
        return
    finally:
        dest.close()
        source.close()
    # The target held no table before (checked by the caller): a half-copied file goes, so that the
    # next attempt finds the target empty again.
    for leftover in (target, target.with_name(target.name + "-journal")):
        leftover.unlink(missing_ok=True)
    raise failure


def quick_check(path: Path) -> list[str]:
    """SQLite's own page check of a backup file (['ok'] when it is whole)."""
    with contextlib.closing(_open_read_only(path)) as conn:
        try:
            return [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
