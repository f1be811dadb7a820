"""PostgreSQL backups: `pg_dump --format=custom` in the snapshot whose chain head is signed.

The head must be the one the dump contains, not the live one (writers go on while pg_dump runs).
So a REPEATABLE READ transaction exports its snapshot (`pg_export_snapshot()`), reads the chain
head and the rows of every table in it, and pg_dump runs with `--snapshot` in that same snapshot
while the transaction stays open: the dump holds exactly what was read. Then the head is read once
more from the dump file itself (`pg_restore --data-only --table=audit_head`) and must be the same.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from .files import PRIVATE, create_private, mode_of
from .manifest import BackupProblem, Contents


def _libpq(url: str) -> tuple[str, str | None]:
    """A libpq URL without the password (command lines are visible to every user of the machine),
    and the password, passed to the tools as PGPASSWORD."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False), parsed.password


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupProblem(f"{name} is not installed: install the PostgreSQL client tools (the server's major "
                            "version or newer)")
    return found


def _run(argv: list[str], password: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - no shell


def _said(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or f"exit code {result.returncode}"


def _connect(url: str) -> psycopg.Connection[Any]:
    conninfo, password = _libpq(url)
    try:
        return psycopg.connect(conninfo, password=password) if password is not None else psycopg.connect(conninfo)
    except psycopg.OperationalError as exc:
        name = make_url(url).database
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BackupProblem(f"cannot connect to the database {name} ({first}): create it empty first "
                            f"(`createdb {name}`) and check CELLBENCH_DATABASE_URL") from None


def _contents(conn: psycopg.Connection[Any]) -> Contents:
    names = [name for (name,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
    if "audit_head" not in names:
        raise BackupProblem("the database holds no cellbench chain (no audit_head table)", 2)
    row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone() or (0, "")
    last = conn.execute("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
    tables: dict[str, int] = {}
    for name in names:
        counted = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
        tables[name] = int(counted[0]) if counted else 0
    schema = conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in names else None
    return Contents("postgresql", int(row[0]), str(row[1]), (int(last[0]), str(last[1])) if last else None, tables,
                    str(schema[0]) if schema else None)


def _snapshot_reader(url: str) -> psycopg.Connection[Any]:
    conn = _connect(url)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def dump(url: str, target: Path) -> Contents:
    """pg_dump into a new file made mode 0600 before pg_dump writes to it; what the dump holds."""
    pg_dump = _tool("pg_dump")
    conninfo, password = _libpq(url)
    os.close(create_private(target))  # pg_dump opens the existing file for writing: the mode stays
    try:
        with _snapshot_reader(url) as conn:
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
            held = _contents(conn)
            # The transaction that exported the snapshot stays open until pg_dump has finished.
            result = _run([pg_dump, "--format=custom", f"--snapshot={exported[0] if exported else ''}",
                           "--file", str(target), "--dbname", conninfo], password)
            conn.rollback()
        if result.returncode != 0:
            raise BackupProblem(f"pg_dump failed: {_said(result)}")
        if mode_of(target) != PRIVATE:
            raise BackupProblem(f"{target} has mode {mode_of(target):o} after pg_dump, not 600: removed")
        in_file = head_in_dump(target)
        if in_file != (held.head_seq, held.head_hash):
            raise BackupProblem(f"the dump holds chain head {in_file[0]}, its snapshot {held.head_seq}: "
                                "the dump is not the snapshot that was read; nothing is signed")
    except BaseException:
        target.unlink(missing_ok=True)  # ours (created above): half a dump is no backup
        raise
    return held


def head_in_dump(path: Path) -> tuple[int, str]:
    """The audit chain head as stored in the dump file (its audit_head table's data)."""
    result = _run([_tool("pg_restore"), "--data-only", "--table=audit_head", "--file=-", str(path)], None)
    if result.returncode != 0:
        raise BackupProblem(f"{path} cannot be read by pg_restore ({_said(result)}): the file is truncated or "
                            "corrupt", 2)
    lines = iter(result.stdout.splitlines())
    for line in lines:
        if line.startswith("COPY ") and "audit_head" in line and "(" in line:
            columns = [c.strip().strip('"') for c in line[line.index("(") + 1:line.index(")")].split(",")]
            for values in (v.split("\t") for v in lines):
                if values == ["\\."]:
                    break
                record = dict(zip(columns, values, strict=False))
                if record.get("id") == "1":
                    return int(record["seq"]), record["hash"]
    raise BackupProblem(f"{path} holds no audit chain head: it is not a cellbench backup, or it was edited", 2)


def tables_in(url: str) -> list[str]:
    """Every table of the target database outside PostgreSQL's own schemas."""
    with _connect(url) as conn:
        return [name for (name,) in conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]


def restore(url: str, path: Path) -> None:
    """pg_restore into the empty target, in one transaction: a failure leaves it empty."""
    conninfo, password = _libpq(url)
    result = _run([_tool("pg_restore"), "--no-owner", "--single-transaction", "--exit-on-error",
                   "--dbname", conninfo, str(path)], password)
    if result.returncode != 0:
        raise BackupProblem(f"pg_restore failed, nothing was restored: {_said(result)}", 2)


def contents(url: str) -> Contents:
    """What a (restored) database holds, read in one snapshot."""
    with _snapshot_reader(url) as conn:
        held = _contents(conn)
        conn.rollback()
    return held
